/**
 * Guest-aware shrink against a real Linux guest (test/env/guest.ts) on a real libvirtd + QEMU:
 * the driver reads the guest's balloon statistics (stats period 2 s) on both paths (observe:
 * virDomainMemoryStats; observeAll: the BALLOON group of virConnectGetAllDomainStats), the
 * planner refuses to balloon the guest below its use + headroom (GuestMemoryInUse, nothing
 * sent), and a guest without a balloon driver reports nothing (the unguarded path).
 * Capacity: identify() reports the host's memory from virNodeGetInfo.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { LibvirtDriver } from '../../../src/drivers/libvirt/index.ts';
import type { ObservedVM } from '../../../src/model/memory.ts';
import { profileFor } from '../../../src/model/profiles.ts';
import { LibvirtClient } from '../../../src/libvirt/index.ts';
import { plan } from '../../../src/planner/plan.ts';
import { startGuest } from '../../env/guest.ts';
import type { Guest } from '../../env/guest.ts';
import { startLibvirtd } from '../../env/libvirtd.ts';
import type { Libvirtd } from '../../env/libvirtd.ts';

const MiB = 1024n * 1024n;
let d: Libvirtd;
let c: LibvirtClient;
let g: Guest;
let quiet: Guest;
let driver: LibvirtDriver;

before(async () => {
  d = await startLibvirtd();
  c = await LibvirtClient.connect(d.uri('qemu'));
  g = await startGuest(c, 'guest-stats', d.dir, { bootMiB: 384 });
  // Without the balloon driver: no statistics at all. (With the driver but stats period 0, QEMU keeps
  // the one sample the driver sent when it loaded: reported, with its old sampledAt.)
  quiet = await startGuest(c, 'guest-nostats', d.dir, { bootMiB: 256, skipDrivers: ['virtio_balloon'] });
  driver = new LibvirtDriver({ uri: d.uri('qemu'), timeoutMs: 60_000 });
  await driver.connect();
});

after(async () => {
  await driver?.close();
  await g?.remove();
  await quiet?.remove();
  await c?.close();
  await d?.stop();
});

/** Polls observe until the guest reports statistics (the first sample comes one period after boot). */
async function observedWithStats(name: string): Promise<ObservedVM> {
  const vm = await driver.lookup({ name });
  const end = Date.now() + 30_000;
  for (;;) {
    const o = await driver.observe(vm);
    if (o.guest || Date.now() > end) return o;
    await new Promise((r) => setTimeout(r, 500));
  }
}

test('observe reports the guest\'s use (available − usable) with its sample time', async () => {
  const o = await observedWithStats('guest-stats');
  assert.ok(o.guest, 'guest statistics reported');
  assert.ok(o.guest.used > 0n && o.guest.used < 384n * MiB, `used ${o.guest.used}`);
  assert.equal(o.guest.source, 'libvirt memory stats');
  assert.match(o.guest.sampledAt ?? '', /^20\d\d-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
  const all = await driver.observeAll();
  const bulk = all.vms.find((v) => v.name === 'guest-stats');
  assert.ok(bulk?.guest && bulk.guest.used > 0n, 'the bulk path reports it too');
});

test('a shrink below use + headroom is GuestMemoryInUse and sends nothing; a guest without a balloon driver reports none and is not guarded', async () => {
  const o = await observedWithStats('guest-stats');
  const p = plan({ maxMemory: 384n * MiB, memory: 128n * MiB }, o, profileFor('qemu'));
  assert.deepEqual(p.steps, []);
  const mem = p.verdicts.find((v) => v.field === 'memory');
  assert.equal(mem?.reason, 'GuestMemoryInUse', mem?.message);
  const q = await driver.observe(await driver.lookup({ name: 'guest-nostats' }));
  assert.equal(q.guest, undefined);
  const unguarded = plan({ maxMemory: 256n * MiB, memory: 200n * MiB }, q, profileFor('qemu'));
  assert.equal(unguarded.shrinkGuard?.state, 'unguarded');
  assert.ok(unguarded.steps.some((s) => s.world === 'live' && s.field === 'memory'));
});

test('identify reports host memory from virNodeGetInfo', async () => {
  const id = await driver.identify();
  const node = await c.nodeGetInfo();
  assert.ok(id.hostMemory && id.hostMemory > 0n);
  assert.equal(id.hostMemory, BigInt(node.memoryKiB) * 1024n);
});
