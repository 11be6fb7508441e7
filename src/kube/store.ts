// The ObjectStore port (src/controller/ports.ts) over a real Kubernetes API server.
//
//   - caches: one ResilientInformer per kind (VirtualMachineMemory, Hypervisor), all namespaces or
//     one; they survive every watch failure and never lose an update (see informer.ts);
//   - Secrets: read on demand with GET (no cluster-wide Secret watch: least privilege); values are
//     decoded and never logged;
//   - status: JSON merge patch on the /status subresource, carrying metadata.resourceVersion for
//     optimistic concurrency; 409 → re-read and recompute, bounded;
//   - events: events.k8s.io/v1, repeated identical events folded into a series (docs/kubernetes.md).
import { hostname } from 'node:os';
import * as k8s from '@kubernetes/client-node';
import { GROUP, VERSION, API_VERSION, VMM_KIND, VMM_PLURAL, HYPERVISOR_KIND, HYPERVISOR_PLURAL } from '../api/group.ts';
import type { ChangeHandlers, EventType, ObjectKey, ObjectStore, ResourceKind, StoredObject } from '../controller/ports.ts';
import { KubeApiError, apiErrorInfo, isConflict, isNotFound } from './errors.ts';
import { DEFAULT_REQUEST_TIMEOUT_MS, requestOptions, type Logger } from './http.ts';
import { ResilientInformer, type InformerOptions, type InformerStats } from './informer.ts';

export const REPORTING_CONTROLLER = 'vmmem.io/vmmem';
/** events.k8s.io/v1 limit on `note` (bytes). */
export const EVENT_NOTE_MAX_BYTES = 1024;

export interface KubeStoreOptions {
  /** Watch only this namespace; default all namespaces. */
  namespace?: string;
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

interface RawObject {
  apiVersion?: string;
  kind?: string;
  metadata?: {
    name?: string;
    namespace?: string;
    uid?: string;
    generation?: number;
    resourceVersion?: string;
    creationTimestamp?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    [k: string]: unknown;
  };
  spec?: unknown;
  status?: Record<string, unknown>;
}

interface Series {
  name: string;
  namespace: string;
  what: string;
  firstMs: number;
  count: number;
  flushedCount: number;
  lastObserved: Date;
  timer: NodeJS.Timeout | undefined;
}

const KINDS: Record<ResourceKind, { plural: string; kind: string }> = {
  VirtualMachineMemory: { plural: VMM_PLURAL, kind: VMM_KIND },
  Hypervisor: { plural: HYPERVISOR_PLURAL, kind: HYPERVISOR_KIND },
};

const describeKey = (kind: string, key: ObjectKey) => `${kind} ${key.namespace}/${key.name}`;

/**
 * A view of a cached object. Not a copy: reconciles read thousands of these
 * per pass (the scale benchmark measured deep copies here as a third of the
 * operator's CPU), so callers must treat them as read-only (ObjectStore says so).
 */
function toStored(kind: ResourceKind, raw: RawObject): StoredObject {
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

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((x, i) => deepEqual(x, b[i]));
  if (isPlainObject(a) && isPlainObject(b)) {
    const ka = Object.keys(a).filter((k) => a[k] !== undefined);
    const kb = Object.keys(b).filter((k) => b[k] !== undefined);
    return ka.length === kb.length && ka.every((k) => deepEqual(a[k], b[k]));
  }
  return false;
}

/**
 * The RFC 7386 JSON merge patch that turns `from` into `to` (undefined when equal): keys missing in
 * `to` become null (removed), objects recurse, everything else (arrays included) is replaced.
 */
export function mergePatchFor(from: unknown, to: unknown): unknown {
  if (isPlainObject(from) && isPlainObject(to)) {
    const out: Record<string, unknown> = {};
    let changed = false;
    for (const k of Object.keys(from)) {
      if (from[k] !== undefined && (!(k in to) || to[k] === undefined)) {
        out[k] = null;
        changed = true;
      }
    }
    for (const k of Object.keys(to)) {
      if (to[k] === undefined) continue;
      const d = mergePatchFor(from[k], to[k]);
      if (d !== undefined) {
        out[k] = d;
        changed = true;
      }
    }
    return changed ? out : undefined;
  }
  return deepEqual(from, to) ? undefined : to;
}

/** `s` cut to at most `max` UTF-8 bytes, on a character boundary, marked with '…' when cut. */
export function truncateUtf8(s: string, max: number): string {
  if (Buffer.byteLength(s, 'utf8') <= max) return s;
  let out = s.slice(0, max);
  while (Buffer.byteLength(out, 'utf8') > max - 3) out = out.slice(0, -1);
  if (/[\uD800-\uDBFF]$/.test(out)) out = out.slice(0, -1);
  return `${out}…`;
}

function eventName(objName: string): string {
  const nanos = BigInt(Date.now()) * 1_000_000n + BigInt(Math.floor(Math.random() * 1_000_000));
  const suffix = `.${nanos.toString(16)}`;
  return objName.slice(0, 253 - suffix.length) + suffix;
}

export class KubeStore implements ObjectStore {
  private readonly kubeConfig: k8s.KubeConfig;
  private readonly logger: Logger;
  private readonly namespace: string | undefined;
  private readonly fieldManager: string;
  private readonly reportingInstance: string;
  private readonly timeoutMs: number;
  private readonly maxStatusAttempts: number;
  private readonly seriesWindowMs: number;
  private readonly seriesFlushMs: number;
  private readonly informerOptions: InformerOptions | undefined;
  private readonly custom: k8s.CustomObjectsApi;
  private readonly core: k8s.CoreV1Api;
  private readonly events: k8s.EventsV1Api;
  private informers: Record<ResourceKind, ResilientInformer<RawObject>> | undefined;
  /** list() result per kind until the next change: reconciles list far more often than objects change. */
  private readonly listCache = new Map<ResourceKind, StoredObject[]>();
  private started = false;
  private stopped = false;
  private readonly series = new Map<string, Series>();

