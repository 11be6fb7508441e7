// Status writes: a JSON merge patch (RFC 7386) of the difference on the /status subresource,
// carrying metadata.resourceVersion for optimistic concurrency; no difference → no request at
// all; 409 Conflict → a fresh GET, `compute` again, bounded (docs/kubernetes.md "Status writes").
import * as k8s from '@kubernetes/client-node';
import { GROUP, VERSION } from '../api/group.ts';
import { jsonEqual } from '../util/json-equal.ts';
import type { ObjectKey, ResourceKind, StoredObject } from '../controller/ports.ts';
import { KubeApiError, isConflict, isNotFound } from './errors.ts';
import { requestOptions, type Logger } from './http.ts';
import { KINDS, describeKey, toStored, type RawObject } from './cache.ts';

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
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
  return jsonEqual(from, to) ? undefined : to;
}

export interface StatusWriterOptions {
  fieldManager: string;
  requestTimeoutMs: number;
  /** Attempts on 409 Conflict (each after a fresh GET). */
  maxAttempts: number;
}

export class StatusWriter {
  private readonly custom: k8s.CustomObjectsApi;
  private readonly logger: Logger;
  private readonly options: StatusWriterOptions;
  /** The cached object, tried first (usually current). */
  private readonly cached: (kind: ResourceKind, key: ObjectKey) => StoredObject | undefined;

  constructor(
    kubeConfig: k8s.KubeConfig,
    logger: Logger,
    options: StatusWriterOptions,
    cached: (kind: ResourceKind, key: ObjectKey) => StoredObject | undefined,
  ) {
    this.custom = kubeConfig.makeApiClient(k8s.CustomObjectsApi);
    this.logger = logger;
    this.options = options;
    this.cached = cached;
  }

  async update(kind: ResourceKind, key: ObjectKey, compute: (fresh: StoredObject) => Record<string, unknown> | undefined): Promise<void> {
    const what = describeKey(kind, key);
    const { maxAttempts, requestTimeoutMs, fieldManager } = this.options;
    let lastConflict: unknown;
    for (let attempt = 1; attempt <= maxAttempts; attempt++) {
      // First attempt: the cache (usually current); after a conflict: a fresh GET.
      const fresh = (attempt === 1 ? this.cached(kind, key) : undefined) ?? (await this.read(kind, key));
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
          { group: GROUP, version: VERSION, namespace: key.namespace, plural: KINDS[kind].plural, name: key.name, body, fieldManager },
          requestOptions(requestTimeoutMs, k8s.PatchStrategy.MergePatch),
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
    throw new KubeApiError(`patch status (${maxAttempts} conflicts in a row) of`, what, lastConflict);
  }

  private async read(kind: ResourceKind, key: ObjectKey): Promise<StoredObject | undefined> {
    try {
      const raw = (await this.custom.getNamespacedCustomObject(
        { group: GROUP, version: VERSION, namespace: key.namespace, plural: KINDS[kind].plural, name: key.name },
        requestOptions(this.options.requestTimeoutMs),
      )) as RawObject;
      return toStored(kind, raw);
    } catch (e) {
      if (isNotFound(e)) return undefined;
      throw new KubeApiError('get', describeKey(kind, key), e);
    }
  }
}
