/**
 * Prometheus metrics with controller-runtime-compatible names and labels (its
 * pkg/internal/controller/metrics and pkg/metrics/workqueue.go), plus vmmem's own. Each `Metrics`
 * owns its prom-client `Registry` (never the global one), so tests are isolated and the
 * composition root decides what is served on /metrics.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { parseQuantity } from '../api/quantity.ts';
import type { StoredObject } from './ports.ts';
import type { InFlightProbe, QueueMetrics } from './queue.ts';

/** controller-runtime's reconcile_time_seconds buckets. */
export const RECONCILE_TIME_BUCKETS = [
  0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.25, 1.5,
  1.75, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5, 6, 7, 8, 9, 10, 15, 20, 25, 30, 40, 50, 60,
];

/** client-go/controller-runtime workqueue latency buckets: 10 ns × 10^0..11 (10 ns … 1000 s). */
export const WORKQUEUE_BUCKETS = Array.from({ length: 12 }, (_, i) => Number((1e-8 * 10 ** i).toPrecision(1)));

/** Driver call latency buckets: hypervisor calls range from sub-millisecond RPCs to minute-long tasks. */
export const DRIVER_CALL_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];

/** Reconcile outcomes, as controller-runtime labels them. */
export type ReconcileResult = 'success' | 'error' | 'requeue' | 'requeue_after';

/** VM states for `vmmem_vms_managed`; every one is exported (0 when no VM is in it). */
export const VM_STATES = ['Ready', 'Reconciling', 'RestartRequired', 'Stalled', 'Unknown'] as const;

/** What the inventory gauges are computed from at scrape time: the store's current objects. */
export interface Inventory {
  vmms(): readonly StoredObject[];
  hypervisors(): readonly StoredObject[];
}

/** status.observed fields summed into `vmmem_memory_managed_bytes{field}`. */
const MEMORY_FIELDS = ['maxMemory', 'memory', 'actualMemory'] as const;

export interface MetricsOptions {
  /** Registry to register on; default a fresh one. */
  registry?: Registry;
  /** Node process metrics (collectDefaultMetrics); default true. */
  processMetrics?: boolean;
}

export class Metrics {
  readonly registry: Registry;

  readonly reconcileTotal: Counter<'controller' | 'result'>;
  readonly reconcileErrors: Counter<'controller'>;
  readonly terminalReconcileErrors: Counter<'controller'>;
  readonly reconcileTime: Histogram<'controller'>;
  readonly maxConcurrentReconciles: Gauge<'controller'>;
  readonly activeWorkers: Gauge<'controller'>;

  readonly workqueueDepth: Gauge<'name'>;
  readonly workqueueAdds: Counter<'name'>;
  readonly workqueueRetries: Counter<'name'>;
  readonly workqueueQueueDuration: Histogram<'name'>;
  readonly workqueueWorkDuration: Histogram<'name'>;
  readonly workqueueUnfinishedWork: Gauge<'name'>;
  readonly workqueueLongestRunningProcessor: Gauge<'name'>;

  readonly driverCallSeconds: Histogram<'driver' | 'op' | 'result'>;
  readonly vmsManaged: Gauge<'state'>;
  readonly vmConditions: Gauge<'type' | 'reason'>;
  readonly hypervisorConnected: Gauge<'hypervisor_namespace' | 'hypervisor'>;
  readonly memoryManagedBytes: Gauge<'hypervisor_namespace' | 'hypervisor' | 'field'>;
  readonly leaderElectionMasterStatus: Gauge<'name'>;

  readonly #probes = new Map<string, InFlightProbe>();
  #inventory: Inventory | undefined;

