/**
 * virtio-mem live growth (issue #14) against a real Linux guest (test/env/guest.ts, virtio_mem
 * loaded, hot-plugged blocks onlined as movable) on a real, isolated libvirtd 9.0 + QEMU 7.2:
 * boot memory 256 MiB in one NUMA cell, one virtio-mem device of 512 MiB (block 2 MiB),
 * requested 0 at boot. `vmmem run --once` (the controller's standalone path) grows maxMemory
 * within the device live (requested in the live and the inactive XML), the guest plugs it
 * (current reaches requested) and the VMM becomes Ready; beyond the device it is
 * RestartRequired; shrinking lowers requested and the guest unplugs; the balloon works on top.
 *
 * One guest for the whole file; the tests run in order on it.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { DriverEvent } from '../../../src/drivers/driver.ts';
import { LibvirtDriver } from '../../../src/drivers/libvirt/index.ts';
import { profileFor } from '../../../src/model/profiles.ts';
import { plan } from '../../../src/planner/plan.ts';
import { DomainXmlFlags, LibvirtClient, parseDomainXml } from '../../../src/libvirt/index.ts';
import type { MemoryDeviceInfo } from '../../../src/libvirt/index.ts';
import { startGuest } from '../../env/guest.ts';
import type { Guest } from '../../env/guest.ts';
import { startLibvirtd } from '../../env/libvirtd.ts';
import type { Libvirtd } from '../../env/libvirtd.ts';
import { cond, runOnce, show, vmmOf, writeManifests } from '../../env/run-once.ts';

const MiB = 1024; // KiB
const Mi = 1n << 20n;
const NAME = 'guest-vmem';
let d: Libvirtd;
let c: LibvirtClient;
let g: Guest;
let dir: string;
let uri: string;
let bootTotal: number;

before(async () => {
  d = await startLibvirtd();
  uri = d.uri('qemu');
  c = await LibvirtClient.connect(uri);
  dir = mkdtempSync(join(tmpdir(), 'vmmem-guest-vmem-'));
  g = await startGuest(c, NAME, d.dir, { bootMiB: 256, virtioMem: { sizeMiB: 512, blockMiB: 2, requestedMiB: 0 } });
  bootTotal = g.memTotalKiB()!;
  console.log(`# guest ${NAME} booted in ${g.bootMs} ms (guest uptime at ready ${g.guestBootS} s): ${g.readyLine}`);
});

after(async () => {
  await g?.remove();
  await c?.close();
  await d?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function device(flags: number): Promise<MemoryDeviceInfo> {
  const devs = parseDomainXml(await c.domainGetXmlDesc(g.dom, flags)).memoryDevices;
  assert.equal(devs.length, 1, JSON.stringify(devs));
  return devs[0]!;
}
const live = () => device(0);

/** virDomainGetInfo memory (KiB) once it equals `kib`, or its last value after 30 s. */
async function infoMemoryReaches(kib: number): Promise<number> {
  let v = (await c.domainGetInfo(g.dom)).memoryKiB;
  for (let i = 0; i < 150 && v !== kib; i++) {
    await new Promise((r) => setTimeout(r, 200));
    v = (await c.domainGetInfo(g.dom)).memoryKiB;
  }
  return v;
}
const config = () => device(DomainXmlFlags.INACTIVE);

const manifests = (vmm: Record<string, unknown>) => writeManifests(dir, { uri, balloonTimeout: '90s' }, { vm: { name: NAME }, ...vmm });

test('observe: maxMemory is boot + requested, the hot-plug state is reported', async () => {
  const drv = new LibvirtDriver({ uri, timeoutMs: 60_000 });
  await drv.connect();
  try {
    const o = await drv.observe(await drv.lookup({ name: NAME }));
    assert.equal(o.numa, true);
    assert.equal(o.live?.maxMemory, 256n * Mi, 'libvirt <memory> says 768 MiB (it counts the device size); the guest sees 256 MiB');
    assert.deepEqual(o.live?.hotplug, { model: 'virtio-mem', boot: 256n * Mi, devices: [{ alias: 'virtiomem0', node: 0, block: 2n * Mi, size: 512n * Mi, requested: 0n, current: 0n }] });
    assert.deepEqual(o.config?.hotplug, { model: 'virtio-mem', boot: 256n * Mi, devices: [{ node: 0, block: 2n * Mi, size: 512n * Mi, requested: 0n }] });
    assert.equal(o.balloon.actual, 256n * Mi);
  } finally {
    await drv.close();
  }
});

