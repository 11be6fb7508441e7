/**
 * Issue #15 acceptance on the sim, through the reconciler: a guest's use
 * guards a shrink (GuestMemoryInUse, nothing sent, allowUnsafeShrink opts
 * in, no statistics = shrunk and said so) and a host's budget holds a raise
 * (HostCapacityExceeded, nothing sent); the Hypervisor reports status.capacity.
 */
import { test, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import type { Condition } from '../../src/api/conditions.ts';
import { silentLogger } from '../../src/controller/log.ts';
import { HypervisorPool } from '../../src/controller/pool.ts';
import { HostViews } from '../../src/controller/hostview.ts';
import { HypervisorReconciler } from '../../src/controller/hypervisor-reconciler.ts';
import { VMMReconciler } from '../../src/controller/vmm-reconciler.ts';
import { createSimHost, resetSimHosts } from '../../src/drivers/sim/index.ts';
import type { SimHost } from '../../src/drivers/sim/index.ts';
import { Store } from '../support/tiny-store.ts';

/** The smallest ObjectStore the reconciler needs (our own port), in memory. */
const GiB = 1024n * 1024n * 1024n;
let store: Store;
let reconciler: VMMReconciler;
let hypervisors: HypervisorReconciler;
let host: SimHost;

beforeEach(() => {
  resetSimHosts();
  host = createSimHost(
    {
      type: 'qemu',
      hostMemory: '16Gi',
      vms: [
        { name: 'busy', type: 'qemu', powerState: 'Running', maxMemory: '8Gi', memory: '8Gi', guestUsed: '6Gi' },
        { name: 'idle', type: 'qemu', powerState: 'Running', maxMemory: '4Gi', memory: '4Gi', guestUsed: '2Gi' },
        { name: 'nostats', type: 'qemu', powerState: 'ShutOff', maxMemory: '8Gi', memory: '8Gi' },
      ],
    },
    'safety-test',
  );
  store = new Store();
  store.put('Hypervisor', 'sim-a', { uri: 'sim:memory:safety-test', capacity: { overcommitRatio: '1.0' } });
  const log = silentLogger();
  const pool = new HypervisorPool({ store, log });
  const views = new HostViews();
  reconciler = new VMMReconciler({ store, pool, views, log, jitter: 0 });
  hypervisors = new HypervisorReconciler({ store, pool, views, log, jitter: 0 });
});

const vmm = (name: string, spec: Record<string, unknown>) => store.put('VirtualMachineMemory', name, { hypervisorRef: { name: 'sim-a' }, vm: { name }, ...spec });
const reconcile = (name: string) => reconciler.reconcile({ namespace: 'default', name });
const status = (name: string) => store.get('VirtualMachineMemory', { namespace: 'default', name })?.status as { conditions: Condition[]; observed: Record<string, unknown> };
const cond = (name: string, type: string) => status(name).conditions.find((c) => c.type === type);
const sets = () => Object.entries(host.calls).filter(([op]) => /SetMemory/.test(op)).reduce((n, [, c]) => n + c, 0);
/** Every call that changes a VM (memory, maxMemory, definitions, memtune). */
const writes = () => Object.entries(host.calls).filter(([op]) => /Set|Define|Reconfig/.test(op)).reduce((n, [, c]) => n + c, 0);

test('a running VM using 6Gi is not shrunk to 4Gi: GuestMemoryInUse, balloon untouched; with allowUnsafeShrink it is', async () => {
  vmm('busy', { maxMemory: '8Gi', memory: '4Gi' });
  await reconcile('busy');
  assert.equal(sets(), 0);
  assert.equal(host.vm('busy')?.live?.memory, 8n * GiB);
  assert.equal(cond('busy', 'Stalled')?.reason, 'GuestMemoryInUse');
  assert.match(cond('busy', 'Ready')?.message ?? '', /the guest uses 6Gi/);
  assert.deepEqual((status('busy').observed.guest as { used: string }).used, '6Gi');
  vmm('busy', { maxMemory: '8Gi', memory: '4Gi', allowUnsafeShrink: true });
  await reconcile('busy');
  assert.equal(host.vm('busy')?.live?.memory, 4n * GiB);
  assert.match(cond('busy', 'Ready')?.message ?? '', /allowed by spec.allowUnsafeShrink/);
});

test('a VM using 2Gi is shrunk', async () => {
  vmm('idle', { maxMemory: '4Gi', memory: '3Gi' });
  await reconcile('idle');
  assert.equal(host.vm('idle')?.live?.memory, 3n * GiB);
  assert.equal(cond('idle', 'Stalled')?.status, 'False');
});

test('no guest statistics: the shrink happens and the Ready message says it was not guarded', async () => {
  host.powerOn('nostats');
  vmm('nostats', { maxMemory: '8Gi', memory: '4Gi' });
  await reconcile('nostats');
  assert.equal(host.vm('nostats')?.live?.memory, 4n * GiB);
  assert.match(cond('nostats', 'Ready')?.message ?? '', /not guarded: nostats reports no guest memory statistics/);
  await reconcile('nostats');
  assert.match(cond('nostats', 'Ready')?.message ?? '', /not guarded/, 'the note stays for this generation');
});

test('16Gi host, overcommitRatio "1.0", 8Gi + 4Gi running: raising the 4Gi one to 12Gi is HostCapacityExceeded and nothing is sent; status.capacity shows the host', async () => {
  const before = writes();
  vmm('idle', { maxMemory: '12Gi', memory: '4Gi' });
  await reconcile('idle');
  assert.equal(cond('idle', 'Stalled')?.reason, 'HostCapacityExceeded');
  assert.match(cond('idle', 'Stalled')?.message ?? '', /host default\/sim-a.*budget of 16Gi/);
  assert.equal(host.vm('idle')?.config?.maxMemory, 4n * GiB);
  assert.equal(writes(), before, 'nothing sent');
  await hypervisors.reconcile({ namespace: 'default', name: 'sim-a' });
  const cap = (store.get('Hypervisor', { namespace: 'default', name: 'sim-a' })?.status as { capacity: Record<string, unknown> }).capacity;
  assert.deepEqual(cap, { hostMemory: '16Gi', committed: '12Gi', reservations: '0', vms: 3, overcommitRatio: '1.0', budget: '16Gi', free: '4Gi' });
  vmm('idle', { maxMemory: '8Gi', memory: '4Gi' });
  await reconcile('idle');
  assert.equal(host.vm('idle')?.config?.maxMemory, 8n * GiB, 'a raise that fits is applied');
  assert.ok(writes() > before);
});

test('two raises at once on a host with room for one: exactly one is applied, the other is HostCapacityExceeded; the gate reads the host view (no observeAll per raise)', async () => {
  // Both VMMs seen once, so the host view is listed and each later pass starts from it.
  vmm('busy', { maxMemory: '8Gi' });
  vmm('idle', { maxMemory: '4Gi' });
  await reconcile('busy');
  await reconcile('idle');
  const lists = host.calls.virConnectGetAllDomainStats ?? 0;
  assert.ok(lists > 0, 'the host view was listed');
  vmm('busy', { maxMemory: '12Gi' });
  vmm('idle', { maxMemory: '8Gi' });
  await Promise.all([reconcile('busy'), reconcile('idle')]);
  const held = ['busy', 'idle'].filter((n) => cond(n, 'Stalled')?.reason === 'HostCapacityExceeded');
  assert.equal(held.length, 1, `one held, got ${JSON.stringify(['busy', 'idle'].map((n) => cond(n, 'Stalled')))}`);
  const raised = ['busy', 'idle'].filter((n) => host.vm(n)?.config?.maxMemory !== { busy: 8n * GiB, idle: 4n * GiB }[n]);
  assert.equal(raised.length, 1, 'the other raise was applied');
  assert.notEqual(raised[0], held[0]);
  assert.equal(host.calls.virConnectGetAllDomainStats ?? 0, lists, 'no observeAll for the gate');
});
