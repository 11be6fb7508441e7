/**
 * Issue #12.6, truth after an opted-in risk: with spec.allowUnsafeLimit a QEMU hard_limit below
 * guest memory + overhead is applied, the sim OOM-kills the VM (as the kernel would kill QEMU),
 * and status must say the VM stopped after our change — not Ready/Converged.
 */
import { test, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import type { Condition } from '../../src/api/conditions.ts';
import { silentLogger } from '../../src/controller/log.ts';
import { HypervisorPool } from '../../src/controller/pool.ts';
import { HostViews } from '../../src/controller/hostview.ts';
import { VMMReconciler } from '../../src/controller/vmm-reconciler.ts';
import { STOPPED_AFTER_CHANGE_WINDOW_MS, stoppedAfterChange } from '../../src/controller/stopped.ts';
import type { AppliedChange } from '../../src/controller/stopped.ts';
import { createSimHost, resetSimHosts } from '../../src/drivers/sim/index.ts';
import type { ObservedVM } from '../../src/model/memory.ts';
import type { SimHost } from '../../src/drivers/sim/index.ts';
import { Store } from '../support/tiny-store.ts';

/** The smallest ObjectStore the reconciler needs (our own port), in memory. */
const GiB = 1024n * 1024n * 1024n;
let store: Store;
let reconciler: VMMReconciler;
let host: SimHost;
let clock: number;

beforeEach(() => {
  resetSimHosts();
  host = createSimHost(
    {
      type: 'qemu',
      hostMemory: '16Gi',
      vms: [{ name: 'web', type: 'qemu', powerState: 'Running', maxMemory: '4Gi', memory: '4Gi' }],
    },
    'stopped-test',
  );
  store = new Store();
  store.put('Hypervisor', 'sim-a', { uri: 'sim:memory:stopped-test' });
  const log = silentLogger();
  clock = Date.parse('2026-12-04T22:00:00Z');
  reconciler = new VMMReconciler({ store, pool: new HypervisorPool({ store, log }), views: new HostViews(), log, jitter: 0, now: () => clock });
});

const vmm = (spec: Record<string, unknown>) => store.put('VirtualMachineMemory', 'web', { hypervisorRef: { name: 'sim-a' }, vm: { name: 'web' }, maxMemory: '4Gi', memory: '4Gi', ...spec });
const reconcile = () => reconciler.reconcile({ namespace: 'default', name: 'web' });
const cond = (type: string) => (store.get('VirtualMachineMemory', { namespace: 'default', name: 'web' })?.status as { conditions: Condition[] }).conditions.find((c) => c.type === type);

test('a limit below guest memory with allowUnsafeLimit: the sim OOM-kills the VM and status says StoppedAfterChange, naming the change', async () => {
  vmm({ limit: '2Gi', allowUnsafeLimit: true });
  await reconcile();
  // The sim did what the kernel does to QEMU over its hard_limit: shut off, reason crashed.
  assert.equal(host.vm('web')?.powerState, 'ShutOff');
  assert.equal(host.vm('web')?.stopReason, 'Crashed');
  assert.equal(host.vm('web')?.config?.limit, 2n * GiB, 'the change itself was applied');
  const ready = cond('Ready');
  assert.equal(ready?.status, 'False');
  assert.equal(ready?.reason, 'StoppedAfterChange');
  assert.match(ready?.message ?? '', /^web crashed \(the hypervisor reports it shut off, reason crashed\) after vmmem applied limit live Unlimited → 2Gi; limit config Unlimited → 2Gi/);
  assert.match(ready?.message ?? '', /spec\.limit 2Gi is below guest memory 4Gi \+ QEMU overhead margin 512Mi, allowed by spec\.allowUnsafeLimit/);
  assert.match(ready?.message ?? '', /at 2026-12-04T22:00:00Z; vmmem does not start VMs/);
  assert.equal(cond('Stalled')?.status, 'True');
  assert.equal(cond('Stalled')?.reason, 'StoppedAfterChange');
  assert.deepEqual(store.events.filter((e) => e.reason === 'StoppedAfterChange').length, 1, 'one Warning event');

  // Later passes (the lifecycle event, the host resync, hours on) keep saying so while the generation holds.
  clock += 3_600_000;
  await reconcile();
  assert.equal(cond('Ready')?.reason, 'StoppedAfterChange');
  assert.equal(store.events.filter((e) => e.reason === 'StoppedAfterChange').length, 1, 'still one Warning event');
});

test('the user raises the limit (a new generation): the stopped VM is no longer blamed on the old change', async () => {
  vmm({ limit: '2Gi', allowUnsafeLimit: true });
  await reconcile();
  assert.equal(cond('Ready')?.reason, 'StoppedAfterChange');
  vmm({ limit: '6Gi' });
  await reconcile();
  assert.equal(host.vm('web')?.config?.limit, 6n * GiB);
  assert.equal(cond('Ready')?.reason, 'Converged');
  host.powerOn('web');
  await reconcile();
  assert.equal(host.vm('web')?.powerState, 'Running', 'with the safe limit the VM runs');
  assert.equal(cond('Ready')?.reason, 'Converged');
});

test('a plain shutdown after a routine change is not blamed on the change', async () => {
  vmm({ limit: '6Gi' });
  await reconcile();
  assert.equal(cond('Ready')?.reason, 'Converged');
  host.powerOff('web');
  assert.equal(host.vm('web')?.stopReason, undefined, 'a normal stop has no crash reason');
  await reconcile();
  assert.equal(cond('Ready')?.status, 'True');
  assert.equal(cond('Ready')?.reason, 'Converged');
});

test('which stops are blamed on a change: the window, the crash reason and the risk', () => {
  const t0 = Date.parse('2026-12-04T22:00:00Z');
  const off = (crashed: boolean): ObservedVM => ({ name: 'web', uuid: 'u', type: 'qemu', powerState: 'ShutOff', persistent: true, balloon: { device: 'present' }, numa: false, ...(crashed ? { stopReason: 'Crashed' as const } : {}) });
  const running: ObservedVM = { ...off(false), powerState: 'Running' };
  const change = (risky: boolean): AppliedChange => ({ generation: 1, at: t0, atText: '2026-12-04T22:00:00Z', change: 'limit live 8Gi → 2Gi', risky });
  const soon = t0 + 1000;
  const late = t0 + STOPPED_AFTER_CHANGE_WINDOW_MS + 1;
  let forgotten = 0;
  const blamed = (c: AppliedChange, o: ObservedVM, now: number, generation = 1) => stoppedAfterChange(c, o, generation, now, () => forgotten++) !== undefined;
  // Soon after: a crash after any change; any stop after a risky one (not every hypervisor says why).
  assert.equal(blamed(change(false), off(true), soon), true);
  assert.equal(blamed(change(true), off(false), soon), true);
  assert.equal(blamed(change(false), off(false), soon), false, 'a plain stop after a routine change');
  // Later: only a crash while the risky value holds.
  assert.equal(blamed(change(true), off(true), late), true);
  assert.equal(blamed(change(true), off(false), late), false);
  assert.equal(blamed(change(false), off(true), late), false);
  assert.equal(forgotten, 0);
  // Forgotten once it can no longer explain a stop: another generation, or seen running past the window.
  assert.equal(blamed(change(true), off(true), soon, 2), false);
  assert.equal(forgotten, 1);
  assert.equal(blamed(change(true), running, soon), false);
  assert.equal(forgotten, 1, 'running within the window: the crash may still come');
  assert.equal(blamed(change(true), running, late), false);
  assert.equal(forgotten, 2);
});
