/**
 * The reconcilers: one small function of a key per kind (DESIGN §5, §6).
 * VirtualMachineMemory: resolve Hypervisor → connect (pooled) → lookup VM →
 * observe → plan → apply → observe → status. Hypervisor: connect → identify
 * → status. Queueing, backoff and workers live in runner.ts, out of sight.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { HypervisorSpecSchema } from '../api/hypervisor.ts';
import { parseDuration } from '../api/duration.ts';
import { formatQuantity, parseQuantity } from '../api/quantity.ts';
import type { HypervisorSpec } from '../api/hypervisor.ts';
import type { VMMSpec, VMMStatus } from '../api/vmm.ts';
import { VMMSpecSchema } from '../api/vmm.ts';
import type { Driver, HypervisorIdentity, VMHandle } from '../drivers/driver.ts';
import { DriverError } from '../drivers/driver.ts';
import { desiredFromSpec, describeVMRef, vmRefFromSpec } from '../model/desired.ts';
import type { ObservedVM, Plan, Step, Verdict } from '../model/memory.ts';
import { profileFor } from '../model/profiles.ts';
import { formatValue, hotplugDetail, plan as planMemory } from '../planner/plan.ts';
import { findCondition, mergeConditions, nowRFC3339 } from './conditions.ts';
import { budgetOf, CapacityGate, capacityStatus } from './capacity.ts';
import type { HypervisorPool } from './pool.ts';
import { ConnectionSetupError } from './pool.ts';
import type { Logger, ObjectKey, ObjectStore, StoredObject } from './ports.ts';
import { keyString } from './ports.ts';
import type { BalloonState, VMMFailure } from './status.ts';
import { initialStatus, sameStatus, statusForFailure, statusForOutcome } from './status.ts';

/** The logger of the reconcile in progress (bound to its key and reconcile ID by the runner). */
const reconcileLog = new AsyncLocalStorage<Logger>();

/** Runs `fn` with `log` as the reconcilers' logger, so every line carries the reconcile's fields. */
export function withReconcileLog<T>(log: Logger, fn: () => Promise<T>): Promise<T> {
  return reconcileLog.run(log, fn);
}

export interface Result {
  requeueAfter?: number;
}

/** Thrown after the status has been written, so the queue retries with backoff. */
export class RetryLater extends Error {
  readonly reason: string;
  constructor(reason: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'RetryLater';
    this.reason = reason;
  }
}

export const DEFAULT_SYNC_INTERVAL_MS = 5 * 60_000;
export const DEFAULT_BALLOON_TIMEOUT_MS = 2 * 60_000;
const BALLOON_POLL_MS = 1000;
const BALLOON_TOLERANCE_FLOOR = 4n * 1024n * 1024n;

export interface ReconcilerOptions {
  store: ObjectStore;
  pool: HypervisorPool;
  log: Logger;
  now?: () => number;
  /** ±fraction of jitter on the sync interval (default 0.1), so thousands of VMs do not sync in lockstep. */
  jitter?: number;
  /** Observes every driver call (metrics). */
  timeCall?: <T>(driver: string, op: string, fn: () => Promise<T>) => Promise<T>;
}

interface VMMMemo {
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
  /** An unguarded or overridden shrink of this generation, kept in the Ready message (issue #15). */
  shrinkNote?: { generation: number; guard: NonNullable<Plan['shrinkGuard']> };
}

type Parsed<T> = { ok: true; value: T } | { ok: false; message: string; reason: 'InvalidURI' | 'InvalidSpec' };

export class Reconciler {
  private readonly opts: ReconcilerOptions;
  private readonly memo = new Map<string, VMMMemo>();
  private readonly capacity = new CapacityGate();

  constructor(opts: ReconcilerOptions) {
    this.opts = opts;
  }

  private get log(): Logger {
    return reconcileLog.getStore() ?? this.opts.log;
  }

  private now(): number {
    return this.opts.now ? this.opts.now() : Date.now();
  }

  private timeCall<T>(driver: Driver, op: string, fn: () => Promise<T>): Promise<T> {
    return this.opts.timeCall ? this.opts.timeCall(driver.kind, op, fn) : fn();
  }

  /** Balloon actual the last reconcile of this VMM saw (undefined: unknown). */
  lastActual(key: ObjectKey): bigint | undefined {
    return this.memo.get(keyString(key))?.lastActual;
  }