  constructor(kubeConfig: k8s.KubeConfig, logger: Logger, options: KubeStoreOptions = {}) {
    this.kubeConfig = kubeConfig;
    this.logger = logger;
    this.namespace = options.namespace || undefined;
    this.fieldManager = options.fieldManager ?? 'vmmem';
    this.reportingInstance = (options.reportingInstance ?? process.env.POD_NAME ?? hostname()).slice(0, 128);
    this.timeoutMs = options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
    this.maxStatusAttempts = Math.max(1, options.maxStatusAttempts ?? 5);
    this.seriesWindowMs = options.eventSeriesWindowMs ?? 5 * 60_000;
    this.seriesFlushMs = options.eventSeriesFlushMs ?? 10_000;
    this.informerOptions = options.informer;
    this.custom = kubeConfig.makeApiClient(k8s.CustomObjectsApi);
    this.core = kubeConfig.makeApiClient(k8s.CoreV1Api);
    this.events = kubeConfig.makeApiClient(k8s.EventsV1Api);
  }

  get synced(): boolean {
    return this.started && !this.stopped && !!this.informers && Object.values(this.informers).every((i) => i.synced);
  }

  /** Counters of each informer (lists, watches, failures, 410s, idle timeouts) for tests and metrics. */
  informerStats(): Record<ResourceKind, InformerStats> | undefined {
    if (!this.informers) return undefined;
    return { VirtualMachineMemory: this.informers.VirtualMachineMemory.stats, Hypervisor: this.informers.Hypervisor.stats };
  }

