// Per-request options for client-node 2.x generated clients: a timeout (client-node sets none, so a
// request to a black-holed API server would hang forever) and, for PATCH, the content type (the
// generated code picks application/json-patch+json unless a middleware overrides the header).
import * as k8s from '@kubernetes/client-node';

// The adapter logs through the controller's one Logger port (re-exported for the adapter's files).
export type { Logger } from '../controller/ports.ts';

export const DEFAULT_REQUEST_TIMEOUT_MS = 30_000;

/** ConfigurationOptions that abort the request after `timeoutMs` and optionally set Content-Type. */
export function requestOptions(timeoutMs: number, contentType?: k8s.PatchStrategy): k8s.ConfigurationOptions {
  const timeout: k8s.ObservableMiddleware = {
    pre: (ctx: k8s.RequestContext) => {
      ctx.setSignal(AbortSignal.timeout(timeoutMs));
      return new k8s.Observable(Promise.resolve(ctx));
    },
    post: (rsp: k8s.ResponseContext) => new k8s.Observable(Promise.resolve(rsp)),
  };
  const opts: k8s.ConfigurationOptions = { middleware: [timeout], middlewareMergeStrategy: 'append' };
  return contentType ? k8s.setHeaderOptions('Content-Type', contentType, opts) : opts;
}

export const sleep = (ms: number, signal?: AbortSignal): Promise<void> =>
  new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });

/** Exponential backoff with full jitter in [d/2, d]; reset() after a success. */
export class Backoff {
  readonly minMs: number;
  readonly maxMs: number;
  private attempt = 0;

  constructor(minMs: number, maxMs: number) {
    this.minMs = minMs;
    this.maxMs = maxMs;
  }

  next(): number {
    const d = Math.min(this.maxMs, this.minMs * 2 ** Math.min(this.attempt, 30));
    this.attempt++;
    return Math.round(d / 2 + (Math.random() * d) / 2);
  }

  reset(): void {
    this.attempt = 0;
  }

  get failures(): number {
    return this.attempt;
  }
}