  /** The VM (re)started: changes staged for its next boot are now in effect. */
  noteRestart(key: ObjectKey): void {
    const memo = this.memo.get(keyString(key));
    if (memo) memo.staged = undefined;
  }

  /** Forget in-memory state of a deleted VMM: the VM stays as it is (DESIGN §4). */
  forget(key: ObjectKey): void {
    this.memo.delete(keyString(key));
  }

  // -------------------------------------------------------------------------
  // VirtualMachineMemory

  async reconcileVMM(key: ObjectKey): Promise<Result> {
    const { store } = this.opts;
    const obj = store.get('VirtualMachineMemory', key);
    if (!obj) {
      this.forget(key);
      return {};
    }
    const id = keyString(key);
    const memo = this.memoFor(id);
    const generation = obj.metadata.generation ?? 1;
    const existing = obj.status as VMMStatus | undefined;

    // DESIGN §4: on first sight, Ready=Unknown + Reconciling=True + observedGeneration in one write.
    if (existing?.observedGeneration === undefined || !existing.conditions?.length) {
      await this.writeStatus(key, () => initialStatus(generation, nowRFC3339(new Date(this.now()))));
    }

    const spec = parseSpec(VMMSpecSchema, obj.spec);
    if (!spec.ok) {
      await this.fail(obj, memo, { reason: 'InvalidSpec', message: spec.message, stalled: true });
      return {};
    }
    const conflict = this.conflictFor(obj, spec.value, memo);
    if (conflict) {
      await this.fail(obj, memo, { reason: 'Conflict', message: conflict, stalled: true });
      return {};
    }

    const hvKey = { namespace: key.namespace, name: spec.value.hypervisorRef.name };
    const hvObj = store.get('Hypervisor', hvKey);
    if (!hvObj) {
      await this.fail(obj, memo, { reason: 'HypervisorNotFound', message: `Hypervisor "${hvKey.name}" (spec.hypervisorRef) not found in namespace ${key.namespace}`, stalled: false });
      throw new RetryLater('HypervisorNotFound', `Hypervisor ${keyString(hvKey)} not found`);
    }
    const hvSpec = parseSpec(HypervisorSpecSchema, hvObj.spec);
    if (!hvSpec.ok) {
      const reason = hvSpec.reason === 'InvalidURI' ? 'InvalidURI' : 'HypervisorInvalid';
      await this.fail(obj, memo, { reason, message: `Hypervisor "${hvKey.name}" is invalid: ${hvSpec.message}`, stalled: true });
      return {};
    }
    const syncMs = durationOr(hvSpec.value.syncInterval, 'spec.syncInterval', DEFAULT_SYNC_INTERVAL_MS);
    const balloonTimeoutMs = durationOr(hvSpec.value.balloonTimeout, 'spec.balloonTimeout', DEFAULT_BALLOON_TIMEOUT_MS);

    let driver: Driver;
    let identity: HypervisorIdentity;
    try {
      ({ driver, identity } = await this.opts.pool.get(hvKey, hvSpec.value));
    } catch (err) {
      const failure = connectionFailure(hvKey.name, err);
      await this.fail(obj, memo, failure);
      if (failure.stalled) return {};
      throw new RetryLater(failure.reason, failure.message, { cause: err });
    }

    const ref = vmRefFromSpec(spec.value);
    try {
      const vm = await this.timeCall(driver, 'lookup', () => driver.lookup(ref));
      memo.uuid = vm.uuid.toLowerCase();
      const lateConflict = this.conflictFor(obj, spec.value, memo);
      if (lateConflict) {
        await this.fail(obj, memo, { reason: 'Conflict', message: lateConflict, stalled: true });
        return {};
      }
      const host = { name: keyString(hvKey), spec: hvSpec.value, identity };
      return await this.converge(obj, memo, driver, vm, spec.value, { syncMs, balloonTimeoutMs }, host);
    } catch (err) {
      if (err instanceof RetryLater) throw err;
      await this.opts.pool.noteError(hvKey, err);
      const failure = vmFailure(describeVMRef(ref), hvKey.name, err);
      await this.fail(obj, memo, failure);
      if (failure.reason === 'VMNotFound') return { requeueAfter: this.jittered(syncMs) };
      throw new RetryLater(failure.reason, failure.message, { cause: err });
    }
  }

