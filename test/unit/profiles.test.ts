/** The capability data itself (DESIGN §2): complete, consistent, one profile per hypervisor type. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PROFILES, profileFor } from '../../src/model/profiles.ts';
import { FIELDS, HYPERVISOR_TYPES } from '../../src/model/memory.ts';
import type { HypervisorType } from '../../src/model/memory.ts';

const KiB = 1024n;
const MiB = 1024n * KiB;

test('one profile per hypervisor type, every field described', () => {
  assert.deepEqual(Object.keys(PROFILES).sort(), [...HYPERVISOR_TYPES].sort());
  for (const type of HYPERVISOR_TYPES) {
    const p = profileFor(type);
    assert.equal(p.type, type);
    for (const f of FIELDS) {
      const c = p.fields[f];
      assert.ok(c.granularity > 0n, `${type}.${f} granularity`);
      if (!c.supported) assert.ok(c.unsupportedWhy, `${type}.${f} says why it is unsupported`);
      if (c.liveTakesEffectAtBoot) assert.ok(c.live && c.config, `${type}.${f}: applied live and in config`);
    }
  }
  assert.throws(() => profileFor('hyperv' as HypervisorType), /no hypervisor profile/);
});

test('the matrix as data (DESIGN §2)', () => {
  const { qemu, xen, esx, test: t } = PROFILES;
  // maxMemory
  assert.equal(qemu.fields.maxMemory.live, false);
  assert.equal(qemu.fields.maxMemory.refusedWithNuma, true);
  assert.equal(xen.fields.maxMemory.live && xen.fields.maxMemory.liveTakesEffectAtBoot, true);
  assert.equal(t.fields.maxMemory.live, false);
  // testDomainSetMemoryFlags refuses MEM_MAXIMUM on a domain with NUMA cells, like QEMU.
  assert.equal(t.fields.maxMemory.refusedWithNuma, true);
  assert.equal(xen.fields.maxMemory.refusedWithNuma, false);
  assert.equal(esx.fields.maxMemory.poweredOn, 'hotAddIncrease');
  // memory
  for (const p of [qemu, xen, t]) assert.equal(p.fields.memory.live && p.fields.memory.config, true);
  for (const p of [qemu, xen]) assert.equal(p.fields.memory.liveNeedsBalloon, true);
  // testDomainSetMemoryFlags never looks at the memballoon device.
  assert.equal(t.fields.memory.liveNeedsBalloon, false);
  assert.equal(esx.memoryVia, 'limit');
  // reservation
  for (const p of [qemu, xen, t]) assert.equal(p.fields.reservation.supported, false);
  assert.equal(esx.fields.reservation.poweredOn, 'any');
  // limit
  assert.equal(qemu.fields.limit.live && qemu.fields.limit.config, true);
  assert.equal(qemu.unsafeLimit?.defaultOverheadMargin, 512n * MiB);
  assert.equal(xen.fields.limit.supported, false);
  assert.equal(esx.fields.limit.poweredOn, 'any');
  // granularity
  for (const p of [qemu, xen, t]) for (const f of FIELDS) assert.equal(p.fields[f].granularity, KiB);
  assert.equal(esx.fields.maxMemory.granularity, 4n * MiB);
  assert.equal(esx.fields.reservation.granularity, MiB);
  assert.equal(esx.fields.limit.granularity, MiB);
  // other facts
  assert.equal(t.liveAndConfigInOneCall, false);
  assert.equal(qemu.liveAndConfigInOneCall, true);
  for (const p of [qemu, xen, t]) assert.equal(p.shutOffConfigOnly && p.maxMemoryLowersMemory && p.enforcesMemoryAtMostMax, true);
  assert.equal(esx.worlds, 'single');
});
