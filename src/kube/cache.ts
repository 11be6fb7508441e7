// The read side of the Kubernetes adapter: one ResilientInformer per kind (VirtualMachineMemory,
// Hypervisor), all namespaces or one. They survive every watch failure and never lose an update
// (informer.ts); this file turns their raw objects into the controller's read-only StoredObject
// views and serves get/list from them.
import * as k8s from '@kubernetes/client-node';
import { GROUP, VERSION, API_VERSION, VMM_KIND, VMM_PLURAL, HYPERVISOR_KIND, HYPERVISOR_PLURAL } from '../api/group.ts';
import type { ChangeType, ObjectKey, ObjectMeta, ResourceKind, StoredObject } from '../controller/ports.ts';
import { KubeApiError } from './errors.ts';
import { requestOptions, type Logger } from './http.ts';
import { ResilientInformer, type InformerOptions, type InformerStats } from './informer.ts';

/** An object of our kinds as the API server sends it. */
export interface RawObject {
  apiVersion?: string;
  kind?: string;
  /** The controller's ObjectMeta, every field optional as sent, plus whatever else the server adds. */
  metadata?: Partial<ObjectMeta> & { [k: string]: unknown };
  spec?: unknown;
  status?: Record<string, unknown>;
}

export const KINDS: Record<ResourceKind, { plural: string; kind: string }> = {
  VirtualMachineMemory: { plural: VMM_PLURAL, kind: VMM_KIND },
  Hypervisor: { plural: HYPERVISOR_PLURAL, kind: HYPERVISOR_KIND },
};

export const describeKey = (kind: string, key: ObjectKey) => `${kind} ${key.namespace}/${key.name}`;

/**
 * The controller's view of an object as the API server sent it, frozen. The informer makes it once
 * per object version on ingest and caches it; get/list hand out that same object (no copy per read:
 * reconciles read thousands of these per pass, and the scale benchmark measured copies here as a
 * third of the operator's CPU and most of its garbage), so callers must treat them as read-only
 * (ObjectStore says so; the freeze makes a mutation fail loudly).
 */
export function toStored(kind: ResourceKind, raw: RawObject): StoredObject {
  const o = deepFreeze(raw);
  return Object.freeze({
    ...o,
    apiVersion: o.apiVersion ?? API_VERSION,
    kind: o.kind ?? KINDS[kind].kind,
    metadata: Object.freeze({ ...o.metadata, name: o.metadata?.name ?? '', namespace: o.metadata?.namespace ?? '' }),
    spec: o.spec,
    ...(o.status !== undefined ? { status: o.status } : {}),
  });
}

/** Freezes a cached object once, so a caller that mutates a shared view fails loudly instead of corrupting the cache. */
function deepFreeze<T>(v: T): T {
  if (v === null || typeof v !== 'object' || Object.isFrozen(v)) return v;
  Object.freeze(v);
  for (const child of Object.values(v as object)) deepFreeze(child);
  return v;
}

export interface KubeCacheOptions {
  /** Watch only this namespace; default all namespaces. */
  namespace?: string | undefined;
  /** Server-side label selector for both kinds (sharding: only this replica's shards); default everything. */
  labelSelector?: string | undefined;
  /** Timeout of each list request. */
  requestTimeoutMs: number;
  informer?: InformerOptions | undefined;
}

export type CacheListener = (kind: ResourceKind, key: ObjectKey, change: ChangeType) => void;

export class KubeCache {
  private readonly kubeConfig: k8s.KubeConfig;
  private readonly logger: Logger;
  private readonly namespace: string | undefined;
  private readonly labelSelector: string | undefined;
  private readonly timeoutMs: number;
  private readonly informerOptions: InformerOptions | undefined;
  private readonly custom: k8s.CustomObjectsApi;
  private informers: Record<ResourceKind, ResilientInformer<StoredObject>> | undefined;
  /** list() result per kind until the next change: reconciles list far more often than objects change. */
  private readonly listCache = new Map<ResourceKind, StoredObject[]>();

