/**
 * The operator: an ObjectStore (API server or manifest directory), a pool
 * of hypervisor connections, the reconcilers, and one work queue per kind.
 * Changes, driver events and sync timers all end up as keys in a queue.
 */
import { conditionOf } from './conditions.ts';
import { formatQuantity } from '../api/quantity.ts';
import type { DriverEvent } from '../drivers/driver.ts';
import type { HypervisorPolicy } from '../drivers/policy.ts';
import { createDriver } from '../drivers/registry.ts';
import type { Logger } from './ports.ts';
import { registerSecret } from './log.ts';
import type { Metrics } from './metrics.ts';
import { HypervisorPool } from './pool.ts';
import type { ObjectKey, ObjectStore, StoredObject } from './ports.ts';
import { keyString, parseKey } from './ports.ts';
import { HostViews } from './hostview.ts';
import { HypervisorReconciler } from './hypervisor-reconciler.ts';
import { withReconcileLog } from './reconcile-support.ts';
import { Controller } from './runner.ts';
import type { ReconcileContext, Result } from './runner.ts';
import { RECONCILE_REQUESTED_ANNOTATION, VMMReconciler } from './vmm-reconciler.ts';
import { VMMIndex } from './vmm-index.ts';

export interface OperatorOptions {
  store: ObjectStore;
  log: Logger;
  metrics?: Metrics;
  /** Concurrent VMM reconciles (default 4). */
  concurrency?: number;
  /** Driver call timeout, ms (default 30 s). */
  driverTimeoutMs?: number;
  /**
   * Suffix of the controller names (`virtualmachinememory-<instance>`), hence of their metrics
   * labels and log fields: several Operators in one process (one per shard, src/cli/sharded.ts)
   * must not share queue or reconcile gauges.
   */
  instance?: string;
  /**
   * Whether startWorkers() points the inventory gauges at this Operator's store (default true).
   * A process running several Operators publishes the union of their stores itself.
   */
  publishInventory?: boolean;
  /** The admin's reach policy (operator flags); default: no restriction (standalone, tests). */
  policy?: HypervisorPolicy;
  /**
   * `--once` (src/standalone/once.ts): the same queues and reconcilers, but a
   * pass that fails or waits longer than `shortRequeueMs` is not retried —
   * the status says why and the run reports it.
   */
  once?: { shortRequeueMs: number };
}

export interface OperatorStopOptions {
  /**
   * How long in-flight reconciles may finish before their signals are aborted (default 30 s).
   * 0: abort at once (a shard whose Lease was lost must stop writing now).
   */
  drainTimeoutMs?: number;
}

export class Operator {
  readonly store: ObjectStore;
  readonly vmmReconciler: VMMReconciler;
  readonly hypervisorReconciler: HypervisorReconciler;
  readonly pool: HypervisorPool;
  /** One host view per Hypervisor, shared by its VMMs (hostview.ts). */
  readonly views: HostViews;
  /** Which VMMs reference which Hypervisor and VM. */
  readonly index = new VMMIndex();
  readonly vmms: Controller;
  readonly hypervisors: Controller;
  private readonly log: Logger;
  private readonly metrics: Metrics | undefined;
  private workersStarted = false;
  private readonly publishInventory: boolean;

  constructor(opts: OperatorOptions) {
    this.store = opts.store;
    this.publishInventory = opts.publishInventory ?? true;
    const suffix = opts.instance ? `-${opts.instance}` : '';
    this.log = opts.log;
    this.metrics = opts.metrics;
    const metrics = opts.metrics;
    this.pool = new HypervisorPool({
      store: opts.store,
      log: opts.log,
      timeoutMs: opts.driverTimeoutMs ?? 30_000,
      registerSecret,
      ...(opts.policy ? { createDriver: (o) => createDriver(o, opts.policy) } : {}),
      onEvent: (hv, event) => this.onDriverEvent(hv, event),
    });
    const timeCall = metrics ? { timeCall: <T>(driver: string, op: string, fn: () => Promise<T>) => metrics.timeDriverCall(driver, op, fn) } : {};
    this.views = new HostViews(timeCall);
    this.vmmReconciler = new VMMReconciler({ store: opts.store, pool: this.pool, views: this.views, log: opts.log, vmmsOfHypervisor: (hv) => this.index.idsOfHypervisor(hv), ...timeCall });
    this.hypervisorReconciler = new HypervisorReconciler({
      store: opts.store,
      pool: this.pool,
      views: this.views,
      log: opts.log,
      ...timeCall,
      vmmsOf: (hv) => this.index.ofHypervisor(hv),
      refOf: (vmm) => this.index.refOf(vmm),
      lastSeen: (vmm) => this.vmmReconciler.lastSeen(vmm),
      // Periodic work: the low lane, behind events and spec changes.
      onResync: (_hv, changed) => {
        for (const key of changed) this.vmms.enqueue(key, 'low');
      },
    });
    const once = opts.once;
    const wrap = (ctx: ReconcileContext, pass: () => Promise<Result>) => withReconcileLog(ctx.log, () => (once ? onceOutcome(pass(), once.shortRequeueMs, ctx) : pass()));
    this.vmms = new Controller({
      name: `virtualmachinememory${suffix}`,
      concurrency: opts.concurrency ?? 4,
      logger: opts.log,
      ...(metrics ? { metrics } : {}),
      reconcile: (key, ctx) => wrap(ctx, () => this.vmmReconciler.reconcile(parseKey(key), ctx)),
    });
    this.hypervisors = new Controller({
      name: `hypervisor${suffix}`,
      concurrency: 2,
      logger: opts.log,
      ...(metrics ? { metrics } : {}),
      // --once does not retry a failure: the status must not promise a next attempt.
      reconcile: (key, ctx) => wrap(ctx, () => this.hypervisorReconciler.reconcile(parseKey(key), once ? { signal: ctx.signal, attempt: ctx.attempt } : ctx)),
    });
  }

