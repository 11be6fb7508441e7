/**
 * One VMM's plan → guard → apply → status, given what it observed (from the
 * host view or a fresh read). The stale-view guard (issue #13.7): a plan
 * made from the host view's snapshot is never applied as is: the VM is read
 * fresh first, and the plan is made again if the VM differs.
 */
import type { HypervisorSpec } from '../api/hypervisor.ts';
import { formatQuantity, parseQuantity } from '../api/quantity.ts';
import type { VMMSpec, VMMStatus } from '../api/vmm.ts';
import type { Driver, HypervisorIdentity, VMHandle } from '../drivers/driver.ts';
import { DriverError } from '../drivers/driver.ts';
import { desiredFromSpec } from '../model/desired.ts';
import type { ObservedVM, Plan, Step, Verdict } from '../model/memory.ts';
import { profileFor } from '../model/profiles.ts';
import { plan as planMemory } from '../planner/plan.ts';
import type { PlanOptions } from '../planner/plan.ts';
import { budgetOf } from './capacity.ts';
import type { CapacityGate } from './capacity.ts';
import { nowRFC3339 } from './conditions.ts';
import type { HostView } from './hostview.ts';
import { fingerprintOf } from './hostview.ts';
import type { StoredObject } from './ports.ts';
import { keyString } from './ports.ts';
import type { ReconcileSupport } from './reconcile-support.ts';
import { describeStep, RetryableError } from './reconcile-support.ts';
import type { Result } from './runner.ts';
import type { BalloonState, VMMFailure } from './status.ts';
import { statusForFailure, statusForOutcome } from './status.ts';
import type { AppliedChange } from './stopped.ts';
import { appliedChange, STOPPED_AFTER_CHANGE, stoppedAfterChange } from './stopped.ts';

export const BALLOON_POLL_MS = 1000;
const BALLOON_TOLERANCE_FLOOR = 4n * 1024n * 1024n;

/** What the controller remembers of one VMM between reconciles (in memory only). */
export interface VMMMemo {
  balloonSince?: number;
  balloonTarget?: bigint;
  /** Last Warning reason emitted, so a persisting failure is one Event, not one per retry. */
  lastWarning?: string;
  roundingsReported: Set<string>;
  /** UUID the VM resolved to, for conflict detection across name/uuid references. */
  uuid?: string;
  /**
   * Changes the hypervisor accepted live that the guest sees only after a
   * restart (Xen maxmem): once applied, observation alone cannot tell them
   * apart from effective ones, so they are remembered until the VM restarts.
   */
  staged?: Map<string, Verdict>;
  /** Balloon actual at the end of the last reconcile, to tell our own balloon events from drift. */
  lastActual?: bigint;
  /** Fingerprint of the VM as the last reconcile left it (host resyncs compare against it). */
  seen?: string;
  /** The last reconcile ended with nothing left to do: until one of these moves, a reconcile is a no-op. */
  steady?: { generation: number; hypervisorGeneration: number; fingerprint: string; requestedAt: string | undefined };
  /** Read the VM fresh next time (a balloon settling, steps left): the host view lags. */
  freshNext?: boolean;
  /** An unguarded or overridden shrink of this generation, kept in the Ready message (issue #15). */
  shrinkNote?: { generation: number; guard: NonNullable<Plan['shrinkGuard']> };
  /** The last change applied to the running VM: a VM found shut off after it is StoppedAfterChange (stopped.ts). */
  applied?: AppliedChange;
}

/** The VMM's Hypervisor as converge needs it: its key text, spec (guestHeadroom, capacity) and identity (host memory). */
export interface ConvergeHost {
  name: string;
  spec: HypervisorSpec;
  identity: HypervisorIdentity;
}

