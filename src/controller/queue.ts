/**
 * A keyed work queue with client-go's semantics (util/workqueue queue.go, delaying_queue.go,
 * rate_limiting_queue.go), for one process and async workers:
 *
 * - two lanes (after controller-runtime's priority queue): keys added to the `high` lane (driver
 *   events, spec changes) are handed out before any key of the `low` lane (periodic resyncs,
 *   delayed and rate-limited retries, the initial list). FIFO within a lane. A key waiting in the
 *   low lane that is added high moves to the high lane; never the other way;
 * - dedup: a key added while it waits is queued once (`dirty` set);
 * - a key is never handed to two workers at once: added while being processed, it is parked
 *   and queued again only when the worker calls `done(key)`;
 * - `addAfter(key, ms)` delays an add; if the key already waits, the earliest time wins;
 * - `addRateLimited(key)` = `addAfter(key, rateLimiter.when(key))`, `forget(key)` resets its backoff;
 * - `shutDown()` stops intake and makes every `get()` resolve `undefined`; `shutDownWithDrain()`
 *   additionally resolves once every key handed out has been `done`.
 *
 * Metrics hooks follow client-go's MetricsProvider (depth, adds, retries, queue and work
 * durations, unfinished work, longest running processor).
 */
import { defaultControllerRateLimiter, realClock } from './ratelimit.ts';
import type { Clock, RateLimiter } from './ratelimit.ts';

/** Where the queue reports; `src/controller/metrics.ts` provides a prom-client implementation. */
export interface QueueMetrics {
  /** A key entered the queue (not counted when deduplicated): workqueue_adds_total. */
  add(): void;
  /** Keys waiting to be processed: workqueue_depth. */
  depth(n: number): void;
  /** A delayed or rate-limited add: workqueue_retries_total. */
  retry(): void;
  /** Seconds from add to get: workqueue_queue_duration_seconds. */
  queueDuration(seconds: number): void;
  /** Seconds from get to done: workqueue_work_duration_seconds. */
  workDuration(seconds: number): void;
  /**
   * Receives a probe the sink reads when it is scraped, for workqueue_unfinished_work_seconds
   * and workqueue_longest_running_processor_seconds.
   */
  inFlight?(probe: InFlightProbe): void;
}

export interface InFlightProbe {
  /** Sum over the keys being processed of how long each has been processed, in seconds. */
  unfinishedWorkSeconds(): number;
  /** How long the longest-running key has been processed, in seconds. */
  longestRunningProcessorSeconds(): number;
}

export interface WorkQueueOptions<K> {
  /** The `name` label of the workqueue metrics. */
  name?: string;
  clock?: Clock;
  /** Used by addRateLimited/forget/numRequeues; default: client-go's default controller limiter. */
  rateLimiter?: RateLimiter<K>;
  metrics?: QueueMetrics;
}

/** Which lane a key waits in: `high` is always served first. */
export type Lane = 'high' | 'low';

const noMetrics: QueueMetrics = {
  add() {},
  depth() {},
  retry() {},
  queueDuration() {},
  workDuration() {},
};

export class WorkQueue<K = string> implements InFlightProbe {
  readonly name: string;
  readonly rateLimiter: RateLimiter<K>;
  readonly #clock: Clock;
  readonly #metrics: QueueMetrics;

  /** Keys ready to be handed out, FIFO per lane (a Set keeps insertion order and each key once). */
  readonly #high = new Set<K>();
  readonly #low = new Set<K>();
  /** Keys that need processing (queued, or parked because they are being processed), with their lane. */
  readonly #dirty = new Map<K, Lane>();
  /** Keys handed out and not yet done, with the time processing started. */
  readonly #processing = new Map<K, number>();
  /** When each dirty key was added (for the queue duration). */
  readonly #addTimes = new Map<K, number>();
  /** Delayed adds: key → time it becomes ready, and the lane it then joins. */
  readonly #waiting = new Map<K, { at: number; lane: Lane }>();
  #timer: unknown = undefined;
  #timerAt = Infinity;

  readonly #getters: ((key: K | undefined) => void)[] = [];
  readonly #drainers: (() => void)[] = [];
  #shuttingDown = false;

