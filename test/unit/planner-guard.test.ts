/**
 * Guest-aware shrink (src/planner/guard.ts, issue #15.1): a running guest is
 * never planned below what it uses + headroom unless the VMM opts in, the
 * steps left keep every world's invariants, and a guest without statistics
 * is shrunk with a message that says it was not guarded.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { checkInvariants, DEFAULT_HEADROOM_MIN, headroomFor, plan } from '../../src/planner/plan.ts';
import { runningShrink } from '../../src/planner/guard.ts';
import { profileFor } from '../../src/model/profiles.ts';
import type { DesiredMemory, HypervisorType, ObservedVM, WorldValues } from '../../src/model/memory.ts';
import { applyStepsToObserved } from '../support/step-simulator.ts';

const MiB = 1024n * 1024n;
const GiB = 1024n * MiB;

function running(type: HypervisorType, world: WorldValues, used?: bigint): ObservedVM {
  const o: ObservedVM = {
    name: 'web-1', uuid: '4b6f0a4e-0b7f-4bd4-9b5d-2a0e8e1f6c3a', type, powerState: 'Running', persistent: true,
    live: { ...world }, config: { ...world }, balloon: { device: 'present', actual: world.memory }, numa: false,
  };
  if (type === 'esx') o.hotAdd = { enabled: false };
  if (used !== undefined) o.guest = { used, sampledAt: '2026-12-04T12:00:00Z', source: 'test' };
  return o;
}

test('headroom: 10% of use, at least 256Mi; the Hypervisor override wins', () => {
  assert.equal(headroomFor(1n * GiB), DEFAULT_HEADROOM_MIN);
  assert.equal(headroomFor(10n * GiB), GiB);
  assert.equal(headroomFor(10n * GiB, 64n * MiB), 64n * MiB);
});

test('a QEMU guest using 6Gi is not ballooned to 4Gi: GuestMemoryInUse, no live memory step, the message says how much it uses', () => {
  const o = running('qemu', { maxMemory: 8n * GiB, memory: 8n * GiB }, 6n * GiB);
  const p = plan({ maxMemory: 8n * GiB, memory: 4n * GiB }, o, profileFor('qemu'));
  const mem = p.verdicts.find((v) => v.field === 'memory');
  assert.equal(mem?.kind, 'Unsafe');
  assert.equal(mem?.reason, 'GuestMemoryInUse');
  assert.match(mem?.message ?? '', /the guest uses 6Gi/);
  assert.match(mem?.message ?? '', /allowUnsafeShrink/);
  assert.deepEqual(p.steps, [], 'memory stays where it is in both worlds');
  assert.equal(p.shrinkGuard?.state, 'blocked');
});

test('allowUnsafeShrink lets the same shrink through and says so', () => {
  const o = running('qemu', { maxMemory: 8n * GiB, memory: 8n * GiB }, 6n * GiB);
  const p = plan({ maxMemory: 8n * GiB, memory: 4n * GiB, allowUnsafeShrink: true }, o, profileFor('qemu'));
  assert.ok(p.steps.some((s) => s.world === 'live' && s.field === 'memory' && s.to === 4n * GiB));
  assert.equal(p.verdicts.find((v) => v.field === 'memory')?.kind, 'Applied');
  assert.equal(p.shrinkGuard?.state, 'overridden');
});

test('a guest using 2Gi is shrunk to 4Gi (guarded)', () => {
  const o = running('qemu', { maxMemory: 8n * GiB, memory: 8n * GiB }, 2n * GiB);
  const p = plan({ maxMemory: 8n * GiB, memory: 4n * GiB }, o, profileFor('qemu'));
  assert.ok(p.steps.some((s) => s.world === 'live' && s.field === 'memory' && s.to === 4n * GiB));
  assert.equal(p.shrinkGuard?.state, 'guarded');
});

test('no guest statistics: the shrink goes ahead and the memory message says it was not guarded', () => {
  const o = running('qemu', { maxMemory: 8n * GiB, memory: 8n * GiB });
  const p = plan({ maxMemory: 8n * GiB, memory: 4n * GiB }, o, profileFor('qemu'));
  assert.ok(p.steps.some((s) => s.world === 'live' && s.field === 'memory'));
  const mem = p.verdicts.find((v) => v.field === 'memory');
  assert.equal(mem?.kind, 'Applied');
  assert.match(mem?.message ?? '', /not guarded: web-1 reports no guest memory statistics/);
});

test('ESX: a limit below use + headroom is not sent to a powered-on VM', () => {
  const o = running('esx', { maxMemory: 8n * GiB, memory: 8n * GiB, limit: 'unlimited', reservation: 0n }, 6n * GiB);
  const p = plan({ maxMemory: 8n * GiB, memory: 4n * GiB }, o, profileFor('esx'));
  assert.deepEqual(p.steps, []);
  assert.equal(p.verdicts.find((v) => v.field === 'memory')?.reason, 'GuestMemoryInUse');
});

test('the Hypervisor headroom override moves the floor', () => {
  const o = running('qemu', { maxMemory: 8n * GiB, memory: 8n * GiB }, 3900n * MiB);
  const strict = plan({ maxMemory: 8n * GiB, memory: 4n * GiB }, o, profileFor('qemu'));
  assert.equal(strict.verdicts.find((v) => v.field === 'memory')?.reason, 'GuestMemoryInUse');
  const loose = plan({ maxMemory: 8n * GiB, memory: 4n * GiB }, o, profileFor('qemu'), { guard: { headroom: 64n * MiB } });
  assert.equal(loose.verdicts.find((v) => v.field === 'memory')?.kind, 'Applied');
});

const types: HypervisorType[] = ['qemu', 'xen', 'test', 'esx'];
const G = (k: number) => BigInt(k) * 256n * MiB;

test('property: without the opt-in no plan leaves a running guest below use + headroom it did not already sit below, and every prefix keeps the invariants', () => {
  fc.assert(
    fc.property(
      fc.constantFrom(...types), fc.integer({ min: 2, max: 32 }), fc.integer({ min: 1, max: 32 }), fc.integer({ min: 1, max: 32 }),
      fc.integer({ min: 1, max: 32 }), fc.integer({ min: 0, max: 40 }), fc.option(fc.integer({ min: 0, max: 1024 }), { nil: undefined }),
      (type, a, b, dmax, dmem, used, headMiB) => {
        const world: WorldValues = { maxMemory: G(Math.max(a, b)), memory: type === 'esx' ? G(Math.max(a, b)) : G(Math.min(a, b)) };
        if (type === 'esx') { world.limit = 'unlimited'; world.reservation = 0n; }
        const o = running(type, world, G(used) / 2n);
        const profile = profileFor(type);
        const desired: DesiredMemory = { maxMemory: G(Math.max(dmax, dmem)), memory: G(Math.min(dmax, dmem)) };
        const opts = headMiB === undefined ? {} : { guard: { headroom: BigInt(headMiB) * MiB } };
        const p = plan(desired, o, profile, opts);
        const held = runningShrink(o, p.steps, profile);
        const floor = G(used) / 2n + (headMiB === undefined ? headroomFor(G(used) / 2n) : BigInt(headMiB) * MiB);
        if (held && held.after < held.before) assert.ok(held.after >= floor, `shrunk to ${held.after} below ${floor}`);
        let now = o;
        for (const step of p.steps) {
          now = applyStepsToObserved(now, [step], profile);
          for (const w of [now.live, now.config]) if (w) assert.deepEqual(checkInvariants(w), []);
        }
      },
    ),
    { numRuns: 2000 },
  );
});