export interface ConvergeInput {
  obj: StoredObject;
  memo: VMMMemo;
  driver: Driver;
  vm: VMHandle;
  observed: ObservedVM;
  /** `observed` came from the host view: read fresh before any apply. */
  fromView: boolean;
  view: HostView | undefined;
  spec: VMMSpec;
  timing: { syncMs: number; balloonTimeoutMs: number };
  signal: AbortSignal | undefined;
  /** The reconcile-request annotation this pass handles (written to status.lastHandledReconcileAt). */
  requestedAt: string | undefined;
  host: ConvergeHost;
  /** Raises in flight per Hypervisor (capacity.ts), shared by every VMM reconcile. */
  capacity: CapacityGate;
}

export interface ConvergeOutcome {
  result: Result;
  observed: ObservedVM;
  /** Nothing left to do until the spec or the VM changes. */
  steady: boolean;
}

/** Carries status.lastHandledReconcileAt forward (statusFor* build a new status). */
export function withHandled(status: VMMStatus, fresh: StoredObject, requestedAt: string | undefined): VMMStatus {
  const handled = requestedAt ?? (fresh.status as VMMStatus | undefined)?.lastHandledReconcileAt;
  return handled === undefined ? status : { ...status, lastHandledReconcileAt: handled };
}

export async function converge(s: ReconcileSupport, input: ConvergeInput): Promise<ConvergeOutcome> {
  const { obj, memo, driver, vm, spec, signal } = input;
  const key = { namespace: obj.metadata.namespace, name: obj.metadata.name };
  const generation = obj.metadata.generation ?? 1;
  const desired = desiredFromSpec(spec);
  const call = signal ? { signal } : {};
  const observeFresh = async () => {
    const o = await s.timeCall(driver, 'observe', () => driver.observe(vm, call));
    input.view?.patch(o);
    return o;
  };
  let observed = input.observed;
  const profile = profileFor(observed.type);
  const planOptions = planOptionsOf(input.host.spec);
  let planned = planMemory(desired, observed, profile, planOptions);

  if (planned.steps.length > 0 && input.fromView) {
    // Never act on a stale view: the snapshot may predate an out-of-band change.
    const fresh = await observeFresh();
    if (fingerprintOf(fresh) !== fingerprintOf(observed)) {
      s.log.debug({ vmm: keyString(key), vm: vm.name }, 'host view was stale; planning from a fresh read');
      observed = fresh;
      planned = planMemory(desired, observed, profile, planOptions);
    }
  }

  // After the stale-view guard: the gate checks the plan that would be sent, from the VM as just read.
  const budget = budgetOf(input.host.name, input.host.spec, input.host.identity);
  const view = input.view;
  const gated = input.capacity.gate(input.host.name, keyString(key), budget, view && (() => view.vms()), observed, planned);
  planned = gated.plan;
  noteShrink(memo, planned, generation);

  for (const r of planned.roundings) {
    const tag = `${generation}:${r.field}:${r.effective}`;
    if (!memo.roundingsReported.has(tag)) {
      memo.roundingsReported.add(tag);
      await s.event(obj, 'Normal', 'Rounded', `spec.${r.field} ${formatQuantity(r.requested)} rounded up to ${formatQuantity(r.effective)} (${profile.label} granularity)`, 'Plan');
    }
  }

  if (observed.powerState === 'ShutOff') memo.staged = undefined; // the next boot uses the config
  for (const v of planned.verdicts) {
    // Only where observation cannot tell (Xen: the live cap moves, the guest's map does not).
    if (v.kind === 'RestartRequired' && profile.fields[v.field].liveTakesEffectAtBoot) (memo.staged ??= new Map()).set(v.field, v);
  }

  if (planned.steps.length > 0) {
    const steps = planned.steps;
    s.log.info({ vmm: keyString(key), vm: vm.name, steps: steps.map(describeStep) }, 'applying plan');
    let after: ObservedVM | undefined;
    const before = observed;
    const remember = (sent: readonly Step[]) => {
      memo.applied = appliedChange(before, sent, desired, profile, generation, s.now(), nowRFC3339(new Date(s.now()))) ?? memo.applied;
    };
    try {
      const applied = await s.timeCall(driver, 'apply', () => driver.apply(vm, steps, call));
      remember(steps);
      after = applied.observed;
      const note = memo.shrinkNote?.generation === generation ? ` (${memo.shrinkNote.guard.message})` : '';
      await s.event(obj, 'Normal', 'Applied', `${vm.name}: ${steps.map(describeStep).join('; ')}${note}`, 'SetMemory');
    } catch (err) {
      gated.release();
      if (err instanceof DriverError && err.applied.length > 0) remember(err.applied);
      if (!(err instanceof DriverError) || err.code !== 'Refused') throw err;
      await refused(s, input, err, steps, observeFresh, observed);
    }
    try {
      if (after) input.view?.patch(after);
      observed = after ?? (await observeFresh());
    } finally {
      // The raise is in the host view now (or failed): the next gate sees it there.
      gated.release();
    }
    planned = planMemory(desired, observed, profile, planOptions);
  }
  if (memo.shrinkNote?.generation === generation && !planned.shrinkGuard) planned = { ...planned, shrinkGuard: memo.shrinkNote.guard };

  planned = withStagedRestarts(planned, memo);
  memo.lastActual = observed.balloon.actual;
  const balloon = balloonState(s, memo, observed, planned, input.timing.balloonTimeoutMs);
  const nowText = nowRFC3339(new Date(s.now()));
  const stoppedBy = stoppedAfterChange(memo.applied, observed, generation, s.now(), () => (memo.applied = undefined));
  await s.writeStatus(key, (fresh) => {
    if ((fresh.metadata.generation ?? 1) !== generation) return undefined; // a newer spec: its own reconcile writes
    const outcome = { observed, plan: planned, balloon, ...(stoppedBy ? { stoppedAfterChange: stoppedBy } : {}) };
    return withHandled(statusForOutcome(fresh.status as VMMStatus | undefined, generation, outcome, nowText), fresh, input.requestedAt);
  });
  const stalled = planned.verdicts.filter((v) => v.kind === 'Unsupported' || v.kind === 'Unsafe' || v.kind === 'Invalid');
  if (stoppedBy) await warnOnce(s, obj, memo, STOPPED_AFTER_CHANGE, stoppedBy);
  else if (stalled.length > 0) await warnOnce(s, obj, memo, stalled[0]?.reason ?? 'Unsupported', stalled.map((v) => v.message).join('; '));
  else if (balloon.state === 'unresponsive') await warnOnce(s, obj, memo, 'BalloonUnresponsive', `balloon stuck at ${formatQuantity(balloon.actual)}, target ${formatQuantity(balloon.target)}`);
  else memo.lastWarning = undefined;

  // A balloon settling, or steps that could not all be applied in one pass (a planner that needs
  // the new state first): look again soon, and freshly (the host view lags), not at the next sync.
  if (balloon.state === 'settling' || planned.steps.length > 0) return { result: { requeueAfter: BALLOON_POLL_MS }, observed, steady: false };
  // Held for host capacity: another VM may shrink or stop without this VM changing, so the
  // host resync would not queue it; look again each sync interval.
  if (planned.verdicts.some((v) => v.reason === 'HostCapacityExceeded')) return { result: { requeueAfter: s.jittered(input.timing.syncMs) }, observed, steady: false };
  // With a host view the host resync finds drift; without one each VMM looks on its own timer.
  const result = input.view ? {} : { requeueAfter: s.jittered(input.timing.syncMs) };
  return { result, observed, steady: true };
}

