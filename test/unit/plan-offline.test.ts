/**
 * `vmmem plan --observed` (issue #15.3): a saved status is read back exactly (every fact the
 * planner reads survives status.observed), planning from it connects to nothing (listeners on
 * the Hypervisors' addresses count the connections: none; the same manifests planned live do
 * connect, so the count can see one), bad or stale saved input is a clear error naming the file
 * and object and plans nothing, and -o markdown keeps hostile text one plain cell.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import type { Server, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { stringify } from 'yaml';
import { vmmemInProcess as vmmem } from '../env/cli.ts';
import type { PlanReport } from '../../src/cli/plan.ts';
import { markdownCell, renderMarkdown } from '../../src/cli/plan-markdown.ts';
import { observedFromStatus } from '../../src/cli/plan-observed.ts';
import { observedBlock } from '../../src/controller/status.ts';
import { createSimHost, resetSimHosts, SimDriver } from '../../src/drivers/sim/index.ts';

const tmp = mkdtempSync(join(tmpdir(), 'vmmem-plan-offline-'));
after(() => rmSync(tmp, { recursive: true, force: true }));


const write = (name: string, text: string) => {
  const path = join(tmp, name);
  writeFileSync(path, text);
  return path;
};

test('status.observed round trip: observedFromStatus(observedBlock(o)) is o for every kind of VM the sim models', async () => {
  const host = createSimHost(
    {
      type: 'qemu',
      vms: [
        { name: 'run', type: 'qemu', maxMemory: '4Gi', memory: '3Gi', configMaxMemory: '8Gi', configMemory: '6Gi', limit: '10Gi', guestUsed: '1Gi' },
        { name: 'off', type: 'qemu', powerState: 'ShutOff', maxMemory: '2Gi', limit: 'Unlimited' },
        { name: 'transient', type: 'qemu', maxMemory: '2Gi', transient: true },
        { name: 'noballoon', type: 'qemu', maxMemory: '2Gi', balloon: 'none' },
        { name: 'vmem', type: 'qemu', numa: true, maxMemory: '256Mi', virtioMem: [{ size: '512Mi', block: '2Mi', requested: '128Mi' }, { size: '256Mi', block: '2Mi' }] },
        { name: 'paused', type: 'test', powerState: 'Paused', maxMemory: '1Gi', memory: '512Mi' },
        { name: 'xen', type: 'xen', maxMemory: '4Gi', memory: '2Gi' },
        { name: 'esx', type: 'esx', maxMemory: '8Gi', reservation: '1Gi', limit: '6Gi', memoryHotAddEnabled: true, hotPlugMemoryLimit: '32Gi', hotPlugMemoryIncrementSize: '128Mi' },
        { name: 'esx-off', type: 'esx', powerState: 'ShutOff', maxMemory: '4Gi' },
      ],
    },
    'plan-offline-roundtrip',
  );
  const driver = new SimDriver({ uri: host.uri });
  await driver.connect();
  try {
    const { vms } = await driver.observeAll();
    assert.equal(vms.length, 9);
    for (const o of vms) {
      // Through YAML, as a saved file carries it.
      const block = JSON.parse(JSON.stringify(observedBlock(o))) as ReturnType<typeof observedBlock>;
      assert.deepEqual(observedFromStatus(block), o, o.name);
    }
  } finally {
    await driver.close();
    resetSimHosts();
  }
});

/** A TCP listener that counts connections and drops them. */
async function countingListener(): Promise<{ server: Server; port: number; count: () => number }> {
  let n = 0;
  const server = createServer((s: Socket) => {
    n++;
    s.destroy();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, port: (server.address() as { port: number }).port, count: () => n };
}

const observed = (name: string, extra: Record<string, unknown> = {}) => ({
  powerState: 'Running',
  hypervisorType: 'qemu',
  persistent: true,
  maxMemory: '4Gi',
  memory: '4Gi',
  limit: 'Unlimited',
  configMaxMemory: '4Gi',
  configMemory: '4Gi',
  configLimit: 'Unlimited',
  vm: { name, uuid: `00000000-0000-0000-0000-00000000000${name.length % 10}` },
  balloonDevice: 'present',
  ...extra,
});

const hypervisor = (name: string, uri: string, capacity?: Record<string, unknown>) => ({
  apiVersion: 'vmmem.io/v1alpha1',
  kind: 'Hypervisor',
  metadata: { name, namespace: 'default' },
  spec: { uri, ...(uri.startsWith('https:') ? { credentialsSecretRef: { name: 'vc-login' } } : {}) },
  ...(capacity ? { status: { hostname: 'h', capacity } } : {}),
});

const vmm = (name: string, hv: string, spec: Record<string, unknown>, status?: Record<string, unknown>) => ({
  apiVersion: 'vmmem.io/v1alpha1',
  kind: 'VirtualMachineMemory',
  metadata: { name, namespace: 'default' },
  spec: { hypervisorRef: { name: hv }, vm: { name }, maxMemory: '4Gi', ...spec },
  ...(status ? { status: { observed: status } } : {}),
});

const list = (items: unknown[]) => stringify({ apiVersion: 'v1', kind: 'List', items });

let libvirt: Awaited<ReturnType<typeof countingListener>>;
let vsphere: Awaited<ReturnType<typeof countingListener>>;
let desired: string;
let saved: string;

before(async () => {
  libvirt = await countingListener();
  vsphere = await countingListener();
  const hvs = [
    hypervisor('kvm', `qemu+tcp://127.0.0.1:${libvirt.port}/system`, { hostMemory: '64Gi', committed: '4Gi', reservations: '0' }),
    hypervisor('vc', `https://127.0.0.1:${vsphere.port}/sdk`),
    hypervisor('gone', 'sim:///no/such/inventory.yaml'),
  ];
  // The live plan needs the login to reach the vSphere endpoint; the saved state needs nothing.
  const login = { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'vc-login', namespace: 'default' }, stringData: { username: 'u', password: 'p' } };
  desired = write('desired.yaml', list([login, ...hvs.map(({ status: _status, ...h }: { status?: unknown }) => h), vmm('a', 'kvm', { memory: '3Gi' }), vmm('b', 'vc', { memory: '2Gi' }), vmm('c', 'gone', {})]));
  saved = write('saved.yaml', list([...hvs, vmm('a', 'kvm', {}, observed('a')), vmm('b', 'vc', {}, observed('b', { hypervisorType: 'esx', configLimit: undefined, limit: undefined })), vmm('c', 'gone', {}, observed('c'))]));
});

