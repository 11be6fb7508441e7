// A list+watch cache that survives every watch failure (DESIGN §6).
//
// client-node's own informer stops on any error other than 410 and can stall silently on a dead
// connection. This loop never gives up until stop():
//   - list (paginated, consistent read) → diff against the cache → emit add/update/delete for what
//     changed, so nothing that happened while disconnected is lost;
//   - watch from the list's resourceVersion with allowWatchBookmarks and a server-side
//     timeoutSeconds (5–10 min, jittered, as client-go), plus a client-side idle timeout (no byte
//     for idleTimeoutMs → the connection is presumed dead and replaced);
//   - a watch that ends (server timeout, API server restart) is resumed from the last seen
//     resourceVersion; 410 Gone (Expired / too old resource version) → relist;
//   - errors (refused, reset, 5xx, ERROR events) → exponential backoff with jitter, 100 ms → 30 s,
//     reset by the first event that proves progress; after 3 failed watches in a row → relist.
import * as k8s from '@kubernetes/client-node';
import type { ChangeType } from '../controller/ports.ts';
import { apiErrorInfo, statusCode } from './errors.ts';
import { Backoff } from '../util/backoff.ts';
import { sleep } from '../util/sleep.ts';
import type { Logger } from './http.ts';

/** The parts of an object the informer reads. */
export interface InformerObject {
  metadata?: { name?: string; namespace?: string; uid?: string; resourceVersion?: string };
}

export interface ListResult<T> {
  items: T[];
  resourceVersion: string;
}

export interface InformerOptions {
  /** First retry delay; default 100 ms. */
  minBackoffMs?: number;
  /** Retry delay cap; default 30 s. */
  maxBackoffMs?: number;
  /** Server-side watch timeout; default a random 300–600 s per watch. */
  watchTimeoutSeconds?: number;
  /** No byte (event or bookmark) for this long → abandon the watch and re-watch; default 90 s. */
  idleTimeoutMs?: number;
  /** Failed watches in a row before relisting anyway; default 3. */
  relistAfterFailures?: number;
}

export interface InformerStats {
  lists: number;
  listFailures: number;
  watches: number;
  watchFailures: number;
  /** Relists caused by 410 Gone. */
  gone: number;
  idleTimeouts: number;
  /** resourceVersion the next watch starts from. */
  resourceVersion: string | undefined;
}

export type InformerListener<T> = (type: ChangeType, obj: T, old: T | undefined) => void;

/** The annotation `kubectl apply` (client-side) keeps: a full copy of the last applied object. */
export const LAST_APPLIED_ANNOTATION = 'kubectl.kubernetes.io/last-applied-configuration';

/**
 * Drops, in place, what the API server sends that vmmem never reads and that costs memory in a cache
 * of thousands of objects: `metadata.managedFields` (server-side apply bookkeeping, often larger
 * than the spec) and the `kubectl.kubernetes.io/last-applied-configuration` annotation (a second
 * copy of the whole object as JSON text). controller-runtime's caches strip managedFields the same
 * way (cache.Options.DefaultTransform = TransformStripManagedFields).
 */
export function stripUnread<T>(obj: T): T {
  const meta = (obj as { metadata?: { managedFields?: unknown; annotations?: Record<string, string> } } | null)?.metadata;
  if (!meta || typeof meta !== 'object') return obj;
  delete meta.managedFields;
  const ann = meta.annotations;
  if (ann && LAST_APPLIED_ANNOTATION in ann) {
    delete ann[LAST_APPLIED_ANNOTATION];
    if (Object.keys(ann).length === 0) delete meta.annotations;
  }
  return obj;
}

type WatchEnd = 'ended' | 'gone' | 'error' | 'idle' | 'stopped';

export function objectKey(o: InformerObject): string {
  return `${o.metadata?.namespace ?? ''}/${o.metadata?.name ?? ''}`;
}

export class ResilientInformer<T extends InformerObject> {
  readonly name: string;
  private readonly kubeConfig: k8s.KubeConfig;
  private readonly watchPath: string;
  private readonly labelSelector: string | undefined;
  private readonly listFn: (continueToken: string | undefined) => Promise<{ items: unknown[]; resourceVersion: string; continue?: string }>;
  private readonly logger: Logger;
  private readonly listener: InformerListener<T>;
  private readonly transform: (obj: unknown) => T;
  private readonly backoff: Backoff;
  private readonly idleTimeoutMs: number;
  private readonly watchTimeoutSeconds: number | undefined;
  private readonly relistAfterFailures: number;

  private readonly cache = new Map<string, T>();
  private readonly stopCtl = new AbortController();
  private loop: Promise<void> | undefined;
  private syncedFlag = false;
  private resolveSynced!: () => void;
  private rejectSynced!: (e: Error) => void;
  /** Resolves after the first successful list; rejects if stopped before. */
  readonly firstSync: Promise<void>;
  private rv: string | undefined;
  private readonly counters = { lists: 0, listFailures: 0, watches: 0, watchFailures: 0, gone: 0, idleTimeouts: 0 };

