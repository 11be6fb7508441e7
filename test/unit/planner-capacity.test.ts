/**
 * Host capacity (src/planner/capacity.ts, issue #15.2): commitments of the
 * powered-on VMs against hostMemory × overcommitRatio − reserved, changes on
 * one host checked against each other, reservations against what the host can
 * reserve.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { checkChanges, holdForCapacity, hostCapacity, parseOvercommitRatio, proposedChange } from '../../src/planner/capacity.ts';
import type { HostBudget, HostVM } from '../../src/planner/capacity.ts';
import { plan } from '../../src/planner/plan.ts';
import { profileFor } from '../../src/model/profiles.ts';
import type { ObservedVM } from '../../src/model/memory.ts';
import { HypervisorSpecSchema } from '../../src/api/hypervisor.ts';

const GiB = 1024n * 1024n * 1024n;
const vm = (name: string, gib: number, poweredOn = true, reservation = 0n): HostVM => ({ uuid: `uuid-${name}`, name, poweredOn, maxMemory: BigInt(gib) * GiB, reservation });
const host16: HostBudget = { host: 'hv-a', memory: 16n * GiB, reserved: 0n, ratio: parseOvercommitRatio('1.0') };

test('overcommitRatio parses decimals exactly and refuses anything else with the field named', () => {
  assert.equal(parseOvercommitRatio('1.5'), 1500n);
  assert.equal(parseOvercommitRatio('2'), 2000n);
  assert.equal(parseOvercommitRatio('0.125'), 125n);
  for (const bad of ['0', '0.0', '1.2345', '-1', '1e3', ' 1', '1,5', '']) assert.throws(() => parseOvercommitRatio(bad), /overcommitRatio/);
  for (const bad of ['0', '0.000', 'abc', '1.0000']) assert.equal(HypervisorSpecSchema.safeParse({ uri: 'sim:///x.yaml', capacity: { overcommitRatio: bad } }).success, false, bad);
  assert.equal(HypervisorSpecSchema.safeParse({ uri: 'sim:///x.yaml', capacity: { overcommitRatio: '1.5', reserved: '2Gi' }, guestHeadroom: '512Mi' }).success, true);
});

test('the report: Σ powered-on maxMemory (the next boot\'s when larger), reservations, budget and free', () => {
  const vms = [vm('a', 8), vm('b', 4), vm('off', 32, false), { ...vm('c', 1), configMaxMemory: 2n * GiB }];
  const r = hostCapacity({ ...host16, reserved: 1n * GiB }, vms);
  assert.equal(r.committed, 14n * GiB);
  assert.equal(r.budget, 15n * GiB);
  assert.equal(r.free, 1n * GiB);
  assert.equal(r.reservable, 15n * GiB);
  assert.equal(hostCapacity({ host: 'x', memory: 16n * GiB, reserved: 0n }, vms).budget, undefined);
});

test('16Gi host, ratio 1.0, VMs of 8Gi + 4Gi: raising the 4Gi one to 12Gi is HostCapacityExceeded, naming host, budget and amount', () => {
  const r = checkChanges(host16, [vm('a', 8), vm('b', 4)], [{ key: 'ns/b', uuid: 'uuid-b', maxMemory: 12n * GiB, reservation: 0n }]);
  const b = r.get('ns/b');
  assert.equal(b?.ok, false);
  assert.ok(b && !b.ok);
  assert.match(b.message, /host hv-a/);
  assert.match(b.message, /budget of 16Gi/);
  assert.match(b.message, /by 8Gi/);
  assert.equal(checkChanges(host16, [vm('a', 8), vm('b', 4)], [{ key: 'ns/b', uuid: 'uuid-b', maxMemory: 8n * GiB, reservation: 0n }]).get('ns/b')?.ok, true);
});

test('two raises at once cannot both take the last free GiB', () => {
  const vms = [vm('a', 7), vm('b', 8)];
  const r = checkChanges(host16, vms, [
    { key: 'a', uuid: 'uuid-a', maxMemory: 8n * GiB, reservation: 0n },
    { key: 'b', uuid: 'uuid-b', maxMemory: 9n * GiB, reservation: 0n },
  ]);
  assert.equal(r.get('a')?.ok, true);
  assert.equal(r.get('b')?.ok, false);
});

test('reservations beyond what the host can reserve are refused even without a ratio', () => {
  const budget: HostBudget = { host: 'esx-1', memory: 16n * GiB, reserved: 2n * GiB };
  const r = checkChanges(budget, [vm('a', 8, true, 8n * GiB), vm('b', 8)], [{ key: 'b', uuid: 'uuid-b', maxMemory: 8n * GiB, reservation: 7n * GiB }]);
  const b = r.get('b');
  assert.ok(b && !b.ok);
  assert.match(b.message, /can reserve/);
});

test('property: the changes accepted together never push a host past its budget (or keep growing one already past it)', () => {
  fc.assert(
    fc.property(
      fc.array(fc.tuple(fc.integer({ min: 1, max: 16 }), fc.boolean(), fc.integer({ min: 0, max: 24 })), { minLength: 1, maxLength: 8 }),
      fc.integer({ min: 8, max: 64 }), fc.integer({ min: 500, max: 2000 }),
      (rows, hostGiB, ratio) => {
        const vms = rows.map(([g, on], i) => vm(`v${i}`, g, on));
        const budget: HostBudget = { host: 'h', memory: BigInt(hostGiB) * GiB, reserved: 0n, ratio: BigInt(ratio) };
        const changes = rows.map(([, , to], i) => ({ key: `v${i}`, uuid: `uuid-v${i}`, maxMemory: BigInt(to) * GiB, reservation: 0n }));
        const r = checkChanges(budget, vms, changes);
        const base = hostCapacity(budget, vms);
        let grown = 0n;
        for (const [i, c] of changes.entries()) {
          const v = vms[i];
          if (r.get(c.key)?.ok && v?.poweredOn && c.maxMemory > v.maxMemory) grown += c.maxMemory - v.maxMemory;
        }
        assert.ok(grown === 0n || base.committed + grown <= (base.budget as bigint));
      },
    ),
    { numRuns: 2000 },
  );
});

test('a plan held for capacity sends nothing and says why on the fields it would have moved', () => {
  const o: ObservedVM = {
    name: 'b', uuid: 'uuid-b', type: 'esx', powerState: 'Running', persistent: true, numa: false,
    live: { maxMemory: 4n * GiB, memory: 4n * GiB, limit: 'unlimited', reservation: 0n },
    config: { maxMemory: 4n * GiB, memory: 4n * GiB, limit: 'unlimited', reservation: 0n },
    balloon: { device: 'present' }, hotAdd: { enabled: true },
  };
  const p = plan({ maxMemory: 12n * GiB, memory: 12n * GiB }, o, profileFor('esx'));
  const change = proposedChange('ns/b', o, p);
  assert.equal(change?.maxMemory, 12n * GiB);
  const held = holdForCapacity(p, 'host hv-a: full');
  assert.deepEqual(held.steps, []);
  const max = held.verdicts.find((v) => v.field === 'maxMemory');
  assert.equal(max?.kind, 'Unsafe');
  assert.equal(max?.reason, 'HostCapacityExceeded');
});
