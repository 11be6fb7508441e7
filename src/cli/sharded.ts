// `vmmem run --shards N`: the operator in sharded mode (docs/operations.md, "Sharding").
//
// Every replica joins the ShardCoordinator (src/kube/shards.ts: one Lease per shard, rendezvous
// hashing over the live members) and runs one Operator per shard it holds, each over a ShardStore
// that lists and watches only that shard's Hypervisors and VMMs. Per shard rather than one Operator
// over the whole held set: a shard that changes hands is started or stopped alone, while the other
// shards' work, queues and connections go on untouched, and its informers end with it.
//
// Exactly one writer per Hypervisor: a shard given away is fenced (no status write, no event),
// then its Operator stops (in-flight reconciles drained up to a bound on a hand-over, aborted at
// once when the Lease was lost) and closes its hypervisor connections, and only then is the Lease
// cleared (ShardCoordinator.giveUp) or left to expire.
import type * as k8s from '@kubernetes/client-node';
import { Gauge } from 'prom-client';
import { startHealthServer } from '../controller/health.ts';
import type { MetricsSecurity } from '../controller/health.ts';
import { Operator } from '../controller/operator.ts';
import type { HypervisorPolicy } from '../drivers/policy.ts';
import type { Metrics } from '../controller/metrics.ts';
import type { Logger, StoredObject } from '../controller/ports.ts';
import { ShardLabeler } from '../kube/labeler.ts';
import { ShardCoordinator } from '../kube/shards.ts';
import { ShardStore } from '../kube/shardstore.ts';

export interface ShardedOperatorOptions {
  kubeConfig: k8s.KubeConfig;
  log: Logger;
  metrics: Metrics;
  shards: number;
  identity: string;
  /** The operator's own namespace: its Leases live there. */
  leaseNamespace: string;
  /** Watch only this namespace for Hypervisors/VMMs; default all. */
  namespace?: string | undefined;
  concurrency?: number;
  /** The admin's reach policy (--allow-sim-hypervisors, --hypervisor-allow), as for one replica. */
  policy?: HypervisorPolicy;
  leaseDurationMs?: number;
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
  /** How long a hand-over lets in-flight reconciles finish before aborting them; default 10 s. */
  handoverDrainMs?: number;
}

interface Running {
  store: ShardStore;
  operator: Operator;
  started: Promise<void>;
}

export class ShardedOperator {
  readonly coordinator: ShardCoordinator;
  private readonly opts: ShardedOperatorOptions;
  private readonly log: Logger;
  private readonly labeler: ShardLabeler;
  private readonly running = new Map<number, Running>();
  private loop: Promise<void> | undefined;

  constructor(opts: ShardedOperatorOptions) {
    this.opts = opts;
    this.log = opts.log;
    this.labeler = new ShardLabeler(opts.kubeConfig, { shards: opts.shards, logger: opts.log, namespace: opts.namespace });
    this.coordinator = new ShardCoordinator(opts.kubeConfig, {
      namespace: opts.leaseNamespace,
      shards: opts.shards,
      identity: opts.identity,
      logger: opts.log,
      ...(opts.leaseDurationMs !== undefined ? { leaseDurationMs: opts.leaseDurationMs } : {}),
      ...(opts.renewDeadlineMs !== undefined ? { renewDeadlineMs: opts.renewDeadlineMs } : {}),
      ...(opts.retryPeriodMs !== undefined ? { retryPeriodMs: opts.retryPeriodMs } : {}),
    });
    this.registerMetrics(opts.metrics);
  }

  /** Ready once every held shard's store has listed (a replica holding none is ready too). */
  get synced(): boolean {
    return [...this.running.values()].every((r) => r.store.synced);
  }

  /** Starts labelling and joins the shard membership; resolves once labelling has listed. */
  async start(): Promise<void> {
    await this.labeler.start();
    this.loop = this.coordinator.run({ start: (k, signal) => this.startShard(k, signal), stop: (k, why) => this.stopShard(k, why) });
    this.log.info({ identity: this.opts.identity, shards: this.opts.shards }, 'sharded mode: joined the shard membership');
  }

  /** Hands every shard over (work stopped before each Lease is cleared) and stops labelling. */
  async stop(): Promise<void> {
    await this.coordinator.stop();
    await this.loop;
    await this.labeler.stop();
  }

