/**
 * The Hypervisor reconciler (DESIGN §5, §6; issue #13, #17.1): connect
 * (pooled) → identify → status, then the host resync: one observeAll per
 * syncInterval re-lists the host view, and only the VMMs whose VM differs
 * from what their last reconcile saw are queued (low lane). Drivers without
 * observeAll have no host view; their VMMs look on their own timers.
 */
import { formatDuration } from '../api/duration.ts';
import { formatQuantity } from '../api/quantity.ts';
import { HypervisorSpecSchema } from '../api/hypervisor.ts';
import type { HypervisorSpec } from '../api/hypervisor.ts';
import type { HypervisorIdentity } from '../drivers/driver.ts';
import type { VMRef } from '../model/memory.ts';
import { budgetOf, capacityStatus } from './capacity.ts';
import { findCondition, mergeConditions, nowRFC3339 } from './conditions.ts';
import type { HostViews } from './hostview.ts';
import { changedSinceSeen } from './hostview.ts';
import { keyString } from './ports.ts';
import type { HypervisorPool } from './pool.ts';
import type { ObjectKey, StoredObject } from './ports.ts';
import type { SupportOptions } from './reconcile-support.ts';
import { DEFAULT_SYNC_INTERVAL_MS, ReconcileSupport, RetryableError, connectionFailure, durationOr, parseSpec } from './reconcile-support.ts';
import type { ReconcileContext, Result } from './runner.ts';
import { TerminalError } from './runner.ts';

export interface HypervisorReconcilerOptions extends SupportOptions {
  pool: HypervisorPool;
  views: HostViews;
  /**
   * After a host re-list: the VMM keys of this Hypervisor whose VM changed
   * since they last looked (the operator queues them in the low lane).
   */
  onResync?: (hypervisor: ObjectKey, changed: string[]) => void;
  /** VMM keys of a Hypervisor and what each last saw (the operator's index and the VMM reconciler). */
  vmmsOf?: (hypervisor: ObjectKey) => string[];
  refOf?: (vmm: string) => VMRef | undefined;
  lastSeen?: (vmm: string) => string | undefined;
}

type Conditions = Parameters<typeof mergeConditions>[0];

/** What the runner says about this try: which attempt, and when it retries if it fails. */
type Attempt = Partial<Pick<ReconcileContext, 'attempt' | 'retryInMs'>>;

export class HypervisorReconciler {
  private readonly s: ReconcileSupport;
  private readonly opts: HypervisorReconcilerOptions;

  constructor(opts: HypervisorReconcilerOptions) {
    this.opts = opts;
    this.s = new ReconcileSupport(opts);
  }

  async reconcile(key: ObjectKey, ctx?: Pick<ReconcileContext, 'signal'> & Attempt): Promise<Result> {
    const obj = this.s.store.get('Hypervisor', key);
    if (!obj) {
      this.opts.views.drop(key);
      await this.opts.pool.invalidate(key, 'Hypervisor deleted');
      return {};
    }
    const spec = parseSpec(HypervisorSpecSchema, obj.spec);
    if (!spec.ok) {
      await this.failed(obj, spec.reason, spec.message, true, ctx);
      throw new TerminalError(`Hypervisor ${key.namespace}/${key.name}: ${spec.reason}: ${spec.message}`);
    }
    const syncMs = durationOr(spec.value.syncInterval, 'spec.syncInterval', DEFAULT_SYNC_INTERVAL_MS);
    let connected;
    try {
      connected = await this.opts.pool.get(key, spec.value);
    } catch (err) {
      const failure = connectionFailure(key.name, err);
      await this.failed(obj, failure.reason, failure.message, failure.stalled, ctx);
      if (failure.stalled) throw new TerminalError(`Hypervisor ${key.namespace}/${key.name}: ${failure.reason}: ${failure.message}`);
      throw new RetryableError(failure.reason, failure.message, { cause: err });
    }
    await this.resync(obj, connected.driver, syncMs, ctx);
    await this.connectedStatus(obj, connected.identity, this.capacityOf(key, spec.value, connected.identity));
    return { requeueAfter: this.s.jittered(syncMs) };
  }

  /** status.capacity from the host view the resync just refreshed (no call of its own); undefined when the host or driver cannot say. */
  private capacityOf(key: ObjectKey, spec: HypervisorSpec, identity: HypervisorIdentity): Record<string, unknown> | undefined {
    const budget = budgetOf(keyString(key), spec, identity);
    const view = this.opts.views.peek(key);
    if (!budget || !view || view.listedAt === 0) return undefined;
    return capacityStatus(spec, budget, view.vms());
  }

