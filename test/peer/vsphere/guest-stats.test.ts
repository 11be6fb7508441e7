/**
 * Guest-aware shrink from vSphere's quickStats.guestMemoryUsage (issue #15.1) on vcsim, through
 * the real CLI (`vmmem run --once`). vcsim reports 0 (no statistics) for every VM, so this file
 * gives one VM a guest that uses 1200 MB the way vcsim allows: its inventory is saved
 * (`govc object.save`), the VM's quickStats.guestMemoryUsage and memoryMB are set in the saved
 * XML, and a second vcsim loads it (`vcsim -load`). vmmem then reads the use into
 * status.observed.guest, refuses a shrink below use + headroom (GuestMemoryInUse, the VM's
 * memoryAllocation.limit untouched, read back through the SOAP API), and applies one above it.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { stringify } from 'yaml';
import { VSphereClient } from '../../../src/vsphere/index.ts';
import type { Vcsim } from '../../env/vcsim.ts';
import { startVcsim } from '../../env/vcsim.ts';

const execFileP = promisify(execFile);
const root = join(import.meta.dirname, '..', '..', '..');
const VM = 'DC0_H0_VM0';
const USED_MB = 1200;
let sim: Vcsim;
let dir: string;
let client: VSphereClient;

/** vcsim's one-VM inventory, saved, with the VM's guest using USED_MB of 2048 MB. */
async function savedInventoryWithGuestUse(into: string): Promise<void> {
  const plain = await startVcsim({ args: ['-cluster', '0', '-host', '1', '-vm', '1'] });
  try {
    await plain.govc('object.save', '-d', into);
  } finally {
    await plain.stop();
  }
  const files = readdirSync(into).filter((f) => /-VirtualMachine-vm-\d+\.xml$/.test(f));
  assert.equal(files.length, 1, `one VM saved: ${files.join(', ')}`);
  const path = join(into, files[0] as string);
  const xml = readFileSync(path, 'utf8');
  assert.match(xml, /<memoryMB>32<\/memoryMB>/);
  assert.match(xml, /<quickStats>/);
  writeFileSync(
    path,
    xml
      .replace('<memoryMB>32</memoryMB>', '<memoryMB>2048</memoryMB>')
      .replace('<memorySizeMB>32</memorySizeMB>', '<memorySizeMB>2048</memorySizeMB>')
      .replace('<quickStats>', `<quickStats><guestMemoryUsage>${USED_MB}</guestMemoryUsage>`),
  );
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'vmmem-vcsim-guest-'));
  const saved = join(dir, 'inventory');
  await savedInventoryWithGuestUse(saved);
  sim = await startVcsim({ args: ['-load', saved] });
  client = await VSphereClient.connect({ url: sim.url, username: sim.username, password: sim.password, caPem: sim.caPem });
});

after(async () => {
  await client?.close();
  await sim?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function writeManifests(memory: string): void {
  const docs = [
    { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'vc-creds', namespace: 'default' }, stringData: { username: sim.username, password: sim.password } },
    { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'vc-ca', namespace: 'default' }, data: { 'ca.crt': Buffer.from(sim.caPem).toString('base64') } },
    { apiVersion: 'vmmem.io/v1alpha1', kind: 'Hypervisor', metadata: { name: 'vcenter', namespace: 'default' }, spec: { uri: sim.url, credentialsSecretRef: { name: 'vc-creds' }, tls: { caSecretRef: { name: 'vc-ca' } } } },
    { apiVersion: 'vmmem.io/v1alpha1', kind: 'VirtualMachineMemory', metadata: { name: 'vm', namespace: 'default' }, spec: { hypervisorRef: { name: 'vcenter' }, vm: { name: VM }, maxMemory: '2Gi', memory } },
  ];
  writeFileSync(join(dir, 'all.yaml'), docs.map((d) => stringify(d)).join('---\n'));
}

interface VMMItem {
  kind: string;
  status?: { conditions?: { type: string; status: string; reason: string; message: string }[]; observed?: { guest?: { used: string; source: string; sampledAt?: string } } };
}

async function runOnce(): Promise<{ code: number; vmm: VMMItem | undefined; stderr: string }> {
  let code = 0;
  let stdout: string;
  let stderr: string;
  try {
    ({ stdout, stderr } = await execFileP(join(root, 'bin', 'vmmem'), ['run', '--manifests', dir, '--once', '-o', 'json'], { cwd: root, timeout: 90_000 }));
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    ({ code, stdout, stderr } = e);
  }
  const items = (JSON.parse(stdout || '{"items":[]}') as { items: VMMItem[] }).items;
  return { code, vmm: items.find((i) => i.kind === 'VirtualMachineMemory'), stderr };
}

const cond = (v: VMMItem | undefined, type: string) => v?.status?.conditions?.find((c) => c.type === type);
async function limitMB(): Promise<number | undefined> {
  const [vm] = await client.findVmsByName(VM);
  assert.ok(vm, `${VM} on vcsim`);
  return (await client.getVmMemory(vm)).memoryAllocation.limit;
}

test('status.observed.guest carries quickStats.guestMemoryUsage; a shrink below use + headroom is GuestMemoryInUse and nothing is sent', async () => {
  assert.equal(await limitMB(), -1, 'vcsim starts unlimited');
  writeManifests('1Gi');
  const r = await runOnce();
  assert.equal(r.code, 3, r.stderr);
  assert.deepEqual({ used: r.vmm?.status?.observed?.guest?.used, source: r.vmm?.status?.observed?.guest?.source }, { used: '1200Mi', source: 'vSphere quickStats.guestMemoryUsage' });
  assert.equal(cond(r.vmm, 'Stalled')?.reason, 'GuestMemoryInUse', JSON.stringify(r.vmm?.status?.conditions));
  assert.match(cond(r.vmm, 'Stalled')?.message ?? '', /the guest uses 1200Mi \(vSphere quickStats\.guestMemoryUsage\)/);
  assert.equal(await limitMB(), -1, 'memoryAllocation.limit untouched');
});

test('a shrink that leaves the guest its use + headroom (1200Mi + 256Mi) is applied: the limit carrying memory is 1536 MB', async () => {
  writeManifests('1536Mi');
  const r = await runOnce();
  assert.equal(r.code, 0, `${r.stderr}\n${JSON.stringify(r.vmm?.status?.conditions)}`);
  assert.equal(cond(r.vmm, 'Ready')?.status, 'True');
  assert.equal(await limitMB(), 1536);
});