  async start(handlers: ChangeHandlers): Promise<void> {
    if (this.informers) throw new Error('KubeStore.start: already started');
    if (this.stopped) throw new Error('KubeStore.start: stopped');
    const make = (kind: ResourceKind): ResilientInformer<RawObject> => {
      const { plural } = KINDS[kind];
      const ns = this.namespace;
      const watchPath = ns
        ? `/apis/${GROUP}/${VERSION}/namespaces/${encodeURIComponent(ns)}/${plural}`
        : `/apis/${GROUP}/${VERSION}/${plural}`;
      return new ResilientInformer<RawObject>({
        name: kind,
        kubeConfig: this.kubeConfig,
        watchPath,
        logger: this.logger,
        options: this.informerOptions,
        list: async (token) => {
          const opts = requestOptions(this.timeoutMs);
          const base = { group: GROUP, version: VERSION, plural, limit: 500, _continue: token };
          let body: { items?: RawObject[]; metadata?: { resourceVersion?: string; continue?: string } };
          try {
            body = (ns
              ? await this.custom.listNamespacedCustomObject({ ...base, namespace: ns }, opts)
              : await this.custom.listClusterCustomObject(base, opts)) as typeof body;
          } catch (e) {
            throw new KubeApiError('list', `${plural}${ns ? ` in ${ns}` : ''}`, e);
          }
          return { items: body.items ?? [], resourceVersion: body.metadata?.resourceVersion ?? '', continue: body.metadata?.continue };
        },
        listener: (change, obj) => {
          this.listCache.delete(kind);
          const key = { namespace: obj.metadata?.namespace ?? '', name: obj.metadata?.name ?? '' };
          this.logger.debug({ kind, key: `${key.namespace}/${key.name}`, change, resourceVersion: obj.metadata?.resourceVersion }, 'object changed');
          handlers.onChange(kind, key, change);
        },
      });
    };
    this.informers = { VirtualMachineMemory: make('VirtualMachineMemory'), Hypervisor: make('Hypervisor') };
    for (const i of Object.values(this.informers)) i.start();
    await Promise.all(Object.values(this.informers).map((i) => i.firstSync));
    this.started = true;
    this.logger.info({ namespace: this.namespace ?? '(all)' }, 'caches synced');
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    const pending = [...this.series.values()].filter((s) => s.timer);
    for (const s of pending) clearTimeout(s.timer);
    // Bounded: shutdown must not wait a full request timeout on an unreachable API server.
    await Promise.allSettled(pending.map((s) => this.flushSeries(s, Math.min(this.timeoutMs, 5000))));
    this.series.clear();
    if (this.informers) await Promise.all(Object.values(this.informers).map((i) => i.stop()));
  }

  get(kind: ResourceKind, key: ObjectKey): StoredObject | undefined {
    const raw = this.informers?.[kind].get(`${key.namespace}/${key.name}`);
    return raw ? toStored(kind, raw) : undefined;
  }

  list(kind: ResourceKind): StoredObject[] {
    let views = this.listCache.get(kind);
    if (!views) {
      views = (this.informers?.[kind].values() ?? []).map((r) => toStored(kind, r));
      if (this.informers?.[kind].synced) this.listCache.set(kind, views);
    }
    return views.slice();
  }

  async getSecret(key: ObjectKey): Promise<Record<string, string> | undefined> {
    let secret: k8s.V1Secret;
    try {
      secret = await this.core.readNamespacedSecret({ namespace: key.namespace, name: key.name }, requestOptions(this.timeoutMs));
    } catch (e) {
      if (isNotFound(e)) return undefined;
      throw new KubeApiError('get', describeKey('Secret', key), e);
    }
    const out: Record<string, string> = {};
    for (const [k, v] of Object.entries(secret.data ?? {})) out[k] = Buffer.from(v, 'base64').toString('utf8');
    return out;
  }

  private async read(kind: ResourceKind, key: ObjectKey): Promise<StoredObject | undefined> {
    try {
      const raw = (await this.custom.getNamespacedCustomObject(
        { group: GROUP, version: VERSION, namespace: key.namespace, plural: KINDS[kind].plural, name: key.name },
        requestOptions(this.timeoutMs),
      )) as RawObject;
      return toStored(kind, raw);
    } catch (e) {
      if (isNotFound(e)) return undefined;
      throw new KubeApiError('get', describeKey(kind, key), e);
    }
  }

  async updateStatus(
    kind: ResourceKind,
    key: ObjectKey,
    compute: (fresh: StoredObject) => Record<string, unknown> | undefined,
  ): Promise<void> {
    const what = describeKey(kind, key);
    let lastConflict: unknown;
    for (let attempt = 1; attempt <= this.maxStatusAttempts; attempt++) {
      // First attempt: the cache (usually current); after a conflict: a fresh GET.
      const fresh = (attempt === 1 ? this.get(kind, key) : undefined) ?? (await this.read(kind, key));
      if (!fresh) {
        this.logger.debug({ kind, key: `${key.namespace}/${key.name}` }, 'updateStatus: object is gone; nothing to write');
        return;
      }
      const status = compute(structuredClone(fresh));
      if (status === undefined) return;
      const diff = mergePatchFor(fresh.status ?? {}, status);
      if (diff === undefined) return; // already so: writing would change nothing
      const body = { metadata: { resourceVersion: fresh.metadata.resourceVersion }, status: diff };
      try {
        await this.custom.patchNamespacedCustomObjectStatus(
          {
            group: GROUP,
            version: VERSION,
            namespace: key.namespace,
            plural: KINDS[kind].plural,
            name: key.name,
            body,
            fieldManager: this.fieldManager,
          },
          requestOptions(this.timeoutMs, k8s.PatchStrategy.MergePatch),
        );
        return;
      } catch (e) {
        if (isNotFound(e)) {
          this.logger.debug({ kind, key: `${key.namespace}/${key.name}` }, 'updateStatus: object deleted meanwhile');
          return;
        }
        if (!isConflict(e)) throw new KubeApiError('patch status of', what, e);
        lastConflict = e;
        this.logger.debug(
          { kind, key: `${key.namespace}/${key.name}`, attempt, resourceVersion: fresh.metadata.resourceVersion },
          'status conflict; re-reading',
        );
      }
    }
    throw new KubeApiError(`patch status (${this.maxStatusAttempts} conflicts in a row) of`, what, lastConflict);
  }

