/**
 * `--once`: reconcile every object until nothing more can be done now —
 * each VMM is converged, stalled, failing, or waiting on something outside
 * vmmem (a restart, a power-off, the next sync) — then report. It runs the
 * long-running operator's own queues and reconcilers (issue #17.1); the
 * operator, built with `once`, does not retry failures and drops requeues
 * longer than `shortRequeueMs`, so its queues empty when the work is done.
 */
import { conditionOf } from '../controller/conditions.ts';
import type { Operator } from '../controller/operator.ts';
import type { StoredObject } from '../controller/ports.ts';
import { sleep } from '../util/sleep.ts';

/** A requeue sooner than this means "still converging" (balloon settling, first pass). */
export const ONCE_SHORT_REQUEUE_MS = 10_000;
const QUIET_POLL_MS = 20;
/** onPass (progress on stderr) at most this often. */
const PASS_EVERY_MS = 1000;

export interface OnceOptions {
  /** Give up waiting after this long (a balloon timeout is normally shorter). */
  deadlineMs?: number;
  onPass?: () => void;
}

/** Starts the operator's workers (its caches must be started) and resolves once its queues are quiet. */
export async function reconcileUntilQuiet(operator: Operator, opts: OnceOptions = {}): Promise<void> {
  const deadline = Date.now() + (opts.deadlineMs ?? 5 * 60_000);
  operator.startWorkers();
  // Quiet twice in a row: a finished reconcile may queue a follow-up in the same tick.
  let quietPolls = 0;
  let passAt = Date.now();
  while (Date.now() < deadline && quietPolls < 2) {
    await sleep(QUIET_POLL_MS);
    quietPolls = operator.quiet() ? quietPolls + 1 : 0;
    if (Date.now() - passAt >= PASS_EVERY_MS) {
      passAt = Date.now();
      opts.onPass?.();
    }
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
