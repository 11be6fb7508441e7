/**
 * Host capacity on vcsim (issue #15.2 acceptance), through the real CLI: the Hypervisor's
 * status.capacity holds the ESX host's hardware.memorySize, and reservations beyond what the
 * host can reserve (host memory − spec.capacity.reserved) are HostCapacityExceeded — a rule
 * vcsim does not enforce (it accepts any reservation), so vmmem must. Two 768Mi reservations
 * reconciled at once against 1Gi reservable: exactly one is set (read back over SOAP), the other
 * VM keeps reservation 0.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { stringify } from 'yaml';
import { parseQuantity } from '../../../src/api/quantity.ts';
import { VSphereClient } from '../../../src/vsphere/index.ts';
import type { Vcsim } from '../../env/vcsim.ts';
import { startVcsim } from '../../env/vcsim.ts';

const execFileP = promisify(execFile);
const root = join(import.meta.dirname, '..', '..', '..');
const MiB = 1024n * 1024n;
const VMS = ['DC0_H0_VM0', 'DC0_H0_VM1'];
let sim: Vcsim;
let dir: string;
let client: VSphereClient;

before(async () => {
  sim = await startVcsim({ args: ['-cluster', '0', '-host', '1', '-vm', '2'] });
  client = await VSphereClient.connect({ url: sim.url, username: sim.username, password: sim.password, caPem: sim.caPem });
  // vcsim's VMs have 32 MB: give them room for a reservation (vcsim accepts this while powered on).
  for (const name of VMS) await client.reconfigureVm(await vmRef(name), { memoryMB: 2048 });
  dir = mkdtempSync(join(tmpdir(), 'vmmem-vcsim-capacity-'));
});

after(async () => {
  await client?.close();
  await sim?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function vmRef(name: string) {
  const [vm] = await client.findVmsByName(name);
  assert.ok(vm, `${name} on vcsim`);
  return vm;
}

function writeManifests(capacity: Record<string, string> | undefined, reservation: string | undefined): void {
  const docs = [
    { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'vc-creds', namespace: 'default' }, stringData: { username: sim.username, password: sim.password } },
    { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'vc-ca', namespace: 'default' }, data: { 'ca.crt': Buffer.from(sim.caPem).toString('base64') } },
    {
      apiVersion: 'vmmem.io/v1alpha1',
      kind: 'Hypervisor',
      metadata: { name: 'vcenter', namespace: 'default' },
      spec: { uri: sim.url, credentialsSecretRef: { name: 'vc-creds' }, tls: { caSecretRef: { name: 'vc-ca' } }, ...(capacity ? { capacity } : {}) },
    },
    ...VMS.map((name) => ({
      apiVersion: 'vmmem.io/v1alpha1',
      kind: 'VirtualMachineMemory',
      metadata: { name: name.toLowerCase().replace(/_/g, '-'), namespace: 'default' },
      spec: { hypervisorRef: { name: 'vcenter' }, vm: { name }, maxMemory: '2Gi', ...(reservation ? { reservation } : {}) },
    })),
  ];
  writeFileSync(join(dir, 'all.yaml'), docs.map((d) => stringify(d)).join('---\n'));
}

interface Item {
  kind: string;
  metadata: { name: string };
  status?: { conditions?: { type: string; status: string; reason: string; message: string }[]; capacity?: Record<string, string | number> };
}

async function runOnce(): Promise<{ code: number; items: Item[]; stderr: string }> {
  try {
    const { stdout, stderr } = await execFileP(join(root, 'bin', 'vmmem'), ['run', '--manifests', dir, '--once', '-o', 'json'], { cwd: root, timeout: 90_000 });
    return { code: 0, items: (JSON.parse(stdout) as { items: Item[] }).items, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, items: (JSON.parse(e.stdout || '{"items":[]}') as { items: Item[] }).items, stderr: e.stderr };
  }
}

const reservationMB = async (name: string) => (await client.getVmMemory(await vmRef(name))).memoryAllocation.reservation;
let hostMemory: bigint;

test('status.capacity.hostMemory is the ESX host\'s hardware.memorySize', async () => {
  writeManifests(undefined, undefined);
  const r = await runOnce();
  assert.equal(r.code, 0, r.stderr);
  const capacity = r.items.find((i) => i.kind === 'Hypervisor')?.status?.capacity;
  assert.ok(capacity, JSON.stringify(r.items.find((i) => i.kind === 'Hypervisor')?.status));
  hostMemory = parseQuantity(capacity.hostMemory, 'status.capacity.hostMemory');
  const hostPath = (await sim.govc('find', '/', '-type', 'h')).trim().split('\n')[0] as string;
  const collected = await sim.govc('object.collect', '-s', hostPath, 'hardware.memorySize');
  assert.equal(hostMemory, BigInt(collected.trim()));
  assert.equal(capacity.reservations, '0');
});

test('reservations past what the host can reserve: one of two 768Mi reservations is set, the other is HostCapacityExceeded and stays 0', async () => {
  assert.ok(hostMemory, 'the first test read the host memory');
  writeManifests({ reserved: String(hostMemory - 1024n * MiB) }, '768Mi');
  const r = await runOnce();
  assert.equal(r.code, 3, r.stderr);
  const stalled = r.items.filter((i) => i.kind === 'VirtualMachineMemory' && i.status?.conditions?.some((c) => c.type === 'Stalled' && c.reason === 'HostCapacityExceeded'));
  assert.equal(stalled.length, 1, JSON.stringify(r.items.map((i) => [i.metadata.name, i.status?.conditions])));
  assert.match(stalled[0]?.status?.conditions?.find((c) => c.type === 'Stalled')?.message ?? '', /reservation by 768Mi would reserve 1536Mi of the 1Gi the host can reserve/);
  const reservations = await Promise.all(VMS.map(reservationMB));
  assert.deepEqual([...reservations].sort(), [0, 768], `one reservation set, one untouched: ${reservations.join(', ')}`);
});
