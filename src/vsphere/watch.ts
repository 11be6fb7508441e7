// The PropertyCollector's watch side: a private collector with one filter over a ContainerView,
// long-polled with WaitForUpdatesEx. The first answers (until `truncated` is false) are the whole
// current set; after that each answer carries only what changed since the version we hold, so
// keeping a fleet current costs one call per change batch (or per maxWaitSeconds when idle).
import { exponentialDelay } from '../util/backoff.ts';
import { sleep } from '../util/sleep.ts';
import { VSphereError } from './errors.ts';
import { parseUpdateSet } from './decode.ts';
import { createViewFilter, destroyViewFilter } from './properties.ts';
import type { Session } from './session.ts';
import type { MoRef } from './soap.ts';
import type { ObjectUpdate, Watch, WatchOptions } from './types.ts';
import type { XmlNode } from './xml.ts';
import { child, childText, el } from './xml.ts';

export type OnUpdates = (updates: ObjectUpdate[], initial: boolean) => void;

/** How long stop() waits for the loop: a cancel that raced with a wait leaves it to its maxWaitSeconds. */
const STOP_GRACE_MS = 5000;

class PropertyWatch implements Watch {
  readonly #s: Session;
  readonly #type: string;
  readonly #paths: readonly string[];
  readonly #onUpdates: OnUpdates;
  readonly #opts: WatchOptions;
  readonly #maxWait: number;
  readonly #retryMin: number;
  readonly #retryMax: number;
  #stopped = false;
  #collector: MoRef | undefined;
  #view: MoRef | undefined;
  /** Aborted by stop(): ends a pause between attempts at once. */
  readonly #stopCtl = new AbortController();
  #first = true; // no initial set delivered yet: a failure now is the caller's (start rejects)
  #ready = Promise.withResolvers<void>();
  #done: Promise<void> = Promise.resolve();

  constructor(s: Session, type: string, paths: readonly string[], onUpdates: OnUpdates, opts: WatchOptions) {
    this.#s = s;
    this.#type = type;
    this.#paths = paths;
    this.#onUpdates = onUpdates;
    this.#opts = opts;
    this.#maxWait = opts.maxWaitSeconds ?? 60;
    this.#retryMin = opts.retryMinMs ?? 1000;
    this.#retryMax = opts.retryMaxMs ?? 30_000;
  }

  /** Resolves once the first initial set was delivered; rejects if the first attempt fails. */
  async start(): Promise<void> {
    this.#done = this.#loop();
    try {
      await this.#ready.promise;
    } catch (e) {
      await this.#done;
      throw e;
    }
  }

  async stop(): Promise<void> {
    if (this.#stopped) return this.#done;
    this.#stopped = true;
    this.#stopCtl.abort();
    await this.#cancelWait();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.#done, new Promise<void>((r) => (timer = setTimeout(r, STOP_GRACE_MS)))]);
    clearTimeout(timer);
  }

  async #loop(): Promise<void> {
    let failures = 0;
    while (!this.#stopped) {
      try {
        await this.#setup();
        await this.#poll(() => (failures = 0));
      } catch (e) {
        if (this.#stopped) break;
        if (this.#first) {
          this.#stopped = true;
          this.#ready.reject(e);
          break;
        }
        this.#report(e);
        await this.#teardown();
        // Re-establish after retryMin, doubling per failure up to retryMax; stop() ends the wait.
        await sleep(exponentialDelay(this.#retryMin, this.#retryMax, failures++), this.#stopCtl.signal);
      }
    }
    await this.#teardown();
  }

  /** A private collector (so cancelling our wait touches no one else's), a view, one filter. */
  async #setup(): Promise<void> {
    ({ collector: this.#collector, view: this.#view } = await createViewFilter(this.#s, this.#type, this.#paths));
  }

  /** WaitForUpdatesEx until stopped: the initial set first (maybe over several truncated answers), then changes. */
  async #poll(onAnswer: () => void): Promise<void> {
    let version = '';
    let initial = true;
    while (!this.#stopped) {
      const rv = await this.#waitForUpdates(version);
      if (!rv) continue; // maxWaitSeconds passed without a change
      version = childText(rv, 'version') ?? version;
      const updates = parseUpdateSet(rv, 'WaitForUpdatesEx');
      if (updates.length > 0 || initial) this.#deliver(updates, initial);
      if (initial && childText(rv, 'truncated') !== 'true') {
        initial = false;
        this.#markReady();
      }
      onAnswer();
    }
  }

  async #waitForUpdates(version: string): Promise<XmlNode | undefined> {
    const res = await this.#s.call(
      'WaitForUpdatesEx',
      this.#collector!,
      [el('version', null, version), el('options', null, el('maxWaitSeconds', null, this.#maxWait))],
      (r) => r,
      (this.#maxWait + 30) * 1000,
    );
    return child(res, 'returnval');
  }

  #deliver(updates: ObjectUpdate[], initial: boolean): void {
    try {
      this.#onUpdates(updates, initial);
    } catch {
      // a subscriber's failure is its own
    }
  }

  #markReady(): void {
    if (!this.#first) return;
    this.#first = false;
    this.#ready.resolve();
  }

  #report(e: unknown): void {
    const err = e instanceof VSphereError ? e : new VSphereError(String(e), 'watch', { cause: e });
    try {
      this.#opts.onError?.(err);
    } catch {
      // ignore
    }
  }

  async #cancelWait(): Promise<void> {
    const pc = this.#collector;
    if (!pc) return;
    try {
      await this.#s.callOnce('CancelWaitForUpdates', pc, [], () => undefined, 5000);
    } catch {
      // the wait ends with its own timeout
    }
  }

  async #teardown(): Promise<void> {
    const pc = this.#collector;
    const v = this.#view;
    this.#collector = undefined;
    this.#view = undefined;
    await destroyViewFilter(this.#s, pc, v);
  }
}

/**
 * Watches `paths` of every object of `type` (through a ContainerView and a private
 * PropertyCollector, WaitForUpdatesEx long polls). `onUpdates(updates, initial)` gets the
 * whole current set first (`initial` true: kind `enter`), then changes. A broken watch (network,
 * expired session, ...) is reported to `onError` and re-established with a new initial set.
 */
export async function watch(s: Session, type: string, paths: readonly string[], onUpdates: OnUpdates, opts: WatchOptions = {}): Promise<Watch> {
  const w = new PropertyWatch(s, type, paths, onUpdates, opts);
  await w.start();
  return w;
}
