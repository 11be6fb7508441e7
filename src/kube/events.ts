// events.k8s.io/v1 Events, best effort like client-go's recorder: recording never rejects; a
// failure is logged with its context. Repeated identical events are folded into a series
// (docs/kubernetes.md "Events").
import { createHash } from 'node:crypto';
import * as k8s from '@kubernetes/client-node';
import type { EventType, StoredObject } from '../controller/ports.ts';
import { apiErrorInfo } from './errors.ts';
import { requestOptions, type Logger } from './http.ts';

export const REPORTING_CONTROLLER = 'vmmem.io/vmmem';
/** events.k8s.io/v1 limit on `note` (bytes). */
export const EVENT_NOTE_MAX_BYTES = 1024;

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

export interface EventRecorderOptions {
  fieldManager: string;
  reportingInstance: string;
  requestTimeoutMs: number;
  /** Identical events (object, type, reason, action, note) within this window form one series. */
  seriesWindowMs: number;
  /** How long series count updates are batched before one PATCH. */
  seriesFlushMs: number;
}

export class EventRecorder {
  private readonly events: k8s.EventsV1Api;
  private readonly logger: Logger;
  private readonly options: EventRecorderOptions;
  private readonly series = new Map<string, Series>();

  constructor(kubeConfig: k8s.KubeConfig, logger: Logger, options: EventRecorderOptions) {
    this.events = kubeConfig.makeApiClient(k8s.EventsV1Api);
    this.logger = logger;
    this.options = options;
  }

  /**
   * Records an Event about `obj`. An event identical to one recorded less than seriesWindowMs ago
   * (same object, type, reason, action, note) is not created again: it increments that Event's
   * `series.count` (PATCHed at most every seriesFlushMs).
   */
  async record(obj: StoredObject, type: EventType, reason: string, note: string, action: string): Promise<void> {
    const m = obj.metadata;
    const { seriesWindowMs, seriesFlushMs, reportingInstance, fieldManager, requestTimeoutMs } = this.options;
    const text = truncateUtf8(note, EVENT_NOTE_MAX_BYTES);
    const what = `${obj.kind} ${m.namespace}/${m.name}`;
    // A digest, not the text: at fleet scale the map holds one entry per recent Event, and a note
    // may be 1 KiB.
    const seriesKey = `${m.uid ?? `${m.namespace}/${m.name}`} ${createHash('sha1').update(JSON.stringify([type, reason, action, text])).digest('base64')}`;
    const now = Date.now();
    this.pruneSeries(now);
    const s = this.series.get(seriesKey);
    if (s && now - s.firstMs < seriesWindowMs) {
      s.count++;
      s.lastObserved = new Date(now);
      s.timer ??= setTimeout(() => {
        s.timer = undefined;
        void this.flushSeries(s);
      }, seriesFlushMs).unref();
      return;
    }
    const body: k8s.EventsV1Event = {
      apiVersion: 'events.k8s.io/v1',
      kind: 'Event',
      metadata: { name: eventName(m.name), namespace: m.namespace },
      eventTime: new k8s.V1MicroTime(now),
      reportingController: REPORTING_CONTROLLER,
      reportingInstance,
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
      const created = await this.events.createNamespacedEvent({ namespace: m.namespace, body, fieldManager }, requestOptions(requestTimeoutMs));
      if (s?.timer) clearTimeout(s.timer);
      // Re-inserted, so the map stays in order of firstMs (pruneSeries relies on it).
      this.series.delete(seriesKey);
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

  /** Flushes pending series counts, bounded: shutdown must not wait a full request timeout on an unreachable API server. */
  async stop(): Promise<void> {
    const pending = [...this.series.values()].filter((s) => s.timer);
    for (const s of pending) clearTimeout(s.timer);
    await Promise.allSettled(pending.map((s) => this.flushSeries(s, Math.min(this.options.requestTimeoutMs, 5000))));
    this.series.clear();
  }

  /**
   * Forgets series whose window has passed. The map is in order of firstMs, so this stops at the
   * first live one: O(expired) per call, not O(all) (one Event per applied change at fleet scale
   * means thousands of entries). An entry with a flush pending stays until a later call.
   */
  private pruneSeries(now: number): void {
    for (const [k, s] of this.series) {
      if (now - s.firstMs < this.options.seriesWindowMs) break;
      if (!s.timer) this.series.delete(k);
    }
  }

  private async flushSeries(s: Series, timeoutMs = this.options.requestTimeoutMs): Promise<void> {
    if (s.count === s.flushedCount) return;
    const count = s.count;
    try {
      await this.events.patchNamespacedEvent(
        {
          namespace: s.namespace,
          name: s.name,
          body: { series: { count, lastObservedTime: new k8s.V1MicroTime(s.lastObserved.getTime()) } },
          fieldManager: this.options.fieldManager,
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
