/**
 * The operator as deployed: `vmmem run --leader-elect` (the real process)
 * authenticated as exactly the ServiceAccount of deploy/ with exactly its
 * RBAC, through a full reconcile — Hypervisor credentials from a Secret,
 * VMM converged, status and Events written, the Lease taken. What it must
 * not do is shown denied in test/peer/kube/rbac.test.ts; here: that this
 * identity is enough, and that it is still denied what it must not do.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { startKube } from '../env/kube.ts';
import type { KubeEnv, KubeUser } from '../env/kube.ts';
import { applyOperatorRbac, BASE_SECRET_NAMESPACE, OPERATOR_NAMESPACE } from '../peer/kube/rbac-helper.ts';
import type { Condition } from '../../src/api/conditions.ts';

const root = join(import.meta.dirname, '..', '..');
const NS = BASE_SECRET_NAMESPACE; // the namespace deploy/base lets the operator read Secrets in
let env: KubeEnv;
let sa: KubeUser;
let child: ChildProcess | undefined;
let logs = '';

before(async () => {
  env = await startKube({ crds: [join(root, 'crds')] });
  for (const ns of [NS, 'other', OPERATOR_NAMESPACE]) await env.request('POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } });
  sa = await applyOperatorRbac(env);
});

after(async () => {
  child?.kill('SIGKILL');
  await env?.stop();
});

async function waitFor<T>(what: string, fn: () => Promise<T | undefined>, ms = 30_000): Promise<T> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    const v = await fn().catch(() => undefined);
    if (v) return v;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`timed out waiting for ${what}\n--- operator log ---\n${logs.slice(-3000)}`);
}

test('vmmem run as the deployed ServiceAccount reconciles a VMM end to end', async () => {
  const secretValue = 'hunter2-least-privilege';
  await env.request('POST', `/api/v1/namespaces/${NS}/secrets`, { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'sim-creds' }, stringData: { username: 'vmmem', password: secretValue } });
  await env.request('POST', `/apis/vmmem.io/v1alpha1/namespaces/${NS}/hypervisors`, {
    apiVersion: 'vmmem.io/v1alpha1',
    kind: 'Hypervisor',
    metadata: { name: 'kvm' },
    spec: { uri: 'sim:///examples/sim/kvm.yaml', credentialsSecretRef: { name: 'sim-creds' } },
  });
  await env.request('POST', `/apis/vmmem.io/v1alpha1/namespaces/${NS}/virtualmachinememories`, {
    apiVersion: 'vmmem.io/v1alpha1',
    kind: 'VirtualMachineMemory',
    metadata: { name: 'web-01' },
    spec: { hypervisorRef: { name: 'kvm' }, vm: { name: 'web-01' }, maxMemory: '4Gi', memory: '3Gi' },
  });

  child = spawn(join(root, 'bin', 'vmmem'), ['run', '--kubeconfig', sa.kubeconfigPath, '--allow-sim-hypervisors', '--leader-elect', '--leader-election-namespace', OPERATOR_NAMESPACE, '--metrics-bind-address', '127.0.0.1:0', '--health-probe-bind-address', '127.0.0.1:0'], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout?.on('data', (d: Buffer) => (logs += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (logs += d.toString()));

  const vmm = await waitFor('web-01 Ready', async () => {
    const res = await env.request('GET', `/apis/vmmem.io/v1alpha1/namespaces/${NS}/virtualmachinememories/web-01`);
    const o = JSON.parse(res.body) as { status?: { conditions?: Condition[]; observed?: Record<string, string> } };
    return o.status?.conditions?.find((c) => c.type === 'Ready')?.status === 'True' ? o : undefined;
  });
  assert.equal(vmm.status?.observed?.memory, '3Gi');

  const hv = JSON.parse((await env.request('GET', `/apis/vmmem.io/v1alpha1/namespaces/${NS}/hypervisors/kvm`)).body) as { status?: { conditions?: Condition[] } };
  assert.equal(hv.status?.conditions?.find((c) => c.type === 'Connected')?.status, 'True');
  const events = JSON.parse((await env.request('GET', `/apis/events.k8s.io/v1/namespaces/${NS}/events`)).body) as { items: { reason: string; regarding: { name: string } }[] };
  assert.ok(events.items.some((e) => e.reason === 'Applied' && e.regarding.name === 'web-01'), 'an Applied Event, written as the ServiceAccount');
  const lease = JSON.parse((await env.request('GET', `/apis/coordination.k8s.io/v1/namespaces/${OPERATOR_NAMESPACE}/leases/vmmem-leader`)).body) as { spec?: { holderIdentity?: string } };
  assert.ok(lease.spec?.holderIdentity, 'the Lease is held');

  assert.doesNotMatch(logs, /forbidden/i, 'no permission was missing during the reconcile');
  assert.doesNotMatch(logs, new RegExp(secretValue), 'the Secret value never reaches the logs');

  const exited = new Promise<number | null>((r) => child?.once('exit', (code) => r(code)));
  child.kill('SIGTERM');
  assert.equal(await exited, 0, logs.slice(-2000));
  const released = JSON.parse((await env.request('GET', `/apis/coordination.k8s.io/v1/namespaces/${OPERATOR_NAMESPACE}/leases/vmmem-leader`)).body) as { spec?: { holderIdentity?: string } };
  assert.ok(!released.spec?.holderIdentity, 'SIGTERM released the Lease for the next replica');
});

test('the same identity is denied what the operator must not do', async () => {
  const as = async (method: string, path: string, body?: unknown) => {
    const api = sa.kubeConfig;
    const cluster = api.getCurrentCluster();
    assert.ok(cluster);
    const { default: https } = await import('node:https');
    const { readFileSync } = await import('node:fs');
    const user = api.getCurrentUser();
    return new Promise<number>((resolve, reject) => {
      const req = https.request(
        new URL(path, cluster.server),
        {
          method,
          ca: cluster.caData ? Buffer.from(cluster.caData, 'base64') : cluster.caFile ? readFileSync(cluster.caFile) : undefined,
          cert: user?.certData ? Buffer.from(user.certData, 'base64') : user?.certFile ? readFileSync(user.certFile) : undefined,
          key: user?.keyData ? Buffer.from(user.keyData, 'base64') : user?.keyFile ? readFileSync(user.keyFile) : undefined,
          headers: { 'content-type': method === 'PATCH' ? 'application/merge-patch+json' : 'application/json' },
        },
        (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        },
      );
      req.on('error', reject);
      req.end(body === undefined ? undefined : JSON.stringify(body));
    });
  };
  await env.request('POST', '/api/v1/namespaces/other/secrets', { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'not-yours' }, stringData: { k: 'v' } });
  assert.equal(await as('GET', '/api/v1/namespaces/other/secrets/not-yours'), 403, 'Secrets in a namespace it does not serve');
  assert.equal(await as('GET', '/api/v1/secrets'), 403, 'cluster-wide Secret list');
  assert.equal(await as('PATCH', `/apis/vmmem.io/v1alpha1/namespaces/${NS}/virtualmachinememories/web-01`, { spec: { memory: '2Gi' } }), 403, 'write spec');
  assert.equal(await as('DELETE', `/apis/vmmem.io/v1alpha1/namespaces/${NS}/virtualmachinememories/web-01`), 403, 'delete a VMM');
  assert.equal(await as('GET', `/api/v1/namespaces/${NS}/configmaps`), 403, 'other resources');
  assert.equal(await as('GET', `/api/v1/namespaces/${NS}/pods`), 403, 'other resources');
});