after(() => {
  libvirt?.server.close();
  vsphere?.server.close();
});

test('--observed plans from the saved state and connects to nothing: no libvirt, vSphere or sim connection; live, the same manifests do connect', async () => {
  const r = await vmmem('plan', '-f', desired, '--observed', saved, '-o', 'json', '--detailed-exitcode');
  assert.equal(r.code, 2, r.err);
  const reports = JSON.parse(r.out) as PlanReport[];
  assert.deepEqual(reports.map((x) => x.error), [undefined, undefined, undefined]);
  assert.deepEqual(reports.find((x) => x.object === 'default/a')?.steps?.map((s) => `${s.field} ${s.world} ${s.from} → ${s.to}`), ['memory live 4Gi → 3Gi', 'memory config 4Gi → 3Gi']);
  assert.equal(libvirt.count() + vsphere.count(), 0, 'no connection attempted');

  const live = await vmmem('plan', '-f', desired, '-o', 'json');
  assert.equal(live.code, 1);
  assert.ok(libvirt.count() >= 1 && vsphere.count() >= 1, `live plan connected: libvirt ${libvirt.count()}, vSphere ${vsphere.count()}`);
  assert.match((JSON.parse(live.out) as PlanReport[]).find((x) => x.object === 'default/c')?.error ?? '', /inventory/);
});

test('a saved state that cannot be used plans nothing: exit 1, stderr names the file, line and object, stdout stays empty', async () => {
  const bad: [string, string, RegExp][] = [
    ['syntax.yaml', 'items: [\n  {kind: List\n', /syntax\.yaml:\d+: YAML syntax error/],
    ['invalid.yaml', list([vmm('a', 'kvm', {}, observed('a', { maxMemory: 'lots' }))]), /invalid\.yaml:\d+: VirtualMachineMemory default\/a: status\.observed\.maxMemory: "lots" is not a quantity/],
    ['duplicate.yaml', list([vmm('a', 'kvm', {}, observed('a')), vmm('a', 'kvm', {}, observed('a'))]), /duplicate\.yaml:\d+: VirtualMachineMemory\/a: metadata\.name: duplicate/],
    ['empty.yaml', list([]), /empty\.yaml: no VirtualMachineMemory in it/],
  ];
  const connections = libvirt.count() + vsphere.count();
  for (const [name, text, expected] of bad) {
    const path = write(name, text);
    const r = await vmmem('plan', '-f', desired, '--observed', path);
    assert.equal(r.code, 1, `${name}: ${r.err}`);
    assert.equal(r.out, '', `${name}: nothing planned`);
    assert.match(r.err, expected, name);
  }
  assert.equal(libvirt.count() + vsphere.count(), connections, 'no connection attempted');
});