async function refused(
  s: ReconcileSupport,
  input: ConvergeInput,
  err: DriverError,
  steps: readonly Step[],
  observeFresh: () => Promise<ObservedVM>,
  observed: ObservedVM,
): Promise<never> {
  const { vm } = input;
  const step = steps[err.applied.length];
  const done = err.applied.length ? `, after ${err.applied.map(describeStep).join('; ')}` : '';
  const message = `${err.op} refused on ${vm.name} (${step ? describeStep(step) : 'a step'}${done}): ${err.hypervisorMessage ?? err.message}`;
  const now = await observeFresh().catch(() => observed);
  await fail(s, input.obj, input.memo, { reason: 'HypervisorRefused', message, stalled: false, observed: now }, input.requestedAt);
  throw new RetryableError('HypervisorRefused', message, { cause: err });
}

/** Writes a failure into status and emits its Warning once. */
export async function fail(s: ReconcileSupport, obj: StoredObject, memo: VMMMemo, failure: VMMFailure, requestedAt?: string): Promise<void> {
  const key = { namespace: obj.metadata.namespace, name: obj.metadata.name };
  const generation = obj.metadata.generation ?? 1;
  const nowText = nowRFC3339(new Date(s.now()));
  memo.steady = undefined;
  s.log.warn({ vmm: keyString(key), reason: failure.reason, err: failure.message }, 'VirtualMachineMemory not converged');
  await s.writeStatus(key, (fresh) => {
    if ((fresh.metadata.generation ?? 1) !== generation) return undefined;
    return withHandled(statusForFailure(fresh.status as VMMStatus | undefined, generation, failure, nowText), fresh, requestedAt);
  });
  await warnOnce(s, obj, memo, failure.reason, failure.message);
}

