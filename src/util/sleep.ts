/**
 * The one wait of the house. Callers poll, back off or pace themselves and
 * check `signal.aborted` afterwards, so an abort ends the wait early and
 * resolves instead of rejecting (node:timers/promises rejects with an
 * AbortError, which every caller would otherwise have to swallow).
 */
import { setTimeout as wait } from 'node:timers/promises';

/** Waits `ms`; resolves early (the caller checks `signal.aborted`) when the signal aborts. */
export async function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted) return;
  try {
    await wait(ms, undefined, signal ? { signal } : undefined);
  } catch (err) {
    if ((err as { name?: string }).name !== 'AbortError') throw err;
  }
}
