/**
 * The controller runner, after controller-runtime's pkg/internal/controller/controller.go: a
 * reconciler is one async function of a key; the queue, backoff, workers, metrics and logging
 * live here and stay invisible to it.
 *
 * Each worker loops get → reconcile → done. Outcome handling (controller-runtime's
 * reconcileHandler):
 *   throw / rejection  → log (key, reconcile id, error), result="error", errors_total++, addRateLimited
 *   TerminalError      → log, result="error", errors_total++, terminal_errors_total++, forget (no retry)
 *   { requeueAfter }   → forget, addAfter(key, requeueAfter), result="requeue_after"
 *   { requeue: true }  → addRateLimited, result="requeue"
 *   otherwise          → forget, result="success"
 * A failing reconcile never kills its worker or the process.
 */
import { randomUUID } from 'node:crypto';
import { WorkQueue } from './queue.ts';
import type { Lane } from './queue.ts';
import { defaultControllerRateLimiter, realClock } from './ratelimit.ts';
import { redactText } from './log.ts';
import type { Clock, RateLimiter } from './ratelimit.ts';
import type { Metrics, ReconcileResult } from './metrics.ts';
import type { Logger } from './ports.ts';

/** What a reconcile asks for next (controller-runtime's reconcile.Result). */
export interface Result {
  /** Reconcile again after this many milliseconds (resets the key's backoff). */
  requeueAfter?: number;
  /** Reconcile again after the key's rate-limited backoff. */
  requeue?: boolean;
}

export interface ReconcileContext {
  /** Fresh for every reconcile (a UUID), also bound to `log`. */
  reconcileID: string;
  /** Child logger with `{ controller, key, reconcileID }`. */
  log: Logger;
  /**
   * Aborted on timeout or on a non-draining stop. After a timeout the worker moves on, but the
   * key is not handed out again until this reconcile settles.
   */
  signal: AbortSignal;
  /** 1 on a first try; n + 1 after n failures in a row (the key's backoff count). */
  attempt: number;
  /**
   * How long the queue will wait before retrying the key if this reconcile fails, for a status
   * that says when ("next in 40ms"). Absent where a failure is not retried (`run --once`).
   */
  retryInMs?: () => number;
}

export type Reconciler = (key: string, ctx: ReconcileContext) => Promise<Result | void>;

/**
 * An error that retrying will not fix (controller-runtime's reconcile.TerminalError): counted and
 * logged as an error, but the key is not requeued; a later change event enqueues it again.
 */
export class TerminalError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'TerminalError';
  }
}

export function isTerminalError(err: unknown): boolean {
  return err instanceof TerminalError;
}

/** Thrown into a reconcile's outcome when it exceeds `reconcileTimeout`. */
export class ReconcileTimeoutError extends Error {
  constructor(ms: number) {
    super(`reconcile timed out after ${ms} ms`);
    this.name = 'ReconcileTimeoutError';
  }
}

export interface ControllerOptions {
  /** The `controller` label and log field, and the workqueue `name`. */
  name: string;
  reconcile: Reconciler;
  /** Worker count (controller-runtime MaxConcurrentReconciles); default 2. */
  concurrency?: number;
  rateLimiter?: RateLimiter<string>;
  metrics?: Metrics;
  logger: Logger;
  clock?: Clock;
  /** Per-reconcile timeout in ms: the signal is aborted and the reconcile counted as an error. */
  reconcileTimeout?: number;
}

export interface StopOptions {
  /** Wait for in-flight reconciles to finish (default true). Otherwise their signals are aborted. */
  drain?: boolean;
  /** With drain: after this many ms, abort in-flight reconciles' signals and stop waiting. */
  timeoutMs?: number;
}

function errorFields(err: unknown): Record<string, unknown> {
  if (err instanceof Error) return { err };
  return { err: { message: redactText(String(err)) } };
}

export class Controller {
  readonly name: string;
  readonly concurrency: number;
  readonly queue: WorkQueue<string>;
  readonly #reconcile: Reconciler;
  readonly #metrics: Metrics | undefined;
  readonly #log: Logger;
  readonly #clock: Clock;
  readonly #timeout: number | undefined;
  readonly #inFlight = new Map<string, AbortController>();
  /** Keys whose reconcile timed out but has not settled yet. */
  readonly #detached = new Set<string>();
  #workers: Promise<void>[] = [];
  #started = false;
  #stopped = false;
  #stopping: Promise<void> | undefined;