  /**
   * The host resync: one re-list (skipped if the view is younger than half
   * an interval: the first VMM reconciles of a new connection just listed),
   * then queue the VMMs whose VM changed.
   */
  private async resync(obj: StoredObject, driver: Parameters<HostViews['ensure']>[1], syncMs: number, ctx: (Pick<ReconcileContext, 'signal'> & Attempt) | undefined): Promise<void> {
    const key = { namespace: obj.metadata.namespace, name: obj.metadata.name };
    const signal = ctx?.signal;
    let done;
    try {
      done = await this.opts.views.resync(key, driver, { ...(signal ? { signal } : {}), maxAgeMs: syncMs / 2 });
    } catch (err) {
      await this.opts.pool.noteError(key, err);
      const failure = connectionFailure(key.name, err);
      const message = `host resync (observeAll): ${failure.message}`;
      await this.failed(obj, failure.reason, message, false, ctx);
      throw new RetryableError(failure.reason, message, { cause: err });
    }
    if (!done?.listed || !this.opts.vmmsOf || !this.opts.refOf || !this.opts.lastSeen) return;
    const changed = changedSinceSeen(done.view, this.opts.vmmsOf(key), this.opts.refOf, this.opts.lastSeen);
    this.s.log.debug({ hypervisor: `${key.namespace}/${key.name}`, vms: done.view.size, changed: changed.length }, 'host resync');
    if (changed.length > 0) this.opts.onResync?.(key, changed);
  }

  private async connectedStatus(obj: StoredObject, identity: HypervisorIdentity, capacity: Record<string, unknown> | undefined): Promise<void> {
    const generation = obj.metadata.generation ?? 1;
    const nowText = nowRFC3339(new Date(this.s.now()));
    const existing = obj.status as { conditions?: Conditions } | undefined;
    const message = `connected to ${identity.type} ${identity.version}${identity.hostname ? ` on ${identity.hostname}` : ''}`;
    const status: Record<string, unknown> = {
      observedGeneration: generation,
      conditions: mergeConditions(
        existing?.conditions,
        [
          { type: 'Connected', status: 'True', reason: 'Connected', message },
          { type: 'Ready', status: 'True', reason: 'Connected', message },
          { type: 'Reconciling', status: 'False', reason: 'AsExpected', message: 'connected' },
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
    if (capacity) status.capacity = capacity;
    const wasConnected = findCondition(existing?.conditions, 'Connected')?.status === 'True';
    if (!wasConnected) status.lastConnectTime = nowText;
    else if (typeof obj.status?.lastConnectTime === 'string') status.lastConnectTime = obj.status.lastConnectTime;
    await this.write(obj, status);
    if (!wasConnected) await this.s.event(obj, 'Normal', 'Connected', message, 'Connect');
  }

  /**
   * Connected/Ready False with the failure. kstatus: Reconciling=True while vmmem retries by itself
   * (the message says which attempt and when the next is), Stalled=True when only the user can fix it.
   */
  private async failed(obj: StoredObject, reason: string, message: string, stalled: boolean, attempt: Attempt | undefined): Promise<void> {
    const generation = obj.metadata.generation ?? 1;
    const nowText = nowRFC3339(new Date(this.s.now()));
    const existing = obj.status as { conditions?: Conditions } | undefined;
    const previous = findCondition(existing?.conditions, 'Connected');
    await this.write(obj, {
      ...(obj.status ?? {}),
      observedGeneration: generation,
      conditions: mergeConditions(
        existing?.conditions,
        [
          { type: 'Connected', status: 'False', reason, message },
          { type: 'Ready', status: 'False', reason, message },
          stalled
            ? { type: 'Reconciling', status: 'False', reason, message: 'waiting for the spec to change' }
            : { type: 'Reconciling', status: 'True', reason, message: retryingMessage(message, attempt) },
          { type: 'Stalled', status: stalled ? 'True' : 'False', reason: stalled ? reason : 'Retrying', message: stalled ? message : 'vmmem retries with backoff' },
        ],
        generation,
        nowText,
      ),
    });
    if (previous?.reason !== reason || previous.status !== 'False') await this.s.event(obj, 'Warning', reason, message, 'Connect');
  }

  private write(obj: StoredObject, status: Record<string, unknown>): Promise<void> {
    const generation = obj.metadata.generation ?? 1;
    const key = { namespace: obj.metadata.namespace, name: obj.metadata.name };
    return this.s.writeStatus(key, (fresh) => ((fresh.metadata.generation ?? 1) === generation ? status : undefined), 'Hypervisor');
  }
}

/** "retrying: <failure> (attempt 3, next in 20ms)"; without a retry to come (`run --once`) it says so. */
function retryingMessage(message: string, attempt: Attempt | undefined): string {
  if (attempt?.attempt === undefined) return `retrying: ${message}`;
  if (!attempt.retryInMs) return `${message} (attempt ${attempt.attempt}; not retried by vmmem run --once)`;
  return `retrying: ${message} (attempt ${attempt.attempt}, next in ${formatDuration(Math.ceil(attempt.retryInMs()))})`;
}