  /**
   * Records an events.k8s.io/v1 Event about `obj`. Best effort, like client-go's recorder: it never
   * rejects; a failure is logged with its context. An event identical to one recorded less than
   * eventSeriesWindowMs ago (same object, type, reason, action, note) is not created again: it
   * increments that Event's `series.count` (PATCHed at most every eventSeriesFlushMs).
   */
  async recordEvent(obj: StoredObject, type: EventType, reason: string, note: string, action: string): Promise<void> {
    const m = obj.metadata;
    const text = truncateUtf8(note, EVENT_NOTE_MAX_BYTES);
    const what = `${obj.kind} ${m.namespace}/${m.name}`;
    const seriesKey = JSON.stringify([m.uid ?? `${m.namespace}/${m.name}`, type, reason, action, text]);
    const now = Date.now();
    this.pruneSeries(now);
    const s = this.series.get(seriesKey);
    if (s && now - s.firstMs < this.seriesWindowMs) {
      s.count++;
      s.lastObserved = new Date(now);
      s.timer ??= setTimeout(() => {
        s.timer = undefined;
        void this.flushSeries(s);
      }, this.seriesFlushMs).unref();
      return;
    }
    const body: k8s.EventsV1Event = {
      apiVersion: 'events.k8s.io/v1',
      kind: 'Event',
      metadata: { name: eventName(m.name), namespace: m.namespace },
      eventTime: new k8s.V1MicroTime(now),
      reportingController: REPORTING_CONTROLLER,
      reportingInstance: this.reportingInstance,
      action: action.slice(0, 128),
      reason: reason.slice(0, 128),
      note: text,
      type,
      regarding: {
        apiVersion: obj.apiVersion,
        kind: obj.kind,
        name: m.name,
        namespace: m.namespace,
        uid: m.uid,
        resourceVersion: m.resourceVersion,
      },
    };
    try {
      const created = await this.events.createNamespacedEvent({ namespace: m.namespace, body, fieldManager: this.fieldManager }, requestOptions(this.timeoutMs));
      if (s?.timer) clearTimeout(s.timer);
      this.series.set(seriesKey, {
        name: created.metadata?.name ?? body.metadata!.name!,
        namespace: m.namespace,
        what,
        firstMs: now,
        count: 1,
        flushedCount: 1,
        lastObserved: new Date(now),
        timer: undefined,
      });
    } catch (e) {
      const info = apiErrorInfo(e);
      this.logger.warn({ object: what, reason, code: info.code, err: info.message }, 'create event failed');
    }
  }

  private pruneSeries(now: number): void {
    for (const [k, s] of this.series) {
      if (now - s.firstMs >= this.seriesWindowMs && !s.timer) this.series.delete(k);
    }
  }

  private async flushSeries(s: Series, timeoutMs = this.timeoutMs): Promise<void> {
    if (s.count === s.flushedCount) return;
    const count = s.count;
    try {
      await this.events.patchNamespacedEvent(
        {
          namespace: s.namespace,
          name: s.name,
          body: { series: { count, lastObservedTime: new k8s.V1MicroTime(s.lastObserved.getTime()) } },
          fieldManager: this.fieldManager,
        },
        requestOptions(timeoutMs, k8s.PatchStrategy.MergePatch),
      );
      s.flushedCount = count;
    } catch (e) {
      const info = apiErrorInfo(e);
      this.logger.warn({ object: s.what, event: s.name, code: info.code, err: info.message }, 'update event series failed');
    }
  }
}