  constructor(args: {
    name: string;
    kubeConfig: k8s.KubeConfig;
    /** e.g. /apis/vmmem.io/v1alpha1/namespaces/ns/hypervisors */
    watchPath: string;
    /**
     * A server-side label selector (e.g. `vmmem.io/shard in (0,3)`) sent with every watch; the
     * `list` function must send the same one, so the cache holds only matching objects. An object
     * whose labels stop matching arrives as DELETED (the API server's watch semantics).
     */
    labelSelector?: string | undefined;
    list: (continueToken: string | undefined) => Promise<{ items: unknown[]; resourceVersion: string; continue?: string }>;
    logger: Logger;
    listener: InformerListener<T>;
    /**
     * Applied once to every object on ingest (list items and watch events), after stripUnread: what
     * it returns is what the cache holds and hands out, so a caller that wants its own
     * representation keeps exactly one copy of each object. Default: identity.
     */
    transform?: (obj: unknown) => T;
    options?: InformerOptions;
  }) {
    this.name = args.name;
    this.kubeConfig = args.kubeConfig;
    this.watchPath = args.watchPath;
    this.labelSelector = args.labelSelector || undefined;
    this.listFn = args.list;
    this.logger = args.logger;
    this.listener = args.listener;
    const transform = args.transform ?? ((o: unknown) => o as T);
    this.transform = (o) => transform(stripUnread(o));
    const o = args.options ?? {};
    this.backoff = new Backoff(o.minBackoffMs ?? 100, o.maxBackoffMs ?? 30_000);
    this.idleTimeoutMs = o.idleTimeoutMs ?? 90_000;
    this.watchTimeoutSeconds = o.watchTimeoutSeconds;
    this.relistAfterFailures = o.relistAfterFailures ?? 3;
    this.firstSync = new Promise<void>((res, rej) => {
      this.resolveSynced = res;
      this.rejectSynced = rej;
    });
    this.firstSync.catch(() => undefined); // observed by start(); never an unhandled rejection
  }

  get synced(): boolean {
    return this.syncedFlag;
  }

  get stats(): InformerStats {
    return { ...this.counters, resourceVersion: this.rv };
  }

  get(key: string): T | undefined {
    return this.cache.get(key);
  }

  values(): T[] {
    return [...this.cache.values()];
  }

  start(): void {
    if (this.loop) return;
    this.loop = this.run().catch((e: unknown) => {
      // run() handles every error itself; this is a bug guard, never silent.
      this.logger.error({ informer: this.name, err: apiErrorInfo(e).message }, 'informer loop crashed');
    });
  }

  async stop(): Promise<void> {
    this.stopCtl.abort();
    this.rejectSynced(new Error(`informer ${this.name} stopped before its first list`));
    await this.loop;
  }

  private get stopped(): boolean {
    return this.stopCtl.signal.aborted;
  }

  private emit(type: ChangeType, obj: T, old: T | undefined): void {
    try {
      this.listener(type, obj, old);
    } catch (e) {
      this.logger.error({ informer: this.name, key: objectKey(obj), change: type, err: apiErrorInfo(e).message }, 'change handler threw');
    }
  }

  private async run(): Promise<void> {
    let needList = true;
    let failures = 0; // failed watches in a row
    while (!this.stopped) {
      if (needList) {
        try {
          await this.relist();
          needList = false;
          failures = 0;
          this.backoff.reset();
        } catch (e) {
          this.counters.listFailures++;
          const delay = this.backoff.next();
          const info = apiErrorInfo(e);
          const log = this.backoff.failures > 3 ? this.logger.warn : this.logger.debug;
          log.call(this.logger, { informer: this.name, code: info.code, err: info.message, retryInMs: delay }, 'list failed; retrying');
          await sleep(delay, this.stopCtl.signal);
          continue;
        }
      }
      const started = Date.now();
      const { end, progressed, err } = await this.watchOnce();
      if (this.stopped || end === 'stopped') break;
      if (progressed) {
        failures = 0;
        this.backoff.reset();
      }
      switch (end) {
        case 'gone':
          this.counters.gone++;
          this.logger.info({ informer: this.name, resourceVersion: this.rv }, 'watch expired (410 Gone); relisting');
          needList = true;
          break;
        case 'idle':
          this.counters.idleTimeouts++;
          this.logger.debug({ informer: this.name, idleMs: this.idleTimeoutMs }, 'watch idle; re-watching');
          break;
        case 'ended':
          // A normal end (timeoutSeconds, API server shutdown). A watch that ends at once without
          // progress is a failure in disguise: back off so that we never spin.
          if (!progressed && Date.now() - started < 1000) {
            failures++;
            await sleep(this.backoff.next(), this.stopCtl.signal);
          }
          break;
        case 'error': {
          failures++;
          this.counters.watchFailures++;
          const delay = this.backoff.next();
          const info = apiErrorInfo(err);
          const log = failures > 3 ? this.logger.warn : this.logger.debug;
          log.call(this.logger, { informer: this.name, code: info.code, err: info.message, retryInMs: delay }, 'watch failed; retrying');
          await sleep(delay, this.stopCtl.signal);
          break;
        }
      }
      if (failures >= this.relistAfterFailures) {
        needList = true;
        failures = 0;
      }
    }
  }