  constructor(opts: ControllerOptions) {
    this.name = opts.name;
    this.concurrency = Math.max(1, Math.floor(opts.concurrency ?? 2));
    this.#reconcile = opts.reconcile;
    this.#metrics = opts.metrics;
    this.#clock = opts.clock ?? realClock;
    this.#log = opts.logger.child({ controller: opts.name });
    this.#timeout = opts.reconcileTimeout;
    this.queue = new WorkQueue<string>({
      name: opts.name,
      clock: this.#clock,
      rateLimiter: opts.rateLimiter ?? defaultControllerRateLimiter<string>({ clock: this.#clock }),
      ...(opts.metrics !== undefined ? { metrics: opts.metrics.queue(opts.name) } : {}),
    });
    this.#metrics?.initController(opts.name, this.concurrency);
  }

  /**
   * Queues `key` for reconciliation (deduplicated). `high` (default) for what happened (a spec
   * change, a driver event), `low` for periodic resyncs and the initial list: high goes first.
   */
  enqueue(key: string, lane: Lane = 'high'): void {
    this.queue.add(key, lane);
  }

  /** Queues `key` (low lane) after `ms` milliseconds (earliest wins if already waiting). */
  enqueueAfter(key: string, ms: number, lane: Lane = 'low'): void {
    this.queue.addAfter(key, ms, lane);
  }

  /** Starts the workers. Idempotent. */
  start(): void {
    if (this.#started || this.#stopped) return;
    this.#started = true;
    this.#log.info({ workers: this.concurrency }, 'starting workers');
    for (let i = 0; i < this.concurrency; i++) this.#workers.push(this.#worker());
  }

  /** True between start() and stop() (a liveness check for /healthz; workers contain every error). */
  alive(): boolean {
    return this.#started && !this.#stopped;
  }

  /**
   * Stops taking work. With `drain` (default), resolves once in-flight reconciles finish; keys
   * still queued are dropped (a restart relists everything).
   */
  stop(opts: StopOptions = {}): Promise<void> {
    this.#stopping ??= this.#stop(opts);
    return this.#stopping;
  }

  async #stop(opts: StopOptions): Promise<void> {
    this.#stopped = true;
    const drain = opts.drain ?? true;
    this.#log.info({ drain, inFlight: this.#inFlight.size }, 'stopping workers');
    if (!drain) {
      for (const ac of this.#inFlight.values()) ac.abort(new Error('controller stopped'));
      this.queue.shutDown();
    } else {
      const drained = this.queue.shutDownWithDrain();
      if (opts.timeoutMs !== undefined) {
        let timer: unknown;
        const timedOut = new Promise<'timeout'>((resolve) => {
          timer = this.#clock.setTimeout(() => resolve('timeout'), opts.timeoutMs ?? 0);
        });
        const outcome = await Promise.race([drained.then(() => 'drained' as const), timedOut]);
        this.#clock.clearTimeout(timer);
        if (outcome === 'timeout') {
          this.#log.warn({ inFlight: [...this.#inFlight.keys()] }, 'drain timed out; aborting in-flight reconciles');
          for (const ac of this.#inFlight.values()) ac.abort(new Error('controller stopped'));
          return;
        }
      } else {
        await drained;
      }
    }
    if (drain) await Promise.all(this.#workers);
    this.#log.info('workers stopped');
  }

  async #worker(): Promise<void> {
    for (;;) {
      let key: string | undefined;
      try {
        key = await this.queue.get();
      } catch (err) {
        this.#log.error(errorFields(err), 'work queue get failed');
        continue;
      }
      if (key === undefined) return;
      try {
        await this.#process(key);
      } catch (err) {
        // #process contains its own errors; this is a last line of defence.
        this.#log.error({ ...errorFields(err), key }, 'unexpected error in worker');
      } finally {
        // A timed-out reconcile still running keeps its key "processing" until it settles.
        if (!this.#detached.has(key)) this.queue.done(key);
      }
    }
  }

  async #process(key: string): Promise<void> {
    const reconcileID = randomUUID();
    const log = this.#log.child({ key, reconcileID });
    const ac = new AbortController();
    this.#inFlight.set(key, ac);
    const controller = this.name;
    const m = this.#metrics;
    m?.activeWorkers.inc({ controller });
    const start = this.#clock.now();
    let outcome: ReconcileResult = 'error';
    try {
      let result: Result | void;
      try {
        const attempt = this.queue.numRequeues(key) + 1;
        const retryInMs = () => this.queue.rateLimiter.peek?.(key) ?? 0;
        result = await this.#run(key, { reconcileID, log, signal: ac.signal, attempt, retryInMs }, ac);
      } catch (err) {
        outcome = 'error';
        m?.reconcileErrors.inc({ controller });
        if (isTerminalError(err)) {
          m?.terminalReconcileErrors.inc({ controller });
          log.error(errorFields(err), 'reconciler returned a terminal error');
          this.queue.forget(key);
        } else {
          log.error(errorFields(err), 'reconciler error');
          this.queue.addRateLimited(key);
        }
        return;
      }
      const after = result?.requeueAfter;
      if (after !== undefined && after > 0) {
        outcome = 'requeue_after';
        this.queue.forget(key);
        this.queue.addAfter(key, after);
      } else if (result?.requeue === true) {
        outcome = 'requeue';
        this.queue.addRateLimited(key);
      } else {
        outcome = 'success';
        this.queue.forget(key);
      }
    } finally {
      this.#inFlight.delete(key);
      m?.activeWorkers.dec({ controller });
      const seconds = Math.max(0, this.#clock.now() - start) / 1000;
      m?.reconcileTime.observe({ controller }, seconds);
      m?.reconcileTotal.inc({ controller, result: outcome });
    }
  }

  /** Runs the reconciler, turning synchronous throws into rejections and applying the timeout. */
  async #run(key: string, ctx: ReconcileContext, ac: AbortController): Promise<Result | void> {
    const p = (async () => this.#reconcile(key, ctx))();
    const ms = this.#timeout;
    if (ms === undefined || !(ms > 0)) return p;
    let timer: unknown;
    let timedOut = false;
    const timeout = new Promise<never>((_, reject) => {
      timer = this.#clock.setTimeout(() => {
        timedOut = true;
        const err = new ReconcileTimeoutError(ms);
        ac.abort(err);
        reject(err);
      }, ms);
    });
    try {
      return await Promise.race([p, timeout]);
    } catch (err) {
      if (timedOut) {
        // The worker moves on, but the key stays "processing" in the queue until the abandoned
        // reconcile settles, so it is never reconciled twice at once.
        this.#detached.add(key);
        void p.then(
          () => {},
          () => {},
        ).finally(() => {
          this.#detached.delete(key);
          this.queue.done(key);
        });
      }
      throw err;
    } finally {
      this.#clock.clearTimeout(timer);
    }
  }
}
