/**
 * Host capacity (issue #15.2) on a real, isolated libvirtd with real QEMU domains, through the
 * real CLI processes (`vmmem run --once`, `vmmem plan`): the Hypervisor's status.capacity holds
 * the host memory libvirt's virNodeGetInfo reports and what the running domains commit, and
 * with a budget that leaves room for one of two raises, exactly one is applied and the other is
 * Stalled HostCapacityExceeded with nothing sent (virsh dumpxml --inactive unchanged) — the two
 * are checked against each other, whichever is reconciled first.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { stringify } from 'yaml';
import { parseQuantity } from '../../../src/api/quantity.ts';
import { DomainXmlFlags, LibvirtClient, parseDomainXml } from '../../../src/libvirt/index.ts';
import { startLibvirtd, tinyDomainXml } from '../../env/libvirtd.ts';
import type { Libvirtd } from '../../env/libvirtd.ts';
import { vmmemProcess } from '../../env/cli.ts';
import type { ProcessRun } from '../../env/cli.ts';

const MiB = 1024n * 1024n;
const DOMAINS = ['cap-a', 'cap-b'];

let d: Libvirtd;
let c: LibvirtClient;
let dir: string;
let uri: string;

before(async () => {
  d = await startLibvirtd();
  uri = `qemu+unix:///system?socket=${d.socketPath}`;
  c = await LibvirtClient.connect(uri);
  for (const name of DOMAINS) await c.domainCreate(await c.domainDefineXml(tinyDomainXml(name, { maxMiB: 256 })));
  dir = mkdtempSync(join(tmpdir(), 'vmmem-libvirt-capacity-'));
});

after(async () => {
  await c?.close();
  await d?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

interface Item {
  kind: string;
  metadata: { name: string };
  status?: { conditions?: { type: string; status: string; reason: string; message: string }[]; capacity?: Record<string, string | number>; observed?: Record<string, unknown> };
}

function writeManifests(capacity: Record<string, string> | undefined, maxMemory: string): void {
  const hv = { apiVersion: 'vmmem.io/v1alpha1', kind: 'Hypervisor', metadata: { name: 'kvm', namespace: 'default' }, spec: { uri, balloonTimeout: '3s', ...(capacity ? { capacity } : {}) } };
  const vmms = DOMAINS.map((name) => ({
    apiVersion: 'vmmem.io/v1alpha1',
    kind: 'VirtualMachineMemory',
    metadata: { name, namespace: 'default' },
    spec: { hypervisorRef: { name: 'kvm' }, vm: { name }, maxMemory, memory: '256Mi' },
  }));
  writeFileSync(join(dir, 'all.yaml'), [hv, ...vmms].map((x) => stringify(x)).join('---\n'));
}

async function vmmem(...args: string[]): Promise<ProcessRun> {
  const r = await vmmemProcess(args, { timeoutMs: 90_000 });
  assert.ok(!r.killed, `vmmem ${args[0]} hung\n${r.stderr}`);
  return r;
}

async function runOnce(): Promise<{ code: number; items: Item[]; stderr: string }> {
  const r = await vmmem('run', '--manifests', dir, '--once', '-o', 'json');
  return { code: r.code, items: (JSON.parse(r.stdout || '{"items":[]}') as { items: Item[] }).items, stderr: r.stderr };
}

const byName = (items: Item[], kind: string, name: string) => items.find((i) => i.kind === kind && i.metadata.name === name);
const cond = (i: Item | undefined, type: string) => i?.status?.conditions?.find((x) => x.type === type);
const configMaxKiB = async (name: string) => parseDomainXml(await c.domainGetXmlDesc(await c.lookupDomainByName(name), DomainXmlFlags.INACTIVE)).memoryKiB;

let hostMemory: bigint;

test('status.capacity: host memory from virNodeGetInfo, committed = the two running 256Mi domains', async () => {
  writeManifests(undefined, '256Mi');
  const r = await runOnce();
  assert.equal(r.code, 0, r.stderr);
  const capacity = byName(r.items, 'Hypervisor', 'kvm')?.status?.capacity;
  assert.ok(capacity, JSON.stringify(byName(r.items, 'Hypervisor', 'kvm')?.status));
  hostMemory = parseQuantity(capacity.hostMemory, 'status.capacity.hostMemory');
  assert.equal(hostMemory, BigInt((await c.nodeGetInfo()).memoryKiB) * 1024n);
  assert.equal(capacity.committed, '512Mi');
  assert.equal(capacity.vms, 2);
});

test('a budget with room for one 64Mi raise: exactly one domain gets it, the other is HostCapacityExceeded and its config is untouched; plan says the same first', async () => {
  assert.ok(hostMemory, 'the first test read the host memory');
  // budget = hostMemory × 1.0 − reserved = 512Mi committed + 100Mi free.
  const reserved = hostMemory - 612n * MiB;
  writeManifests({ overcommitRatio: '1.0', reserved: String(reserved) }, '320Mi');

  const plan = await vmmem('plan', '-f', dir, '-o', 'json');
  assert.equal(plan.code, 3, plan.stderr);
  const reports = JSON.parse(plan.stdout) as { object: string; verdicts: { field: string; reason: string; message: string }[]; steps: unknown[] }[];
  assert.deepEqual(reports.map((x) => x.verdicts.find((v) => v.field === 'maxMemory')?.reason), ['RestartRequired', 'HostCapacityExceeded'], plan.stdout);
  assert.deepEqual(reports[1]?.steps, []);
  assert.deepEqual(await Promise.all(DOMAINS.map(configMaxKiB)), [256 * 1024, 256 * 1024], 'plan changed nothing');

  const r = await runOnce();
  assert.equal(r.code, 3, r.stderr);
  const held = DOMAINS.filter((n) => cond(byName(r.items, 'VirtualMachineMemory', n), 'Stalled')?.reason === 'HostCapacityExceeded');
  const raised = DOMAINS.filter((n) => cond(byName(r.items, 'VirtualMachineMemory', n), 'RestartRequired')?.status === 'True');
  assert.equal(held.length, 1, JSON.stringify(r.items.map((i) => [i.metadata.name, i.status?.conditions])));
  assert.equal(raised.length, 1);
  assert.notEqual(held[0], raised[0]);
  const message = cond(byName(r.items, 'VirtualMachineMemory', held[0] as string), 'Stalled')?.message ?? '';
  assert.match(message, /host default\/kvm \(.+\): raising cap-[ab] by 64Mi would commit 640Mi of a budget of 612Mi/);
  assert.equal(await configMaxKiB(raised[0] as string), 320 * 1024, 'the raise that fits is in the config');
  assert.equal(await configMaxKiB(held[0] as string), 256 * 1024, 'nothing sent for the held one');
});
