// Writes the shard labels (SHARD_LABEL, SHARDS_LABEL of shards.ts) on Hypervisors and VMMs, so each
// replica's stores can select their own shards server-side (docs/operations.md, "Sharding").
//
// Who writes: every replica, for the objects that lack the labels or carry another shard count.
// The value is a pure function of the object (namespace/name of the Hypervisor, or of the one a VMM
// references) and of --shards, so concurrent writers write the same bytes and never fight; there is
// no single labeler whose failover would leave new objects unowned meanwhile. The watch selects
// `vmmem.io/shards!=<N>` (which also matches objects without the label), so in steady state it
// holds nothing: no replica lists the fleet to label it.
//
// A VMM whose hypervisorRef changes keeps a now-wrong label; the replica holding that label's shard
// sees the change in its own store and calls relabel() (src/cli/sharded.ts), after which the VMM
// leaves its selector and joins the right shard's.
import * as k8s from '@kubernetes/client-node';
import { GROUP, VERSION } from '../api/group.ts';
import type { ObjectKey, ResourceKind, StoredObject } from '../controller/ports.ts';
import { KINDS, KubeCache } from './cache.ts';
import { apiErrorInfo, isNotFound } from './errors.ts';
import { DEFAULT_REQUEST_TIMEOUT_MS, requestOptions, shareConnections, type Logger } from './http.ts';
import { SHARDS_LABEL, SHARD_LABEL, shardOf } from './shards.ts';

/** The shard an object belongs to: a Hypervisor by its own name, a VMM by its hypervisorRef. */
export function shardOfObject(kind: ResourceKind, obj: Pick<StoredObject, 'metadata' | 'spec'>, shards: number): number {
  const hv = kind === 'Hypervisor' ? obj.metadata.name : hypervisorRefName(obj);
  return shardOf(obj.metadata.namespace, hv, shards);
}

function hypervisorRefName(obj: Pick<StoredObject, 'spec'>): string {
  const ref = (obj.spec as { hypervisorRef?: { name?: unknown } } | undefined)?.hypervisorRef?.name;
  // A VMM without a valid reference still lands in one shard, whose owner reports it invalid.
  return typeof ref === 'string' ? ref : '';
}

/** The selector of the objects a replica holding `held` (out of `shards`) reconciles. */
export function heldSelector(held: readonly number[], shards: number): string {
  return `${SHARD_LABEL} in (${[...held].sort((a, b) => a - b).join(',')}),${SHARDS_LABEL}=${shards}`;
}

export interface ShardLabelerOptions {
  shards: number;
  logger: Logger;
  /** Watch only this namespace; default all. */
  namespace?: string | undefined;
  requestTimeoutMs?: number;
}

export class ShardLabeler {
  private readonly shards: number;
  private readonly logger: Logger;
  private readonly custom: k8s.CustomObjectsApi;
  private readonly cache: KubeCache;
  private readonly timeoutMs: number;
  /** Patches in flight, by kind/key: a burst of watch events for one object patches it once. */
  private readonly pending = new Set<string>();
  private labelled = 0;

  constructor(kubeConfig: k8s.KubeConfig, options: ShardLabelerOptions) {
    this.shards = options.shards;
    this.logger = options.logger;
    this.timeoutMs = options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
    this.custom = shareConnections(kubeConfig).makeApiClient(k8s.CustomObjectsApi);
    this.cache = new KubeCache(kubeConfig, options.logger, {
      namespace: options.namespace,
      labelSelector: `${SHARDS_LABEL}!=${this.shards}`,
      requestTimeoutMs: this.timeoutMs,
    });
  }

  /** Objects this replica labelled so far (metrics, tests). */
  get count(): number {
    return this.labelled;
  }

  async start(): Promise<void> {
    await this.cache.start((kind, key, change) => {
      if (change === 'delete') return;
      const obj = this.cache.get(kind, key);
      if (obj) void this.relabel(kind, obj);
    });
  }

  stop(): Promise<void> {
    return this.cache.stop();
  }

  /** Writes the right shard labels on `obj` if it lacks them; never throws (logged, retried by the next event). */
  async relabel(kind: ResourceKind, obj: StoredObject): Promise<void> {
    const shard = String(shardOfObject(kind, obj, this.shards));
    const labels = obj.metadata.labels ?? {};
    if (labels[SHARD_LABEL] === shard && labels[SHARDS_LABEL] === String(this.shards)) return;
    const id = `${kind}/${obj.metadata.namespace}/${obj.metadata.name}`;
    if (this.pending.has(id)) return;
    this.pending.add(id);
    try {
      await this.patchLabels(kind, obj.metadata, { [SHARD_LABEL]: shard, [SHARDS_LABEL]: String(this.shards) });
      this.labelled++;
      this.logger.debug({ kind, key: `${obj.metadata.namespace}/${obj.metadata.name}`, shard }, 'shard label written');
    } catch (e) {
      if (!isNotFound(e)) this.logger.warn({ kind, key: `${obj.metadata.namespace}/${obj.metadata.name}`, shard, err: apiErrorInfo(e).message }, 'cannot write the shard label');
    } finally {
      this.pending.delete(id);
    }
  }

  /** A JSON merge patch of metadata.labels only: never the spec, never anyone else's labels. */
  private async patchLabels(kind: ResourceKind, key: ObjectKey, labels: Record<string, string>): Promise<void> {
    await this.custom.patchNamespacedCustomObject(
      { group: GROUP, version: VERSION, namespace: key.namespace, plural: KINDS[kind].plural, name: key.name, body: { metadata: { labels } } },
      requestOptions(this.timeoutMs, k8s.PatchStrategy.MergePatch),
    );
  }
}
