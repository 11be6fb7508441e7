/**
 * `vmmem run --manifests <dir> --once -o json` (the real CLI process) against a
 * real, isolated libvirtd 9.0: (a) its test driver (test+unix:///default) and
 * (b) real QEMU 7.2 domains under TCG (qemu+unix:///system), with the states
 * DESIGN §2/§3/§6 predict. The test reads back through our client and, to
 * confirm config values, `virsh dumpxml --inactive` (vmmem never runs virsh).
 *
 * The QEMU domains are diskless with no guest OS: a live balloon target is
 * accepted and `actual` stays put, so a live memory change ends, after the
 * Hypervisor's balloonTimeout (3s here), as Stalled/BalloonUnresponsive.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createServer } from 'node:net';
import type { Socket } from 'node:net';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { stringify } from 'yaml';
import { DomainMemFlags, DomainXmlFlags, LibvirtClient, LibvirtError, parseDomainXml } from '../../../src/libvirt/index.ts';
import { freePort, startLibvirtd, tinyDomainXml } from '../../env/libvirtd.ts';
import type { Libvirtd } from '../../env/libvirtd.ts';

const execFileP = promisify(execFile);
const root = join(import.meta.dirname, '..', '..', '..');
/** No run may hang: each --once must finish well within this. */
const RUN_TIMEOUT_MS = 90_000;

let d: Libvirtd;
let testHolder: LibvirtClient;
let qemu: LibvirtClient;
let dir: string;
let testUri: string;
let qemuUri: string;

before(async () => {
  d = await startLibvirtd();
  testUri = `test+unix:///default?socket=${d.socketPath}`;
  qemuUri = `qemu+unix:///system?socket=${d.socketPath}`;
  // The test driver's state lives while a connection holds it: ours, for the whole file.
  testHolder = await LibvirtClient.connect(testUri);
  qemu = await LibvirtClient.connect(qemuUri);
  dir = mkdtempSync(join(tmpdir(), 'vmmem-libvirt-cli-'));
});

