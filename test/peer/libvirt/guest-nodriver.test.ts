/**
 * A real Linux guest WITHOUT the balloon and virtio-mem drivers (test/env/guest.ts with
 * vmmem.skip=virtio_balloon,virtio_mem: the devices are there, the guest never binds them).
 * libvirt accepts a live balloon target and a virtio-mem `requested`, and nothing moves, so vmmem
 * reports BalloonUnresponsive / HotplugUnresponsive after the Hypervisor's balloonTimeout, as
 * DESIGN §2/§6 predict; the same guest with the drivers converges (guest-balloon.test.ts,
 * guest-virtio-mem.test.ts).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { LibvirtClient, parseDomainXml } from '../../../src/libvirt/index.ts';
import { startGuest } from '../../env/guest.ts';
import type { Guest } from '../../env/guest.ts';
import { startLibvirtd } from '../../env/libvirtd.ts';
import type { Libvirtd } from '../../env/libvirtd.ts';
import { cond, runOnce, show, vmmOf, writeManifests } from '../../env/run-once.ts';

const MiB = 1024; // KiB
const NAME = 'guest-nodriver';
let d: Libvirtd;
let c: LibvirtClient;
let g: Guest;
let dir: string;
let uri: string;

before(async () => {
  d = await startLibvirtd();
  uri = d.uri('qemu');
  c = await LibvirtClient.connect(uri);
  dir = mkdtempSync(join(tmpdir(), 'vmmem-guest-nodriver-'));
  g = await startGuest(c, NAME, d.dir, { bootMiB: 384, virtioMem: { sizeMiB: 256 }, skipDrivers: ['virtio_balloon', 'virtio_mem'] });
  console.log(`# guest ${NAME} booted in ${g.bootMs} ms (guest uptime at ready ${g.guestBootS} s): ${g.readyLine}`);
});

after(async () => {
  await g?.remove();
  await c?.close();
  await d?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('a booted guest without virtio_balloon: the target is accepted, nothing moves → Stalled/BalloonUnresponsive', async () => {
  assert.match(g.readyLine, /skipped=virtio_balloon,virtio_mem/);
  assert.doesNotMatch(g.readyLine, /loaded=[^ ]*virtio_balloon/);
  writeManifests(dir, { uri, balloonTimeout: '5s' }, { vm: { name: NAME }, maxMemory: '384Mi', memory: '256Mi' });
  const r = await runOnce(dir);
  assert.equal(r.code, 3, `BalloonUnresponsive is Stalled: exit 3\n${show(r)}`);
  const stalled = cond(vmmOf(r), 'Stalled');
  assert.equal(stalled?.status, 'True', show(r));
  assert.equal(stalled?.reason, 'BalloonUnresponsive', show(r));
  assert.match(stalled?.message ?? '', /did not reach 256Mi within 5s \(the guest holds 384Mi\)/);
  assert.equal(cond(vmmOf(r), 'Ready')?.status, 'False', show(r));
  // libvirt took the target; the balloon (no driver bound) did not move; no stats either.
  const stats = await c.domainMemoryStats(g.dom);
  assert.equal(stats.actual, 384 * MiB);
  assert.equal(stats.usable, undefined, `no guest driver, no guest statistics: ${JSON.stringify(stats)}`);
  assert.equal((await c.domainGetInfo(g.dom)).memoryKiB, 384 * MiB);
  assert.equal(g.memTotalKiB(), Number(/memtotal_kib=(\d+)/.exec(g.readyLine)![1]), 'the guest\'s MemTotal never changed');
});

test('a booted guest without virtio_mem: requested is accepted, current stays 0 → Stalled/HotplugUnresponsive', async () => {
  writeManifests(dir, { uri, balloonTimeout: '5s' }, { vm: { name: NAME }, maxMemory: '512Mi' });
  const r = await runOnce(dir);
  assert.equal(r.code, 3, `HotplugUnresponsive is Stalled: exit 3\n${show(r)}`);
  const stalled = cond(vmmOf(r), 'Stalled');
  assert.equal(stalled?.reason, 'HotplugUnresponsive', show(r));
  assert.match(stalled?.message ?? '', /the guest plugged 0 of the 128Mi its virtio-mem devices request within 5s/);
  assert.equal(cond(vmmOf(r), 'Ready')?.reason, 'HotplugUnresponsive', show(r));
  assert.equal(cond(vmmOf(r), 'RestartRequired')?.status, 'False', 'within the device: nothing waits for a restart');
  const dev = (vmmOf(r)?.status?.observed?.hotplug as { devices: { requested: string; current: string }[] } | undefined)?.devices[0];
  assert.deepEqual(dev && [dev.requested, dev.current], ['128Mi', '0'], JSON.stringify(vmmOf(r)?.status?.observed));
  const live = parseDomainXml(await c.domainGetXmlDesc(g.dom, 0)).memoryDevices[0];
  assert.equal(live?.requestedKiB, 128 * MiB, 'libvirt took the request');
  assert.equal(live?.currentKiB, 0, 'no guest driver: nothing plugged');
});