  /** Both queues empty and nothing in flight or waiting on a timer (`--once` is done). */
  quiet(): boolean {
    return [this.vmms, this.hypervisors].every((c) => c.queue.len() === 0 && c.queue.processing() === 0 && c.queue.delayed() === 0);
  }

  /** Starts the caches; workers too unless `workers: false` (leader election starts them later). */
  async start(opts: { workers?: boolean } = {}): Promise<void> {
    await this.store.start({
      onChange: (kind, key, change) => {
        // Our own status writes come back as updates: only a new generation
        // (a spec change) is work (controller-runtime's GenerationChangedPredicate).
        // A new reconcile-request annotation value is work too (Flux's requestedAt).
        if (kind === 'VirtualMachineMemory') this.indexVMM(key, change);
        if (change === 'update' && !this.generationChanged(kind, key)) return;
        if (change === 'add') this.generationChanged(kind, key);
        if (change === 'delete') this.generations.delete(`${kind}/${keyString(key)}`);
        if (kind === 'Hypervisor') {
          this.hypervisors.enqueue(keyString(key));
          for (const vmm of this.vmmsOf(key)) this.vmms.enqueue(keyString(vmm));
          return;
        }
        this.vmms.enqueue(keyString(key));
        if (change === 'delete') {
          this.vmmReconciler.forget(key);
          // The older of two VMMs on one VM is gone: the newer may take over.
          for (const vmm of this.store.list('VirtualMachineMemory')) {
            const stalled = conditionOf(vmm, 'Stalled');
            if (stalled?.status === 'True' && stalled.reason === 'Conflict') this.vmms.enqueue(keyString(vmm.metadata));
          }
        }
      },
      onSecretChange: (secret) => {
        for (const hv of this.store.list('Hypervisor')) {
          if (hv.metadata.namespace !== secret.namespace) continue;
          const spec = hv.spec as { credentialsSecretRef?: { name?: string }; tls?: { caSecretRef?: { name?: string } } } | undefined;
          if (spec?.credentialsSecretRef?.name === secret.name || spec?.tls?.caSecretRef?.name === secret.name) {
            this.hypervisors.enqueue(keyString(hv.metadata));
            for (const vmm of this.vmmsOf(hv.metadata)) this.vmms.enqueue(keyString(vmm));
          }
        }
      },
    });
    if (opts.workers !== false) this.startWorkers();
  }

  /** Starts reconciling (once leading, with leader election). */
  startWorkers(): void {
    if (this.workersStarted) return;
    this.workersStarted = true;
    this.hypervisors.start();
    this.vmms.start();
    // The initial list goes in the low lane: a spec change or a driver event arriving meanwhile
    // is served first (controller-runtime's priority queue does the same with initial lists).
    for (const hv of this.store.list('Hypervisor')) this.hypervisors.enqueue(keyString(hv.metadata), 'low');
    for (const vmm of this.store.list('VirtualMachineMemory')) {
      this.index.upsert(vmm);
      this.vmms.enqueue(keyString(vmm.metadata), 'low');
    }
    // The inventory gauges (vmmem_vms_managed, ...) are computed from the store on each scrape.
    if (this.publishInventory) this.metrics?.setInventory({ vmms: () => this.store.list('VirtualMachineMemory'), hypervisors: () => this.store.list('Hypervisor') });
  }

