/**
 * The sim's virtio-mem model (issue #14): devices with block size, a guest that plugs after a
 * delay or never, libvirt's refusals; with the planner it converges like the real daemon
 * (test/peer/libvirt/guest-virtio-mem.test.ts), and `vmmem run --once` on a sim inventory shows
 * Ready after the guest plugged, HotplugUnresponsive when it never does.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, test } from 'node:test';
import type { DriverEvent } from '../../src/drivers/driver.ts';
import type { DriverError } from '../../src/drivers/driver.ts';
import { SimDriver, createSimHost, resetSimHosts } from '../../src/drivers/sim/index.ts';
import { profileFor } from '../../src/model/profiles.ts';
import { plan } from '../../src/planner/plan.ts';
import { cond, runOnce, show, vmmOf, writeManifests } from '../env/run-once.ts';

const Mi = 1n << 20n;
afterEach(() => resetSimHosts());

const inv = (guest: 'responsive' | 'none', plugDelay = '0s') => ({
  vms: [{ name: 'vm1', type: 'qemu', numa: true, maxMemory: '256Mi', virtioMem: { size: '512Mi', block: '2Mi', guest, plugDelay } }],
});

async function connected(guest: 'responsive' | 'none', plugDelay?: string) {
  const host = createSimHost(inv(guest, plugDelay), `vmem-${guest}`);
  const driver = new SimDriver({ uri: host.uri });
  await driver.connect();
  return { host, driver, h: await driver.lookup({ name: 'vm1' }) };
}

test('observe: boot memory + Σ requested, hot-plug state in both worlds', async () => {
  const { driver, h } = await connected('responsive');
  const o = await driver.observe(h);
  assert.equal(o.live?.maxMemory, 256n * Mi);
  assert.deepEqual(o.live?.hotplug, { model: 'virtio-mem', boot: 256n * Mi, devices: [{ alias: 'virtiomem0', current: 0n, node: 0, block: 2n * Mi, size: 512n * Mi, requested: 0n }] });
  assert.equal(o.config?.hotplug?.devices[0]?.requested, 0n);
});

test('plan + apply: requested live and config; the guest plugs after its delay (memoryDevice event)', async () => {
  const { driver, h } = await connected('responsive', '200ms');
  const events: DriverEvent[] = [];
  await driver.events!((e) => events.push(e));
  const p = plan({ maxMemory: 384n * Mi, memory: 384n * Mi }, await driver.observe(h), profileFor('qemu'));
  await driver.apply(h, p.steps);
  const o = await driver.observe(h);
  assert.equal(o.live?.maxMemory, 384n * Mi);
  assert.equal(o.config?.maxMemory, 384n * Mi);
  assert.equal(o.live?.hotplug?.devices[0]?.current, 0n, 'not plugged yet');
  assert.equal(o.balloon.actual, 256n * Mi);
  await new Promise((r) => setTimeout(r, 400));
  const later = await driver.observe(h);
  assert.equal(later.live?.hotplug?.devices[0]?.current, 128n * Mi);
  assert.equal(later.balloon.actual, 384n * Mi);
  assert.ok(events.some((e) => e.kind === 'memoryDevice' && e.alias === 'virtiomem0' && e.size === 128n * Mi), JSON.stringify(events, (_k, v: unknown) => (typeof v === 'bigint' ? String(v) : v)));
  assert.equal(plan({ maxMemory: 384n * Mi, memory: 384n * Mi }, later, profileFor('qemu')).steps.length, 0, 'converged');
});

test('libvirt\'s refusals: LIVE|CONFIG together, not a block multiple, above size, balloon above boot memory', async () => {
  const { host, h } = await connected('responsive');
  assert.throws(() => host.virDomainUpdateDeviceFlags(h, 0, 128n * 1024n, { live: true, config: true }), /qom-set/);
  assert.throws(() => host.virDomainUpdateDeviceFlags(h, 0, 1000n, { live: true }), /integer multiple of block size/);
  assert.throws(() => host.virDomainUpdateDeviceFlags(h, 0, 1024n * 1024n, { live: true }), /smaller than or equal to @size \(524288KiB\)/);
  assert.throws(() => host.virDomainSetMemoryFlags(h, 300n * 1024n, { live: true }), /cannot set memory higher than max memory/);
});

test('beyond the device: the config\'s device is enlarged (virDomainDefineXML), live stays; RestartRequired', async () => {
  const { driver, h } = await connected('responsive');
  const p = plan({ maxMemory: 1024n * Mi, memory: 1024n * Mi }, await driver.observe(h), profileFor('qemu'));
  assert.equal(p.verdicts.find((v) => v.field === 'maxMemory')?.kind, 'RestartRequired');
  await driver.apply(h, p.steps);
  const o = await driver.observe(h);
  assert.equal(o.live?.maxMemory, 256n * Mi);
  assert.equal(o.config?.maxMemory, 1024n * Mi);
  assert.equal(o.config?.hotplug?.devices[0]?.size, 768n * Mi);
  await assert.rejects(driver.apply(h, [{ field: 'maxMemory', world: 'live', from: 256n * Mi, to: 1024n * Mi, requested: [768n * Mi] }]), (e: DriverError) => e.code === 'Refused' && /smaller than or equal to @size/.test(e.hypervisorMessage ?? ''));
});

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

async function cli(guest: 'responsive' | 'none'): Promise<Awaited<ReturnType<typeof runOnce>>> {
  const dir = mkdtempSync(join(tmpdir(), 'vmmem-sim-vmem-'));
  dirs.push(dir);
  const yaml = `vms:\n  - name: vm1\n    type: qemu\n    numa: true\n    maxMemory: 256Mi\n    virtioMem: { size: 512Mi, block: 2Mi, guest: ${guest}, plugDelay: 300ms }\n`;
  writeFileSync(join(dir, 'inventory.yaml'), yaml);
  const mdir = join(dir, 'm');
  mkdirSync(mdir);
  writeManifests(mdir, { uri: `sim://${join(dir, 'inventory.yaml')}`, balloonTimeout: '2s' }, { vm: { name: 'vm1' }, maxMemory: '384Mi' });
  return runOnce(mdir);
}

test('vmmem run --once on a sim guest that plugs after 300 ms: Ready, observed hot-plug state', async () => {
  const r = await cli('responsive');
  assert.equal(r.code, 0, show(r));
  assert.equal(cond(vmmOf(r), 'Ready')?.status, 'True', show(r));
  assert.deepEqual(vmmOf(r)?.status?.observed?.hotplug, { model: 'virtio-mem', bootMemory: '256Mi', ceiling: '768Mi', devices: [{ alias: 'virtiomem0', node: 0, blockSize: '2Mi', size: '512Mi', requested: '128Mi', current: '128Mi' }] });
});

test('vmmem run --once on a sim guest that never plugs: Stalled/HotplugUnresponsive', async () => {
  const r = await cli('none');
  assert.equal(r.code, 3, show(r));
  assert.equal(cond(vmmOf(r), 'Stalled')?.reason, 'HotplugUnresponsive', show(r));
});

test('vmmem plan shows the virtio-mem steps (requested per device, the balloon part)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'vmmem-sim-vmem-plan-'));
  dirs.push(dir);
  writeFileSync(join(dir, 'inventory.yaml'), 'vms:\n  - name: vm1\n    type: qemu\n    numa: true\n    maxMemory: 256Mi\n    virtioMem: { size: 512Mi }\n');
  const mdir = join(dir, 'm');
  mkdirSync(mdir);
  writeManifests(mdir, { uri: `sim://${join(dir, 'inventory.yaml')}` }, { vm: { name: 'vm1' }, maxMemory: '384Mi', memory: '300Mi' });
  const out = execFileSync(join(import.meta.dirname, '..', '..', 'bin', 'vmmem'), ['plan', '-f', mdir], { encoding: 'utf8' });
  assert.match(out, /1\. maxMemory {3}live {3}256Mi → 384Mi \(virtio-mem requested 128Mi\)/);
  assert.match(out, /2\. maxMemory {3}config 256Mi → 384Mi \(virtio-mem requested 128Mi\)/);
  assert.match(out, /3\. memory {6}live {3}256Mi → 300Mi \(balloon 172Mi \+ virtio-mem 128Mi\)/);
  assert.match(out, /maxMemory {3}Applied {10}384Mi/);
});