  constructor(opts: MetricsOptions = {}) {
    const registry = opts.registry ?? new Registry();
    this.registry = registry;
    const registers = [registry];
    const probes = this.#probes;

    this.reconcileTotal = new Counter({
      name: 'controller_runtime_reconcile_total',
      help: 'Total number of reconciliations per controller',
      labelNames: ['controller', 'result'],
      registers,
    });
    this.reconcileErrors = new Counter({
      name: 'controller_runtime_reconcile_errors_total',
      help: 'Total number of reconciliation errors per controller',
      labelNames: ['controller'],
      registers,
    });
    this.terminalReconcileErrors = new Counter({
      name: 'controller_runtime_terminal_reconcile_errors_total',
      help: 'Total number of terminal reconciliation errors per controller',
      labelNames: ['controller'],
      registers,
    });
    this.reconcileTime = new Histogram({
      name: 'controller_runtime_reconcile_time_seconds',
      help: 'Length of time per reconciliation per controller',
      labelNames: ['controller'],
      buckets: RECONCILE_TIME_BUCKETS,
      registers,
    });
    this.maxConcurrentReconciles = new Gauge({
      name: 'controller_runtime_max_concurrent_reconciles',
      help: 'Maximum number of concurrent reconciles per controller',
      labelNames: ['controller'],
      registers,
    });
    this.activeWorkers = new Gauge({
      name: 'controller_runtime_active_workers',
      help: 'Number of currently used workers per controller',
      labelNames: ['controller'],
      registers,
    });

    this.workqueueDepth = new Gauge({
      name: 'workqueue_depth',
      help: 'Current depth of workqueue',
      labelNames: ['name'],
      registers,
    });
    this.workqueueAdds = new Counter({
      name: 'workqueue_adds_total',
      help: 'Total number of adds handled by workqueue',
      labelNames: ['name'],
      registers,
    });
    this.workqueueRetries = new Counter({
      name: 'workqueue_retries_total',
      help: 'Total number of retries handled by workqueue',
      labelNames: ['name'],
      registers,
    });
    this.workqueueQueueDuration = new Histogram({
      name: 'workqueue_queue_duration_seconds',
      help: 'How long in seconds an item stays in workqueue before being requested',
      labelNames: ['name'],
      buckets: WORKQUEUE_BUCKETS,
      registers,
    });
    this.workqueueWorkDuration = new Histogram({
      name: 'workqueue_work_duration_seconds',
      help: 'How long in seconds processing an item from workqueue takes',
      labelNames: ['name'],
      buckets: WORKQUEUE_BUCKETS,
      registers,
    });
    this.workqueueUnfinishedWork = new Gauge({
      name: 'workqueue_unfinished_work_seconds',
      help:
        'How many seconds of work has been done that is in progress and hasn\'t been observed by work_duration. ' +
        'Large values indicate stuck threads. One can deduce the number of stuck threads by observing the rate at which this increases.',
      labelNames: ['name'],
      registers,
      collect() {
        for (const [name, p] of probes) this.set({ name }, p.unfinishedWorkSeconds());
      },
    });
    this.workqueueLongestRunningProcessor = new Gauge({
      name: 'workqueue_longest_running_processor_seconds',
      help: 'How many seconds has the longest running processor for workqueue been running.',
      labelNames: ['name'],
      registers,
      collect() {
        for (const [name, p] of probes) this.set({ name }, p.longestRunningProcessorSeconds());
      },
    });

    this.driverCallSeconds = new Histogram({
      name: 'vmmem_driver_call_seconds',
      help: 'Duration of hypervisor driver calls by driver, operation and result (ok|error)',
      labelNames: ['driver', 'op', 'result'],
      buckets: DRIVER_CALL_BUCKETS,
      registers,
    });
    // The inventory gauges are computed from the store when scraped (not on a timer), so they are
    // current as soon as a status write reaches the store's cache: a VMM turning Stalled shows on
    // the next scrape. Without an inventory (before the operator leads) they keep what was set.
    const inventory = () => this.#inventory;
    this.vmsManaged = new Gauge({
      name: 'vmmem_vms_managed',
      help: 'Number of VirtualMachineMemory objects managed, by state (Ready, Reconciling, RestartRequired, Stalled, Unknown)',
      labelNames: ['state'],
      registers,
      collect() {
        const inv = inventory();
        if (inv === undefined) return;
        const counts: Record<string, number> = Object.fromEntries(VM_STATES.map((st) => [st, 0]));
        for (const vmm of inv.vmms()) counts[vmState(vmm)] = (counts[vmState(vmm)] ?? 0) + 1;
        this.reset();
        for (const [state, n] of Object.entries(counts)) this.set({ state }, n);
      },
    });
    this.vmConditions = new Gauge({
      name: 'vmmem_vm_conditions',
      help: 'Number of VirtualMachineMemory objects with condition `type` True, by its reason (e.g. Stalled/BalloonUnresponsive)',
      labelNames: ['type', 'reason'],
      registers,
      collect() {
        const inv = inventory();
        if (inv === undefined) return;
        this.reset();
        const counts = new Map<string, { type: string; reason: string; n: number }>();
        for (const vmm of inv.vmms()) {
          for (const c of conditionsOf(vmm)) {
            if (c.status !== 'True') continue;
            const id = `${c.type}\u0000${c.reason}`;
            const entry = counts.get(id) ?? { type: c.type, reason: c.reason, n: 0 };
            entry.n++;
            counts.set(id, entry);
          }
        }
        for (const { type, reason, n } of counts.values()) this.set({ type, reason }, n);
      },
    });
    this.hypervisorConnected = new Gauge({
      name: 'vmmem_hypervisor_connected',
      help: 'Whether vmmem is connected to the Hypervisor (its Connected condition): 1 connected, 0 not (yet)',
      labelNames: ['hypervisor_namespace', 'hypervisor'],
      registers,
      collect() {
        const inv = inventory();
        if (inv === undefined) return;
        this.reset();
        for (const hv of inv.hypervisors()) {
          const connected = conditionsOf(hv).find((c) => c.type === 'Connected')?.status === 'True';
          this.set({ hypervisor_namespace: hv.metadata.namespace ?? '', hypervisor: hv.metadata.name }, connected ? 1 : 0);
        }
      },
    });
    this.memoryManagedBytes = new Gauge({
      name: 'vmmem_memory_managed_bytes',
      help: 'Sum over the VMs vmmem manages on each Hypervisor of the observed maxMemory, memory (balloon target) and actualMemory, in bytes',
      labelNames: ['hypervisor_namespace', 'hypervisor', 'field'],
      registers,
      collect() {
        const inv = inventory();
        if (inv === undefined) return;
        this.reset();
        const sums = new Map<string, { namespace: string; hypervisor: string; field: string; bytes: bigint }>();
        for (const vmm of inv.vmms()) {
          const hypervisor = (vmm.spec as { hypervisorRef?: { name?: unknown } } | undefined)?.hypervisorRef?.name;
          const observed = vmm.status?.observed as Record<string, unknown> | undefined;
          if (typeof hypervisor !== 'string' || observed === undefined) continue;
          const namespace = vmm.metadata.namespace ?? '';
          for (const field of MEMORY_FIELDS) {
            const bytes = bytesOf(observed[field]);
            if (bytes === undefined) continue;
            const id = `${namespace}/${hypervisor}/${field}`;
            const entry = sums.get(id) ?? { namespace, hypervisor, field, bytes: 0n };
            entry.bytes += bytes;
            sums.set(id, entry);
          }
        }
        for (const { namespace, hypervisor, field, bytes } of sums.values()) this.set({ hypervisor_namespace: namespace, hypervisor, field }, Number(bytes));
      },
    });
    this.leaderElectionMasterStatus = new Gauge({
      name: 'leader_election_master_status',
      help: 'Gauge of if the reporting system is master of the relevant lease, 0 indicates backup, 1 indicates master. \'name\' is the string used to identify the lease.',
      labelNames: ['name'],
      registers,
    });

    if (opts.processMetrics ?? true) collectDefaultMetrics({ register: registry });
  }

