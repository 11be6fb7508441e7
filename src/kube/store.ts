// The ObjectStore port (src/controller/ports.ts) over a real Kubernetes API server, composed of:
//
//   - cache.ts: one ResilientInformer per kind (VirtualMachineMemory, Hypervisor), all namespaces or
//     one; they survive every watch failure and never lose an update (see informer.ts);
//   - secrets.ts: Secrets read on demand with GET (no cluster-wide Secret watch: least privilege);
//     values are decoded and never logged;
//   - status.ts: JSON merge patch on the /status subresource, carrying metadata.resourceVersion for
//     optimistic concurrency; 409 → re-read and recompute, bounded;
//   - events.ts: events.k8s.io/v1, repeated identical events folded into a series (docs/kubernetes.md).
import { hostname } from 'node:os';
import type * as k8s from '@kubernetes/client-node';
import type { ChangeHandlers, EventType, ObjectKey, ObjectStore, ResourceKind, StoredObject } from '../controller/ports.ts';
import { DEFAULT_REQUEST_TIMEOUT_MS, shareConnections, type Logger } from './http.ts';
import type { InformerOptions, InformerStats } from './informer.ts';
import { KubeCache } from './cache.ts';
import { EventRecorder } from './events.ts';
import { SecretReader } from './secrets.ts';
import { StatusWriter } from './status.ts';

export interface KubeStoreOptions {
  /** Watch only this namespace; default all namespaces. */
  namespace?: string;
  /**
   * Server-side label selector for both kinds: the store lists, watches and holds only matching
   * objects (a sharded replica: `vmmem.io/shard in (...)`, docs/operations.md "Sharding").
   */
  labelSelector?: string;
  /** fieldManager for every write; default 'vmmem'. */
  fieldManager?: string;
  /** Event reportingInstance; default $POD_NAME, else the host name. */
  reportingInstance?: string;
  /** Timeout of each non-watch request; default 30 s. */
  requestTimeoutMs?: number;
  /** updateStatus attempts on 409 Conflict (each with a fresh GET); default 5. */
  maxStatusAttempts?: number;
  /** Identical events (object, type, reason, action, note) within this window form one series; default 5 min. */
  eventSeriesWindowMs?: number;
  /** How long series count updates are batched before one PATCH; default 10 s. */
  eventSeriesFlushMs?: number;
  /** Informer tuning (backoff, idle timeout...); the defaults suit production. */
  informer?: InformerOptions;
}

export class KubeStore implements ObjectStore {
  private readonly logger: Logger;
  private readonly namespace: string | undefined;
  private readonly labelSelector: string | undefined;
  private readonly cache: KubeCache;
  private readonly statusWriter: StatusWriter;
  private readonly recorder: EventRecorder;
  private readonly secrets: SecretReader;
  private started = false;
  private stopped = false;

  constructor(kubeConfig: k8s.KubeConfig, logger: Logger, options: KubeStoreOptions = {}) {
    shareConnections(kubeConfig);
    this.logger = logger;
    this.namespace = options.namespace || undefined;
    this.labelSelector = options.labelSelector || undefined;
    const fieldManager = options.fieldManager ?? 'vmmem';
    const requestTimeoutMs = options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
    this.cache = new KubeCache(kubeConfig, logger, { namespace: this.namespace, labelSelector: options.labelSelector, requestTimeoutMs, informer: options.informer });
    this.statusWriter = new StatusWriter(
      kubeConfig,
      logger,
      { fieldManager, requestTimeoutMs, maxAttempts: Math.max(1, options.maxStatusAttempts ?? 5) },
      (kind, key) => this.cache.get(kind, key),
    );
    this.recorder = new EventRecorder(kubeConfig, logger, {
      fieldManager,
      requestTimeoutMs,
      reportingInstance: (options.reportingInstance ?? process.env.POD_NAME ?? hostname()).slice(0, 128),
      seriesWindowMs: options.eventSeriesWindowMs ?? 5 * 60_000,
      seriesFlushMs: options.eventSeriesFlushMs ?? 10_000,
    });
    this.secrets = new SecretReader(kubeConfig, requestTimeoutMs);
  }

  get synced(): boolean {
    return this.started && !this.stopped && this.cache.synced;
  }

  /** Counters of each informer (lists, watches, failures, 410s, idle timeouts) for tests and metrics. */
  informerStats(): Record<ResourceKind, InformerStats> | undefined {
    return this.cache.informerStats();
  }

  async start(handlers: ChangeHandlers): Promise<void> {
    if (this.cache.started) throw new Error('KubeStore.start: already started');
    if (this.stopped) throw new Error('KubeStore.start: stopped');
    await this.cache.start((kind, key, change) => handlers.onChange(kind, key, change));
    this.started = true;
    this.logger.info({ namespace: this.namespace ?? '(all)', ...(this.labelSelector ? { labelSelector: this.labelSelector } : {}) }, 'caches synced');
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await this.recorder.stop();
    await this.cache.stop();
  }

  get(kind: ResourceKind, key: ObjectKey): StoredObject | undefined {
    return this.cache.get(kind, key);
  }

  list(kind: ResourceKind): StoredObject[] {
    return this.cache.list(kind);
  }

  getSecret(key: ObjectKey): Promise<Record<string, string> | undefined> {
    return this.secrets.get(key);
  }

  updateStatus(kind: ResourceKind, key: ObjectKey, compute: (fresh: StoredObject) => Record<string, unknown> | undefined): Promise<void> {
    return this.statusWriter.update(kind, key, compute);
  }

  /**
   * Records an events.k8s.io/v1 Event about `obj`. Best effort, like client-go's recorder: it never
   * rejects (events.ts).
   */
  recordEvent(obj: StoredObject, type: EventType, reason: string, note: string, action: string): Promise<void> {
    return this.recorder.record(obj, type, reason, note, action);
  }
}
