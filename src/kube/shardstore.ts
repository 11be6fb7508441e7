// The ObjectStore of one shard (src/cli/sharded.ts): a KubeStore that lists and watches only
// `vmmem.io/shard=<k>,vmmem.io/shards=<N>`, plus the three things sharding adds around it:
//
//   - a fence: once the shard is being given up, status writes and events are refused, so a
//     reconcile still finishing after its signal was aborted cannot write for a shard another
//     replica may already hold;
//   - a VMM whose hypervisorRef now points into another shard (a spec edit) is hidden from this
//     shard's Operator and relabelled, after which it leaves this selector and joins the right one;
//   - every Hypervisor status write carries status.shard and status.shardOwner.
import type * as k8s from '@kubernetes/client-node';
import type { ChangeHandlers, EventType, ObjectKey, ObjectStore, ResourceKind, StoredObject } from '../controller/ports.ts';
import type { Logger } from './http.ts';
import type { InformerOptions } from './informer.ts';
import { shardOfObject, type ShardLabeler } from './labeler.ts';
import { SHARDS_LABEL, SHARD_LABEL } from './shards.ts';
import { KubeStore } from './store.ts';

export class ShardFencedError extends Error {
  constructor(shard: number, what: string) {
    super(`shard ${shard} was handed over: refusing to ${what} (another replica owns it now)`);
    this.name = 'ShardFencedError';
  }
}

export interface ShardStoreOptions {
  shard: number;
  shards: number;
  identity: string;
  labeler: ShardLabeler;
  namespace?: string | undefined;
  informer?: InformerOptions | undefined;
}

export class ShardStore implements ObjectStore {
  readonly shard: number;
  private readonly shards: number;
  private readonly identity: string;
  private readonly labeler: ShardLabeler;
  private readonly inner: KubeStore;
  private fenced = false;
  /** Bumped on every change: list() filters at most once per change. */
  private version = 0;
  private readonly filtered = new Map<ResourceKind, { version: number; items: StoredObject[] }>();

  constructor(kubeConfig: k8s.KubeConfig, logger: Logger, options: ShardStoreOptions) {
    this.shard = options.shard;
    this.shards = options.shards;
    this.identity = options.identity;
    this.labeler = options.labeler;
    this.inner = new KubeStore(kubeConfig, logger.child({ shard: options.shard }), {
      ...(options.namespace ? { namespace: options.namespace } : {}),
      labelSelector: `${SHARD_LABEL}=${options.shard},${SHARDS_LABEL}=${options.shards}`,
      fieldManager: 'vmmem',
      ...(options.informer ? { informer: options.informer } : {}),
    });
  }

  get synced(): boolean {
    return this.inner.synced;
  }

  /** From now on nothing is written for this shard (called before its work is stopped). */
  fence(): void {
    this.fenced = true;
  }

  async start(handlers: ChangeHandlers): Promise<void> {
    await this.inner.start({
      ...handlers,
      onChange: (kind, key, change) => {
        this.version++;
        const obj = this.inner.get(kind, key);
        if (obj && !this.belongs(kind, obj)) {
          void this.labeler.relabel(kind, obj);
          return;
        }
        handlers.onChange(kind, key, change);
      },
    });
  }

  stop(): Promise<void> {
    this.fenced = true;
    return this.inner.stop();
  }

  get(kind: ResourceKind, key: ObjectKey): StoredObject | undefined {
    const obj = this.inner.get(kind, key);
    return obj && this.belongs(kind, obj) ? obj : undefined;
  }

  list(kind: ResourceKind): StoredObject[] {
    const memo = this.filtered.get(kind);
    if (memo && memo.version === this.version) return memo.items.slice();
    const items = this.inner.list(kind).filter((o) => this.belongs(kind, o));
    if (this.inner.synced) this.filtered.set(kind, { version: this.version, items });
    return items.slice();
  }

  getSecret(key: ObjectKey): Promise<Record<string, string> | undefined> {
    return this.inner.getSecret(key);
  }

  updateStatus(kind: ResourceKind, key: ObjectKey, compute: (fresh: StoredObject) => Record<string, unknown> | undefined): Promise<void> {
    if (this.fenced) return Promise.reject(new ShardFencedError(this.shard, `write the status of ${kind} ${key.namespace}/${key.name}`));
    if (kind !== 'Hypervisor') return this.inner.updateStatus(kind, key, compute);
    return this.inner.updateStatus(kind, key, (fresh) => this.withOwner(fresh, compute(fresh)));
  }

  recordEvent(obj: StoredObject, type: EventType, reason: string, note: string, action: string): Promise<void> {
    if (this.fenced) return Promise.resolve(); // events are best effort; a fenced shard records none
    return this.inner.recordEvent(obj, type, reason, note, action);
  }

  private belongs(kind: ResourceKind, obj: StoredObject): boolean {
    return kind === 'Hypervisor' || shardOfObject(kind, obj, this.shards) === this.shard;
  }

  /** The status to write with status.shard/shardOwner set (undefined when nothing changes). */
  private withOwner(fresh: StoredObject, next: Record<string, unknown> | undefined): Record<string, unknown> | undefined {
    const current = (fresh.status ?? {}) as Record<string, unknown>;
    if (next === undefined && current.shard === this.shard && current.shardOwner === this.identity) return undefined;
    return { ...(next ?? current), shard: this.shard, shardOwner: this.identity };
  }
}
