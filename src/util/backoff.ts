/**
 * The one exponential backoff of the house: the controller's per-item rate
 * limiter (client-go's ItemExponentialFailureRateLimiter) and the informer's
 * jittered relist/rewatch delay both grow `baseMs * 2^failures` up to `maxMs`.
 */

/** `baseMs * 2^failures`, capped at `maxMs` (also when the power overflows to Infinity). */
export function exponentialDelay(baseMs: number, maxMs: number, failures: number): number {
  const d = baseMs * 2 ** failures;
  return !Number.isFinite(d) || d > maxMs ? maxMs : d;
}

/** Exponential backoff with jitter in [d/2, d] (d from exponentialDelay); reset() after a success. */
export class Backoff {
  readonly minMs: number;
  readonly maxMs: number;
  private attempt = 0;

  constructor(minMs: number, maxMs: number) {
    this.minMs = minMs;
    this.maxMs = maxMs;
  }

  next(): number {
    const d = exponentialDelay(this.minMs, this.maxMs, this.attempt);
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
