/**
 * Statuses as src/controller/status.ts writes them, for tests that judge them
 * (the Argo CD health script, kstatus, `kubectl wait`): a running QEMU VM of
 * 8Gi max / 6Gi memory, verdicts, and the status an outcome produces.
 */
import type { BalloonState } from '../../src/controller/status.ts';
import { initialStatus, statusForOutcome } from '../../src/controller/status.ts';
import type { ObservedVM, Verdict } from '../../src/model/memory.ts';

export const GiB = 1024n ** 3n;

/** A running, ballooned QEMU VM: maxMemory 8Gi, memory 6Gi in both worlds. */
export function runningVM(name: string, uuid: string): ObservedVM {
  return {
    name,
    uuid,
    type: 'qemu',
    powerState: 'Running',
    persistent: true,
    live: { maxMemory: 8n * GiB, memory: 6n * GiB },
    config: { maxMemory: 8n * GiB, memory: 6n * GiB },
    balloon: { device: 'present', actual: 6n * GiB },
    numa: false,
  };
}

export function verdict(field: Verdict['field'], kind: Verdict['kind'], desired: bigint, reason: string, message = `${field}: ${reason}`): Verdict {
  return { field, kind, desired, reason, message };
}

/** The status a reconcile of `generation` writes for these verdicts (no steps left). */
export function outcomeStatus(observed: ObservedVM, verdicts: Verdict[], opts: { generation: number; at: string; balloon?: BalloonState }) {
  const { generation, at } = opts;
  return statusForOutcome(initialStatus(generation, at), generation, { observed, plan: { steps: [], verdicts, roundings: [] }, balloon: opts.balloon ?? { state: 'settled' } }, at);
}