  private async converge(
    obj: StoredObject,
    memo: VMMMemo,
    driver: Driver,
    vm: VMHandle,
    spec: VMMSpec,
    timing: { syncMs: number; balloonTimeoutMs: number },
    host: { name: string; spec: HypervisorSpec; identity: HypervisorIdentity },
  ): Promise<Result> {
    const key = { namespace: obj.metadata.namespace, name: obj.metadata.name };
    const generation = obj.metadata.generation ?? 1;
    const desired = desiredFromSpec(spec);
    let observed = await this.timeCall(driver, 'observe', () => driver.observe(vm));
    const profile = profileFor(observed.type);
    const planOptions = host.spec.guestHeadroom === undefined ? {} : { guard: { headroom: parseQuantity(host.spec.guestHeadroom, 'spec.guestHeadroom') } };
    let planned = planMemory(desired, observed, profile, planOptions);
    const gated = await this.capacity.gate(host.name, keyString(key), driver, host.spec, host.identity, observed, planned);
    planned = gated.plan;
    if (planned.shrinkGuard && planned.shrinkGuard.state !== 'guarded' && planned.shrinkGuard.state !== 'blocked') memo.shrinkNote = { generation, guard: planned.shrinkGuard };
    else if (memo.shrinkNote?.generation !== generation) memo.shrinkNote = undefined;

    for (const r of planned.roundings) {
      const tag = `${generation}:${r.field}:${r.effective}`;
      if (!memo.roundingsReported.has(tag)) {
        memo.roundingsReported.add(tag);
        await this.event(obj, 'Normal', 'Rounded', `spec.${r.field} ${formatQuantity(r.requested)} rounded up to ${formatQuantity(r.effective)} (${profile.label} granularity)`, 'Plan');
      }
    }

    if (observed.powerState === 'ShutOff') memo.staged = undefined; // the next boot uses the config
    for (const v of planned.verdicts) {
      // Only where observation cannot tell (Xen: the live cap moves, the guest's map does not).
      if (v.kind === 'RestartRequired' && profile.fields[v.field].liveTakesEffectAtBoot) (memo.staged ??= new Map()).set(v.field, v);
    }

    if (planned.steps.length > 0) {
      const steps = planned.steps;
      this.log.info({ vmm: keyString(key), vm: vm.name, steps: steps.map(describeStep) }, 'applying plan');
      try {
        await this.timeCall(driver, 'apply', () => driver.apply(vm, steps));
        const note = memo.shrinkNote?.generation === generation ? ` (${memo.shrinkNote.guard.message})` : '';
        await this.event(obj, 'Normal', 'Applied', `${vm.name}: ${steps.map(describeStep).join('; ')}${note}`, 'SetMemory');
      } catch (err) {
        gated.release();
        if (!(err instanceof DriverError) || err.code !== 'Refused') throw err;
        const refused = steps[err.applied.length];
        const done = err.applied.length ? `, after ${err.applied.map(describeStep).join('; ')}` : '';
        const message = `${err.op} refused on ${vm.name} (${refused ? describeStep(refused) : 'a step'}${done}): ${err.hypervisorMessage ?? err.message}`;
        const now = await this.timeCall(driver, 'observe', () => driver.observe(vm)).catch(() => observed);
        await this.fail(obj, memo, { reason: 'HypervisorRefused', message, stalled: false, observed: now });
        throw new RetryLater('HypervisorRefused', message, { cause: err });
      }
      try {
        observed = await this.timeCall(driver, 'observe', () => driver.observe(vm));
      } finally {
        gated.release();
      }
      planned = planMemory(desired, observed, profile, planOptions);
    }
    if (memo.shrinkNote?.generation === generation && !planned.shrinkGuard) planned = { ...planned, shrinkGuard: memo.shrinkNote.guard };

    planned = withStagedRestarts(planned, memo);
    memo.lastActual = observed.balloon.actual;
    const balloon = this.balloonState(memo, observed, planned, timing.balloonTimeoutMs);
    const nowText = nowRFC3339(new Date(this.now()));
    await this.writeStatus(key, (fresh) => {
      if ((fresh.metadata.generation ?? 1) !== generation) return undefined; // a newer spec: its own reconcile writes
      return statusForOutcome(fresh.status as VMMStatus | undefined, generation, { observed, plan: planned, balloon }, nowText);
    });
    const stalled = planned.verdicts.filter((v) => v.kind === 'Unsupported' || v.kind === 'Unsafe' || v.kind === 'Invalid');
    if (stalled.length > 0) await this.warnOnce(obj, memo, stalled[0]?.reason ?? 'Unsupported', stalled.map((v) => v.message).join('; '));
    else if (balloon.state === 'unresponsive') await this.warnOnce(obj, memo, 'BalloonUnresponsive', `balloon stuck at ${formatQuantity(balloon.actual)}, target ${formatQuantity(balloon.target)}`);
    else memo.lastWarning = undefined;

    if (balloon.state === 'settling') return { requeueAfter: BALLOON_POLL_MS };
    // Steps that could not all be applied in one pass (e.g. a planner that
    // needs the new state first): look again soon rather than at the next sync.
    if (planned.steps.length > 0) return { requeueAfter: BALLOON_POLL_MS };
    return { requeueAfter: this.jittered(timing.syncMs) };
  }

