// KubeStore (src/kube/store.ts) against a real kube-apiserver + etcd (test/env/kube.ts): informers
// (add/update/delete, recovery from partitions, stalls, API server and etcd restarts, 410 relists
// with diff), status writes through the subresource (merge patch, optimistic concurrency, 409
// retry), events.k8s.io/v1 Events and Secrets. Needs the binaries built by test/peer/kube/setup.sh;
// fails (never skips) without them.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as k8s from '@kubernetes/client-node';
import { startKube, type KubeEnv } from '../../env/kube.ts';
import { kubeConfigVia, startFaultProxy } from '../../env/proxy.ts';
import type { FaultProxy } from '../../env/proxy.ts';
import { KubeStore } from '../../../src/kube/store.ts';
import { mergePatchFor } from '../../../src/kube/status.ts';
import { truncateUtf8 } from '../../../src/kube/events.ts';
import { KubeApiError } from '../../../src/kube/errors.ts';
import { loadKubeConfig, KubeConfigError } from '../../../src/kube/config.ts';
import { LeaderElector } from '../../../src/kube/leader.ts';
import { OPERATOR_RULES, LEADER_ELECTION_RULES } from '../../../src/kube/rbac.ts';
import type { Logger } from '../../../src/kube/http.ts';
import type { ChangeType, ResourceKind, StoredObject } from '../../../src/controller/ports.ts';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const NS = 'vmmem-adapter';
const GROUP = 'vmmem.io';
const VERSION = 'v1alpha1';
// kube-apiserver 1.37 refuses the harness's --advertise-address=127.0.0.1 with the default (lease)
// endpoint reconciler ("may not be in the loopback range"); no Service endpoints are needed here.
const APISERVER_ARGS = ['--endpoint-reconciler-type=none'];
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------------------------

interface LogLine {
  level: string;
  obj: object;
  msg?: string;
}

function captureLogger(lines: LogLine[]): Logger {
  const at = (level: string) => (obj: object, msg?: string) => {
    lines.push({ level, obj, msg });
    if (process.env.VMMEM_TEST_LOG) console.error(level, msg, JSON.stringify(obj));
  };
  const log: Logger = { info: at('info'), warn: at('warn'), error: at('error'), debug: at('debug'), child: () => log };
  return log;
}

interface Change {
  kind: ResourceKind;
  key: string;
  change: ChangeType;
}

function recorder() {
  const changes: Change[] = [];
  return {
    changes,
    handlers: {
      onChange(kind: ResourceKind, key: { namespace: string; name: string }, change: ChangeType) {
        changes.push({ kind, key: `${key.namespace}/${key.name}`, change });
      },
    },
    has(kind: ResourceKind, name: string, change: ChangeType, ns = NS) {
      return changes.some((c) => c.kind === kind && c.key === `${ns}/${name}` && c.change === change);
    },
  };
}

