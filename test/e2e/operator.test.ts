/**
 * The operator end to end on a real kube-apiserver + etcd (test/env/kube.ts)
 * with the sim hypervisor: the acceptance checks of the controller issue.
 * Operators run in this process (KubeStore + Operator + LeaderElector, wired
 * as `vmmem run` wires them) so the test can count calls at the sim host;
 * `kubectl wait` and one real `vmmem run` child process cover the CLI.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { join } from 'node:path';
import type { KubeConfig } from '@kubernetes/client-node';
import { startKube } from '../env/kube.ts';
import type { KubeEnv } from '../env/kube.ts';
import { KubeStore } from '../../src/kube/store.ts';
import { LeaderElector } from '../../src/kube/leader.ts';
import { Operator } from '../../src/controller/operator.ts';
import { silentLogger } from '../../src/controller/log.ts';
import { createSimHost, resetSimHosts } from '../../src/drivers/sim/index.ts';
import type { SimHost } from '../../src/drivers/sim/index.ts';
import type { Condition } from '../../src/api/conditions.ts';

const execFileP = promisify(execFile);
const root = join(import.meta.dirname, '..', '..');
const NS = 'e2e';
const VMM_PATH = `/apis/vmmem.io/v1alpha1/namespaces/${NS}/virtualmachinememories`;
const HV_PATH = `/apis/vmmem.io/v1alpha1/namespaces/${NS}/hypervisors`;

let env: KubeEnv;
let host: SimHost;
const unhandled: unknown[] = [];
const onUnhandled = (err: unknown) => unhandled.push(err);

interface Replica {
  store: KubeStore;
  operator: Operator;
  elector?: LeaderElector;
  leading: boolean;
  stop(): Promise<void>;
}

async function startReplica(kc: KubeConfig, opts: { leaderElect?: boolean; identity?: string } = {}): Promise<Replica> {
  const log = silentLogger();
  const store = new KubeStore(kc, log, { namespace: NS, informer: { idleTimeoutMs: 5_000, maxBackoffMs: 1_000 } });
  const operator = new Operator({ store, log, concurrency: 4 });
  const replica: Replica = {
    store,
    operator,
    leading: !opts.leaderElect,
    async stop() {
      await operator.stop();
      await replica.elector?.release();
    },
  };
  await operator.start({ workers: !opts.leaderElect });
  if (opts.leaderElect) {
    replica.elector = new LeaderElector(kc, { namespace: NS, name: 'vmmem-leader', identity: opts.identity ?? 'x', logger: log, leaseDurationMs: 4_000, renewDeadlineMs: 3_000, retryPeriodMs: 500 });
    void replica.elector.run({
      onStartedLeading: () => {
        replica.leading = true;
        operator.startWorkers();
      },
      onStoppedLeading: () => {
        replica.leading = false;
      },
    });
  }
  return replica;
}

async function getVMM(name: string): Promise<{ metadata: { generation: number }; status?: { observedGeneration?: number; conditions?: Condition[]; observed?: Record<string, string>; pending?: { field: string }[] } }> {
  const res = await env.request('GET', `${VMM_PATH}/${name}`);
  assert.equal(res.status, 200, res.body);
  return JSON.parse(res.body);
}

const condition = (o: Awaited<ReturnType<typeof getVMM>>, type: string) => o.status?.conditions?.find((c) => c.type === type);

async function waitFor<T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
}

const readyAt = (name: string, generation?: number) =>
  waitFor(`${name} Ready`, async () => {
    const o = await getVMM(name);
    const ready = condition(o, 'Ready');
    return ready?.status === 'True' && o.status?.observedGeneration === (generation ?? o.metadata.generation) ? o : undefined;
  });

/** Create or replace (spec only: the status subresource keeps status), retrying on conflicts. */
async function apply(path: string, obj: Record<string, unknown>): Promise<void> {
  const name = (obj.metadata as { name: string }).name;
  for (let attempt = 0; attempt < 5; attempt++) {
    const current = await env.request('GET', `${path}/${name}`);
    let res;
    if (current.status === 404) res = await env.request('POST', path, obj);
    else {
      const rv = (JSON.parse(current.body) as { metadata: { resourceVersion: string } }).metadata.resourceVersion;
      res = await env.request('PUT', `${path}/${name}`, { ...obj, metadata: { ...(obj.metadata as object), resourceVersion: rv } });
    }
    if (res.status === 409) continue;
    assert.ok(res.status === 200 || res.status === 201, `apply ${name}: ${res.status} ${res.body}`);
    return;
  }
  assert.fail(`apply ${name}: conflicts`);
}