  /** Whether the guest has reached the balloon target (within 1% or 4 MiB), and for how long it has been trying. */
  private balloonState(memo: VMMMemo, observed: ObservedVM, planned: Plan, timeoutMs: number): BalloonState {
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
      memo.balloonSince = this.now();
      memo.balloonTarget = target;
    }
    const waited = this.now() - memo.balloonSince;
    if (waited >= timeoutMs) return { state: 'unresponsive', target, actual, waitedMs: waited };
    return { state: 'settling', target, actual, sinceMs: memo.balloonSince };
  }

  /**
   * Two VMMs on one VM (DESIGN §4): the older keeps it, the newer is Stalled
   * with reason Conflict. Compared by reference (name or uuid) and, once
   * looked up, by the VM's UUID.
   */
  private conflictFor(obj: StoredObject, spec: VMMSpec, memo: VMMMemo): string | undefined {
    const ns = obj.metadata.namespace;
    const uuid = spec.vm.uuid?.toLowerCase();
    for (const other of this.opts.store.list('VirtualMachineMemory')) {
      if (other.metadata.namespace !== ns || other.metadata.name === obj.metadata.name) continue;
      // Raw reads first: this runs for every VMM of the namespace on every
      // reconcile, so only the rare candidate pays for a full parse.
      const raw = other.spec as { hypervisorRef?: { name?: unknown }; vm?: { name?: unknown; uuid?: unknown } } | undefined;
      if (raw?.hypervisorRef?.name !== spec.hypervisorRef.name) continue;
      const otherUuid = this.memo.get(keyString({ namespace: ns, name: other.metadata.name }))?.uuid;
      const sameRef =
        (spec.vm.name !== undefined && raw.vm?.name === spec.vm.name) ||
        (uuid !== undefined && typeof raw.vm?.uuid === 'string' && raw.vm.uuid.toLowerCase() === uuid) ||
        (memo.uuid !== undefined && memo.uuid === otherUuid);
      if (!sameRef || !isOlder(other, obj) || !VMMSpecSchema.safeParse(other.spec).success) continue;
      return `VirtualMachineMemory "${other.metadata.name}" already manages this VM (${spec.vm.name ?? spec.vm.uuid}) and is older; delete one of them`;
    }
    return undefined;
  }

  private async fail(obj: StoredObject, memo: VMMMemo, failure: VMMFailure): Promise<void> {
    const key = { namespace: obj.metadata.namespace, name: obj.metadata.name };
    const generation = obj.metadata.generation ?? 1;
    const nowText = nowRFC3339(new Date(this.now()));
    this.log.warn({ vmm: keyString(key), reason: failure.reason, err: failure.message }, 'VirtualMachineMemory not converged');
    await this.writeStatus(key, (fresh) => {
      if ((fresh.metadata.generation ?? 1) !== generation) return undefined;
      return statusForFailure(fresh.status as VMMStatus | undefined, generation, failure, nowText);
    });
    await this.warnOnce(obj, memo, failure.reason, failure.message);
  }

  private async warnOnce(obj: StoredObject, memo: VMMMemo, reason: string, message: string): Promise<void> {
    const tag = `${obj.metadata.generation}:${reason}:${message}`;
    if (memo.lastWarning === tag) return;
    memo.lastWarning = tag;
    await this.event(obj, 'Warning', reason, message, 'Reconcile');
  }

  private async event(obj: StoredObject, type: 'Normal' | 'Warning', reason: string, note: string, action: string): Promise<void> {
    try {
      await this.opts.store.recordEvent(obj, type, reason, note, action);
    } catch (err) {
      // Events are best effort: never fail a reconcile because one could not be recorded.
      this.log.warn({ object: `${obj.kind}/${obj.metadata.namespace}/${obj.metadata.name}`, reason, err: (err as Error).message }, 'could not record event');
    }
  }

  private async writeStatus(key: ObjectKey, compute: (fresh: StoredObject) => Record<string, unknown> | undefined, kind: 'VirtualMachineMemory' | 'Hypervisor' = 'VirtualMachineMemory'): Promise<void> {
    await this.opts.store.updateStatus(kind, key, (fresh) => {
      const next = compute(fresh);
      if (next === undefined) return undefined;
      // Only lastSyncTime moved: skip the write (thousands of VMs re-sync every interval).
      if (fresh.status && sameStatus(fresh.status, next)) return undefined;
      return next;
    });
  }

  private memoFor(id: string): VMMMemo {
    let m = this.memo.get(id);
    if (!m) {
      m = { roundingsReported: new Set() };
      this.memo.set(id, m);
    }
    return m;
  }

  private jittered(ms: number): number {
    const j = this.opts.jitter ?? 0.1;
    return Math.round(ms * (1 - j + Math.random() * 2 * j));
  }

  // -------------------------------------------------------------------------
  // Hypervisor

  /** status.capacity: one look at the whole host (undefined when the driver or host cannot say). */
  private async hostCapacity(name: string, driver: Driver, spec: HypervisorSpec, identity: HypervisorIdentity): Promise<Record<string, unknown> | undefined> {
    const budget = budgetOf(name, spec, identity);
    if (!budget || !driver.observeAll) return undefined;
    const host = await this.timeCall(driver, 'observeAll', () => (driver.observeAll as NonNullable<Driver['observeAll']>)());
    return capacityStatus(spec, budget, host.vms);
  }

  async reconcileHypervisor(key: ObjectKey): Promise<Result> {
    const obj = this.opts.store.get('Hypervisor', key);
    if (!obj) {
      await this.opts.pool.invalidate(key, 'Hypervisor deleted');
      return {};
    }
    const generation = obj.metadata.generation ?? 1;
    const nowText = nowRFC3339(new Date(this.now()));
    const spec = parseSpec(HypervisorSpecSchema, obj.spec);
    const write = (status: Record<string, unknown>) =>
      this.writeStatus(key, (fresh) => ((fresh.metadata.generation ?? 1) === generation ? status : undefined), 'Hypervisor');
    const existing = obj.status as { conditions?: Parameters<typeof mergeConditions>[0] } | undefined;
    const failed = async (reason: string, message: string, stalled: boolean) => {
      const previous = findCondition(existing?.conditions, 'Connected');
      await write({
        ...(obj.status ?? {}),
        observedGeneration: generation,
        conditions: mergeConditions(
          existing?.conditions,
          [
            { type: 'Connected', status: 'False', reason, message },
            { type: 'Ready', status: 'False', reason, message },
            { type: 'Stalled', status: stalled ? 'True' : 'False', reason: stalled ? reason : 'Retrying', message: stalled ? message : 'vmmem retries with backoff' },
          ],
          generation,
          nowText,
        ),
      });
      if (previous?.reason !== reason || previous.status !== 'False') await this.event(obj, 'Warning', reason, message, 'Connect');
    };
    if (!spec.ok) {
      await failed(spec.reason, spec.message, true);
      return {};
    }
    const syncMs = durationOr(spec.value.syncInterval, 'spec.syncInterval', DEFAULT_SYNC_INTERVAL_MS);
    try {
      const { identity, driver } = await this.opts.pool.get(key, spec.value);
      const message = `connected to ${identity.type} ${identity.version}${identity.hostname ? ` on ${identity.hostname}` : ''}`;
      const status: Record<string, unknown> = {
        observedGeneration: generation,
        conditions: mergeConditions(
          existing?.conditions,
          [
            { type: 'Connected', status: 'True', reason: 'Connected', message },
            { type: 'Ready', status: 'True', reason: 'Connected', message },
            { type: 'Stalled', status: 'False', reason: 'AsExpected', message: 'connected' },
          ],
          generation,
          nowText,
        ),
        type: identity.type,
        version: identity.version,
      };
      if (identity.hostname) status.hostname = identity.hostname;
      if (identity.hostMemory !== undefined) status.hostMemory = formatQuantity(identity.hostMemory);
      const capacity = await this.hostCapacity(keyString(key), driver, spec.value, identity);
      if (capacity) status.capacity = capacity;
      const wasConnected = findCondition(existing?.conditions, 'Connected')?.status === 'True';
      if (!wasConnected) status.lastConnectTime = nowText;
      else if (typeof obj.status?.lastConnectTime === 'string') status.lastConnectTime = obj.status.lastConnectTime;
      await write(status);
      if (!wasConnected) await this.event(obj, 'Normal', 'Connected', message, 'Connect');
      return { requeueAfter: this.jittered(syncMs) };
    } catch (err) {
      const failure = connectionFailure(key.name, err);
      await failed(failure.reason, failure.message, failure.stalled);
      if (failure.stalled) return {};
      throw new RetryLater(failure.reason, failure.message, { cause: err });
    }
  }
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