  /** Stops taking work, finishes in-flight reconciles, closes connections. */
  async stop(opts: OperatorStopOptions = {}): Promise<void> {
    if (this.publishInventory) this.metrics?.setInventory(undefined);
    const drain = { drain: (opts.drainTimeoutMs ?? 30_000) > 0, timeoutMs: opts.drainTimeoutMs ?? 30_000 };
    await Promise.all([this.vmms.stop(drain), this.hypervisors.stop(drain)]);
    await this.pool.closeAll();
    await this.store.stop();
  }

  private readonly generations = new Map<string, number | undefined>();
  private readonly requested = new Map<string, string | undefined>();

  private generationChanged(kind: 'VirtualMachineMemory' | 'Hypervisor', key: ObjectKey): boolean {
    const id = `${kind}/${keyString(key)}`;
    const obj = this.store.get(kind, key);
    const generation = obj?.metadata.generation;
    const seen = this.generations.get(id);
    this.generations.set(id, generation);
    let ask = false;
    if (kind === 'VirtualMachineMemory') {
      const value = obj?.metadata.annotations?.[RECONCILE_REQUESTED_ANNOTATION];
      ask = this.requested.has(id) && this.requested.get(id) !== value;
      this.requested.set(id, value);
    }
    return generation === undefined || seen !== generation || ask;
  }

  /** Keeps the VMM → Hypervisor/VM index current from the change feed. */
  private indexVMM(key: ObjectKey, change: 'add' | 'update' | 'delete'): void {
    if (change === 'delete') {
      this.index.remove(key);
      this.requested.delete(`VirtualMachineMemory/${keyString(key)}`);
      return;
    }
    const obj = this.store.get('VirtualMachineMemory', key);
    if (obj) this.index.upsert(obj);
  }

  private vmmsOf(hv: ObjectKey): ObjectKey[] {
    return this.index.ofHypervisor(hv).map(parseKey);
  }

  /**
   * Driver events (libvirt lifecycle / balloon / memory device / config):
   * patch or dirty the host view, and re-observe only the VMMs of that VM,
   * in the high lane (ahead of periodic resyncs).
   */
  private onDriverEvent(hv: ObjectKey, event: DriverEvent): void {
    if (event.kind === 'disconnected') {
      this.log.warn({ hypervisor: keyString(hv), reason: event.reason }, 'hypervisor connection lost');
      this.views.drop(hv);
      this.hypervisors.enqueue(keyString(hv));
      for (const vmm of this.vmmsOf(hv)) this.vmms.enqueue(keyString(vmm));
      return;
    }
    const view = this.views.peek(hv);
    if (event.kind === 'balloon') view?.patchBalloon(event.vm, event.actual);
    else view?.markDirty(event.vm);
    for (const id of this.index.forVM(hv, event.vm)) {
      const key = parseKey(id);
      if (event.kind === 'balloon') {
        // Most balloon events report the change vmmem itself just applied.
        // Look a moment later, once that reconcile has recorded what it saw,
        // and only requeue for something new (drift, or a balloon settling).
        const actual = event.actual;
        setTimeout(() => {
          const fresh = this.store.get('VirtualMachineMemory', key);
          if (!fresh || this.vmmReconciler.lastActual(key) === actual || isSettledAt(fresh, actual)) return;
          // Not our own change: someone moved the balloon (virsh setmem), and the event carries
          // only the actual size, not the new target. Read the VM fresh now rather than plan from
          // the view's old target and wait for the balloon poll to notice.
          this.views.peek(hv)?.markDirty(event.vm);
          this.vmms.enqueue(id);
        }, BALLOON_EVENT_SETTLE_MS).unref();
        continue;
      }
      if (event.kind === 'lifecycle' && /start|boot/i.test(event.detail)) this.vmmReconciler.noteRestart(key);
      this.vmms.enqueue(id);
    }
  }
}

/**
 * `--once` outcomes: the reconcile wrote its failure into status, so it is
 * reported, not retried; a requeue longer than `shortMs` (the next sync) is
 * work for a long-running operator, not for this run.
 */
async function onceOutcome(pass: Promise<Result>, shortMs: number, ctx: ReconcileContext): Promise<Result> {
  try {
    const r = await pass;
    return r.requeueAfter !== undefined && r.requeueAfter <= shortMs ? r : {};
  } catch (err) {
    ctx.log.debug({ err: (err as Error).message }, 'not retried in --once');
    return {};
  }
}

const BALLOON_EVENT_SETTLE_MS = 200;

function isSettledAt(vmm: StoredObject, actual: bigint): boolean {
  const status = vmm.status as { observed?: { actualMemory?: string }; observedGeneration?: number } | undefined;
  return conditionOf(vmm, 'Ready')?.status === 'True' && status?.observedGeneration === vmm.metadata.generation && status?.observed?.actualMemory === formatQuantity(actual);
}

