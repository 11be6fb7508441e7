/**
 * docs/gitops.md "What done means", the Flux column: what kstatus (sigs.k8s.io/cli-utils
 * pkg/kstatus, which Flux's health checks use) makes of the conditions src/controller/status.ts
 * computes. kstatus's rules for a custom resource are restated here from its README:
 * observedGeneration present and different from metadata.generation → InProgress; else the first
 * of Reconciling=True → InProgress, Stalled=True → Failed, in the order the conditions are listed;
 * else Current. (Ready and RestartRequired are not read.)
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { initialStatus, statusForFailure } from '../../src/controller/status.ts';
import type { BalloonState } from '../../src/controller/status.ts';
import type { Verdict } from '../../src/model/memory.ts';
import { GiB, outcomeStatus, runningVM, verdict } from '../support/status-fixtures.ts';

type KStatus = 'InProgress' | 'Failed' | 'Current';

function kstatus(generation: number, status: { observedGeneration?: number; conditions?: { type: string; status: string }[] }): KStatus {
  if (status.observedGeneration !== undefined && status.observedGeneration !== generation) return 'InProgress';
  for (const c of status.conditions ?? []) {
    if (c.type === 'Reconciling' && c.status === 'True') return 'InProgress';
    if (c.type === 'Stalled' && c.status === 'True') return 'Failed';
  }
  return 'Current';
}

const T = '2026-12-04T22:00:00Z';
const observed = runningVM('vm', '5a2c0e9e-0000-4000-8000-000000000009');
const v = verdict;
const MEMORY = v('memory', 'Applied', 6n * GiB, 'Applied');
const outcome = (verdicts: Verdict[], balloon?: BalloonState) => outcomeStatus(observed, verdicts, { generation: 1, at: T, ...(balloon ? { balloon } : {}) });

const CASES: { name: string; status: ReturnType<typeof outcome>; want: KStatus }[] = [
  { name: 'converged', status: outcome([v('maxMemory', 'Applied', 8n * GiB, 'Applied'), MEMORY]), want: 'Current' },
  { name: 'waiting on a restart', status: outcome([v('maxMemory', 'RestartRequired', 16n * GiB, 'RestartRequired'), MEMORY]), want: 'Current' },
  { name: 'waiting on a power-off', status: outcome([v('maxMemory', 'AwaitingPowerOff', 12n * GiB, 'AwaitingPowerOff'), MEMORY]), want: 'Current' },
  { name: 'stalled (Unsupported)', status: outcome([v('reservation', 'Unsupported', 2n * GiB, 'Unsupported'), MEMORY]), want: 'Failed' },
  { name: 'invalid (InvalidSpec)', status: statusForFailure(initialStatus(1, T), 1, { reason: 'InvalidSpec', message: 'spec.memory: too big', stalled: true }, T), want: 'Failed' },
  { name: 'retrying (HypervisorUnreachable)', status: statusForFailure(initialStatus(1, T), 1, { reason: 'HypervisorUnreachable', message: 'ECONNREFUSED', stalled: false }, T), want: 'InProgress' },
  { name: 'balloon settling', status: outcome([MEMORY], { state: 'settling', target: 6n * GiB, actual: 7n * GiB, sinceMs: 0 }), want: 'InProgress' },
  { name: 'first sight', status: initialStatus(1, T), want: 'InProgress' },
];

for (const c of CASES) {
  test(`kstatus of the status vmmem computes: ${c.name} → ${c.want}`, () => {
    assert.equal(kstatus(1, c.status), c.want, JSON.stringify(c.status.conditions));
  });
}

test('kstatus: a status for an older generation is InProgress, whatever its conditions say', () => {
  assert.equal(kstatus(2, CASES[0]!.status), 'InProgress');
});