test('stale or incomplete observations are error rows naming the file, line and object (exit 1); the other VMMs are still planned', async () => {
  const path = write(
    'stale.yaml',
    list([
      hypervisor('kvm', `qemu+tcp://127.0.0.1:${libvirt.port}/system`),
      vmm('a', 'kvm', {}, observed('a', { vm: undefined, balloonDevice: undefined })),
      vmm('b', 'kvm', {}, observed('not-b')),
      vmm('c', 'other', {}, observed('c')),
      vmm('d', 'kvm', {}),
      vmm('e', 'kvm', {}, observed('e')),
    ]),
  );
  const vmms = ['a', 'b', 'c', 'd', 'e', 'f'].map((n) => vmm(n, 'kvm', { memory: '3Gi' }));
  const want = write('want.yaml', list([hypervisor('kvm', `qemu+tcp://127.0.0.1:${libvirt.port}/system`), ...vmms]));
  const before = libvirt.count();
  const r = await vmmem('plan', '-f', want, '--observed', path, '-o', 'json', '--detailed-exitcode');
  assert.equal(r.code, 1, r.err);
  const errors = Object.fromEntries((JSON.parse(r.out) as PlanReport[]).map((x) => [x.object, x.error]));
  assert.match(errors['default/a'] ?? '', /stale\.yaml:\d+: VirtualMachineMemory default\/a: status\.observed\.vm is missing: save the state again/);
  assert.match(errors['default/b'] ?? '', /stale\.yaml:\d+: VirtualMachineMemory default\/b: stale: status\.observed is of the VM with name "not-b", the spec now names "b"/);
  assert.match(errors['default/c'] ?? '', /stale\.yaml:\d+: VirtualMachineMemory default\/c: stale: observed through Hypervisor "other", the spec now names "kvm"/);
  assert.match(errors['default/d'] ?? '', /VirtualMachineMemory default\/d: no status\.observed/);
  assert.equal(errors['default/e'], undefined, 'e is planned');
  assert.match(errors['default/f'] ?? '', /no saved observation of VirtualMachineMemory default\/f/);
  assert.equal(libvirt.count(), before, 'still no connection');
});

test('usage: --observed with a missing path, or with --hypervisor, is exit 2 before anything runs', async () => {
  assert.equal((await vmmem('plan', '-f', desired, '--observed', join(tmp, 'no-such.yaml'))).code, 2);
  const both = await vmmem('plan', '-f', desired, '--observed', saved, '--hypervisor', 'sim:///x.yaml');
  assert.equal(both.code, 2);
  assert.match(both.err, /--observed and --hypervisor exclude each other/);
});

test('markdownCell: hostile text stays one cell of plain text', () => {
  const hostile = 'x | y\n## heading\r\n`code` <img src=x onerror=alert(1)> &lt; [link](https://evil.example) ![i](x) **b** _i_ ~~s~~ @admin www.evil.example \\| \u202Egnp.exe';
  const cell = markdownCell(hostile);
  assert.doesNotMatch(cell, /[\n\r<>]/, 'no line break, no HTML');
  assert.doesNotMatch(cell, /(^|[^\\])[|`*_[\]~]/, 'every Markdown punctuation escaped');
  assert.doesNotMatch(cell, /&(?!amp;|lt;|gt;)/, 'no entity of the author\'s choosing');
  assert.doesNotMatch(cell, /@admin|https:\/\/|www\./i, 'no mention, no autolink');
  assert.doesNotMatch(cell, /\u202E/, 'no bidi override');
  assert.equal([...markdownCell('a'.repeat(5000))].length, 600, 'bounded');
});

test('-o markdown: each row has exactly five cells whatever the names and messages say, and the comment is bounded', () => {
  const evil = 'vm|<b>x</b>\n| injected | row |';
  const reports: PlanReport[] = [
    { object: 'default/a', error: `VM "${evil}" not found on the hypervisor` },
    {
      object: 'default/b',
      vm: evil,
      steps: [{ field: 'memory', world: 'live', from: '4Gi', to: '3Gi' }],
      verdicts: [{ field: 'memory', verdict: 'Unsafe', reason: 'GuestMemoryInUse', desired: '3Gi', observed: '4Gi', message: `memory: desired 3Gi, observed 4Gi: GuestMemoryInUse: ${evil} uses @all` }],
    },
  ];
  const md = renderMarkdown(reports);
  const rows = md.split('\n').filter((l) => l.startsWith('| default/'));
  assert.equal(rows.length, 2);
  for (const row of rows) assert.equal(row.split(/(?<!\\)\|/).length - 2, 5, row);
  assert.doesNotMatch(md, /<b>|@all/);
  const many: PlanReport[] = Array.from({ length: 2000 }, (_, i) => ({ object: `default/vm-${i}`, error: 'x'.repeat(500) }));
  const big = renderMarkdown(many);
  assert.ok(big.length < 65_536, `${big.length} characters`);
  assert.match(big, /… and \d+ more rows: run `vmmem plan -o table` for all of them\./);
});