after(async () => {
  await testHolder?.close();
  await qemu?.close();
  await d?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

interface Cond { type: string; status: string; reason: string; message: string }
interface Item {
  kind: string;
  status?: {
    conditions?: Cond[];
    pending?: { field: string; value: string; reason: string; message: string }[];
    observed?: Record<string, string | boolean>;
  };
}
interface Run { code: number; items: Item[]; stderr: string; ms: number }

function writeManifests(hv: Record<string, unknown>, vmm: Record<string, unknown>): void {
  const docs = [
    { apiVersion: 'vmmem.io/v1alpha1', kind: 'Hypervisor', metadata: { name: 'kvm', namespace: 'default' }, spec: hv },
    { apiVersion: 'vmmem.io/v1alpha1', kind: 'VirtualMachineMemory', metadata: { name: 'vm', namespace: 'default' }, spec: { hypervisorRef: { name: 'kvm' }, ...vmm } },
  ];
  writeFileSync(join(dir, 'all.yaml'), docs.map((x) => stringify(x)).join('---\n'));
}

async function runOnce(extraArgs: string[] = []): Promise<Run> {
  const t0 = Date.now();
  try {
    const { stdout, stderr } = await execFileP(join(root, 'bin', 'vmmem'), ['run', '--manifests', dir, '--once', '-o', 'json', ...extraArgs], { cwd: root, timeout: RUN_TIMEOUT_MS });
    return { code: 0, items: (JSON.parse(stdout) as { items: Item[] }).items, stderr, ms: Date.now() - t0 };
  } catch (err) {
    const e = err as { code: number | string; killed?: boolean; stdout: string; stderr: string };
    assert.ok(!e.killed, `vmmem run --once did not finish within ${RUN_TIMEOUT_MS} ms (a hang)\n${e.stderr}`);
    assert.equal(typeof e.code, 'number', `vmmem could not run: ${String(e.code)}\n${e.stderr}`);
    return { code: e.code as number, items: (JSON.parse(e.stdout || '{"items":[]}') as { items: Item[] }).items, stderr: e.stderr, ms: Date.now() - t0 };
  }
}

const vmmOf = (r: Run) => r.items.find((i) => i.kind === 'VirtualMachineMemory');
const hvOf = (r: Run) => r.items.find((i) => i.kind === 'Hypervisor');
const cond = (item: Item | undefined, type: string) => item?.status?.conditions?.find((c) => c.type === type);
const show = (r: Run) => `exit ${r.code} after ${r.ms} ms\n${JSON.stringify(vmmOf(r)?.status, null, 1)}\n${JSON.stringify(hvOf(r)?.status?.conditions)}\n${r.stderr.slice(-2000)}`;

async function virsh(uri: string, ...args: string[]): Promise<string> {
  return (await execFileP('virsh', ['-c', uri, ...args], { timeout: 30_000 })).stdout;
}

/** `<memory>`/`<currentMemory>`/hard_limit of the persistent config, as virsh reports it (KiB). */
async function virshConfig(uri: string, name: string) {
  return parseDomainXml(await virsh(uri, 'dumpxml', '--inactive', name));
}

const MiB = 1024; // KiB

// ---------------------------------------------------------------- (a) test driver

test('test driver: live memory and limit on a running domain → Ready; values read back live and in config', async () => {
  const dom = await testHolder.domainDefineXml(
    `<domain type='test'><name>sa-test</name><memory unit='MiB'>1024</memory><currentMemory unit='MiB'>1024</currentMemory><vcpu>1</vcpu><os><type>hvm</type></os></domain>`,
  );
  await testHolder.domainCreate(dom);
  writeManifests({ uri: testUri, balloonTimeout: '3s' }, { vm: { name: 'sa-test' }, maxMemory: '1Gi', memory: '768Mi', limit: '3Gi' });
  const r = await runOnce();
  assert.equal(r.code, 0, show(r));
  assert.equal(cond(hvOf(r), 'Connected')?.status, 'True', show(r));
  assert.equal(cond(vmmOf(r), 'Ready')?.status, 'True', show(r));
  assert.equal(vmmOf(r)?.status?.observed?.memory, '768Mi');
  assert.equal(vmmOf(r)?.status?.observed?.actualMemory, '768Mi', 'the test driver\'s balloon follows at once');
  const live = parseDomainXml(await testHolder.domainGetXmlDesc(dom, 0));
  const config = parseDomainXml(await testHolder.domainGetXmlDesc(dom, DomainXmlFlags.INACTIVE));
  assert.equal(live.currentMemoryKiB, 768 * MiB);
  assert.equal(config.currentMemoryKiB, 768 * MiB);
  assert.equal(live.memtune.hardLimitKiB, 3072 * MiB);
  assert.equal(config.memtune.hardLimitKiB, 3072 * MiB);
});

test('test driver: config-only maxMemory on a running domain → RestartRequired; cleared after destroy + start', async () => {
  writeManifests({ uri: testUri, balloonTimeout: '3s' }, { vm: { name: 'sa-test' }, maxMemory: '1280Mi', memory: '768Mi', limit: '3Gi' });
  const held = await runOnce();
  assert.equal(held.code, 0, `waiting on a restart is exit 0\n${show(held)}`);
  assert.equal(cond(vmmOf(held), 'RestartRequired')?.status, 'True', show(held));
  assert.equal(cond(vmmOf(held), 'Ready')?.reason, 'RestartRequired');
  assert.deepEqual(vmmOf(held)?.status?.pending?.map((p) => [p.field, p.value, p.reason]), [['maxMemory', '1280Mi', 'RestartRequired']], show(held));
  assert.equal(vmmOf(held)?.status?.observed?.maxMemory, '1Gi', 'live keeps the old maximum');
  assert.equal((await virshConfig(testUri, 'sa-test')).memoryKiB, 1280 * MiB, 'virsh dumpxml --inactive shows the new config maximum');

  const dom = await testHolder.lookupDomainByName('sa-test');
  await testHolder.domainDestroy(dom);
  await testHolder.domainCreate(dom);
  const done = await runOnce();
  assert.equal(done.code, 0, show(done));
  assert.equal(cond(vmmOf(done), 'RestartRequired')?.status, 'False', show(done));
  assert.equal(cond(vmmOf(done), 'Ready')?.status, 'True', show(done));
  assert.equal(vmmOf(done)?.status?.pending, undefined);
  assert.equal(vmmOf(done)?.status?.observed?.maxMemory, '1280Mi');
  assert.equal(parseDomainXml(await testHolder.domainGetXmlDesc(dom, 0)).memoryKiB, 1280 * MiB);
});

// ---------------------------------------------------------------- (b) real QEMU

const QEMU_DOM = 'sa-qemu';

test('QEMU: a live memory change is accepted, actual stays put (no guest OS) → BalloonUnresponsive after balloonTimeout', async () => {
  await qemu.domainCreate(await qemu.domainDefineXml(tinyDomainXml(QEMU_DOM, { maxMiB: 512, currentMiB: 512 })));
  writeManifests({ uri: qemuUri, balloonTimeout: '3s' }, { vm: { name: QEMU_DOM }, maxMemory: '512Mi', memory: '384Mi' });
  const r = await runOnce();
  assert.equal(cond(hvOf(r), 'Connected')?.status, 'True', show(r));
  assert.match(cond(hvOf(r), 'Connected')?.message ?? '', /connected to qemu QEMU \d+\.\d+\.\d+ \(libvirt \d+\.\d+\.\d+\)/);
  assert.equal(r.code, 3, `BalloonUnresponsive is Stalled: exit 3\n${show(r)}`);
  const stalled = cond(vmmOf(r), 'Stalled');
  assert.equal(stalled?.status, 'True', show(r));
  assert.equal(stalled?.reason, 'BalloonUnresponsive', show(r));
  assert.match(stalled?.message ?? '', /did not reach 384Mi within \d+s \(the guest holds 512Mi\)/);
  assert.equal(cond(vmmOf(r), 'Ready')?.reason, 'BalloonUnresponsive');
  assert.equal(cond(vmmOf(r), 'RestartRequired')?.status, 'False');
  assert.equal(vmmOf(r)?.status?.observed?.memory, '384Mi', 'the target vmmem set (remembered by the driver in this run)');
  assert.equal(vmmOf(r)?.status?.observed?.actualMemory, '512Mi');
  // libvirt accepted the target; the balloon did not move; the config holds the new target.
  const dom = await qemu.lookupDomainByName(QEMU_DOM);
  assert.equal((await qemu.domainMemoryStats(dom)).actual, 512 * MiB);
  assert.equal((await virshConfig(qemuUri, QEMU_DOM)).currentMemoryKiB, 384 * MiB, 'virsh dumpxml --inactive: config currentMemory');
  assert.ok(r.ms < 30_000, `bounded by balloonTimeout (3s), took ${r.ms} ms`);
});

test('QEMU: config-only maxMemory on a running domain → RestartRequired with pending maxMemory; vmmem never sends the live change', async () => {
  writeManifests({ uri: qemuUri, balloonTimeout: '3s' }, { vm: { name: QEMU_DOM }, maxMemory: '768Mi' });
  const r = await runOnce(['--log-level', 'info']);
  assert.equal(r.code, 0, `waiting on a restart is exit 0\n${show(r)}`);
  assert.equal(cond(vmmOf(r), 'RestartRequired')?.status, 'True', show(r));
  assert.equal(cond(vmmOf(r), 'RestartRequired')?.reason, 'RestartRequired');
  assert.equal(cond(vmmOf(r), 'Stalled')?.status, 'False', show(r));
  const pending = vmmOf(r)?.status?.pending ?? [];
  assert.deepEqual(pending.find((p) => p.field === 'maxMemory')?.value, '768Mi', show(r));
  assert.ok(pending.every((p) => p.reason === 'RestartRequired'));
  assert.equal(vmmOf(r)?.status?.observed?.maxMemory, '512Mi', 'live keeps the boot maximum');
  assert.equal(vmmOf(r)?.status?.observed?.configMaxMemory, '768Mi');
  assert.equal((await virshConfig(qemuUri, QEMU_DOM)).memoryKiB, 768 * MiB, 'virsh dumpxml --inactive confirms the config maximum');
  assert.equal(parseDomainXml(await virsh(qemuUri, 'dumpxml', QEMU_DOM)).memoryKiB, 512 * MiB, 'live XML keeps 512Mi');
  // The plan vmmem applied (its info log): maxMemory in config only, never live.
  const plans = r.stderr.split('\n').filter((l) => l.includes('applying plan')).map((l) => (JSON.parse(l) as { steps: string[] }).steps);
  assert.ok(plans.length > 0, `vmmem logged the plan it applied\n${r.stderr.slice(-2000)}`);
  const steps = plans.flat();
  assert.ok(steps.some((s) => s.startsWith('maxMemory config 512Mi')), steps.join('; '));
  assert.ok(!steps.some((s) => s.startsWith('maxMemory live')), `no live maxMemory step: ${steps.join('; ')}`);
  assert.doesNotMatch(r.stderr, /cannot resize the maximum memory/);
  // Had it been sent, libvirt would have refused it with this text, and our client surfaces it intact.
  const dom = await qemu.lookupDomainByName(QEMU_DOM);
  await assert.rejects(qemu.domainSetMemoryFlags(dom, 1024 * MiB, DomainMemFlags.MAXIMUM | DomainMemFlags.LIVE), (e: unknown) =>
    e instanceof LibvirtError && e.libvirtMessage === 'Requested operation is not valid: cannot resize the maximum memory on an active domain');
});

test('QEMU: reverting the spec clears RestartRequired at once (the config goes back), without a restart', async () => {
  writeManifests({ uri: qemuUri, balloonTimeout: '3s' }, { vm: { name: QEMU_DOM }, maxMemory: '512Mi' });
  const reverted = await runOnce();
  assert.equal(reverted.code, 0, show(reverted));
  assert.equal(cond(vmmOf(reverted), 'RestartRequired')?.status, 'False', show(reverted));
  assert.equal(cond(vmmOf(reverted), 'Ready')?.status, 'True', show(reverted));
  assert.equal(vmmOf(reverted)?.status?.pending, undefined);
  assert.equal((await virshConfig(qemuUri, QEMU_DOM)).memoryKiB, 512 * MiB, 'the config maximum is back to 512Mi');
  // Declare 768Mi again for the restart below.
  writeManifests({ uri: qemuUri, balloonTimeout: '3s' }, { vm: { name: QEMU_DOM }, maxMemory: '768Mi' });
  const again = await runOnce();
  assert.equal(cond(vmmOf(again), 'RestartRequired')?.status, 'True', show(again));
  assert.equal((await virshConfig(qemuUri, QEMU_DOM)).memoryKiB, 768 * MiB);
});

test('QEMU: destroy + start, then run --once again → RestartRequired cleared, live maxMemory is the new value', async () => {
  await virsh(qemuUri, 'destroy', QEMU_DOM);
  await virsh(qemuUri, 'start', QEMU_DOM);
  const r = await runOnce();
  assert.equal(r.code, 0, show(r));
  assert.equal(cond(vmmOf(r), 'RestartRequired')?.status, 'False', show(r));
  assert.equal(cond(vmmOf(r), 'Ready')?.status, 'True', show(r));
  assert.equal(vmmOf(r)?.status?.pending, undefined);
  assert.equal(vmmOf(r)?.status?.observed?.maxMemory, '768Mi');
  const dom = await qemu.lookupDomainByName(QEMU_DOM);
  assert.equal((await qemu.domainGetInfo(dom)).maxMemKiB, 768 * MiB);
  assert.equal(parseDomainXml(await virsh(qemuUri, 'dumpxml', QEMU_DOM)).memoryKiB, 768 * MiB);
});

test('QEMU: memtune hard_limit without the cgroup memory controller → libvirt\'s own message in the condition', async () => {
  writeManifests({ uri: qemuUri, balloonTimeout: '3s' }, { vm: { name: QEMU_DOM }, maxMemory: '768Mi', limit: '1792Mi' });
  const r = await runOnce();
  assert.equal(r.code, 1, `a refusal vmmem retries is operational: exit 1\n${show(r)}`);
  const ready = cond(vmmOf(r), 'Ready');
  assert.equal(ready?.status, 'False', show(r));
  assert.equal(ready?.reason, 'HypervisorRefused', show(r));
  assert.match(ready?.message ?? '', /virDomainSetMemoryParameters refused on sa-qemu/);
  assert.match(ready?.message ?? '', /Requested operation is not valid: cgroup memory controller is not mounted/);
  assert.equal(cond(vmmOf(r), 'Stalled')?.status, 'False', 'not the user\'s fault: vmmem retries');
});

test('QEMU: a limit below maxMemory + 512Mi is Unsafe (Stalled UnsafeLimit) and nothing is sent', async () => {
  writeManifests({ uri: qemuUri, balloonTimeout: '3s' }, { vm: { name: QEMU_DOM }, maxMemory: '768Mi', limit: '1Gi' });
  const r = await runOnce();
  assert.equal(r.code, 3, show(r));
  const stalled = cond(vmmOf(r), 'Stalled');
  assert.equal(stalled?.status, 'True', show(r));
  assert.equal(stalled?.reason, 'UnsafeLimit', show(r));
  assert.match(stalled?.message ?? '', /limit/);
  assert.match(stalled?.message ?? '', /1Gi/);
  assert.equal(cond(vmmOf(r), 'Ready')?.reason, 'UnsafeLimit');
  assert.equal((await virshConfig(qemuUri, QEMU_DOM)).memtune.hardLimitKiB, undefined, 'no hard_limit was written');
});

test('QEMU: libvirtd restarted between runs → the next run connects and converges', async () => {
  const pid = d.pid;
  await d.restart();
  assert.notEqual(d.pid, pid);
  await qemu.close();
  qemu = await LibvirtClient.connect(qemuUri);
  writeManifests({ uri: qemuUri, balloonTimeout: '3s' }, { vm: { name: QEMU_DOM }, maxMemory: '768Mi' });
  const r = await runOnce();
  assert.equal(r.code, 0, show(r));
  assert.equal(cond(hvOf(r), 'Connected')?.status, 'True', show(r));
  assert.equal(cond(vmmOf(r), 'Ready')?.status, 'True', show(r));
  assert.equal(vmmOf(r)?.status?.observed?.powerState, 'Running', 'QEMU kept running across the daemon restart');
});

test('QEMU: a domain undefined behind vmmem\'s back → VMNotFound', async () => {
  await virsh(qemuUri, 'destroy', QEMU_DOM);
  await virsh(qemuUri, 'undefine', QEMU_DOM);
  const r = await runOnce();
  assert.equal(r.code, 1, show(r));
  const ready = cond(vmmOf(r), 'Ready');
  assert.equal(ready?.reason, 'VMNotFound', show(r));
  assert.match(ready?.message ?? '', /sa-qemu/);
  assert.match(ready?.message ?? '', /Domain not found/);
  assert.equal(cond(hvOf(r), 'Connected')?.status, 'True', 'the hypervisor itself is fine');
});

// ---------------------------------------------------------------- connection failures

test('a socket path that does not exist → HypervisorUnreachable quickly, naming the path', async () => {
  const missing = join(d.dir, 'run', 'no-such-sock');
  writeManifests({ uri: `qemu+unix:///system?socket=${missing}` }, { vm: { name: QEMU_DOM }, maxMemory: '768Mi' });
  const r = await runOnce();
  assert.equal(r.code, 1, show(r));
  for (const item of [hvOf(r), vmmOf(r)]) {
    const ready = cond(item, 'Ready');
    assert.equal(ready?.reason, 'HypervisorUnreachable', show(r));
    assert.ok(ready?.message.includes(missing), `names the socket: ${ready?.message}`);
    assert.match(ready?.message ?? '', /ENOENT|No such file/);
  }
  assert.equal(cond(hvOf(r), 'Connected')?.status, 'False');
  assert.ok(r.ms < 20_000, `no hang: ${r.ms} ms`);
});

test('a refused TCP connection → HypervisorUnreachable quickly', async () => {
  const port = await freePort();
  writeManifests({ uri: `qemu+tcp://127.0.0.1:${port}/system` }, { vm: { name: QEMU_DOM }, maxMemory: '768Mi' });
  const r = await runOnce();
  assert.equal(r.code, 1, show(r));
  const ready = cond(vmmOf(r), 'Ready');
  assert.equal(ready?.reason, 'HypervisorUnreachable', show(r));
  assert.match(ready?.message ?? '', /ECONNREFUSED|refused/);
  assert.ok(r.ms < 20_000, `no hang: ${r.ms} ms`);
});

test('a socket that accepts but never answers → HypervisorUnreachable after the connect timeout, not a hang', async () => {
  const path = join(dir, 'silent.sock');
  const held: Socket[] = [];
  const server = createServer((sock) => held.push(sock));
  await new Promise<void>((resolve) => server.listen(path, resolve));
  try {
    writeManifests({ uri: `qemu+unix:///system?socket=${path}` }, { vm: { name: QEMU_DOM }, maxMemory: '768Mi' });
    const r = await runOnce();
    assert.equal(r.code, 1, show(r));
    const ready = cond(vmmOf(r), 'Ready');
    assert.equal(ready?.reason, 'HypervisorUnreachable', show(r));
    assert.match(ready?.message ?? '', /timed out|timeout/i);
    assert.equal(cond(hvOf(r), 'Ready')?.reason, 'HypervisorUnreachable', show(r));
    // Bounded, but slow: the connect timeout is 30 s (the pool's default; no Hypervisor field sets
    // it), and --once connects once for the Hypervisor and again for each VMM (about 61 s here).
    assert.ok(r.ms < 75_000, `took ${r.ms} ms`);
  } finally {
    for (const s of held) s.destroy();
    await new Promise((resolve) => server.close(resolve));
  }
});

test('a bad libvirt URI → InvalidURI, Stalled, naming the URI', async () => {
  writeManifests({ uri: 'qemu:///sys' }, { vm: { name: QEMU_DOM }, maxMemory: '768Mi' });
  const r = await runOnce();
  assert.equal(r.code, 3, show(r));
  const stalled = cond(vmmOf(r), 'Stalled');
  assert.equal(stalled?.status, 'True', show(r));
  assert.equal(stalled?.reason, 'InvalidURI', show(r));
  assert.match(stalled?.message ?? '', /qemu:\/\/\/sys/);
  assert.equal(cond(hvOf(r), 'Ready')?.reason, 'InvalidURI');
  assert.ok(r.ms < 20_000, `no hang: ${r.ms} ms`);
});