  /** List everything (paginated) and reconcile the cache with it, emitting the differences. */
  private async relist(): Promise<void> {
    const items: T[] = [];
    let token: string | undefined;
    let rv: string;
    do {
      const page = await this.listFn(token);
      if (this.stopped) return;
      for (const raw of page.items) items.push(this.transform(raw));
      rv = page.resourceVersion;
      token = page.continue || undefined;
    } while (token);
    this.counters.lists++;

    const seen = new Set<string>();
    for (const item of items) {
      const key = objectKey(item);
      seen.add(key);
      const old = this.cache.get(key);
      this.cache.set(key, item);
      if (!old) this.emit('add', item, undefined);
      else if (old.metadata?.uid !== item.metadata?.uid) {
        // Deleted and re-created under the same name while we were not watching.
        this.emit('delete', old, old);
        this.emit('add', item, undefined);
      } else if (old.metadata?.resourceVersion !== item.metadata?.resourceVersion) this.emit('update', item, old);
    }
    for (const [key, old] of [...this.cache]) {
      if (seen.has(key)) continue;
      this.cache.delete(key);
      this.emit('delete', old, old);
    }
    this.rv = rv;
    this.logger.debug({ informer: this.name, count: items.length, resourceVersion: rv }, 'listed');
    if (!this.syncedFlag) {
      this.syncedFlag = true;
      this.resolveSynced();
    }
  }

  private apply(type: string, obj: T): void {
    const key = objectKey(obj);
    const old = this.cache.get(key);
    if (type === 'DELETED') {
      this.cache.delete(key);
      this.emit('delete', obj, old);
      return;
    }
    if (old && old.metadata?.resourceVersion === obj.metadata?.resourceVersion && old.metadata?.uid === obj.metadata?.uid) return;
    this.cache.set(key, obj);
    if (!old) this.emit('add', obj, undefined);
    else if (old.metadata?.uid !== obj.metadata?.uid) {
      this.emit('delete', old, old);
      this.emit('add', obj, undefined);
    } else this.emit('update', obj, old);
  }

  /** One watch connection, from this.rv until it ends. */
  private watchOnce(): Promise<{ end: WatchEnd; progressed: boolean; err?: unknown }> {
    this.counters.watches++;
    return new Promise((resolve) => {
      let settled = false;
      let progressed = false;
      let ctl: AbortController | undefined;
      const signal = this.stopCtl.signal;
      const finish = (end: WatchEnd, err?: unknown) => {
        if (settled) return;
        settled = true;
        signal.removeEventListener('abort', onStop);
        ctl?.abort();
        resolve({ end, progressed, err });
      };
      const onStop = () => finish('stopped');
      signal.addEventListener('abort', onStop, { once: true });

      const watch = new k8s.Watch(this.kubeConfig);
      // Watch's inactivity timeout (connect, then between chunks) is private in the typings and 30 s
      // by default: shorter than the API server's bookmark period, so quiet watches would be torn
      // down every 30 s. It is a plain field in client-node 2.0 (dist/watch.js).
      (watch as unknown as { requestTimeoutMs: number }).requestTimeoutMs = this.idleTimeoutMs;
      const timeoutSeconds = this.watchTimeoutSeconds ?? 300 + Math.floor(Math.random() * 300);
      const query = { resourceVersion: this.rv, allowWatchBookmarks: true, timeoutSeconds, ...(this.labelSelector ? { labelSelector: this.labelSelector } : {}) };
      watch
        .watch(
          this.watchPath,
          query,
          (type: string, obj: unknown) => {
            if (settled) return;
            if (type === 'ERROR') {
              const st = obj as { code?: number; reason?: string; message?: string };
              if (st.code === 410 || st.reason === 'Expired' || st.reason === 'Gone') finish('gone');
              else finish('error', Object.assign(new Error(`watch ERROR event: ${st.reason ?? ''} ${st.message ?? JSON.stringify(obj)}`), { statusCode: st.code }));
              return;
            }
            const rv = (obj as InformerObject).metadata?.resourceVersion;
            if (type === 'BOOKMARK') {
              if (rv) this.rv = rv;
              progressed = true;
              return;
            }
            if (type !== 'ADDED' && type !== 'MODIFIED' && type !== 'DELETED') return;
            this.apply(type, this.transform(obj));
            if (rv) this.rv = rv;
            progressed = true;
          },
          (err: unknown) => {
            if (!err) return finish('ended');
            const name = (err as { name?: string }).name;
            if (name === 'TimeoutError') return finish('idle');
            if (statusCode(err) === 410) return finish('gone');
            finish('error', err);
          },
        )
        .then(
          (c) => {
            ctl = c;
            if (settled) c.abort();
          },
          (e: unknown) => finish('error', e),
        );
    });
  }
}
