/**
 * Rate limiters for the work queue, after client-go's util/workqueue/default_rate_limiters.go:
 * per-item exponential failure backoff, an overall token bucket, and the max-of combination
 * that controllers use by default. Times are milliseconds; the clock is injectable so tests
 * never sleep.
 */
import { exponentialDelay } from '../util/backoff.ts';

/** Time source and timers. `realClock` in production, `FakeClock` in tests. */
export interface Clock {
  /** Milliseconds, monotonic within the process. */
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const realClock: Clock = {
  now: () => performance.now(),
  setTimeout: (fn, ms) => {
    const t = setTimeout(fn, Math.max(0, ms));
    return t;
  },
  clearTimeout: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
};

/**
 * A manual clock for tests: time moves only on `step()`/`set()`, which fire due timers in order
 * (a timer scheduled by a firing timer fires in the same step if it is due).
 */
export class FakeClock implements Clock {
  #now: number;
  #seq = 0;
  #timers = new Map<number, { at: number; fn: () => void }>();

  constructor(start = 0) {
    this.#now = start;
  }

  now(): number {
    return this.#now;
  }

  setTimeout(fn: () => void, ms: number): unknown {
    const id = ++this.#seq;
    this.#timers.set(id, { at: this.#now + Math.max(0, ms), fn });
    return id;
  }

  clearTimeout(handle: unknown): void {
    this.#timers.delete(handle as number);
  }

  /** Number of pending timers. */
  get pending(): number {
    return this.#timers.size;
  }

  /** Advances time by `ms`, firing every timer that comes due on the way, earliest first. */
  step(ms: number): void {
    this.set(this.#now + ms);
  }

  set(target: number): void {
    for (;;) {
      let next: [number, { at: number; fn: () => void }] | undefined;
      for (const entry of this.#timers) {
        if (entry[1].at <= target && (next === undefined || entry[1].at < next[1].at)) next = entry;
      }
      if (next === undefined) break;
      this.#timers.delete(next[0]);
      this.#now = Math.max(this.#now, next[1].at);
      next[1].fn();
    }
    this.#now = Math.max(this.#now, target);
  }
}

/** Decides how long an item waits before it is retried (client-go `RateLimiter`). */
export interface RateLimiter<K = string> {
  /** Delay in ms for the next retry of `item`; counts as one more failure. */
  when(item: K): number;
  /** The item is done being retried (success or given up): stop tracking it. */
  forget(item: K): void;
  /** How many failures the item has had since it was last forgotten. */
  numRequeues(item: K): number;
  /**
   * The delay `when(item)` would return now, without counting a failure: what a status can say
   * about the next retry ("next in 40ms") before the reconcile fails. Optional for custom limiters.
   */
  peek?(item: K): number;
}

/** `baseMs * 2^failures`, capped at `maxMs` (client-go `ItemExponentialFailureRateLimiter`). */
export class ItemExponentialFailureRateLimiter<K = string> implements RateLimiter<K> {
  readonly baseMs: number;
  readonly maxMs: number;
  #failures = new Map<K, number>();

  constructor(baseMs = 5, maxMs = 1_000_000) {
    this.baseMs = baseMs;
    this.maxMs = maxMs;
  }

  when(item: K): number {
    const exp = this.#failures.get(item) ?? 0;
    this.#failures.set(item, exp + 1);
    return exponentialDelay(this.baseMs, this.maxMs, exp);
  }

  peek(item: K): number {
    return exponentialDelay(this.baseMs, this.maxMs, this.#failures.get(item) ?? 0);
  }

  forget(item: K): void {
    this.#failures.delete(item);
  }

  numRequeues(item: K): number {
    return this.#failures.get(item) ?? 0;
  }
}

/**
 * Overall token bucket (client-go `BucketRateLimiter` over golang.org/x/time/rate): `qps` tokens
 * a second, at most `burst` saved up. `when()` reserves a token and returns how long until it is
 * available, so a burst of retries beyond `burst` spreads out at `qps`. Not per item.
 */
export class BucketRateLimiter<K = string> implements RateLimiter<K> {
  readonly qps: number;
  readonly burst: number;
  readonly #clock: Clock;
  #tokens: number;
  #last: number;

  constructor(qps = 10, burst = 100, clock: Clock = realClock) {
    this.qps = qps;
    this.burst = burst;
    this.#clock = clock;
    this.#tokens = burst;
    this.#last = clock.now();
  }

  when(_item: K): number {
    const now = this.#clock.now();
    const elapsed = Math.max(0, now - this.#last);
    this.#last = now;
    this.#tokens = Math.min(this.burst, this.#tokens + (elapsed * this.qps) / 1000);
    this.#tokens -= 1;
    if (this.#tokens >= 0) return 0;
    // Negative tokens are reservations made in advance: wait until the bucket refills to zero.
    return (-this.#tokens * 1000) / this.qps;
  }

  peek(_item: K): number {
    const elapsed = Math.max(0, this.#clock.now() - this.#last);
    const tokens = Math.min(this.burst, this.#tokens + (elapsed * this.qps) / 1000) - 1;
    return tokens >= 0 ? 0 : (-tokens * 1000) / this.qps;
  }

  forget(_item: K): void {}

  numRequeues(_item: K): number {
    return 0;
  }
}

/** The longest delay of several limiters (client-go `MaxOfRateLimiter`). */
export class MaxOfRateLimiter<K = string> implements RateLimiter<K> {
  readonly limiters: readonly RateLimiter<K>[];

  constructor(...limiters: RateLimiter<K>[]) {
    this.limiters = limiters;
  }

  when(item: K): number {
    let ret = 0;
    for (const l of this.limiters) ret = Math.max(ret, l.when(item));
    return ret;
  }

  peek(item: K): number {
    let ret = 0;
    for (const l of this.limiters) ret = Math.max(ret, l.peek?.(item) ?? 0);
    return ret;
  }

  forget(item: K): void {
    for (const l of this.limiters) l.forget(item);
  }

  numRequeues(item: K): number {
    let ret = 0;
    for (const l of this.limiters) ret = Math.max(ret, l.numRequeues(item));
    return ret;
  }
}

export interface DefaultRateLimiterOptions {
  baseMs?: number;
  maxMs?: number;
  qps?: number;
  burst?: number;
  clock?: Clock;
}

/**
 * client-go's `DefaultControllerRateLimiter`: per-item exponential 5 ms → 1000 s, max-ed with an
 * overall token bucket of 10 qps / burst 100.
 */
export function defaultControllerRateLimiter<K = string>(opts: DefaultRateLimiterOptions = {}): RateLimiter<K> {
  return new MaxOfRateLimiter<K>(
    new ItemExponentialFailureRateLimiter<K>(opts.baseMs ?? 5, opts.maxMs ?? 1_000_000),
    new BucketRateLimiter<K>(opts.qps ?? 10, opts.burst ?? 100, opts.clock ?? realClock),
  );
}
