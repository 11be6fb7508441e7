/**
 * docs/gitops.md "What done means": which `kubectl wait` returns for each VMM state, against the
 * real kube-apiserver (test/env) and the real kubectl. The statuses are the ones the controller's
 * own code writes (src/controller/status.ts), put through the status subresource, so the test
 * checks kubectl's reading of vmmem's conditions (including observedGeneration), not a mock of it.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { startKube } from '../../env/kube.ts';
import type { KubeEnv } from '../../env/kube.ts';
import { initialStatus, statusForFailure } from '../../../src/controller/status.ts';
import type { Verdict } from '../../../src/model/memory.ts';
import { GiB, outcomeStatus, runningVM, verdict } from '../../support/status-fixtures.ts';

const root = join(import.meta.dirname, '..', '..', '..');
const NS = 'wait';
const VMM_PATH = `/apis/vmmem.io/v1alpha1/namespaces/${NS}/virtualmachinememories`;
let env: KubeEnv;

const T = '2026-12-04T22:00:00Z';
const observed = runningVM('vm', '5a2c0e9e-0000-4000-8000-000000000009');
const v = verdict;
const APPLIED_MEMORY = v('memory', 'Applied', 6n * GiB, 'Applied');
const outcome = (verdicts: Verdict[]) => outcomeStatus(observed, verdicts, { generation: 1, at: T });

// The rows of the table in docs/gitops.md, with what each documented command must do.
const STATES: { name: string; status: unknown; applied: boolean; inEffect: boolean }[] = [
  { name: 'converged', status: outcome([v('maxMemory', 'Applied', 8n * GiB, 'Applied'), APPLIED_MEMORY]), applied: true, inEffect: true },
  { name: 'restart', status: outcome([v('maxMemory', 'RestartRequired', 16n * GiB, 'RestartRequired'), APPLIED_MEMORY]), applied: true, inEffect: false },
  { name: 'poweroff', status: outcome([v('maxMemory', 'AwaitingPowerOff', 12n * GiB, 'AwaitingPowerOff'), APPLIED_MEMORY]), applied: true, inEffect: false },
  { name: 'stalled', status: outcome([v('reservation', 'Unsupported', 2n * GiB, 'Unsupported'), APPLIED_MEMORY]), applied: false, inEffect: false },
  { name: 'invalid', status: statusForFailure(initialStatus(1, T), 1, { reason: 'InvalidSpec', message: 'spec.memory (16Gi) must not exceed spec.maxMemory (8Gi)', stalled: true }, T), applied: false, inEffect: false },
  { name: 'retrying', status: statusForFailure(initialStatus(1, T), 1, { reason: 'HypervisorUnreachable', message: 'connect ECONNREFUSED', stalled: false }, T), applied: false, inEffect: false },
];

function kubectl(args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile('kubectl', ['--kubeconfig', env.kubeconfigPath, '-n', NS, ...args], (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, out: stdout + stderr });
    });
  });
}

/** docs/gitops.md: "applied" = vmmem has done all it can (Reconciling=False) and refused nothing (Stalled=False). */
async function applied(name: string, timeout: string): Promise<boolean> {
  const done = await kubectl(['wait', '--for=condition=Reconciling=False', `vmm/${name}`, `--timeout=${timeout}`]);
  if (done.code !== 0) return false;
  return (await kubectl(['wait', '--for=condition=Stalled=False', `vmm/${name}`, '--timeout=0s'])).code === 0;
}

/** docs/gitops.md: "fully in effect" = Ready. */
async function inEffect(name: string, timeout: string): Promise<boolean> {
  return (await kubectl(['wait', '--for=condition=Ready', `vmm/${name}`, `--timeout=${timeout}`])).code === 0;
}

async function createWithStatus(name: string, status: unknown, spec: Record<string, unknown> = {}): Promise<void> {
  const obj = { apiVersion: 'vmmem.io/v1alpha1', kind: 'VirtualMachineMemory', metadata: { name, namespace: NS }, spec: { hypervisorRef: { name: 'hv' }, vm: { name: 'vm' }, maxMemory: '8Gi', ...spec } };
  const created = await env.request('POST', VMM_PATH, obj);
  assert.equal(created.status, 201, created.body);
  const live = JSON.parse(created.body) as Record<string, unknown>;
  const res = await env.request('PUT', `${VMM_PATH}/${name}/status`, { ...live, status });
  assert.equal(res.status, 200, res.body);
}

before(async () => {
  env = await startKube({ crds: [join(root, 'crds')] });
  const ns = await env.request('POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: NS } });
  assert.equal(ns.status, 201, ns.body);
});

after(async () => {
  await env?.stop();
});

test('kubectl wait: "applied" and "fully in effect" return exactly for the documented states', async () => {
  for (const s of STATES) await createWithStatus(s.name, s.status);
  // A command that must return is given time; one that must not is given 2 s (it would have met its condition at once).
  const results = await Promise.all(
    STATES.map(async (s) => ({ name: s.name, applied: await applied(s.name, s.applied ? '20s' : '2s'), inEffect: await inEffect(s.name, s.inEffect ? '20s' : '2s') })),
  );
  assert.deepEqual(
    results,
    STATES.map((s) => ({ name: s.name, applied: s.applied, inEffect: s.inEffect })),
  );
});

test('kubectl wait ignores conditions of an older generation: a spec change is not "done" until vmmem has looked', async () => {
  await createWithStatus('changed', STATES[0]!.status);
  const cur = JSON.parse((await env.request('GET', `${VMM_PATH}/changed`)).body) as Record<string, unknown> & { spec: Record<string, unknown> };
  const res = await env.request('PUT', `${VMM_PATH}/changed`, { ...cur, spec: { ...cur.spec, maxMemory: '16Gi' } });
  assert.equal(res.status, 200, res.body);
  assert.equal((JSON.parse(res.body) as { metadata: { generation: number } }).metadata.generation, 2);
  assert.equal(await inEffect('changed', '2s'), false, 'Ready=True of generation 1 does not satisfy the wait at generation 2');
  assert.equal(await applied('changed', '2s'), false);
});