async function waitFor(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for: ${what}`);
    await sleep(25);
  }
}

function vmm(name: string, maxMemory = '8Gi') {
  return {
    apiVersion: `${GROUP}/${VERSION}`,
    kind: 'VirtualMachineMemory',
    metadata: { name, namespace: NS },
    spec: { hypervisorRef: { name: 'hv' }, vm: { name }, maxMemory },
  };
}

function hypervisor(name: string, uri = 'sim:///tmp/x') {
  return { apiVersion: `${GROUP}/${VERSION}`, kind: 'Hypervisor', metadata: { name, namespace: NS }, spec: { uri } };
}

/**
 * The project's CRDs (crds/), written to a temp dir for installCrds. CEL rules calling
 * `quantity(...).sign()` are left out: kube-apiserver 1.37.2 here rejects them at CRD creation
 * ("found no matching overload for 'sign'"); they are irrelevant to the adapter.
 */
async function projectCrds(dir: string): Promise<string> {
  const out = join(dir, 'adapter-crds');
  await mkdir(out, { recursive: true });
  const strip = (node: unknown): void => {
    if (Array.isArray(node)) return node.forEach(strip);
    if (!node || typeof node !== 'object') return;
    const o = node as Record<string, unknown>;
    // loadAllYaml returns client-node models: the field is x_kubernetes_validations there.
    for (const field of ['x-kubernetes-validations', 'x_kubernetes_validations']) {
      const rules = o[field];
      if (!Array.isArray(rules)) continue;
      const kept = rules.filter((r: { rule?: string }) => !r.rule?.includes('.sign()'));
      if (kept.length) o[field] = kept;
      else delete o[field];
    }
    Object.values(o).forEach(strip);
  };
  for (const f of (await readdir(join(REPO, 'crds'))).filter((f) => f.endsWith('.yaml'))) {
    const docs = k8s.loadAllYaml(await readFile(join(REPO, 'crds', f), 'utf8'));
    docs.forEach(strip);
    await writeFile(join(out, f), docs.map((d) => k8s.dumpYaml(d)).join('---\n'));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------

describe('KubeStore against a real kube-apiserver', { timeout: 120_000 }, () => {
  let env: KubeEnv;
  let custom: k8s.CustomObjectsApi;
  let core: k8s.CoreV1Api;
  let store: KubeStore;
  let rec: ReturnType<typeof recorder>;
  const logs: LogLine[] = [];
  let proxy: FaultProxy;

  const plural = (kind: ResourceKind) => (kind === 'Hypervisor' ? 'hypervisors' : 'virtualmachinememories');
  const create = async (obj: ReturnType<typeof vmm> | ReturnType<typeof hypervisor>) =>
    (await custom.createNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: NS, plural: plural(obj.kind as ResourceKind), body: obj })) as StoredObject;
  const read = async (kind: ResourceKind, name: string) =>
    (await custom.getNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: NS, plural: plural(kind), name })) as StoredObject & {
      metadata: { managedFields?: { manager: string; subresource?: string }[] };
    };
  const patchSpec = async (kind: ResourceKind, name: string, spec: Record<string, unknown>) =>
    (await custom.patchNamespacedCustomObject(
      { group: GROUP, version: VERSION, namespace: NS, plural: plural(kind), name, body: { spec } },
      k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
    )) as StoredObject;
  const remove = (kind: ResourceKind, name: string) =>
    custom.deleteNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: NS, plural: plural(kind), name });
  const truth = async (kind: ResourceKind) => {
    const l = (await custom.listNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: NS, plural: plural(kind) })) as { items: StoredObject[] };
    return l.items.map((o) => `${o.metadata.name}@${o.metadata.resourceVersion}`).sort();
  };
  const cached = (s: KubeStore, kind: ResourceKind) =>
    s
      .list(kind)
      .filter((o) => o.metadata.namespace === NS)
      .map((o) => `${o.metadata.name}@${o.metadata.resourceVersion}`)
      .sort();
  const converged = async (s: KubeStore, kind: ResourceKind) => JSON.stringify(cached(s, kind)) === JSON.stringify(await truth(kind));

  before(async () => {
    env = await startKube({ apiServerArgs: APISERVER_ARGS });
    await env.installCrds(await projectCrds(env.dir));
    custom = env.kubeConfig.makeApiClient(k8s.CustomObjectsApi);
    core = env.kubeConfig.makeApiClient(k8s.CoreV1Api);
    await core.createNamespace({ body: { metadata: { name: NS } } });
    await create(hypervisor('pre-existing'));
    proxy = await startFaultProxy({ port: Number(new URL(env.server).port) });
    rec = recorder();
    store = new KubeStore(kubeConfigVia(env.kubeConfig, proxy.port), captureLogger(logs), {
      requestTimeoutMs: 3000,
      reportingInstance: 'adapter-test',
      eventSeriesFlushMs: 200,
      informer: { minBackoffMs: 50, maxBackoffMs: 1000, idleTimeoutMs: 2500 },
    });
    assert.equal(store.synced, false);
    await store.start(rec.handlers);
  });

  after(async () => {
    await store?.stop();
    await proxy?.close();
    await env?.stop();
  });

  it('start() resolves with the first lists in the cache', () => {
    assert.equal(store.synced, true);
    const hv = store.get('Hypervisor', { namespace: NS, name: 'pre-existing' });
    assert.ok(hv, 'pre-existing Hypervisor is cached');
    assert.equal(hv.kind, 'Hypervisor');
    assert.equal(hv.apiVersion, 'vmmem.io/v1alpha1');
    assert.deepEqual(hv.spec, { uri: 'sim:///tmp/x' });
    assert.ok(rec.has('Hypervisor', 'pre-existing', 'add'));
    assert.deepEqual(store.list('VirtualMachineMemory'), []);
    // get() hands out shared, frozen views (no copy per read): mutating one fails and the cache is intact.
    assert.throws(() => {
      (hv.spec as { uri: string }).uri = 'mutated';
    }, TypeError);
    assert.deepEqual(store.get('Hypervisor', { namespace: NS, name: 'pre-existing' })!.spec, { uri: 'sim:///tmp/x' });
  });

  it('the cache keeps one frozen copy per object, without managedFields or the last-applied annotation', async () => {
    // What `kubectl apply` (client-side) leaves on an object: a full JSON copy in an annotation,
    // next to an annotation of the user's that must stay.
    const obj = vmm('strip-01');
    const lastApplied = JSON.stringify(obj);
    const created = await create({ ...obj, metadata: { ...obj.metadata, annotations: { 'kubectl.kubernetes.io/last-applied-configuration': lastApplied, 'example.com/owner': 'team-a' } } } as ReturnType<typeof vmm>);
    assert.ok((created.metadata as { managedFields?: unknown[] }).managedFields?.length, 'the API server sends managedFields');
    await waitFor('add strip-01', () => store.get('VirtualMachineMemory', { namespace: NS, name: 'strip-01' }) !== undefined);
    const got = store.get('VirtualMachineMemory', { namespace: NS, name: 'strip-01' })!;
    assert.equal((got.metadata as { managedFields?: unknown }).managedFields, undefined);
    assert.deepEqual(got.metadata.annotations, { 'example.com/owner': 'team-a' });
    // get and list hand out the same object: one copy in memory, not one per read.
    assert.equal(store.get('VirtualMachineMemory', { namespace: NS, name: 'strip-01' }), got);
    assert.ok(store.list('VirtualMachineMemory').includes(got));
    assert.ok(Object.isFrozen(got) && Object.isFrozen(got.metadata));
    // The stripped fields were never ours: a status write leaves them alone on the server.
    await store.updateStatus('VirtualMachineMemory', { namespace: NS, name: 'strip-01' }, () => ({ observedGeneration: 1 }));
    const onServer = await read('VirtualMachineMemory', 'strip-01');
    assert.equal(onServer.metadata.annotations?.['kubectl.kubernetes.io/last-applied-configuration'], lastApplied);
    assert.ok(onServer.metadata.managedFields?.length);
    await remove('VirtualMachineMemory', 'strip-01');
  });

  it('requests share connections instead of opening one per request', async () => {
    // client-node 2.x makes a new undici Agent per request; shareConnections (src/kube/http.ts)
    // makes KubeStore reuse one. 40 sequential status writes and Secret reads on one connection
    // pool: a handful of TCP connections (the watches hold theirs), not 40 more.
    await create(vmm('conn-01'));
    await waitFor('add conn-01', () => store.get('VirtualMachineMemory', { namespace: NS, name: 'conn-01' }) !== undefined);
    const before = proxy.accepted;
    for (let i = 0; i < 20; i++) {
      await store.updateStatus('VirtualMachineMemory', { namespace: NS, name: 'conn-01' }, () => ({ observedGeneration: i + 1 }));
      await store.getSecret({ namespace: NS, name: 'no-such-secret' });
    }
    const opened = proxy.accepted - before;
    assert.ok(opened <= 3, `40 requests opened ${opened} connections`);
    await remove('VirtualMachineMemory', 'conn-01');
  });

  it('informer sees add, update and delete', async () => {
    await create(vmm('web-01'));
    await waitFor('add web-01', () => rec.has('VirtualMachineMemory', 'web-01', 'add'));
    const updated = await patchSpec('VirtualMachineMemory', 'web-01', { maxMemory: '16Gi' });
    await waitFor('update web-01', () => store.get('VirtualMachineMemory', { namespace: NS, name: 'web-01' })?.metadata.resourceVersion === updated.metadata.resourceVersion);
    assert.ok(rec.has('VirtualMachineMemory', 'web-01', 'update'));
    assert.equal((store.get('VirtualMachineMemory', { namespace: NS, name: 'web-01' })!.spec as { maxMemory: string }).maxMemory, '16Gi');
    await remove('VirtualMachineMemory', 'web-01');
    await waitFor('delete web-01', () => rec.has('VirtualMachineMemory', 'web-01', 'delete'));
    assert.equal(store.get('VirtualMachineMemory', { namespace: NS, name: 'web-01' }), undefined);
  });

  it('updateStatus writes only status, through the subresource, as a merge patch', async () => {
    const created = await create(vmm('st-01'));
    await waitFor('st-01 cached', () => !!store.get('VirtualMachineMemory', { namespace: NS, name: 'st-01' }));
    await store.updateStatus('VirtualMachineMemory', { namespace: NS, name: 'st-01' }, (fresh) => {
      assert.equal(fresh.metadata.name, 'st-01');
      (fresh.spec as { maxMemory: string }).maxMemory = '1Gi'; // must never be written
      return {
        observedGeneration: 1,
        observed: { powerState: 'Running', maxMemory: '8Gi', memory: '8Gi' },
        lastSyncTime: '2026-01-01T00:00:00Z',
      };
    });
    let now = await read('VirtualMachineMemory', 'st-01');
    assert.deepEqual(now.spec, created.spec, 'spec untouched');
    assert.equal(now.metadata.generation, created.metadata.generation, 'generation not bumped by a status write');
    assert.deepEqual(now.status, { observedGeneration: 1, observed: { powerState: 'Running', maxMemory: '8Gi', memory: '8Gi' }, lastSyncTime: '2026-01-01T00:00:00Z' });
    const mf = now.metadata.managedFields?.find((f) => f.manager === 'vmmem');
    assert.equal(mf?.subresource, 'status', 'written by fieldManager vmmem through /status');

    // Dropped keys are removed (the merge patch sends null), nested objects replaced field-wise.
    await waitFor('status in cache', () => store.get('VirtualMachineMemory', { namespace: NS, name: 'st-01' })?.metadata.resourceVersion === now.metadata.resourceVersion);
    await store.updateStatus('VirtualMachineMemory', { namespace: NS, name: 'st-01' }, (fresh) => {
      assert.equal((fresh.status as { observedGeneration: number }).observedGeneration, 1);
      return { observedGeneration: 1, observed: { powerState: 'ShutOff', maxMemory: '8Gi' } };
    });
    now = await read('VirtualMachineMemory', 'st-01');
    assert.deepEqual(now.status, { observedGeneration: 1, observed: { powerState: 'ShutOff', maxMemory: '8Gi' } });

    // Nothing to change → no write at all (resourceVersion stays).
    await waitFor('status in cache', () => store.get('VirtualMachineMemory', { namespace: NS, name: 'st-01' })?.metadata.resourceVersion === now.metadata.resourceVersion);
    await store.updateStatus('VirtualMachineMemory', { namespace: NS, name: 'st-01' }, (fresh) => fresh.status);
    assert.equal((await read('VirtualMachineMemory', 'st-01')).metadata.resourceVersion, now.metadata.resourceVersion);

    // compute() returning undefined writes nothing; a missing object resolves quietly.
    await store.updateStatus('VirtualMachineMemory', { namespace: NS, name: 'st-01' }, () => undefined);
    let called = false;
    await store.updateStatus('VirtualMachineMemory', { namespace: NS, name: 'no-such' }, () => {
      called = true;
      return {};
    });
    assert.equal(called, false);
  });

  it('a 409 (stale resourceVersion) is retried with a fresh read; retries are bounded', async () => {
    await create(vmm('cf-01'));
    // A second store, synced, then stopped: its cache is frozen, so its first attempt is stale.
    const frozen = new KubeStore(env.kubeConfig, captureLogger([]), { maxStatusAttempts: 5, requestTimeoutMs: 5000 });
    await frozen.start({ onChange() {} });
    await frozen.stop();
    const stale = frozen.get('VirtualMachineMemory', { namespace: NS, name: 'cf-01' })!;
    const bumped = await patchSpec('VirtualMachineMemory', 'cf-01', { maxMemory: '12Gi' });
    assert.notEqual(stale.metadata.resourceVersion, bumped.metadata.resourceVersion);

    const seen: string[] = [];
    await frozen.updateStatus('VirtualMachineMemory', { namespace: NS, name: 'cf-01' }, (fresh) => {
      seen.push(`${fresh.metadata.resourceVersion}:${(fresh.spec as { maxMemory: string }).maxMemory}`);
      return { observedGeneration: fresh.metadata.generation };
    });
    assert.deepEqual(seen, [`${stale.metadata.resourceVersion}:8Gi`, `${bumped.metadata.resourceVersion}:12Gi`], 'compute called again with the fresh object');
    const now = await read('VirtualMachineMemory', 'cf-01');
    assert.deepEqual(now.status, { observedGeneration: 2 });

    // With a single attempt allowed, the conflict surfaces as a KubeApiError with context.
    const once = new KubeStore(env.kubeConfig, captureLogger([]), { maxStatusAttempts: 1 });
    await once.start({ onChange() {} });
    await once.stop();
    await patchSpec('VirtualMachineMemory', 'cf-01', { maxMemory: '10Gi' });
    await assert.rejects(
      once.updateStatus('VirtualMachineMemory', { namespace: NS, name: 'cf-01' }, () => ({ observedGeneration: 3 })),
      (e: unknown) => {
        assert.ok(e instanceof KubeApiError);
        assert.equal(e.code, 409);
        assert.match(e.message, /VirtualMachineMemory vmmem-adapter\/cf-01/);
        assert.match(e.message, /the object has been modified/);
        return true;
      },
    );
  });

  it('records events.k8s.io/v1 Events regarding the object, folding repeats into a series', async () => {
    const obj = await create(vmm('ev-01'));
    await store.recordEvent(obj, 'Warning', 'UnsafeLimit', `limit too low ${'x'.repeat(2000)}`, 'Plan');
    await store.recordEvent(obj, 'Normal', 'Applied', 'memory 8Gi', 'Apply');
    await store.recordEvent(obj, 'Normal', 'Applied', 'memory 8Gi', 'Apply');
    await store.recordEvent(obj, 'Normal', 'Applied', 'memory 8Gi', 'Apply');
    const eventsApi = env.kubeConfig.makeApiClient(k8s.EventsV1Api);
    const list = async () => (await eventsApi.listNamespacedEvent({ namespace: NS })).items.filter((e) => e.regarding?.name === 'ev-01');
    await waitFor('series count 3', async () => (await list()).some((e) => e.reason === 'Applied' && e.series?.count === 3), 5000);
    const evs = await list();
    assert.equal(evs.length, 2, 'two Events: the repeats are one series');
    const warn = evs.find((e) => e.reason === 'UnsafeLimit')!;
    assert.equal(warn.type, 'Warning');
    assert.equal(warn.action, 'Plan');
    assert.equal(warn.reportingController, 'vmmem.io/vmmem');
    assert.equal(warn.reportingInstance, 'adapter-test');
    assert.ok(Buffer.byteLength(warn.note!, 'utf8') <= 1024, 'note truncated to 1 kB');
    assert.match(warn.note!, /^limit too low x+…$/);
    assert.deepEqual(
      { ...warn.regarding },
      {
        apiVersion: 'vmmem.io/v1alpha1',
        kind: 'VirtualMachineMemory',
        name: 'ev-01',
        namespace: NS,
        uid: obj.metadata.uid,
        resourceVersion: obj.metadata.resourceVersion,
      },
    );
    // eventTime is a MicroTime: RFC 3339 with microseconds on the wire.
    const raw = await env.request('GET', `/apis/events.k8s.io/v1/namespaces/${NS}/events/${warn.metadata!.name}`);
    assert.match(JSON.parse(raw.body).eventTime as string, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
    // The Event is also visible as a core/v1 Event (kubectl describe / kubectl get events).
    const coreEvents = await core.listNamespacedEvent({ namespace: NS });
    assert.ok(coreEvents.items.some((e) => e.involvedObject.name === 'ev-01' && e.reason === 'UnsafeLimit'));
  });

  it('getSecret decodes data; 404 is undefined; values are never logged', async () => {
    await core.createNamespacedSecret({
      namespace: NS,
      body: {
        metadata: { name: 'hv-creds' },
        data: { username: Buffer.from('root').toString('base64'), 'tls.key': Buffer.from('-----BEGIN KEY-----\nséc\n').toString('base64') },
        stringData: { password: 'hunter2-super-secret' },
      },
    });
    const s = await store.getSecret({ namespace: NS, name: 'hv-creds' });
    assert.deepEqual(s, { username: 'root', 'tls.key': '-----BEGIN KEY-----\nséc\n', password: 'hunter2-super-secret' });
    assert.equal(await store.getSecret({ namespace: NS, name: 'nope' }), undefined);
    assert.equal(await store.getSecret({ namespace: 'no-such-ns', name: 'nope' }), undefined);
    assert.ok(!JSON.stringify(logs).includes('hunter2'), 'secret value never logged');
  });

  it('getSecret errors carry the object, the call and the API server message (RBAC)', async () => {
    const user = await env.userKubeConfig('nobody');
    const s = new KubeStore(user.kubeConfig, captureLogger([]));
    await assert.rejects(s.getSecret({ namespace: NS, name: 'hv-creds' }), (e: unknown) => {
      assert.ok(e instanceof KubeApiError);
      assert.equal(e.code, 403);
      assert.match(e.message, /^get Secret vmmem-adapter\/hv-creds: HTTP 403 Forbidden: secrets "hv-creds" is forbidden: User "nobody"/);
      return true;
    });
  });

  it('catches up after a partition with a kube-apiserver restart in it (410 → relist → diff)', async () => {
    for (const n of ['p-a', 'p-b', 'p-c', 'p-g']) await create(vmm(n));
    // A second store through the same proxy that never relists because of failures alone: it must
    // resume its watch from its resourceVersion, get 410 Gone (new watch cache), relist and diff.
    const rec2 = recorder();
    const resumer = new KubeStore(kubeConfigVia(env.kubeConfig, proxy.port), captureLogger([]), {
      namespace: NS,
      requestTimeoutMs: 3000,
      informer: { minBackoffMs: 50, maxBackoffMs: 1000, idleTimeoutMs: 2500, relistAfterFailures: 1_000_000 },
    });
    await resumer.start(rec2.handlers);
    await waitFor('p-* cached', () => converged(store, 'VirtualMachineMemory'));
    await waitFor('p-* cached (resumer)', () => converged(resumer, 'VirtualMachineMemory'));
    const before = store.informerStats()!.VirtualMachineMemory;
    const before2 = resumer.informerStats()!.VirtualMachineMemory;
    rec.changes.length = 0;
    rec2.changes.length = 0;

    proxy.setMode('refuse'); // the store is cut off; the admin client is not
    await create(vmm('p-d'));
    await patchSpec('VirtualMachineMemory', 'p-a', { maxMemory: '9Gi' });
    await remove('VirtualMachineMemory', 'p-b');
    await env.restartApiServer(); // new watch cache: the store's resourceVersion is now too old
    await create(vmm('p-e'));
    await remove('VirtualMachineMemory', 'p-c');
    await create(hypervisor('p-hv'));
    const oldUid = store.get('VirtualMachineMemory', { namespace: NS, name: 'p-g' })!.metadata.uid;
    await remove('VirtualMachineMemory', 'p-g'); // deleted and re-created under the same name
    const newUid = (await create(vmm('p-g', '4Gi'))).metadata.uid;
    await sleep(300);
    assert.equal(store.get('VirtualMachineMemory', { namespace: NS, name: 'p-d' }), undefined, 'really cut off');
    proxy.setMode('open');

    await waitFor('VMMs converged', () => converged(store, 'VirtualMachineMemory'), 20_000);
    await waitFor('Hypervisors converged', () => converged(store, 'Hypervisor'), 20_000);
    for (const [name, change] of [['p-d', 'add'], ['p-a', 'update'], ['p-b', 'delete'], ['p-e', 'add'], ['p-c', 'delete']] as const) {
      assert.ok(rec.has('VirtualMachineMemory', name, change), `${change} ${name} emitted`);
    }
    assert.ok(rec.has('Hypervisor', 'p-hv', 'add'));
    assert.notEqual(oldUid, newUid);
    assert.equal(store.get('VirtualMachineMemory', { namespace: NS, name: 'p-g' })!.metadata.uid, newUid);
    const pg = rec.changes.filter((c) => c.key === `${NS}/p-g`).map((c) => c.change);
    assert.deepEqual(pg, ['delete', 'add'], 'a re-created object is announced as delete + add');
    const st = store.informerStats()!.VirtualMachineMemory;
    assert.ok(st.lists > before.lists, `relisted (${JSON.stringify(before)} → ${JSON.stringify(st)})`);
    await waitFor('resumer converged', () => converged(resumer, 'VirtualMachineMemory'), 20_000);
    for (const [name, change] of [['p-d', 'add'], ['p-a', 'update'], ['p-b', 'delete'], ['p-e', 'add'], ['p-c', 'delete']] as const) {
      assert.ok(rec2.has('VirtualMachineMemory', name, change), `${change} ${name} emitted (resumer)`);
    }
    const st2 = resumer.informerStats()!.VirtualMachineMemory;
    assert.ok(st2.gone > before2.gone, `resumer relisted because of 410 Gone (${JSON.stringify(before2)} → ${JSON.stringify(st2)})`);
    await resumer.stop();
    assert.equal(store.synced, true);

    // And the watch works again afterwards.
    await create(vmm('p-f'));
    await waitFor('add p-f', () => rec.has('VirtualMachineMemory', 'p-f', 'add'));
  });

  it('survives kube-apiserver restarts mid-watch with changes right after', async () => {
    rec.changes.length = 0;
    await env.stopApiServer();
    await sleep(500);
    await env.startApiServer();
    await create(vmm('r-a'));
    await patchSpec('VirtualMachineMemory', 'p-a', { maxMemory: '10Gi' });
    await remove('VirtualMachineMemory', 'p-d');
    await waitFor('converged after restart', () => converged(store, 'VirtualMachineMemory'), 20_000);
    assert.ok(rec.has('VirtualMachineMemory', 'r-a', 'add'));
    assert.ok(rec.has('VirtualMachineMemory', 'p-a', 'update'));
    assert.ok(rec.has('VirtualMachineMemory', 'p-d', 'delete'));

    // SIGKILL this time (no graceful close of the watch stream).
    rec.changes.length = 0;
    await env.restartApiServer({ signal: 'SIGKILL' });
    await create(vmm('r-b'));
    await remove('VirtualMachineMemory', 'r-a');
    await waitFor('converged after SIGKILL restart', () => converged(store, 'VirtualMachineMemory'), 20_000);
    assert.ok(rec.has('VirtualMachineMemory', 'r-b', 'add'));
    assert.ok(rec.has('VirtualMachineMemory', 'r-a', 'delete'));
  });

  it('survives an etcd restart', async () => {
    rec.changes.length = 0;
    await env.restartEtcd({ signal: 'SIGKILL' });
    await waitFor('API server writes again', async () => {
      try {
        await create(vmm('e-a'));
        return true;
      } catch {
        return false;
      }
    }, 30_000);
    await patchSpec('VirtualMachineMemory', 'r-b', { maxMemory: '11Gi' });
    await waitFor('converged after etcd restart', () => converged(store, 'VirtualMachineMemory'), 20_000);
    assert.ok(rec.has('VirtualMachineMemory', 'e-a', 'add'));
    assert.ok(rec.has('VirtualMachineMemory', 'r-b', 'update'));
  });

  it('replaces a stalled watch (bytes silently stop) after the idle timeout, losing nothing', async () => {
    // A live watch first: right after the etcd restart above the informer may be between
    // watches (backing off), and a watch opened after the stall ends sees everything without
    // the idle timeout ever firing — which is not what this test is about.
    await create(vmm('s-live'));
    await waitFor('a live watch delivers', () => rec.has('VirtualMachineMemory', 's-live', 'add'), 20_000);
    rec.changes.length = 0;
    const before = store.informerStats()!.VirtualMachineMemory;
    proxy.setMode('blackhole'); // connections stay open, nothing arrives: the silent stall
    await create(vmm('s-a'));
    await remove('VirtualMachineMemory', 'e-a');
    await sleep(500);
    assert.ok(!rec.has('VirtualMachineMemory', 's-a', 'add'), 'stalled');
    proxy.setMode('open'); // new connections work; the stalled ones stay dead
    await waitFor('converged after stall', () => converged(store, 'VirtualMachineMemory'), 20_000);
    assert.ok(rec.has('VirtualMachineMemory', 's-a', 'add'));
    assert.ok(rec.has('VirtualMachineMemory', 'e-a', 'delete'));
    const st = store.informerStats()!.VirtualMachineMemory;
    assert.ok(st.idleTimeouts > before.idleTimeouts, 'detected by the idle timeout');
  });

  it('re-watches when the server ends the watch (timeoutSeconds) without losing updates', async () => {
    const r = recorder();
    const s = new KubeStore(env.kubeConfig, captureLogger([]), { namespace: NS, informer: { watchTimeoutSeconds: 1 } });
    await s.start(r.handlers);
    try {
      await sleep(1500);
      await create(vmm('t-a'));
      await sleep(1200);
      await remove('VirtualMachineMemory', 't-a');
      await waitFor('t-a deleted', () => r.has('VirtualMachineMemory', 't-a', 'delete'));
      assert.ok(r.has('VirtualMachineMemory', 't-a', 'add'));
      assert.ok(s.informerStats()!.VirtualMachineMemory.watches >= 3, 'watches were renewed');
      assert.ok(await converged(s, 'VirtualMachineMemory'));
      // namespace-scoped: nothing from other namespaces
      assert.ok(s.list('Hypervisor').every((o) => o.metadata.namespace === NS));
    } finally {
      await s.stop();
    }
    assert.equal(s.synced, false, 'not synced once stopped');
  });

  it('works with exactly the documented RBAC (src/kube/rbac.ts) and nothing more', async () => {
    const rbac = env.kubeConfig.makeApiClient(k8s.RbacAuthorizationV1Api);
    const user = 'vmmem-operator';
    const leaseNs = 'vmmem-system';
    await core.createNamespace({ body: { metadata: { name: leaseNs } } });
    await rbac.createClusterRole({ body: { metadata: { name: user }, rules: OPERATOR_RULES.map((r) => ({ ...r })) } });
    await rbac.createClusterRoleBinding({
      body: { metadata: { name: user }, roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: user }, subjects: [{ kind: 'User', name: user, apiGroup: 'rbac.authorization.k8s.io' }] },
    });
    await rbac.createNamespacedRole({ namespace: leaseNs, body: { metadata: { name: 'vmmem-leader' }, rules: LEADER_ELECTION_RULES.map((r) => ({ ...r })) } });
    await rbac.createNamespacedRoleBinding({
      namespace: leaseNs,
      body: { metadata: { name: 'vmmem-leader' }, roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'vmmem-leader' }, subjects: [{ kind: 'User', name: user, apiGroup: 'rbac.authorization.k8s.io' }] },
    });
    const kc = (await env.userKubeConfig(user)).kubeConfig;
    const lines: LogLine[] = [];
    const s = new KubeStore(kc, captureLogger(lines), { eventSeriesFlushMs: 100, informer: { minBackoffMs: 50, maxBackoffMs: 500 } });
    const r = recorder();
    await s.start(r.handlers); // retries until the RBAC cache has the new bindings
    lines.length = 0; // from here on: no warning at all
    try {
      const obj = await create(vmm('rbac-01'));
      await waitFor('rbac-01 cached', () => !!s.get('VirtualMachineMemory', { namespace: NS, name: 'rbac-01' }));
      await s.updateStatus('VirtualMachineMemory', { namespace: NS, name: 'rbac-01' }, () => ({ observedGeneration: 1 }));
      assert.deepEqual((await read('VirtualMachineMemory', 'rbac-01')).status, { observedGeneration: 1 });
      await s.updateStatus('VirtualMachineMemory', { namespace: NS, name: 'not-cached' }, () => ({})); // GET path
      await s.recordEvent(obj, 'Normal', 'RbacCheck', 'same note', 'Test');
      await s.recordEvent(obj, 'Normal', 'RbacCheck', 'same note', 'Test'); // series → patch
      const eventsApi = env.kubeConfig.makeApiClient(k8s.EventsV1Api);
      await waitFor('series patched', async () => (await eventsApi.listNamespacedEvent({ namespace: NS })).items.some((e) => e.reason === 'RbacCheck' && e.series?.count === 2), 5000);
      assert.deepEqual(await s.getSecret({ namespace: NS, name: 'hv-creds' }), { username: 'root', 'tls.key': '-----BEGIN KEY-----\nséc\n', password: 'hunter2-super-secret' });
      // Least privilege: no listing of Secrets.
      await assert.rejects(kc.makeApiClient(k8s.CoreV1Api).listNamespacedSecret({ namespace: NS }), (e: unknown) => e instanceof k8s.ApiException && e.code === 403);

      const el = new LeaderElector(kc, { namespace: leaseNs, name: 'vmmem-leader', logger: captureLogger(lines), leaseDurationMs: 3000, renewDeadlineMs: 2000, retryPeriodMs: 250 });
      const done = el.run({ onStartedLeading() {}, onStoppedLeading() {} });
      await waitFor('leads', () => el.isLeader);
      await sleep(600); // a couple of renewals (get + update)
      assert.ok(el.isLeader);
      await el.release();
      await done;
      const lease = await env.kubeConfig.makeApiClient(k8s.CoordinationV1Api).readNamespacedLease({ namespace: leaseNs, name: 'vmmem-leader' });
      assert.equal(lease.spec?.holderIdentity, undefined, 'released');
      const problems = lines.filter((l) => l.level === 'warn' || l.level === 'error');
      assert.deepEqual(problems, [], 'no warning or error with these rules');
    } finally {
      await s.stop();
    }
  });

  it('stop() during a never-ending first list rejects start()', async () => {
    const p = await startFaultProxy({ port: Number(new URL(env.server).port) });
    p.setMode('refuse');
    const s = new KubeStore(kubeConfigVia(env.kubeConfig, p.port), captureLogger([]), { informer: { minBackoffMs: 50, maxBackoffMs: 200 } });
    const started = s.start({ onChange() {} });
    await sleep(300);
    assert.equal(s.synced, false);
    // Watch for the rejection before stopping: start() rejects while stop() is awaited, and a
    // rejection with no handler yet is reported as the test's failure.
    const rejected = assert.rejects(started, /stopped before its first list/);
    await s.stop();
    await rejected;
    await p.close();
  });

  describe('loadKubeConfig', () => {
    let tmp: string;
    const works = async (kc: k8s.KubeConfig) => {
      const list = await kc.makeApiClient(k8s.CoreV1Api).listNamespace();
      return list.items.some((n) => n.metadata?.name === 'default');
    };
    before(async () => {
      tmp = join(env.dir, 'config-test');
      await mkdir(join(tmp, 'sa'), { recursive: true });
      await mkdir(join(tmp, 'home', '.kube'), { recursive: true });
    });
    it('--kubeconfig wins over everything', async () => {
      const l = loadKubeConfig({ kubeconfig: env.kubeconfigPath, env: { KUBECONFIG: '/nope', KUBERNETES_SERVICE_HOST: 'x' } });
      assert.equal(l.source, 'flag');
      assert.ok(await works(l.kubeConfig));
      assert.throws(() => loadKubeConfig({ kubeconfig: join(tmp, 'missing') }), (e: unknown) => e instanceof KubeConfigError && /--kubeconfig .*missing: no such file/.test(e.message));
    });

    it('KUBECONFIG: a path list, missing entries skipped; all missing is an error', async () => {
      const l = loadKubeConfig({ env: { KUBECONFIG: `${join(tmp, 'missing')}:${env.kubeconfigPath}` } });
      assert.equal(l.source, 'env');
      assert.equal(l.from, env.kubeconfigPath);
      assert.ok(await works(l.kubeConfig));
      assert.throws(() => loadKubeConfig({ env: { KUBECONFIG: join(tmp, 'missing') } }), /KUBECONFIG=.*none of these files exists/);
      await writeFile(join(tmp, 'bad'), 'apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n');
      assert.throws(() => loadKubeConfig({ env: { KUBECONFIG: join(tmp, 'bad') } }), /no current-context/);
    });

    it('in-cluster: service account token (re-read from its file) and namespace', async () => {
      const sa = join(tmp, 'sa');
      await writeFile(join(sa, 'token'), env.adminToken);
      await writeFile(join(sa, 'ca.crt'), await readFile(env.certs.caCert));
      await writeFile(join(sa, 'namespace'), 'vmmem-system\n');
      const port = new URL(env.server).port;
      const l = loadKubeConfig({ env: { KUBERNETES_SERVICE_HOST: '127.0.0.1', KUBERNETES_SERVICE_PORT: port }, serviceAccountDir: sa });
      assert.equal(l.source, 'in-cluster');
      assert.equal(l.from, `https://127.0.0.1:${port}`);
      assert.equal(l.namespace, 'vmmem-system');
      assert.ok(await works(l.kubeConfig));
      assert.throws(
        () => loadKubeConfig({ env: { KUBERNETES_SERVICE_HOST: '127.0.0.1', KUBERNETES_SERVICE_PORT: port }, serviceAccountDir: join(tmp, 'nosa') }),
        /in-cluster config: .*token is missing/,
      );
    });

    it('~/.kube/config last; nothing at all is a clear error', async () => {
      const home = join(tmp, 'home');
      assert.throws(() => loadKubeConfig({ env: {}, home }), /no Kubernetes configuration: no --kubeconfig, KUBECONFIG is unset, not in a cluster/);
      await writeFile(join(home, '.kube', 'config'), await readFile(env.kubeconfigPath));
      const l = loadKubeConfig({ env: {}, home });
      assert.equal(l.source, 'home');
      assert.ok(await works(l.kubeConfig));
    });
  });
});

describe('merge patch and note helpers', () => {
  it('mergePatchFor nulls removed keys, recurses into objects, replaces arrays', () => {
    assert.equal(mergePatchFor({ a: 1 }, { a: 1 }), undefined);
    assert.deepEqual(mergePatchFor({ a: 1, b: { c: 1, d: 2 }, e: [1] }, { a: 2, b: { c: 1 }, e: [1, 2] }), { a: 2, b: { d: null }, e: [1, 2] });
    assert.deepEqual(mergePatchFor({}, { x: { y: 1 } }), { x: { y: 1 } });
    assert.deepEqual(mergePatchFor({ x: { y: 1 } }, {}), { x: null });
  });
  it('truncateUtf8 cuts on a character boundary', () => {
    assert.equal(truncateUtf8('abc', 10), 'abc');
    const t = truncateUtf8('é'.repeat(600), 1024);
    assert.ok(Buffer.byteLength(t) <= 1024);
    assert.ok(t.endsWith('…'));
    assert.ok(!t.includes('\uFFFD'));
  });
});