  /** Hooks for a work queue whose metrics carry `name` (pass to `new WorkQueue({ metrics })`). */
  queue(name: string): QueueMetrics {
    const depth = this.workqueueDepth.labels({ name });
    const adds = this.workqueueAdds.labels({ name });
    const retries = this.workqueueRetries.labels({ name });
    const queueDuration = this.workqueueQueueDuration.labels({ name });
    const workDuration = this.workqueueWorkDuration.labels({ name });
    // Zero-initialise so the series exist before the first event, as client-go's do.
    depth.set(0);
    adds.inc(0);
    retries.inc(0);
    this.workqueueUnfinishedWork.set({ name }, 0);
    this.workqueueLongestRunningProcessor.set({ name }, 0);
    return {
      add: () => adds.inc(),
      depth: (n) => depth.set(n),
      retry: () => retries.inc(),
      queueDuration: (s) => queueDuration.observe(s),
      workDuration: (s) => workDuration.observe(s),
      inFlight: (probe) => {
        this.#probes.set(name, probe);
      },
    };
  }

  /** Initialises a controller's series (as controller-runtime does at start) and sets its concurrency. */
  initController(controller: string, maxConcurrent: number): void {
    for (const result of ['success', 'error', 'requeue', 'requeue_after'] as const) {
      this.reconcileTotal.inc({ controller, result }, 0);
    }
    this.reconcileErrors.inc({ controller }, 0);
    this.terminalReconcileErrors.inc({ controller }, 0);
    this.maxConcurrentReconciles.set({ controller }, maxConcurrent);
    this.activeWorkers.set({ controller }, 0);
  }