  constructor(opts: WorkQueueOptions<K> = {}) {
    this.name = opts.name ?? '';
    this.#clock = opts.clock ?? realClock;
    this.rateLimiter = opts.rateLimiter ?? defaultControllerRateLimiter<K>({ clock: this.#clock });
    this.#metrics = opts.metrics ?? noMetrics;
    this.#metrics.inFlight?.(this);
  }

  /** Marks `key` as needing processing, in `lane` (default `high`: something happened). */
  add(key: K, lane: Lane = 'high'): void {
    if (this.#shuttingDown) return;
    const current = this.#dirty.get(key);
    if (current !== undefined) {
      if (current === 'low' && lane === 'high') this.#promote(key);
      return;
    }
    this.#metrics.add();
    this.#dirty.set(key, lane);
    if (!this.#addTimes.has(key)) this.#addTimes.set(key, this.#clock.now());
    this.#metrics.depth(this.#dirty.size);
    if (this.#processing.has(key)) return; // parked: queued again on done()
    (lane === 'high' ? this.#high : this.#low).add(key);
    this.#dispatch();
  }

  /** A low-lane key added high: it jumps to the back of the high lane. */
  #promote(key: K): void {
    this.#dirty.set(key, 'high');
    if (this.#low.delete(key)) this.#high.add(key);
  }

  /**
   * Adds `key` after `ms` milliseconds, into `lane` (default `low`: a timer, not an event); if it
   * already waits, the earlier time wins.
   */
  addAfter(key: K, ms: number, lane: Lane = 'low'): void {
    if (this.#shuttingDown) return;
    this.#metrics.retry();
    if (!(ms > 0)) {
      this.add(key, lane);
      return;
    }
    const at = this.#clock.now() + ms;
    const prev = this.#waiting.get(key);
    if (prev !== undefined && prev.at <= at) return;
    this.#waiting.set(key, { at, lane });
    if (at < this.#timerAt) this.#arm(at);
  }

  /** Adds `key` (low lane) after the rate limiter says it may be retried (one more failure for its backoff). */
  addRateLimited(key: K): void {
    if (this.#shuttingDown) return;
    this.addAfter(key, this.rateLimiter.when(key), 'low');
  }

  /** The key is done being retried: reset its backoff. Does not remove it from the queue. */
  forget(key: K): void {
    this.rateLimiter.forget(key);
  }

  numRequeues(key: K): number {
    return this.rateLimiter.numRequeues(key);
  }

  /**
   * Resolves with the next key to process, which the caller must hand back with `done(key)`;
   * resolves `undefined` once the queue is shut down.
   */
  get(): Promise<K | undefined> {
    if (this.#shuttingDown) return Promise.resolve(undefined);
    const key = this.#take();
    if (key !== undefined) return Promise.resolve(key.value);
    return new Promise((resolve) => this.#getters.push(resolve));
  }

  /** The caller finished processing `key`; if it was added meanwhile, it is queued again. */
  done(key: K): void {
    const started = this.#processing.get(key);
    if (started === undefined) return;
    this.#processing.delete(key);
    this.#metrics.workDuration(Math.max(0, this.#clock.now() - started) / 1000);
    const lane = this.#dirty.get(key);
    if (lane !== undefined && !this.#shuttingDown) {
      (lane === 'high' ? this.#high : this.#low).add(key);
      this.#dispatch();
    }
    if (this.#processing.size === 0) {
      for (const d of this.#drainers.splice(0)) d();
    }
  }

  /** Keys waiting to be handed out (not counting delayed ones or those being processed). */
  len(lane?: Lane): number {
    if (lane === 'high') return this.#high.size;
    if (lane === 'low') return this.#low.size;
    return this.#high.size + this.#low.size;
  }

  /** Keys handed out and not yet done. */
  processing(): number {
    return this.#processing.size;
  }

  /** Keys waiting for a delayed add. */
  delayed(): number {
    return this.#waiting.size;
  }

  isProcessing(key: K): boolean {
    return this.#processing.has(key);
  }

  get shuttingDown(): boolean {
    return this.#shuttingDown;
  }

  /** Stops intake: adds are ignored, delayed adds dropped, waiting and future `get()`s resolve `undefined`. */
  shutDown(): void {
    if (!this.#shuttingDown) {
      this.#shuttingDown = true;
      if (this.#timer !== undefined) this.#clock.clearTimeout(this.#timer);
      this.#timer = undefined;
      this.#timerAt = Infinity;
      this.#waiting.clear();
      for (const g of this.#getters.splice(0)) g(undefined);
    }
  }

  /** Like `shutDown()`, then resolves once every key handed out has been `done`. */
  shutDownWithDrain(): Promise<void> {
    this.shutDown();
    if (this.#processing.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.#drainers.push(resolve));
  }

  unfinishedWorkSeconds(): number {
    const now = this.#clock.now();
    let total = 0;
    for (const started of this.#processing.values()) total += now - started;
    return Math.max(0, total) / 1000;
  }

  longestRunningProcessorSeconds(): number {
    const now = this.#clock.now();
    let longest = 0;
    for (const started of this.#processing.values()) longest = Math.max(longest, now - started);
    return longest / 1000;
  }

  /** Pops the next queued key into processing: the high lane first. */
  #take(): { value: K } | undefined {
    const lane = this.#high.size > 0 ? this.#high : this.#low;
    const it = lane.values().next();
    if (it.done === true) return undefined;
    const key = it.value;
    lane.delete(key);
    this.#dirty.delete(key);
    const now = this.#clock.now();
    this.#processing.set(key, now);
    const added = this.#addTimes.get(key);
    this.#addTimes.delete(key);
    this.#metrics.depth(this.#dirty.size);
    if (added !== undefined) this.#metrics.queueDuration(Math.max(0, now - added) / 1000);
    return { value: key };
  }

  /** Hands queued keys to waiting getters. */
  #dispatch(): void {
    while (this.#getters.length > 0 && this.#high.size + this.#low.size > 0) {
      const getter = this.#getters.shift();
      const key = this.#take();
      if (getter !== undefined && key !== undefined) getter(key.value);
    }
  }

  #arm(at: number): void {
    if (this.#timer !== undefined) this.#clock.clearTimeout(this.#timer);
    this.#timerAt = at;
    this.#timer = this.#clock.setTimeout(() => this.#fire(), at - this.#clock.now());
  }

  #fire(): void {
    this.#timer = undefined;
    this.#timerAt = Infinity;
    if (this.#shuttingDown) return;
    const now = this.#clock.now();
    let next = Infinity;
    const due: [K, Lane][] = [];
    for (const [key, { at, lane }] of this.#waiting) {
      if (at <= now) due.push([key, lane]);
      else next = Math.min(next, at);
    }
    for (const [key, lane] of due) {
      this.#waiting.delete(key);
      this.add(key, lane);
    }
    if (next < Infinity) this.#arm(next);
  }
}