  /** We hold shard k: an Operator over a store of only its objects. */
  private async startShard(shard: number, signal: AbortSignal): Promise<void> {
    if (this.running.has(shard)) return;
    const store = new ShardStore(this.opts.kubeConfig, this.log, { shard, shards: this.opts.shards, identity: this.opts.identity, labeler: this.labeler, namespace: this.opts.namespace });
    const operator = new Operator({
      store,
      log: this.log.child({ shard }),
      metrics: this.opts.metrics,
      concurrency: this.opts.concurrency ?? 4,
      instance: `shard-${shard}`,
      publishInventory: false,
      ...(this.opts.policy ? { policy: this.opts.policy } : {}),
    });
    // The Lease can be lost while the informers still list: the fence comes first then.
    signal.addEventListener('abort', () => store.fence(), { once: true });
    const started = operator.start();
    this.running.set(shard, { store, operator, started });
    this.publishInventory();
    await started;
  }

  /** Fence, then stop: resolves only when nothing more can be written for shard k. */
  private async stopShard(shard: number, why: 'handover' | 'shutdown' | 'lost'): Promise<void> {
    const run = this.running.get(shard);
    if (!run) return;
    run.store.fence();
    await run.started.catch(() => undefined);
    const drainTimeoutMs = why === 'lost' ? 0 : (this.opts.handoverDrainMs ?? 10_000);
    await run.operator.stop({ drainTimeoutMs });
    this.running.delete(shard);
    this.publishInventory();
    this.log.info({ shard, why }, 'shard work stopped');
  }

  /** The inventory gauges (vmmem_vms_managed, ...) over every held shard's store. */
  private publishInventory(): void {
    const all = (kind: 'VirtualMachineMemory' | 'Hypervisor') => (): StoredObject[] => [...this.running.values()].flatMap((r) => r.store.list(kind));
    this.opts.metrics.setInventory({ vmms: all('VirtualMachineMemory'), hypervisors: all('Hypervisor') });
  }

  private registerMetrics(metrics: Metrics): void {
    const held = (): number[] => this.coordinator.held();
    const registers = [metrics.registry];
    new Gauge({
      name: 'vmmem_shards_held',
      help: 'Shards whose Lease this replica holds (sharded mode).',
      registers,
      collect() {
        this.set(held().length);
      },
    });
    new Gauge({
      name: 'vmmem_shards_total',
      help: 'The configured shard count (--shards).',
      registers,
    }).set(this.opts.shards);
    const running = this.running;
    for (const [name, kind, help] of [
      ['vmmem_shard_hypervisors', 'Hypervisor', 'Hypervisors in each shard this replica holds.'],
      ['vmmem_shard_vmms', 'VirtualMachineMemory', 'VirtualMachineMemories in each shard this replica holds.'],
    ] as const) {
      new Gauge({
        name,
        help,
        labelNames: ['shard'],
        registers,
        collect() {
          this.reset();
          for (const [shard, r] of running) this.set({ shard: String(shard) }, r.store.list(kind).length);
        },
      });
    }
    new Gauge({
      name: 'vmmem_shard_queue_depth',
      help: 'Keys waiting in the VMM and Hypervisor queues of each shard this replica holds.',
      labelNames: ['shard'],
      registers,
      collect() {
        this.reset();
        for (const [shard, r] of running) this.set({ shard: String(shard) }, r.operator.vmms.queue.len() + r.operator.hypervisors.queue.len());
      },
    });
  }
}

/** `vmmem run --shards N`: serves /metrics and the probes, runs until SIGTERM/SIGINT, then hands every shard over. */
export async function runSharded(opts: ShardedOperatorOptions & { metricsAddress: string; probeAddress: string; metricsSecurity?: MetricsSecurity }): Promise<number> {
  const sharded = new ShardedOperator(opts);
  const server = await startHealthServer({
    metricsAddress: opts.metricsAddress,
    probeAddress: opts.probeAddress,
    metrics: { text: () => opts.metrics.text(), contentType: 'text/plain; version=0.0.4; charset=utf-8' },
    ...opts.metricsSecurity,
    ready: () => (sharded.synced ? true : 'shard caches not synced'),
    logger: opts.log,
  });
  let stopping: Promise<void> | undefined;
  const stop = (why: string): Promise<void> => {
    stopping ??= (async () => {
      opts.log.info({ why }, 'shutting down: handing every shard over');
      await sharded.stop();
      await server.close();
      opts.log.info({}, 'stopped');
    })();
    return stopping;
  };
  const done = new Promise<void>((resolve) => {
    process.once('SIGTERM', () => void stop('SIGTERM').then(resolve));
    process.once('SIGINT', () => void stop('SIGINT').then(resolve));
  });
  await sharded.start();
  opts.log.info({ probes: server.probeUrl, metrics: server.metricsUrl ?? server.probeUrl }, 'vmmem running (sharded)');
  await done;
  return 0;
}