  /** Times `fn` into `vmmem_driver_call_seconds{driver,op,result}` (result ok|error); rethrows. */
  async timeDriverCall<T>(driver: string, op: string, fn: () => Promise<T> | T): Promise<T> {
    const start = performance.now();
    let result = 'error';
    try {
      const value = await fn();
      result = 'ok';
      return value;
    } finally {
      this.driverCallSeconds.observe({ driver, op, result }, (performance.now() - start) / 1000);
    }
  }

  /**
   * Computes `vmmem_vms_managed`, `vmmem_vm_conditions`, `vmmem_hypervisor_connected` and
   * `vmmem_memory_managed_bytes` from `inventory` on every scrape (the leader registers its store).
   * `undefined` stops it (a replica that lost the lease exports none of them).
   */
  setInventory(inventory: Inventory | undefined): void {
    this.#inventory = inventory;
    if (inventory === undefined) {
      for (const g of [this.vmsManaged, this.vmConditions, this.hypervisorConnected, this.memoryManagedBytes]) g.reset();
    }
  }

  /** Sets `vmmem_vms_managed` from counts per state; known states missing from `counts` become 0. */
  setVMsManaged(counts: Readonly<Record<string, number>>): void {
    for (const state of VM_STATES) this.vmsManaged.set({ state }, counts[state] ?? 0);
    for (const [state, n] of Object.entries(counts)) this.vmsManaged.set({ state }, n);
  }

  /** Sets `leader_election_master_status{name}` to 1 (leader) or 0 (standby). */
  setLeader(name: string, leader: boolean): void {
    this.leaderElectionMasterStatus.set({ name }, leader ? 1 : 0);
  }

  /** The Prometheus text exposition of the registry. */
  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}

interface ConditionLike {
  type: string;
  status: string;
  reason: string;
}

function conditionsOf(obj: StoredObject): ConditionLike[] {
  const list = obj.status?.conditions;
  if (!Array.isArray(list)) return [];
  return list.filter(
    (c): c is ConditionLike => typeof c === 'object' && c !== null && typeof (c as ConditionLike).type === 'string' && typeof (c as ConditionLike).status === 'string',
  ).map((c) => ({ type: c.type, status: c.status, reason: typeof c.reason === 'string' ? c.reason : '' }));
}

/** A VMM's state for `vmmem_vms_managed`, in the order the conditions take precedence. */
export function vmState(vmm: StoredObject): (typeof VM_STATES)[number] {
  const conditions = conditionsOf(vmm);
  const is = (type: string) => conditions.some((c) => c.type === type && c.status === 'True');
  return is('Ready') ? 'Ready' : is('Stalled') ? 'Stalled' : is('RestartRequired') ? 'RestartRequired' : is('Reconciling') ? 'Reconciling' : 'Unknown';
}

/** status.observed holds canonical quantity strings; anything else is skipped, never guessed. */
function bytesOf(value: unknown): bigint | undefined {
  if (typeof value !== 'string') return undefined;
  try {
    return parseQuantity(value, 'status.observed');
  } catch {
    return undefined;
  }
}

let defaultInstance: Metrics | undefined;

/** The process-wide metrics (created on first use); the composition root serves it on /metrics. */
export function defaultMetrics(): Metrics {
  defaultInstance ??= new Metrics();
  return defaultInstance;
}

/** Replaces the process-wide metrics (the composition root, or a test). */
export function setDefaultMetrics(m: Metrics): void {
  defaultInstance = m;
}

/** Times a driver call into `vmmem_driver_call_seconds` of `metrics` (default: the process-wide one). */
export function timeDriverCall<T>(
  driver: string,
  op: string,
  fn: () => Promise<T> | T,
  metrics: Metrics = defaultMetrics(),
): Promise<T> {
  return metrics.timeDriverCall(driver, op, fn);
}
