// `vmmem run --manifests <dir> --once -o json`, the real CLI process, for peer tests that want the
// controller's standalone path end to end (the guest tests; test/peer/libvirt/standalone.test.ts
// has its own copy with the same shape).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { stringify } from 'yaml';

const execFileP = promisify(execFile);
const root = join(import.meta.dirname, '..', '..');

export interface Cond { type: string; status: string; reason: string; message: string }
export interface Item {
  kind: string;
  status?: {
    conditions?: Cond[];
    pending?: { field: string; value: string; reason: string; message: string }[];
    observed?: Record<string, unknown>;
  };
}
export interface Run { code: number; items: Item[]; stderr: string; ms: number }

/** One Hypervisor `kvm` and one VirtualMachineMemory `vm` in `dir/all.yaml`. */
export function writeManifests(dir: string, hv: Record<string, unknown>, vmm: Record<string, unknown>): void {
  const docs = [
    { apiVersion: 'vmmem.io/v1alpha1', kind: 'Hypervisor', metadata: { name: 'kvm', namespace: 'default' }, spec: hv },
    { apiVersion: 'vmmem.io/v1alpha1', kind: 'VirtualMachineMemory', metadata: { name: 'vm', namespace: 'default' }, spec: { hypervisorRef: { name: 'kvm' }, ...vmm } },
  ];
  writeFileSync(join(dir, 'all.yaml'), docs.map((x) => stringify(x)).join('---\n'));
}

export async function runOnce(dir: string, extraArgs: string[] = [], timeoutMs = 120_000): Promise<Run> {
  const t0 = Date.now();
  try {
    const { stdout, stderr } = await execFileP(join(root, 'bin', 'vmmem'), ['run', '--manifests', dir, '--once', '-o', 'json', ...extraArgs], { cwd: root, timeout: timeoutMs });
    return { code: 0, items: (JSON.parse(stdout) as { items: Item[] }).items, stderr, ms: Date.now() - t0 };
  } catch (err) {
    const e = err as { code: number | string; killed?: boolean; stdout: string; stderr: string };
    assert.ok(!e.killed, `vmmem run --once did not finish within ${timeoutMs} ms (a hang)\n${e.stderr}`);
    assert.equal(typeof e.code, 'number', `vmmem could not run: ${String(e.code)}\n${e.stderr}`);
    return { code: e.code as number, items: (JSON.parse(e.stdout || '{"items":[]}') as { items: Item[] }).items, stderr: e.stderr, ms: Date.now() - t0 };
  }
}

export const vmmOf = (r: Run) => r.items.find((i) => i.kind === 'VirtualMachineMemory');
export const hvOf = (r: Run) => r.items.find((i) => i.kind === 'Hypervisor');
export const cond = (item: Item | undefined, type: string) => item?.status?.conditions?.find((c) => c.type === type);
export const show = (r: Run) =>
  `exit ${r.code} after ${r.ms} ms\n${JSON.stringify(vmmOf(r)?.status, null, 1)}\n${JSON.stringify(hvOf(r)?.status?.conditions)}\n${r.stderr.slice(-2000)}`;
