/**
 * The reconcilers over an in-memory ObjectStore (our own interface) and the
 * sim hypervisor. What Kubernetes itself does is tested in test/e2e against
 * the real API server; this file pins the status semantics of DESIGN §3–§4.
 */
import { test, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import type { Condition } from '../../src/api/conditions.ts';
import { silentLogger } from '../../src/controller/log.ts';
import { HypervisorPool } from '../../src/controller/pool.ts';
import type { ChangeHandlers, EventType, ObjectKey, ObjectStore, ResourceKind, StoredObject } from '../../src/controller/ports.ts';
import { HostViews } from '../../src/controller/hostview.ts';
import { HypervisorReconciler } from '../../src/controller/hypervisor-reconciler.ts';
import { RetryableError } from '../../src/controller/reconcile-support.ts';
import { TerminalError } from '../../src/controller/runner.ts';
import { VMMIndex } from '../../src/controller/vmm-index.ts';
import { VMMReconciler } from '../../src/controller/vmm-reconciler.ts';
import { createSimHost, resetSimHosts } from '../../src/drivers/sim/index.ts';
import type { SimHost } from '../../src/drivers/sim/index.ts';

class MemoryStore implements ObjectStore {
  objects = new Map<string, StoredObject>();
  secrets = new Map<string, Record<string, string>>();
  statusWrites: { key: string; status: Record<string, unknown> }[] = [];
  events: { object: string; type: EventType; reason: string; note: string }[] = [];
  synced = true;
  async start(_h: ChangeHandlers) {}
  async stop() {}
  private id(kind: string, key: ObjectKey) {
    return `${kind}/${key.namespace}/${key.name}`;
  }
  put(obj: Omit<StoredObject, 'metadata'> & { metadata: Partial<StoredObject['metadata']> & { name: string } }) {
    const key = this.id(obj.kind, { namespace: obj.metadata.namespace ?? 'default', name: obj.metadata.name });
    const old = this.objects.get(key);
    const generation = old ? (JSON.stringify(old.spec) === JSON.stringify(obj.spec) ? old.metadata.generation : (old.metadata.generation ?? 1) + 1) : 1;
    this.objects.set(key, {
      ...obj,
      metadata: { namespace: 'default', creationTimestamp: old?.metadata.creationTimestamp ?? new Date(Date.now() + this.objects.size).toISOString(), ...obj.metadata, generation },
      ...(old?.status ? { status: old.status } : {}),
    } as StoredObject);
  }
  delete(kind: ResourceKind, name: string) {
    this.objects.delete(this.id(kind, { namespace: 'default', name }));
  }
  get(kind: ResourceKind, key: ObjectKey) {
    const o = this.objects.get(this.id(kind, key));
    return o ? structuredClone(o) : undefined;
  }
  list(kind: ResourceKind) {
    return [...this.objects.values()].filter((o) => o.kind === kind).map((o) => structuredClone(o));
  }
  async getSecret(key: ObjectKey) {
    return this.secrets.get(`${key.namespace}/${key.name}`);
  }
  async updateStatus(kind: ResourceKind, key: ObjectKey, compute: (fresh: StoredObject) => Record<string, unknown> | undefined) {
    const o = this.objects.get(this.id(kind, key));
    if (!o) return;
    const status = compute(structuredClone(o));
    if (status === undefined) return;
    o.status = structuredClone(status);
    this.statusWrites.push({ key: this.id(kind, key), status: structuredClone(status) });
  }
  async recordEvent(obj: StoredObject, type: EventType, reason: string, note: string) {
    this.events.push({ object: obj.metadata.name, type, reason, note });
  }
}

let store: MemoryStore;
let reconciler: VMMReconciler;
let hypervisors: HypervisorReconciler;
let resynced: string[] = [];
let host: SimHost;
let clock = 0;

const HV = 'sim-a';

function vmm(name: string, spec: Record<string, unknown>) {
  store.put({ apiVersion: 'vmmem.io/v1alpha1', kind: 'VirtualMachineMemory', metadata: { name }, spec: { hypervisorRef: { name: HV }, vm: { name }, ...spec } });
}

function cond(name: string, type: string): Condition | undefined {
  return (store.get('VirtualMachineMemory', { namespace: 'default', name })?.status?.conditions as Condition[] | undefined)?.find((c) => c.type === type);
}

function status(name: string) {
  return store.get('VirtualMachineMemory', { namespace: 'default', name })?.status as Record<string, unknown> & { pending?: { field: string; reason: string }[]; observed?: Record<string, string> };
}

const reconcile = (name: string) => reconciler.reconcile({ namespace: 'default', name });
/** The host resync the Hypervisor reconciler runs every syncInterval: the VMM keys it would queue. */
async function resync(): Promise<string[]> {
  resynced = [];
  await hypervisors.reconcile({ namespace: 'default', name: HV });
  return resynced;
}
const totalCalls = () => Object.values(host.calls).reduce((n, c) => n + c, 0);

beforeEach(() => {
  resetSimHosts();
  clock = 1_000_000;
  host = createSimHost(
    {
      type: 'qemu',
      vms: [
        { name: 'web', type: 'qemu', powerState: 'Running', maxMemory: '4Gi', memory: '4Gi', balloon: 'responsive', balloonDelay: '0ms' },
        { name: 'stuck', type: 'qemu', powerState: 'Running', maxMemory: '4Gi', memory: '4Gi', balloon: 'unresponsive' },
        { name: 'off', type: 'qemu', powerState: 'ShutOff', maxMemory: '2Gi', memory: '2Gi' },
      ],
    },
    'reconciler-test',
  );
  store = new MemoryStore();
  store.put({ apiVersion: 'vmmem.io/v1alpha1', kind: 'Hypervisor', metadata: { name: HV }, spec: { uri: 'sim:memory:reconciler-test', syncInterval: '1m', balloonTimeout: '2m' } });
  const log = silentLogger();
  const pool = new HypervisorPool({ store, log });
  const views = new HostViews({ now: () => clock });
  const index = new VMMIndex();
  const indexed = () => {
    for (const o of store.list('VirtualMachineMemory')) index.upsert(o);
  };
  // As the operator wires it: the conflict check reads the VMMs of one Hypervisor from the index.
  reconciler = new VMMReconciler({ store, pool, views, log, now: () => clock, jitter: 0, vmmsOfHypervisor: (hv) => (indexed(), index.idsOfHypervisor(hv)) });
  hypervisors = new HypervisorReconciler({
    store,
    pool,
    views,
    log,
    now: () => clock,
    jitter: 0,
    vmmsOf: (hv) => (indexed(), index.ofHypervisor(hv)),
    refOf: (k) => index.refOf(k),
    lastSeen: (k) => reconciler.lastSeen(k),
    onResync: (_hv, changed) => resynced.push(...changed),
  });
});

test('first sight writes Ready=Unknown + Reconciling=True + observedGeneration in one update, then converges', async () => {
  vmm('web', { maxMemory: '4Gi', memory: '3Gi' });
  await reconcile('web');
  const first = store.statusWrites[0]?.status as { observedGeneration: number; conditions: Condition[] };
  assert.equal(first.observedGeneration, 1);
  assert.deepEqual(first.conditions.map((c) => [c.type, c.status, c.observedGeneration]), [['Ready', 'Unknown', 1], ['Reconciling', 'True', 1]]);
  // The responsive balloon may need a pass to settle.
  for (let i = 0; i < 5 && cond('web', 'Ready')?.status !== 'True'; i++) {
    await new Promise((r) => setTimeout(r, 20));
    await reconcile('web');
  }
  assert.equal(cond('web', 'Ready')?.status, 'True');
  assert.equal(cond('web', 'Ready')?.reason, 'Converged');
  assert.equal(status('web').observed?.memory, '3Gi');
  assert.equal(host.vm('web')?.config?.memory, 3n << 30n);
  assert.ok(store.events.some((e) => e.reason === 'Applied' && /memory live 4Gi → 3Gi/.test(e.note)));
});

test('a converged VM costs nothing on the next sync: not queued by the host resync, and a reconcile makes no call and no write', async () => {
  vmm('web', { maxMemory: '4Gi' });
  await reconcile('web');
  const before = cond('web', 'Ready');
  clock += 60_000;
  assert.deepEqual(await resync(), [], 'the VM looks as the last reconcile left it');
  const writes = store.statusWrites.length;
  const calls = totalCalls();
  const result = await reconcile('web');
  assert.equal(totalCalls(), calls, `no hypervisor call, got ${JSON.stringify(host.calls)}`);
  assert.equal(store.statusWrites.length, writes, 'no status write');
  assert.equal(cond('web', 'Ready')?.lastTransitionTime, before?.lastTransitionTime);
  assert.deepEqual(result, {}, 'no per-VMM timer: the host resync finds drift');
});

test('host resync: one observeAll for the host, and only the VMMs whose VM changed are queued', async () => {
  vmm('web', { maxMemory: '4Gi', memory: '3Gi' });
  vmm('off', { maxMemory: '2Gi' });
  for (let i = 0; i < 5 && cond('web', 'Ready')?.status !== 'True'; i++) {
    await reconcile('web');
    await new Promise((r) => setTimeout(r, 20));
  }
  await reconcile('off');
  assert.equal(cond('web', 'Ready')?.status, 'True');
  host.setLive('web', { memory: 2n << 30n, actual: 2n << 30n });
  clock += 60_000;
  const lists = host.calls.virConnectGetAllDomainStats ?? 0;
  assert.deepEqual(await resync(), ['default/web']);
  assert.equal(host.calls.virConnectGetAllDomainStats, lists + 1, 'one bulk call for the host');
  const calls = totalCalls();
  await reconcile('off');
  assert.equal(totalCalls(), calls, 'the unchanged VMM makes no call');
});

test('stale-view guard: a plan made from the host view is re-made from a fresh read before anything is applied', async () => {
  vmm('web', { maxMemory: '4Gi', memory: '4Gi' });
  await reconcile('web');
  // Out of band, unseen by the view: the live balloon target is already what the next spec asks.
  host.setLive('web', { memory: 3n << 30n, actual: 3n << 30n });
  store.events = [];
  vmm('web', { maxMemory: '4Gi', memory: '3Gi' });
  await reconcile('web');
  const applied = store.events.filter((e) => e.reason === 'Applied').map((e) => e.note).join('; ');
  assert.doesNotMatch(applied, /memory live/, 'the live target was not set again from the stale snapshot');
  assert.equal(status('web').observed?.memory, '3Gi');
  assert.equal(host.vm('web')?.live?.memory, 3n << 30n);
});

test('spec.suspend: no hypervisor call, Ready=False reason Suspended; resuming converges', async () => {
  vmm('web', { maxMemory: '4Gi', memory: '3Gi', suspend: true });
  await reconcile('web');
  assert.equal(Object.keys(host.calls).length, 0, `no call at all, got ${JSON.stringify(host.calls)}`);
  assert.equal(cond('web', 'Ready')?.status, 'False');
  assert.equal(cond('web', 'Ready')?.reason, 'Suspended');
  assert.equal(cond('web', 'Stalled')?.status, 'False');
  assert.equal(host.vm('web')?.live?.memory, 4n << 30n);
  vmm('web', { maxMemory: '4Gi', memory: '3Gi', suspend: false });
  await reconcile('web');
  assert.equal(host.vm('web')?.live?.memory, 3n << 30n);
  assert.notEqual(cond('web', 'Ready')?.reason, 'Suspended');
});

test('the reconcile-request annotation forces a fresh pass, recorded as status.lastHandledReconcileAt', async () => {
  vmm('web', { maxMemory: '4Gi' });
  await reconcile('web');
  const calls = totalCalls();
  await reconcile('web');
  assert.equal(totalCalls(), calls, 'steady: skipped');
  const spec = store.get('VirtualMachineMemory', { namespace: 'default', name: 'web' })?.spec as Record<string, unknown>;
  store.put({ apiVersion: 'vmmem.io/v1alpha1', kind: 'VirtualMachineMemory', metadata: { name: 'web', annotations: { 'vmmem.io/reconcile-requested-at': '2026-12-04T13:00:00Z' } }, spec });
  await reconcile('web');
  assert.ok(totalCalls() > calls, 'the requested pass read the VM');
  assert.equal(status('web').lastHandledReconcileAt, '2026-12-04T13:00:00Z');
  const after = totalCalls();
  await reconcile('web');
  assert.equal(totalCalls(), after, 'handled: the next pass is a no-op again');
  assert.equal(status('web').lastHandledReconcileAt, '2026-12-04T13:00:00Z');
});

test('growing maxMemory of a running QEMU VM: config step, RestartRequired listing the field; revert clears it', async () => {
  vmm('web', { maxMemory: '8Gi', memory: '4Gi' });
  await reconcile('web');
  assert.equal(cond('web', 'RestartRequired')?.status, 'True');
  assert.equal(cond('web', 'Ready')?.status, 'False');
  assert.equal(cond('web', 'Ready')?.reason, 'RestartRequired');
  assert.deepEqual(status('web').pending?.map((p) => [p.field, p.reason]), [['maxMemory', 'RestartRequired']]);
  assert.equal(host.vm('web')?.config?.maxMemory, 8n << 30n);
  assert.equal(host.vm('web')?.live?.maxMemory, 4n << 30n);

  vmm('web', { maxMemory: '4Gi', memory: '4Gi' }); // revert
  await reconcile('web');
  assert.equal(cond('web', 'RestartRequired')?.status, 'False');
  assert.equal(cond('web', 'Ready')?.status, 'True');
  assert.equal(status('web').pending, undefined);
  assert.equal(host.vm('web')?.config?.maxMemory, 4n << 30n, 'the staged config was reverted too');
  assert.equal(cond('web', 'Ready')?.observedGeneration, 2);
});

test('the restart that makes a staged maxMemory effective clears RestartRequired', async () => {
  vmm('web', { maxMemory: '8Gi', memory: '4Gi' });
  await reconcile('web');
  assert.equal(cond('web', 'RestartRequired')?.status, 'True');
  host.restart('web');
  clock += 60_000;
  assert.deepEqual(await resync(), ['default/web'], 'the restart shows in the host re-list');
  await reconcile('web');
  assert.equal(cond('web', 'RestartRequired')?.status, 'False');
  assert.equal(status('web').observed?.maxMemory, '8Gi');
});

test('an out-of-band change is corrected at the next sync', async () => {
  vmm('web', { maxMemory: '4Gi', memory: '3Gi' });
  await reconcile('web');
  host.setLive('web', { memory: 2n << 30n, actual: 2n << 30n });
  clock += 60_000;
  assert.deepEqual(await resync(), ['default/web']);
  await reconcile('web');
  assert.equal(host.vm('web')?.live?.memory, 3n << 30n);
});

test('an unresponsive balloon is BalloonInflating, then Stalled BalloonUnresponsive after balloonTimeout', async () => {
  vmm('stuck', { maxMemory: '4Gi', memory: '2Gi' });
  const r = await reconcile('stuck');
  assert.equal(cond('stuck', 'Reconciling')?.reason, 'BalloonInflating');
  assert.ok((r.requeueAfter ?? Infinity) <= 1000, 'polls the balloon');
  clock += 121_000;
  await reconcile('stuck');
  assert.equal(cond('stuck', 'Stalled')?.status, 'True');
  assert.equal(cond('stuck', 'Stalled')?.reason, 'BalloonUnresponsive');
  assert.match(cond('stuck', 'Stalled')?.message ?? '', /did not reach 2Gi/);
});

test('a shut-off VM whose config holds the desired values is Ready', async () => {
  vmm('off', { maxMemory: '3Gi' });
  await reconcile('off');
  assert.equal(cond('off', 'Ready')?.status, 'True');
  assert.equal(host.vm('off')?.config?.maxMemory, 3n << 30n);
});

test('an invalid spec is Stalled InvalidSpec naming the field, with no hypervisor call', async () => {
  vmm('web', { maxMemory: '4Gi', memory: '8Gi' });
  await assert.rejects(reconcile('web'), TerminalError, 'not retried: the user must change the spec');
  assert.equal(cond('web', 'Stalled')?.status, 'True');
  assert.equal(cond('web', 'Stalled')?.reason, 'InvalidSpec');
  assert.match(cond('web', 'Stalled')?.message ?? '', /spec\.memory/);
  assert.equal(Object.keys(host.calls).length, 0, `no call at all, got ${JSON.stringify(host.calls)}`);
});

test('unsupported field: Stalled Unsupported while the other fields are still applied', async () => {
  vmm('web', { maxMemory: '4Gi', memory: '3Gi', reservation: '1Gi' });
  await reconcile('web');
  assert.equal(cond('web', 'Stalled')?.reason, 'Unsupported');
  assert.match(cond('web', 'Stalled')?.message ?? '', /reservation/);
  assert.equal(host.vm('web')?.live?.memory, 3n << 30n);
});

test('two VMMs on one VM: the older keeps it, the newer is Stalled Conflict until the older is deleted', async () => {
  vmm('web', { maxMemory: '4Gi', memory: '3Gi' });
  store.put({ apiVersion: 'vmmem.io/v1alpha1', kind: 'VirtualMachineMemory', metadata: { name: 'web-dup' }, spec: { hypervisorRef: { name: HV }, vm: { name: 'web' }, maxMemory: '4Gi', memory: '2Gi' } });
  await reconcile('web');
  await assert.rejects(reconcile('web-dup'), TerminalError);
  assert.equal(cond('web-dup', 'Stalled')?.reason, 'Conflict');
  assert.equal(host.vm('web')?.config?.memory, 3n << 30n, 'the newer one changed nothing');
  store.delete('VirtualMachineMemory', 'web');
  await reconcile('web-dup');
  assert.notEqual(cond('web-dup', 'Stalled')?.reason, 'Conflict');
  assert.equal(host.vm('web')?.config?.memory, 2n << 30n);
});

test('missing Hypervisor, missing Secret and unknown VM each get their own reason and an Event', async () => {
  store.put({ apiVersion: 'vmmem.io/v1alpha1', kind: 'VirtualMachineMemory', metadata: { name: 'orphan' }, spec: { hypervisorRef: { name: 'nope' }, vm: { name: 'web' }, maxMemory: '4Gi' } });
  await assert.rejects(reconcile('orphan'), RetryableError);
  assert.equal(cond('orphan', 'Ready')?.reason, 'HypervisorNotFound');
  assert.equal(cond('orphan', 'Stalled')?.status, 'False', 'it may appear later: vmmem retries');

  store.put({ apiVersion: 'vmmem.io/v1alpha1', kind: 'Hypervisor', metadata: { name: 'locked' }, spec: { uri: 'sim:memory:reconciler-test', credentialsSecretRef: { name: 'missing' } } });
  store.put({ apiVersion: 'vmmem.io/v1alpha1', kind: 'VirtualMachineMemory', metadata: { name: 'locked-vm' }, spec: { hypervisorRef: { name: 'locked' }, vm: { name: 'web' }, maxMemory: '4Gi' } });
  await assert.rejects(reconcile('locked-vm'), RetryableError);
  assert.equal(cond('locked-vm', 'Ready')?.reason, 'SecretNotFound');

  vmm('ghost', { maxMemory: '4Gi' });
  const r = await reconcile('ghost');
  assert.equal(cond('ghost', 'Ready')?.reason, 'VMNotFound');
  assert.deepEqual(r, {}, 'no per-VMM timer: the host resync sees the VM appear');
  for (const reason of ['HypervisorNotFound', 'SecretNotFound', 'VMNotFound']) assert.ok(store.events.some((e) => e.type === 'Warning' && e.reason === reason), reason);
});

test('a persisting failure is one Warning Event, not one per retry', async () => {
  vmm('ghost', { maxMemory: '4Gi' });
  await reconcile('ghost');
  await reconcile('ghost');
  await reconcile('ghost');
  assert.equal(store.events.filter((e) => e.reason === 'VMNotFound').length, 1);
});

test('a dropped connection is reconnected on the next reconcile', async () => {
  vmm('web', { maxMemory: '4Gi', memory: '3Gi' });
  await reconcile('web');
  host.dropConnections();
  vmm('web', { maxMemory: '4Gi', memory: '2Gi' }); // a spec change: work that needs the hypervisor
  await assert.rejects(reconcile('web'), RetryableError);
  assert.equal(cond('web', 'Ready')?.reason, 'HypervisorUnreachable');
  await reconcile('web');
  assert.equal(cond('web', 'Ready')?.status, 'True');
});

test('Xen: a maxMemory raised live stays RestartRequired until the VM restarts (observation alone cannot tell)', async () => {
  const xen = createSimHost({ type: 'xen', vms: [{ name: 'pv', type: 'xen', powerState: 'Running', maxMemory: '4Gi', memory: '3Gi' }] }, 'xen-test');
  store.put({ apiVersion: 'vmmem.io/v1alpha1', kind: 'Hypervisor', metadata: { name: 'xen' }, spec: { uri: 'sim:memory:xen-test' } });
  store.put({ apiVersion: 'vmmem.io/v1alpha1', kind: 'VirtualMachineMemory', metadata: { name: 'pv' }, spec: { hypervisorRef: { name: 'xen' }, vm: { name: 'pv' }, maxMemory: '6Gi', memory: '3Gi' } });
  await reconcile('pv');
  assert.equal(xen.vm('pv')?.live?.maxMemory, 6n << 30n, 'applied live');
  assert.equal(cond('pv', 'RestartRequired')?.status, 'True');
  await reconcile('pv');
  assert.equal(cond('pv', 'RestartRequired')?.status, 'True', 'still pending on the next pass');
  reconciler.noteRestart({ namespace: 'default', name: 'pv' });
  await reconcile('pv');
  assert.equal(cond('pv', 'RestartRequired')?.status, 'False');
  assert.equal(cond('pv', 'Ready')?.status, 'True');
});
