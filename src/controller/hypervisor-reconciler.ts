/**
 * The Hypervisor reconciler (DESIGN §5, §6; issue #13, #17.1): connect
 * (pooled) → identify → status, then the host resync: one observeAll per
 * syncInterval re-lists the host view, and only the VMMs whose VM differs
 * from what their last reconcile saw are queued (low lane). Drivers without
 * observeAll have no host view; their VMMs look on their own timers.
 */
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

export class HypervisorReconciler {
  private readonly s: ReconcileSupport;
  private readonly opts: HypervisorReconcilerOptions;

  constructor(opts: HypervisorReconcilerOptions) {
    this.opts = opts;
    this.s = new ReconcileSupport(opts);
  }

  async reconcile(key: ObjectKey, ctx?: Pick<ReconcileContext, 'signal'>): Promise<Result> {
    const obj = this.s.store.get('Hypervisor', key);
    if (!obj) {
      this.opts.views.drop(key);
      await this.opts.pool.invalidate(key, 'Hypervisor deleted');
      return {};
    }
    const spec = parseSpec(HypervisorSpecSchema, obj.spec);
    if (!spec.ok) {
      await this.failed(obj, spec.reason, spec.message, true);
      throw new TerminalError(`Hypervisor ${key.namespace}/${key.name}: ${spec.reason}: ${spec.message}`);
    }
    const syncMs = durationOr(spec.value.syncInterval, 'spec.syncInterval', DEFAULT_SYNC_INTERVAL_MS);
    let connected;
    try {
      connected = await this.opts.pool.get(key, spec.value);
    } catch (err) {
      const failure = connectionFailure(key.name, err);
      await this.failed(obj, failure.reason, failure.message, failure.stalled);
      if (failure.stalled) throw new TerminalError(`Hypervisor ${key.namespace}/${key.name}: ${failure.reason}: ${failure.message}`);
      throw new RetryableError(failure.reason, failure.message, { cause: err });
    }
    await this.resync(obj, connected.driver, syncMs, ctx?.signal);
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
  private async resync(obj: StoredObject, driver: Parameters<HostViews['ensure']>[1], syncMs: number, signal: AbortSignal | undefined): Promise<void> {
    const key = { namespace: obj.metadata.namespace, name: obj.metadata.name };
    let done;
    try {
      done = await this.opts.views.resync(key, driver, { ...(signal ? { signal } : {}), maxAgeMs: syncMs / 2 });
    } catch (err) {
      await this.opts.pool.noteError(key, err);
      const failure = connectionFailure(key.name, err);
      const message = `host resync (observeAll): ${failure.message}`;
      await this.failed(obj, failure.reason, message, false);
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

  private async failed(obj: StoredObject, reason: string, message: string, stalled: boolean): Promise<void> {
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