function parseSpec<T>(schema: { safeParse(v: unknown): { success: true; data: T } | { success: false; error: { issues: { path: PropertyKey[]; message: string }[] } } }, spec: unknown): Parsed<T> {
  const r = schema.safeParse(spec);
  if (r.success) return { ok: true, value: r.data };
  const message = r.error.issues.map((i) => `spec${i.path.map((p) => (typeof p === 'number' ? `[${p}]` : `.${String(p)}`)).join('')}: ${i.message}`).join('; ');
  // docs/conditions.md promises InvalidURI for a URI the allowlist refuses, so the user knows which
  // field to fix without reading the message; anything else in the spec is InvalidSpec.
  const reason = r.error.issues.length > 0 && r.error.issues.every((i) => i.path[0] === 'uri') ? 'InvalidURI' : 'InvalidSpec';
  return { ok: false, message, reason };
}

function durationOr(text: string | undefined, field: string, fallback: number): number {
  return text === undefined ? fallback : parseDuration(text, field);
}

function isOlder(a: StoredObject, b: StoredObject): boolean {
  const ta = a.metadata.creationTimestamp ?? '';
  const tb = b.metadata.creationTimestamp ?? '';
  if (ta !== tb) return ta < tb;
  return a.metadata.name < b.metadata.name;
}

