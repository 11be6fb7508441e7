/**
 * `vmmem run --manifests … --once` (the real CLI process) against VMware's
 * vcsim: credentials and the CA from Secrets in the manifest directory, TLS
 * verified, values read back through the SOAP API. And the ESX rule vcsim
 * does not enforce: a maxMemory decrease on a powered-on VM is held as
 * AwaitingPowerOff by vmmem, then applied once the VM is powered off.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
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
const MiB = 1024n * 1024n;
let sim: Vcsim;
let dir: string;
let client: VSphereClient;

before(async () => {
  sim = await startVcsim();
  client = await VSphereClient.connect({ url: sim.url, username: sim.username, password: sim.password, caPem: sim.caPem });
  dir = mkdtempSync(join(tmpdir(), 'vmmem-vcsim-'));
});

after(async () => {
  await client?.close();
  await sim?.stop();
  rmSync(dir, { recursive: true, force: true });
});

function writeManifests(vmm: Record<string, unknown>) {
  const docs = [
    { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'vc-creds', namespace: 'default' }, stringData: { username: sim.username, password: sim.password } },
    { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'vc-ca', namespace: 'default' }, data: { 'ca.crt': Buffer.from(sim.caPem).toString('base64') } },
    { apiVersion: 'vmmem.io/v1alpha1', kind: 'Hypervisor', metadata: { name: 'vcenter', namespace: 'default' }, spec: { uri: sim.url, credentialsSecretRef: { name: 'vc-creds' }, tls: { caSecretRef: { name: 'vc-ca' } } } },
    { apiVersion: 'vmmem.io/v1alpha1', kind: 'VirtualMachineMemory', metadata: { name: 'vm', namespace: 'default' }, spec: { hypervisorRef: { name: 'vcenter' }, ...vmm } },
  ];
  writeFileSync(join(dir, 'all.yaml'), docs.map((d) => stringify(d)).join('---\n'));
}

async function runOnce(): Promise<{ code: number; list: { items: { kind: string; status?: { conditions?: { type: string; status: string; reason: string; message: string }[]; pending?: { field: string; reason: string }[] } }[] }; stderr: string }> {
  try {
    const { stdout, stderr } = await execFileP(join(root, 'bin', 'vmmem'), ['run', '--manifests', dir, '--once', '-o', 'json'], { cwd: root });
    return { code: 0, list: JSON.parse(stdout), stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, list: JSON.parse(e.stdout || '{"items":[]}'), stderr: e.stderr };
  }
}

const vmmOf = (r: Awaited<ReturnType<typeof runOnce>>) => r.list.items.find((i) => i.kind === 'VirtualMachineMemory');
const cond = (r: Awaited<ReturnType<typeof runOnce>>, type: string) => vmmOf(r)?.status?.conditions?.find((c) => c.type === type);

test('run --once converges a VM on vcsim; the SOAP API reads back the same values', async () => {
  writeManifests({ vm: { name: 'DC0_H0_VM1' }, maxMemory: '1Gi', memory: '768Mi', reservation: '256Mi' });
  // Hot-add on the running VM: the increase is allowed live (vmmem's ESX profile checks the rules).
  const ref = await client.lookupVm({ name: 'DC0_H0_VM1' });
  await client.powerOffVm(ref).catch(() => undefined);
  const r = await runOnce();
  assert.equal(r.code, 0, r.stderr);
  assert.equal(cond(r, 'Ready')?.status, 'True', JSON.stringify(vmmOf(r)?.status));
  const mem = await client.getVmMemory(ref);
  assert.equal(BigInt(mem.memoryMB) * MiB, 1024n * MiB);
  assert.equal(BigInt(mem.memoryAllocation.limit ?? -1), 768n, 'memory enforced as memoryAllocation.limit (MiB)');
  assert.equal(BigInt(mem.memoryAllocation.reservation ?? 0), 256n);
  assert.doesNotMatch(r.stderr, new RegExp(sim.password), 'the password never reaches the logs');
});

test('a maxMemory decrease on a powered-on VM is AwaitingPowerOff, then applied after a power-off through the API', async () => {
  const ref = await client.lookupVm({ name: 'DC0_H0_VM0' });
  await client.powerOnVm(ref).catch(() => undefined);
  const before = await client.getVmMemory(ref);
  const smaller = Math.max(64, Math.floor(Number(before.memoryMB) / 2 / 4) * 4);
  writeManifests({ vm: { name: 'DC0_H0_VM0' }, maxMemory: `${smaller}Mi` });
  const held = await runOnce();
  assert.equal(held.code, 0, `only waiting on a power-off: exit 0\n${held.stderr}`);
  assert.equal(cond(held, 'RestartRequired')?.reason, 'AwaitingPowerOff');
  assert.deepEqual(vmmOf(held)?.status?.pending?.map((p) => [p.field, p.reason]), [['maxMemory', 'AwaitingPowerOff'], ['memory', 'AwaitingPowerOff']], 'memory defaults to maxMemory and waits with it');
  assert.equal((await client.getVmMemory(ref)).memoryMB, before.memoryMB, 'vcsim would have accepted it: vmmem held it back');

  await client.powerOffVm(ref);
  const applied = await runOnce();
  assert.equal(applied.code, 0, applied.stderr);
  assert.equal(cond(applied, 'Ready')?.status, 'True');
  assert.equal(Number((await client.getVmMemory(ref)).memoryMB), smaller);
});

test('a wrong password is a clear AuthenticationFailed, exit 1, and the password is not printed', async () => {
  writeManifests({ vm: { name: 'DC0_H0_VM0' }, maxMemory: '1Gi' });
  const text = (await import('node:fs')).readFileSync(join(dir, 'all.yaml'), 'utf8').replace(`password: ${sim.password}`, 'password: wrong-secret-123');
  writeFileSync(join(dir, 'all.yaml'), text);
  const r = await runOnce();
  assert.equal(r.code, 1);
  assert.equal(cond(r, 'Ready')?.reason, 'AuthenticationFailed', JSON.stringify(vmmOf(r)?.status));
  assert.doesNotMatch(JSON.stringify(r.list) + r.stderr, /wrong-secret-123/);
});
