// Property: whether two statuses are "the same but for lastSyncTime" must not depend on the order
// of their keys. Objects read back from the API server have their keys sorted (the server
// re-encodes unstructured JSON), objects the reconciler builds do not.
//
// KNOWN BUG (src/controller/status.ts, sameStatus): it compares JSON.stringify output, which is
// key-order sensitive, so a status read from the API server never equals the one the reconciler
// computes. The reconciler's "skip the write when only lastSyncTime moved" therefore never fires
// against a real cluster; each status write produces a watch event, each event a reconcile, and
// each reconcile in a new second another write: a self-sustaining loop (docs/benchmarks.md,
// docs/reliability.md). Marked todo so the suite stays green until src/ is fixed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { sameStatus } from '../../src/controller/status.ts';

/** The same value with every object's keys in sorted order (what the API server returns). */
function sortedKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortedKeys);
  if (v && typeof v === 'object') return Object.fromEntries(Object.keys(v).sort().map((k) => [k, sortedKeys((v as Record<string, unknown>)[k])]));
  return v;
}

const condition = fc.record({
  type: fc.constantFrom('Ready', 'Reconciling', 'Stalled', 'RestartRequired'),
  status: fc.constantFrom('True', 'False', 'Unknown'),
  reason: fc.constantFrom('Converged', 'AsExpected', 'BalloonInflating'),
  message: fc.string({ maxLength: 20 }),
  observedGeneration: fc.nat({ max: 9 }),
  lastTransitionTime: fc.constant('2026-11-27T02:10:00Z'),
});
const status = fc.record({
  observedGeneration: fc.nat({ max: 9 }),
  conditions: fc.array(condition, { maxLength: 4 }),
  observed: fc.record({ powerState: fc.constantFrom('Running', 'ShutOff'), memory: fc.constantFrom('2Gi', '4Gi'), maxMemory: fc.constant('8Gi') }),
  lastSyncTime: fc.constant('2026-11-27T02:10:00Z'),
});

test('sameStatus: a status equals itself with only lastSyncTime changed', () => {
  fc.assert(
    fc.property(status, (s) => {
      assert.ok(sameStatus(s, { ...s, lastSyncTime: '2026-11-27T03:00:00Z' }));
    }),
    { numRuns: 200, seed: 1 },
  );
});

test('KNOWN BUG (src/controller/status.ts): sameStatus depends on key order — the API server returns keys sorted', { todo: 'sameStatus must compare canonically (sorted keys)' }, () => {
  fc.assert(
    fc.property(status, (s) => {
      assert.ok(sameStatus(sortedKeys(s), s), 'the same status with sorted keys is not "same"');
    }),
    { numRuns: 200, seed: 2 },
  );
});