export function describeStep(step: Step): string {
  const via = hotplugDetail(step);
  return `${step.field} ${step.world} ${formatValue(step.from)} → ${formatValue(step.to)}${via ? ` (${via})` : ''}`;
}

function connectionFailure(hypervisor: string, err: unknown): VMMFailure {
  if (err instanceof ConnectionSetupError) return { reason: err.reason, message: err.message, stalled: err.stalled };
  if (err instanceof DriverError) {
    const said = err.hypervisorMessage ? `: ${err.hypervisorMessage}` : '';
    const base = `Hypervisor "${hypervisor}": ${err.op}: ${err.message}${said && !err.message.includes(err.hypervisorMessage ?? '\0') ? said : ''}`;
    switch (err.code) {
      case 'AuthFailed':
        return { reason: 'AuthenticationFailed', message: base, stalled: false };
      case 'TLS':
        return { reason: 'TLSError', message: base, stalled: false };
      case 'InvalidURI':
        return { reason: 'InvalidURI', message: base, stalled: true };
      case 'NotAllowed':
        return { reason: 'HypervisorNotAllowed', message: base, stalled: true };
      default:
        return { reason: 'HypervisorUnreachable', message: base, stalled: false };
    }
  }
  return { reason: 'HypervisorUnreachable', message: `Hypervisor "${hypervisor}": ${(err as Error)?.message ?? String(err)}`, stalled: false };
}

function vmFailure(vm: string, hypervisor: string, err: unknown): VMMFailure {
  if (err instanceof DriverError && err.code === 'VMNotFound') {
    return { reason: 'VMNotFound', message: `${vm} not found on Hypervisor "${hypervisor}"${err.hypervisorMessage ? `: ${err.hypervisorMessage}` : ''}`, stalled: false };
  }
  const f = connectionFailure(hypervisor, err);
  return { ...f, message: `${vm}: ${f.message}` };
}