export async function warnOnce(s: ReconcileSupport, obj: StoredObject, memo: VMMMemo, reason: string, message: string): Promise<void> {
  const tag = `${obj.metadata.generation}:${reason}:${message}`;
  if (memo.lastWarning === tag) return;
  memo.lastWarning = tag;
  await s.event(obj, 'Warning', reason, message, 'Reconcile');
}

/** Whether the guest has reached the balloon target (within 1% or 4 MiB), and for how long it has been trying. */
function balloonState(s: ReconcileSupport, memo: VMMMemo, observed: ObservedVM, planned: Plan, timeoutMs: number): BalloonState {
  const target = observed.live?.memory;
  const actual = observed.balloon.actual;
  const memoryVerdict = planned.verdicts.find((v) => v.field === 'memory');
  if (observed.powerState === 'ShutOff' || target === undefined || actual === undefined || memoryVerdict?.kind !== 'Applied') {
    memo.balloonSince = undefined;
    return { state: 'settled' };
  }
  const diff = actual > target ? actual - target : target - actual;
  const tolerance = target / 100n > BALLOON_TOLERANCE_FLOOR ? target / 100n : BALLOON_TOLERANCE_FLOOR;
  if (diff <= tolerance) {
    memo.balloonSince = undefined;
    return { state: 'settled' };
  }
  if (memo.balloonSince === undefined || memo.balloonTarget !== target) {
    memo.balloonSince = s.now();
    memo.balloonTarget = target;
  }
  const waited = s.now() - memo.balloonSince;
  if (waited >= timeoutMs) return { state: 'unresponsive', target, actual, waitedMs: waited };
  return { state: 'settling', target, actual, sinceMs: memo.balloonSince };
}

/** The Hypervisor's spec.guestHeadroom for the planner's guest-aware shrink (src/planner/guard.ts). */
export function planOptionsOf(spec: HypervisorSpec): PlanOptions {
  return spec.guestHeadroom === undefined ? {} : { guard: { headroom: parseQuantity(spec.guestHeadroom, 'spec.guestHeadroom') } };
}

/** An unguarded or overridden shrink is remembered for its generation, so the Ready message keeps saying so. */
function noteShrink(memo: VMMMemo, planned: Plan, generation: number): void {
  const guard = planned.shrinkGuard;
  if (guard && guard.state !== 'guarded' && guard.state !== 'blocked') memo.shrinkNote = { generation, guard };
  else if (memo.shrinkNote?.generation !== generation) memo.shrinkNote = undefined;
}

/** Re-applies remembered RestartRequired verdicts to fields that now look Applied with the same desired value. */
function withStagedRestarts(planned: Plan, memo: VMMMemo): Plan {
  if (!memo.staged?.size) return planned;
  const verdicts = planned.verdicts.map((v) => {
    const staged = memo.staged?.get(v.field);
    if (!staged) return v;
    if (v.kind === 'Applied' && staged.desired === v.desired) return staged;
    if (v.kind !== 'RestartRequired') memo.staged?.delete(v.field); // spec moved on (e.g. reverted)
    return v;
  });
  return { ...planned, verdicts };
}