test('grow within the device: requested 128Mi live and in config, the guest plugs it, Ready, no RestartRequired', async () => {
  manifests({ maxMemory: '384Mi' });
  const r = await runOnce(dir);
  assert.equal(r.code, 0, show(r));
  assert.equal(cond(vmmOf(r), 'Ready')?.status, 'True', show(r));
  assert.equal(cond(vmmOf(r), 'RestartRequired')?.status, 'False', show(r));
  assert.equal(vmmOf(r)?.status?.observed?.maxMemory, '384Mi', show(r));
  const l = await live();
  assert.equal(l.requestedKiB, 128 * MiB);
  assert.equal(l.currentKiB, 128 * MiB, 'the guest plugged all of it');
  assert.equal((await config()).requestedKiB, 128 * MiB, 'the inactive XML holds it for the next boot');
  const total = await g.waitForMemTotal((kib) => kib >= bootTotal + 127 * MiB);
  assert.ok(total <= bootTotal + 128 * MiB, `guest MemTotal ${bootTotal} → ${total} KiB`);
});

test('beyond the device: RestartRequired, the running device stays, the config\'s device is enlarged', async () => {
  manifests({ maxMemory: '1Gi' });
  const r = await runOnce(dir);
  assert.equal(r.code, 0, `waiting on a restart is exit 0\n${show(r)}`);
  const rr = cond(vmmOf(r), 'RestartRequired');
  assert.equal(rr?.status, 'True', show(r));
  assert.match(rr?.message ?? '', /at most boot memory 256Mi \+ virtio-mem size 512Mi = 768Mi/);
  assert.match(rr?.message ?? '', /size cannot change while QEMU runs/);
  const l = await live();
  assert.equal(l.sizeKiB, 512 * MiB);
  assert.equal(l.requestedKiB, 128 * MiB, 'live unchanged');
  const cfg = await config();
  assert.equal(cfg.sizeKiB, 768 * MiB, 'config device enlarged to boot 256Mi + 768Mi = 1Gi');
  assert.equal(cfg.requestedKiB, 768 * MiB);
});

test('back within the device: the config holds 384Mi again, RestartRequired clears, Ready', async () => {
  manifests({ maxMemory: '384Mi' });
  const r = await runOnce(dir);
  assert.equal(r.code, 0, show(r));
  assert.equal(cond(vmmOf(r), 'RestartRequired')?.status, 'False', show(r));
  assert.equal(cond(vmmOf(r), 'Ready')?.status, 'True', show(r));
  assert.equal((await config()).requestedKiB, 128 * MiB);
});

test('the balloon on top: memory 320Mi of maxMemory 384Mi inflates the balloon by 64Mi, Ready', async () => {
  manifests({ maxMemory: '384Mi', memory: '320Mi' });
  const r = await runOnce(dir);
  assert.equal(r.code, 0, show(r));
  assert.equal(cond(vmmOf(r), 'Ready')?.status, 'True', show(r));
  // Ready allows 1% between actual and target (the balloon's last pages trickle in);
  // virDomainGetInfo memory = balloon actual (192 MiB of the 256 MiB boot memory) + 128 MiB plugged
  assert.equal(await infoMemoryReaches(320 * MiB), 320 * MiB);
  assert.equal((await live()).currentKiB, 128 * MiB);
  await g.waitForMemTotal((kib) => kib <= bootTotal + 64 * MiB + MiB);
});

test('shrink: requested drops to 32Mi, the guest unplugs, Ready', async () => {
  manifests({ maxMemory: '288Mi' });
  const r = await runOnce(dir);
  assert.equal(r.code, 0, show(r));
  assert.equal(cond(vmmOf(r), 'Ready')?.status, 'True', show(r));
  const l = await live();
  assert.equal(l.requestedKiB, 32 * MiB);
  assert.equal(l.currentKiB, 32 * MiB, 'the guest unplugged');
  assert.equal((await config()).requestedKiB, 32 * MiB);
  assert.equal(await infoMemoryReaches(288 * MiB), 288 * MiB, 'balloon back to all boot memory + 32Mi plugged');
});

test('the guest plugging emits MEMORY_DEVICE_SIZE_CHANGE: the driver\'s memoryDevice event (what wakes the reconcile)', async () => {
  const drv = new LibvirtDriver({ uri, timeoutMs: 60_000 });
  await drv.connect();
  const seen: DriverEvent[] = [];
  const stop = await drv.events((e) => seen.push(e));
  try {
    const h = await drv.lookup({ name: NAME });
    const o = await drv.observe(h);
    const p = plan({ maxMemory: 320n * Mi, memory: 320n * Mi }, o, profileFor('qemu'));
    assert.ok(p.steps.some((s) => s.requested?.[0] === 64n * Mi), JSON.stringify(p.steps.map((s) => s.field + s.world)));
    await drv.apply(h, p.steps);
    for (let i = 0; i < 300 && !seen.some((e) => e.kind === 'memoryDevice' && e.size === 64n * Mi); i++) await new Promise((r) => setTimeout(r, 100));
    const ev = seen.find((e) => e.kind === 'memoryDevice');
    assert.ok(ev && ev.kind === 'memoryDevice' && ev.alias === 'virtiomem0' && ev.size === 64n * Mi, `events: ${seen.map((e) => e.kind).join(', ')}`);
    assert.equal((await drv.observe(h)).live?.hotplug?.devices[0]?.current, 64n * Mi);
  } finally {
    await stop();
    await drv.close();
  }
});
