/**
 * `--once`: reconcile every object until nothing more can be done now —
 * each VMM is converged, stalled, failing, or waiting on something outside
 * vmmem (a restart, a power-off, the next sync) — then report.
 */
import { conditionOf } from '../controller/conditions.ts';
import type { ObjectStore, StoredObject } from '../controller/ports.ts';
import type { Reconciler, Result } from '../controller/reconciler.ts';
import { sleep } from '../util/sleep.ts';

export interface OnceOptions {
  /** A requeue sooner than this means "still converging" (balloon settling, first pass). */
  shortRequeueMs?: number;
  /** Give up waiting after this long (a balloon timeout is normally shorter). */
  deadlineMs?: number;
  onPass?: () => void;
}

export async function reconcileUntilQuiet(store: ObjectStore, reconciler: Reconciler, opts: OnceOptions = {}): Promise<void> {
  const short = opts.shortRequeueMs ?? 10_000;
  const deadline = Date.now() + (opts.deadlineMs ?? 5 * 60_000);
  const run = async (fn: () => Promise<Result>): Promise<number | undefined> => {
    try {
      const r = await fn();
      return r.requeueAfter !== undefined && r.requeueAfter <= short ? r.requeueAfter : undefined;
    } catch {
      // The reconciler wrote the failure into status; --once reports it, it does not retry forever.
      return undefined;
    }
  };
  for (const hv of store.list('Hypervisor')) await run(() => reconciler.reconcileHypervisor(hv.metadata));
  let keys = store.list('VirtualMachineMemory').map((o) => o.metadata);
  while (keys.length > 0) {
    const again: typeof keys = [];
    let wait = Infinity;
    for (const key of keys) {
      const soon = await run(() => reconciler.reconcileVMM(key));
      if (soon !== undefined) {
        again.push(key);
        wait = Math.min(wait, soon);
      }
    }
    opts.onPass?.();
    if (again.length === 0 || Date.now() + wait > deadline) break;
    await sleep(wait);
    keys = again;
  }
}

/** 0: all Ready or waiting on a restart/power-off; 3: any Stalled; 1: anything else not Ready (operational). */
export function exitCodeFor(objects: readonly StoredObject[]): number {
  let code = 0;
  for (const obj of objects) {
    if (conditionOf(obj, 'Stalled')?.status === 'True') return 3;
    const ready = conditionOf(obj, 'Ready');
    if (ready?.status === 'True') continue;
    if (ready && (ready.reason === 'RestartRequired' || ready.reason === 'AwaitingPowerOff')) continue;
    code = 1;
  }
  return code;
}