  constructor(kubeConfig: k8s.KubeConfig, logger: Logger, options: KubeCacheOptions) {
    this.kubeConfig = kubeConfig;
    this.logger = logger;
    this.namespace = options.namespace || undefined;
    this.labelSelector = options.labelSelector || undefined;
    this.timeoutMs = options.requestTimeoutMs;
    this.informerOptions = options.informer;
    this.custom = kubeConfig.makeApiClient(k8s.CustomObjectsApi);
  }

  get started(): boolean {
    return this.informers !== undefined;
  }

  /** Both kinds listed at least once (stays true through watch outages, as controller-runtime). */
  get synced(): boolean {
    return !!this.informers && Object.values(this.informers).every((i) => i.synced);
  }

  informerStats(): Record<ResourceKind, InformerStats> | undefined {
    if (!this.informers) return undefined;
    return { VirtualMachineMemory: this.informers.VirtualMachineMemory.stats, Hypervisor: this.informers.Hypervisor.stats };
  }

  /** Starts both informers; resolves after the first list of each. `onChange` runs after the cache was updated. */
  async start(onChange: CacheListener): Promise<void> {
    if (this.informers) throw new Error('KubeStore.start: already started');
    this.informers = { VirtualMachineMemory: this.informer('VirtualMachineMemory', onChange), Hypervisor: this.informer('Hypervisor', onChange) };
    for (const i of Object.values(this.informers)) i.start();
    await Promise.all(Object.values(this.informers).map((i) => i.firstSync));
  }

  async stop(): Promise<void> {
    if (this.informers) await Promise.all(Object.values(this.informers).map((i) => i.stop()));
  }

  get(kind: ResourceKind, key: ObjectKey): StoredObject | undefined {
    return this.informers?.[kind].get(`${key.namespace}/${key.name}`);
  }

  list(kind: ResourceKind): StoredObject[] {
    let views = this.listCache.get(kind);
    if (!views) {
      views = this.informers?.[kind].values() ?? [];
      if (this.informers?.[kind].synced) this.listCache.set(kind, views);
    }
    return views.slice();
  }

  private informer(kind: ResourceKind, onChange: CacheListener): ResilientInformer<StoredObject> {
    const { plural } = KINDS[kind];
    const ns = this.namespace;
    const watchPath = ns
      ? `/apis/${GROUP}/${VERSION}/namespaces/${encodeURIComponent(ns)}/${plural}`
      : `/apis/${GROUP}/${VERSION}/${plural}`;
    return new ResilientInformer<StoredObject>({
      name: kind,
      kubeConfig: this.kubeConfig,
      watchPath,
      labelSelector: this.labelSelector,
      logger: this.logger,
      options: this.informerOptions,
      transform: (raw) => toStored(kind, raw as RawObject),
      list: async (token) => {
        const opts = requestOptions(this.timeoutMs);
        const base = { group: GROUP, version: VERSION, plural, limit: 500, _continue: token, ...(this.labelSelector ? { labelSelector: this.labelSelector } : {}) };
        let body: { items?: RawObject[]; metadata?: { resourceVersion?: string; continue?: string } };
        try {
          body = (ns
            ? await this.custom.listNamespacedCustomObject({ ...base, namespace: ns }, opts)
            : await this.custom.listClusterCustomObject(base, opts)) as typeof body;
        } catch (e) {
          throw new KubeApiError('list', `${plural}${ns ? ` in ${ns}` : ''}${this.labelSelector ? ` with labels ${this.labelSelector}` : ''}`, e);
        }
        return { items: body.items ?? [], resourceVersion: body.metadata?.resourceVersion ?? '', continue: body.metadata?.continue };
      },
      listener: (change, obj) => {
        this.listCache.delete(kind);
        const key = { namespace: obj.metadata?.namespace ?? '', name: obj.metadata?.name ?? '' };
        this.logger.debug({ kind, key: `${key.namespace}/${key.name}`, change, resourceVersion: obj.metadata?.resourceVersion }, 'object changed');
        onChange(kind, key, change);
      },
    });
  }
}
