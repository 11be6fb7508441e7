/**
 * `vmmem plan --observed` from a cluster's own state (issue #15.3): the operator runs on a real
 * kube-apiserver + etcd with the sim, `kubectl get vmm,hypervisors -o yaml` saves what it
 * wrote, and the plan of a pull request from that file equals the live plan against the same
 * sim host. This proves the status the API server stores keeps every fact the planner needs
 * (the CRD's structural schema would prune a field it does not declare) and that a
 * `kubectl get` List is a usable saved state.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { stringify } from 'yaml';
import { vmmemInProcess as vmmem } from '../../env/cli.ts';
import type { PlanReport } from '../../../src/cli/plan.ts';
import { silentLogger } from '../../../src/controller/log.ts';
import { Operator } from '../../../src/controller/operator.ts';
import { createSimHost, resetSimHosts } from '../../../src/drivers/sim/index.ts';
import { KubeStore } from '../../../src/kube/store.ts';
import { startKube } from '../../env/kube.ts';
import type { KubeEnv } from '../../env/kube.ts';

const execFileP = promisify(execFile);
const root = join(import.meta.dirname, '..', '..', '..');
const NS = 'plan';
const API = `/apis/vmmem.io/v1alpha1/namespaces/${NS}`;
let env: KubeEnv;

const hypervisor = { apiVersion: 'vmmem.io/v1alpha1', kind: 'Hypervisor', metadata: { name: 'sim', namespace: NS }, spec: { uri: 'sim:memory:plan-kube', syncInterval: '2s', capacity: { overcommitRatio: '1.0' } } };
const vmm = (name: string, spec: Record<string, unknown>) => ({ apiVersion: 'vmmem.io/v1alpha1', kind: 'VirtualMachineMemory', metadata: { name, namespace: NS }, spec: { hypervisorRef: { name: 'sim' }, vm: { name }, ...spec } });

before(async () => {
  env = await startKube({ crds: [join(root, 'crds')] });
  await env.request('POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: NS } });
  resetSimHosts();
  createSimHost(
    {
      type: 'qemu',
      hostMemory: '16Gi',
      vms: [
        { name: 'web', type: 'qemu', maxMemory: '4Gi', memory: '4Gi', guestUsed: '3Gi', balloonDelay: '0ms' },
        { name: 'numa', type: 'qemu', maxMemory: '4Gi', memory: '4Gi', numa: true },
        { name: 'tiny', type: 'qemu', maxMemory: '2Gi', memory: '2Gi' },
        { name: 'off', type: 'qemu', powerState: 'ShutOff', maxMemory: '2Gi' },
      ],
    },
    'plan-kube',
  );
});

after(async () => {
  await env?.stop();
  resetSimHosts();
});

async function create(plural: string, obj: unknown): Promise<void> {
  const res = await env.request('POST', `${API}/${plural}`, obj);
  assert.ok(res.status === 201, `${res.status} ${res.body}`);
}

async function waitFor(what: string, fn: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await fn().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  assert.fail(`timed out waiting for ${what}`);
}


test('kubectl get vmm,hypervisors -o yaml is a saved state: the plan of a pull request from it equals the live plan', async () => {
  const log = silentLogger();
  const store = new KubeStore(env.kubeConfig, log, { namespace: NS, informer: { idleTimeoutMs: 5_000, maxBackoffMs: 1_000 } });
  const operator = new Operator({ store, log, concurrency: 4 });
  await operator.start();
  try {
    await create('hypervisors', hypervisor);
    const current = [vmm('web', { maxMemory: '4Gi' }), vmm('numa', { maxMemory: '4Gi' }), vmm('tiny', { maxMemory: '2Gi' }), vmm('off', { maxMemory: '2Gi' })];
    for (const v of current) await create('virtualmachinememories', v);
    await waitFor('every VMM Ready and the host capacity in status', async () => {
      const vmms = JSON.parse((await env.request('GET', `${API}/virtualmachinememories`)).body) as { items: { status?: { conditions?: { type: string; status: string }[] } }[] };
      const hv = JSON.parse((await env.request('GET', `${API}/hypervisors/sim`)).body) as { status?: { capacity?: unknown } };
      return vmms.items.length === 4 && vmms.items.every((i) => i.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True')) && hv.status?.capacity !== undefined;
    });
  } finally {
    await operator.stop();
  }

  const { stdout } = await execFileP('kubectl', ['--kubeconfig', env.kubeconfigPath, '-n', NS, 'get', 'vmm,hypervisors', '-o', 'yaml'], { maxBuffer: 16 << 20 });
  const saved = join(env.dir, 'saved.yaml');
  writeFileSync(saved, stdout);
  // The facts only a plan needs survived the API server's pruning.
  assert.match(stdout, /balloonDevice: present/);
  assert.match(stdout, /numa: true/);
  assert.match(stdout, /vm:\n\s+name: web\n\s+uuid: /);
  assert.match(stdout, /used: 3Gi/);

  // The pull request: web shrinks below what its guest uses, numa's limit lacks the QEMU margin,
  // tiny grows past the host's budget (16Gi, 10Gi committed), off grows in its config.
  const pr = [
    hypervisor,
    vmm('web', { maxMemory: '4Gi', memory: '2Gi' }),
    vmm('numa', { maxMemory: '4Gi', limit: '4Gi' }),
    vmm('tiny', { maxMemory: '12Gi' }),
    vmm('off', { maxMemory: '4Gi' }),
  ];
  const desired = join(env.dir, 'pr.yaml');
  writeFileSync(desired, pr.map((o) => stringify(o)).join('---\n'));
  const live = await vmmem('plan', '-f', desired, '-o', 'json', '--detailed-exitcode');
  const offline = await vmmem('plan', '-f', desired, '--observed', saved, '-o', 'json', '--detailed-exitcode');
  assert.equal(live.code, 3, live.err);
  assert.equal(offline.code, 3, offline.err);
  const reports = JSON.parse(offline.out) as PlanReport[];
  assert.deepEqual(reports, JSON.parse(live.out));
  const reason = (name: string, field: string) => reports.find((r) => r.object === `${NS}/${name}`)?.verdicts?.find((v) => v.field === field)?.reason;
  assert.deepEqual([reason('web', 'memory'), reason('numa', 'limit'), reason('tiny', 'maxMemory'), reason('off', 'maxMemory')], ['GuestMemoryInUse', 'UnsafeLimit', 'HostCapacityExceeded', 'Applied']);
});