function vmm(name: string, spec: Record<string, unknown>) {
  return { apiVersion: 'vmmem.io/v1alpha1', kind: 'VirtualMachineMemory', metadata: { name, namespace: NS }, spec: { hypervisorRef: { name: 'sim' }, vm: { name }, ...spec } };
}

before(async () => {
  process.on('unhandledRejection', onUnhandled);
  env = await startKube({ crds: [join(root, 'crds')] });
  await env.request('POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: NS } });
  resetSimHosts();
  host = createSimHost(
    {
      type: 'qemu',
      vms: ['a', 'b', 'c', 'd', 'e', 'f', 'g'].map((n) => ({ name: `vm-${n}`, type: 'qemu', powerState: 'Running', maxMemory: '4Gi', memory: '4Gi', balloon: 'responsive', balloonDelay: '0ms' })),
    },
    'e2e',
  );
  await apply(HV_PATH, { apiVersion: 'vmmem.io/v1alpha1', kind: 'Hypervisor', metadata: { name: 'sim', namespace: NS }, spec: { uri: 'sim:memory:e2e', syncInterval: '2s', balloonTimeout: '10s' } });
});

after(async () => {
  process.off('unhandledRejection', onUnhandled);
  await env?.stop();
  assert.deepEqual(unhandled, [], 'no unhandled rejection');
});

test('a VMM converges, reports observed values at its generation, and kubectl wait --for=condition=Ready works', async () => {
  const r = await startReplica(env.kubeConfig);
  try {
    const seen: { observedGeneration?: number; conditions?: Condition[] }[] = [];
    const watcher = setInterval(() => {
      void getVMM('vm-a').then((o) => o.status && seen.push(o.status)).catch(() => undefined);
    }, 20);
    await apply(VMM_PATH, vmm('vm-a', { maxMemory: '4Gi', memory: '3Gi' }));
    const waited = execFileP('kubectl', ['--kubeconfig', env.kubeconfigPath, '-n', NS, 'wait', '--for=condition=Ready', 'vmm/vm-a', '--timeout=30s']);
    const o = await readyAt('vm-a', 1);
    clearInterval(watcher);
    assert.equal(o.status?.observed?.memory, '3Gi');
    assert.equal(o.status?.observed?.maxMemory, '4Gi');
    assert.equal(o.status?.observed?.powerState, 'Running');
    for (const c of o.status?.conditions ?? []) assert.equal(c.observedGeneration, 1, `${c.type} carries observedGeneration`);
    // Every status ever seen carries observedGeneration and conditions (kstatus: no empty first write).
    for (const s of seen) {
      assert.equal(s.observedGeneration, 1);
      assert.ok(s.conditions?.every((c) => c.observedGeneration === 1));
    }
    const { stdout } = await waited;
    assert.match(stdout, /condition met/);
    assert.equal(host.vm('vm-a')?.live?.memory, 3n << 30n);
  } finally {
    await r.stop();
  }
});

test('a converged VMM stays quiet: re-syncs write nothing (no status/watch feedback loop)', async () => {
  const r = await startReplica(env.kubeConfig);
  try {
    await apply(VMM_PATH, vmm('vm-a', { maxMemory: '4Gi', memory: '3Gi' }));
    await readyAt('vm-a');
    await new Promise((res) => setTimeout(res, 500));
    const rv = (await getVMM('vm-a') as unknown as { metadata: { resourceVersion: string } }).metadata.resourceVersion;
    const calls = host.callLog.length;
    await new Promise((res) => setTimeout(res, 4_500)); // two sync intervals
    const after = (await getVMM('vm-a') as unknown as { metadata: { resourceVersion: string } }).metadata.resourceVersion;
    assert.equal(after, rv, 'no write while nothing changed');
    assert.ok(host.callLog.length - calls <= 3 * 4, `re-syncs only observe (${host.callLog.length - calls} calls in two intervals)`);
    assert.ok(!host.callLog.slice(calls).some((c) => /SetMemory/.test(c.op)), 'and never set anything');
  } finally {
    await r.stop();
  }
});

test('a spec change converges again; a restart-requiring change is listed, and reverting it clears RestartRequired', async () => {
  const r = await startReplica(env.kubeConfig);
  try {
    await apply(VMM_PATH, vmm('vm-b', { maxMemory: '4Gi' }));
    await readyAt('vm-b', 1);
    await apply(VMM_PATH, vmm('vm-b', { maxMemory: '8Gi', memory: '4Gi' }));
    const pending = await waitFor('RestartRequired', async () => {
      const o = await getVMM('vm-b');
      return condition(o, 'RestartRequired')?.status === 'True' && o.status?.observedGeneration === 2 ? o : undefined;
    });
    assert.deepEqual(pending.status?.pending?.map((p) => p.field), ['maxMemory']);
    assert.equal(condition(pending, 'Ready')?.reason, 'RestartRequired');
    await apply(VMM_PATH, vmm('vm-b', { maxMemory: '4Gi', memory: '4Gi' }));
    const reverted = await readyAt('vm-b', 3);
    assert.equal(condition(reverted, 'RestartRequired')?.status, 'False');
    assert.equal(reverted.status?.pending, undefined);
    assert.equal(host.vm('vm-b')?.config?.maxMemory, 4n << 30n);
  } finally {
    await r.stop();
  }
});

test('an out-of-band change on the hypervisor is corrected within one sync interval', async () => {
  const r = await startReplica(env.kubeConfig);
  try {
    await apply(VMM_PATH, vmm('vm-c', { maxMemory: '4Gi', memory: '3Gi' }));
    await readyAt('vm-c', 1);
    host.setLive('vm-c', { memory: 2n << 30n, actual: 2n << 30n });
    const started = Date.now();
    await waitFor('drift corrected', async () => host.vm('vm-c')?.live?.memory === 3n << 30n, 10_000);
    assert.ok(Date.now() - started < 2_000 * 1.1 + 1_000, `corrected after ${Date.now() - started} ms (sync interval 2s)`);
  } finally {
    await r.stop();
  }
});

test('kube-apiserver restarted mid-run: the operator recovers without a restart of its own and loses no update', async () => {
  const r = await startReplica(env.kubeConfig);
  try {
    await apply(VMM_PATH, vmm('vm-d', { maxMemory: '4Gi', memory: '3Gi' }));
    await readyAt('vm-d', 1);
    await env.restartApiServer({ signal: 'SIGKILL' });
    await apply(VMM_PATH, vmm('vm-d', { maxMemory: '4Gi', memory: '2Gi' }));
    const o = await readyAt('vm-d', 2);
    assert.equal(o.status?.observed?.memory, '2Gi');
    assert.equal(host.vm('vm-d')?.live?.memory, 2n << 30n);
  } finally {
    await r.stop();
  }
});

test('two replicas: exactly one leads; stopping it hands over within the lease duration; no step is applied twice', async () => {
  const a = await startReplica(env.kubeConfig, { leaderElect: true, identity: 'replica-a' });
  const b = await startReplica(env.kubeConfig, { leaderElect: true, identity: 'replica-b' });
  try {
    await waitFor('a leader', async () => a.leading || b.leading, 10_000);
    await new Promise((res) => setTimeout(res, 1_000));
    assert.equal(Number(a.leading) + Number(b.leading), 1, 'exactly one leader');
    host.resetCalls();
    await apply(VMM_PATH, vmm('vm-e', { maxMemory: '4Gi', memory: '3Gi' }));
    await readyAt('vm-e', 1);
    const [leader, follower] = a.leading ? [a, b] : [b, a];
    const stoppedAt = Date.now();
    await leader.stop();
    await waitFor('takeover', async () => follower.leading, 8_000);
    assert.ok(Date.now() - stoppedAt <= 4_000 + 1_000, `takeover after ${Date.now() - stoppedAt} ms (lease 4 s)`);
    await apply(VMM_PATH, vmm('vm-e', { maxMemory: '4Gi', memory: '2Gi' }));
    await readyAt('vm-e', 2);
    // Two changes, each one AFFECT_LIVE|AFFECT_CONFIG call on QEMU: exactly two set-memory calls, none repeated.
    const sets = host.callLog.filter((c) => c.op === 'virDomainSetMemoryFlags' && c.vm === 'vm-e');
    assert.deepEqual(sets.map((c) => c.detail), ['3145728KiB AFFECT_LIVE|AFFECT_CONFIG', '2097152KiB AFFECT_LIVE|AFFECT_CONFIG']);
    await follower.stop();
  } finally {
    await a.stop().catch(() => undefined);
    await b.stop().catch(() => undefined);
  }
});

test('bad Hypervisors: unreachable URI and missing Secret give a clear condition and Event, with retries and no crash', async () => {
  const r = await startReplica(env.kubeConfig);
  try {
    await apply(HV_PATH, { apiVersion: 'vmmem.io/v1alpha1', kind: 'Hypervisor', metadata: { name: 'gone', namespace: NS }, spec: { uri: 'sim:///nonexistent/inventory.yaml' } });
    await apply(HV_PATH, { apiVersion: 'vmmem.io/v1alpha1', kind: 'Hypervisor', metadata: { name: 'locked', namespace: NS }, spec: { uri: 'sim:memory:e2e', credentialsSecretRef: { name: 'nope' } } });
    await apply(VMM_PATH, { ...vmm('vm-f', { maxMemory: '4Gi' }), spec: { hypervisorRef: { name: 'gone' }, vm: { name: 'vm-f' }, maxMemory: '4Gi' } });
    await apply(VMM_PATH, { ...vmm('vm-g', { maxMemory: '4Gi' }), spec: { hypervisorRef: { name: 'locked' }, vm: { name: 'vm-g' }, maxMemory: '4Gi' } });
    const f = await waitFor('HypervisorUnreachable', async () => {
      const o = await getVMM('vm-f');
      return condition(o, 'Ready')?.reason === 'HypervisorUnreachable' ? o : undefined;
    });
    assert.match(condition(f, 'Ready')?.message ?? '', /nonexistent/);
    const g = await waitFor('SecretNotFound', async () => {
      const o = await getVMM('vm-g');
      return condition(o, 'Ready')?.reason === 'SecretNotFound' ? o : undefined;
    });
    assert.match(condition(g, 'Ready')?.message ?? '', /Secret "nope" not found/);
    const hv = JSON.parse((await env.request('GET', `${HV_PATH}/gone`)).body) as { status?: { conditions?: Condition[] } };
    assert.equal(hv.status?.conditions?.find((c) => c.type === 'Connected')?.status, 'False');
    // kstatus: a connection being retried is Reconciling=True (InProgress), with the attempt and the
    // next retry, Ready=False and Stalled=False; the attempt count grows with the queue's backoff.
    const hvConditions = async (name: string) => (JSON.parse((await env.request('GET', `${HV_PATH}/${name}`)).body) as { status?: { conditions?: Condition[] } }).status?.conditions ?? [];
    const retrying = await waitFor('gone: Reconciling=True at attempt >= 3', async () => {
      const cs = await hvConditions('gone');
      const rec = cs.find((c) => c.type === 'Reconciling');
      const n = Number(/\(attempt (\d+), next in \d+(?:ms|s|m|h)\)$/.exec(rec?.message ?? '')?.[1]);
      return rec?.status === 'True' && n >= 3 ? cs : undefined;
    });
    const rec = retrying.find((c) => c.type === 'Reconciling');
    assert.equal(rec?.reason, 'HypervisorUnreachable');
    assert.match(rec?.message ?? '', /^retrying: .*nonexistent/);
    assert.equal(retrying.find((c) => c.type === 'Ready')?.status, 'False');
    assert.equal(retrying.find((c) => c.type === 'Stalled')?.status, 'False');
    // Reachable again (a spec change): Reconciling goes False, Ready True.
    await apply(HV_PATH, { apiVersion: 'vmmem.io/v1alpha1', kind: 'Hypervisor', metadata: { name: 'gone', namespace: NS }, spec: { uri: 'sim:memory:e2e' } });
    const healed = await waitFor('gone: connected', async () => {
      const cs = await hvConditions('gone');
      return cs.find((c) => c.type === 'Ready')?.status === 'True' ? cs : undefined;
    });
    assert.equal(healed.find((c) => c.type === 'Reconciling')?.status, 'False');
    type Ev = { reason: string; type: string; regarding: { name: string } };
    const events = async () => (JSON.parse((await env.request('GET', `/apis/events.k8s.io/v1/namespaces/${NS}/events`)).body) as { items: Ev[] }).items;
    await waitFor('Warning event for vm-f', async () => (await events()).some((e) => e.type === 'Warning' && e.reason === 'HypervisorUnreachable' && e.regarding.name === 'vm-f'), 10_000);
    await waitFor('Warning event for vm-g', async () => (await events()).some((e) => e.type === 'Warning' && e.reason === 'SecretNotFound' && e.regarding.name === 'vm-g'), 10_000);
    // Creating the Secret later heals it without a restart.
    await env.request('POST', `/api/v1/namespaces/${NS}/secrets`, { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'nope' }, stringData: { username: 'u', password: 'p4ssw0rd-e2e' } });
    await readyAt('vm-g');
  } finally {
    await r.stop();
  }
});

