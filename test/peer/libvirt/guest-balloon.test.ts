/**
 * The balloon against a real Linux guest (test/env/guest.ts: Debian's cloud kernel + busybox,
 * direct kernel boot under TCG, virtio_balloon loaded) on a real, isolated libvirtd 9.0 + QEMU 7.2.
 * Unlike the diskless domains of the other QEMU tests, this guest has a balloon driver, so the
 * balloon really moves: libvirt's balloon.current (virDomainGetInfo memory) follows the target,
 * the guest's own MemTotal (its console) follows too, the guest reports memory statistics, and
 * `vmmem run --once` (the controller's standalone path) ends Ready.
 *
 * One guest for the whole file (booting is the expensive part).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { DomainXmlFlags, LibvirtClient, parseDomainXml } from '../../../src/libvirt/index.ts';
import { startGuest } from '../../env/guest.ts';
import type { Guest } from '../../env/guest.ts';
import { startLibvirtd } from '../../env/libvirtd.ts';
import type { Libvirtd } from '../../env/libvirtd.ts';
import { cond, runOnce, show, vmmOf, writeManifests } from '../../env/run-once.ts';

const MiB = 1024; // KiB
const NAME = 'guest-balloon';
let d: Libvirtd;
let c: LibvirtClient;
let g: Guest;
let dir: string;
let uri: string;
/** The guest's MemTotal at boot, with the balloon empty. */
let startTotal: number;

before(async () => {
  d = await startLibvirtd();
  uri = d.uri('qemu');
  c = await LibvirtClient.connect(uri);
  dir = mkdtempSync(join(tmpdir(), 'vmmem-guest-balloon-'));
  g = await startGuest(c, NAME, d.dir, { bootMiB: 384 });
  startTotal = g.memTotalKiB()!;
  console.log(`# guest ${NAME} booted in ${g.bootMs} ms (guest uptime at ready ${g.guestBootS} s): ${g.readyLine}`);
});

after(async () => {
  await g?.remove();
  await c?.close();
  await d?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** Polls `f` until it returns a value for which `ok` holds, or fails after `ms` with the last value. */
async function until<T>(what: string, f: () => Promise<T>, ok: (v: T) => boolean, ms = 60_000): Promise<T> {
  const end = Date.now() + ms;
  let v = await f();
  while (!ok(v)) {
    if (Date.now() > end) assert.fail(`${what}: not reached within ${ms} ms; last value ${JSON.stringify(v)}\nconsole tail:\n${g.console().slice(-1500)}`);
    await new Promise((r) => setTimeout(r, 200));
    v = await f();
  }
  return v;
}

test('the guest booted with its virtio drivers and the balloon device', () => {
  assert.match(g.readyLine, /loaded=[^ ]*virtio_pci[^ ]*virtio_balloon/);
  assert.match(g.readyLine, /skipped= /);
  assert.ok(g.memTotalKiB()! > 200 * MiB, g.readyLine);
});

test('memory statistics: the guest driver reports usable, available and unused (stats period 2 s)', async () => {
  const stats = await until('guest memory stats', () => c.domainMemoryStats(g.dom), (s) => s.usable !== undefined && s.available !== undefined && s.unused !== undefined, 30_000);
  assert.equal(stats.actual, 384 * MiB);
  assert.ok(stats.available! > 200 * MiB && stats.available! <= 384 * MiB, JSON.stringify(stats));
  assert.ok(stats.unused! > 0 && stats.unused! < stats.available!, JSON.stringify(stats));
  assert.ok(stats.usable! > 0 && stats.usable! <= stats.available!, JSON.stringify(stats));
  // The guest's own view agrees with what it reports: MemTotal is the balloon-adjusted size.
  assert.equal(stats.available, g.memTotalKiB());
});

test('the default guest headroom (at least 256Mi over what the guest uses) refuses 256Mi: GuestMemoryInUse, the balloon is not touched', async () => {
  writeManifests(dir, { uri, balloonTimeout: '90s' }, { vm: { name: NAME }, maxMemory: '384Mi', memory: '256Mi' });
  const r = await runOnce(dir);
  assert.notEqual(r.code, 0, show(r));
  assert.equal(cond(vmmOf(r), 'Ready')?.reason, 'GuestMemoryInUse', show(r));
  assert.equal(cond(vmmOf(r), 'Stalled')?.status, 'True', show(r));
  // The guard read the guest's own statistics, not a guess.
  assert.equal((vmmOf(r)?.status as { observed?: { guest?: { source?: string } } })?.observed?.guest?.source, 'libvirt memory stats', show(r));
  assert.equal((await c.domainGetInfo(g.dom)).memoryKiB, 384 * MiB, 'nothing was sent to the balloon');
});

test('vmmem shrinks the balloon to 256Mi (guestHeadroom 64Mi): balloon.current follows, the guest gives the memory back, Ready', async () => {
  // The guest uses ~30 MiB (busybox), so 256Mi keeps well over 64Mi free in it.
  writeManifests(dir, { uri, balloonTimeout: '90s', guestHeadroom: '64Mi' }, { vm: { name: NAME }, maxMemory: '384Mi', memory: '256Mi' });
  const r = await runOnce(dir);
  assert.equal(r.code, 0, show(r));
  assert.equal(cond(vmmOf(r), 'Ready')?.status, 'True', show(r));
  assert.equal(cond(vmmOf(r), 'Stalled')?.status, 'False', show(r));
  // Ready allows 1% between actual and target; the balloon then reaches it exactly.
  // libvirt's balloon.current (virDomainGetInfo memory = the balloon's actual size for QEMU)
  assert.equal((await until('balloon.current', async () => (await c.domainGetInfo(g.dom)).memoryKiB, (v) => v === 256 * MiB, 30_000)), 256 * MiB);
  assert.equal((await c.domainMemoryStats(g.dom)).actual, 256 * MiB);
  assert.equal(parseDomainXml(await c.domainGetXmlDesc(g.dom, DomainXmlFlags.INACTIVE)).currentMemoryKiB, 256 * MiB, 'config target too');
  // ...and the guest itself: virtio_balloon took 128 MiB away from MemTotal.
  // (MemTotal is what the kernel manages: boot RAM minus its own reservations, minus the balloon.)
  const total = await g.waitForMemTotal((kib) => kib <= startTotal - 127 * MiB);
  assert.ok(total >= startTotal - 129 * MiB, `guest MemTotal ${startTotal} KiB → ${total} KiB after inflating the balloon by 128 MiB`);
});

test('vmmem grows the balloon back to 384Mi: the guest gets the memory back, Ready', async () => {
  writeManifests(dir, { uri, balloonTimeout: '90s' }, { vm: { name: NAME }, maxMemory: '384Mi', memory: '384Mi' });
  const r = await runOnce(dir);
  assert.equal(r.code, 0, show(r));
  assert.equal(cond(vmmOf(r), 'Ready')?.status, 'True', show(r));
  assert.equal((await until('balloon.current', async () => (await c.domainGetInfo(g.dom)).memoryKiB, (v) => v === 384 * MiB, 30_000)), 384 * MiB);
  assert.equal(await g.waitForMemTotal((kib) => kib === startTotal), startTotal, 'the guest has all its memory back');
});