test('vmmem run (the real CLI process) reconciles against the cluster and stops cleanly on SIGTERM', async () => {
  await apply(HV_PATH, { apiVersion: 'vmmem.io/v1alpha1', kind: 'Hypervisor', metadata: { name: 'file-sim', namespace: NS }, spec: { uri: 'sim:///examples/sim/kvm.yaml' } });
  await apply(VMM_PATH, { ...vmm('web-01', {}), spec: { hypervisorRef: { name: 'file-sim' }, vm: { name: 'web-01' }, maxMemory: '4Gi', memory: '3Gi' } });
  const child = spawn(join(root, 'bin', 'vmmem'), ['run', '--kubeconfig', env.kubeconfigPath, '--namespace', NS, '--allow-sim-hypervisors', '--metrics-bind-address', '127.0.0.1:0', '--health-probe-bind-address', '127.0.0.1:0'], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  try {
    await readyAt('web-01', 1);
    const exited = new Promise<number | null>((res) => child.once('exit', (code) => res(code)));
    child.kill('SIGTERM');
    assert.equal(await exited, 0, out.slice(-2000));
    assert.match(out, /shutting down/);
    assert.doesNotMatch(out, /p4ssw0rd-e2e/, 'no secret in logs');
  } finally {
    child.kill('SIGKILL');
  }
});
