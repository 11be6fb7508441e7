// An incremental copy of `paths` of every object of one type, kept by ONE PropertyCollector filter
// over a ContainerView: the first sync() is the whole set, every later one a single
// WaitForUpdatesEx (maxWaitSeconds 0: answer at once) carrying only what changed since the
// version held, or nothing. So keeping a fleet of any size current costs one call per sync.
//
// Answers are paged by maxObjectUpdates (a `truncated` answer is followed at once), so no body
// grows with the inventory. A sync that fails tears the collector down; the next one starts over
// with a full set (a collector does not outlive its session, so this also covers a re-login).
import { VSphereError, VSphereFault } from './errors.ts';
import { parseUpdateSet } from './decode.ts';
import { createViewFilter, destroyViewFilter } from './properties.ts';
import type { Session } from './session.ts';
import type { MoRef } from './soap.ts';
import type { ObjectUpdate } from './types.ts';
import type { XmlNode } from './xml.ts';
import { child, childText, el } from './xml.ts';

export interface CachedObject {
  obj: MoRef;
  props: Map<string, XmlNode>;
}

export interface SyncResult {
  /** The updates this sync applied (all `enter` when `initial`). */
  updates: ObjectUpdate[];
  /** True when this sync (re)built the whole set. */
  initial: boolean;
}

/** Truncated answers followed at most in one sync (a server that never stops truncating is refused). */
const MAX_PAGES = 10_000;

export class PropertyCache {
  readonly #s: Session;
  readonly #type: string;
  readonly #paths: readonly string[];
  readonly #pageSize: number;
  #collector: MoRef | undefined;
  #view: MoRef | undefined;
  #version = '';
  #objects = new Map<string, CachedObject>();

  constructor(s: Session, type: string, paths: readonly string[], pageSize: number) {
    this.#s = s;
    this.#type = type;
    this.#paths = paths;
    this.#pageSize = pageSize;
  }

  /** The objects as of the last sync, keyed by managed object id. */
  get objects(): ReadonlyMap<string, CachedObject> {
    return this.#objects;
  }

  /** Brings the copy up to date: the whole set the first time (or after a failure), else the changes. */
  async sync(): Promise<SyncResult> {
    const initial = this.#collector === undefined;
    try {
      if (initial) await this.#setup();
      return { updates: await this.#drain(initial), initial };
    } catch (e) {
      await this.close();
      if (!initial && e instanceof VSphereFault && e.faultName === 'ManagedObjectNotFound') {
        // The collector went with its session (re-login): start over once, in this same sync.
        await this.#setup();
        return { updates: await this.#drain(true), initial: true };
      }
      throw e;
    }
  }

  /** Destroys the collector and view (best effort) and forgets the copy. */
  async close(): Promise<void> {
    const pc = this.#collector;
    const v = this.#view;
    this.#collector = undefined;
    this.#view = undefined;
    this.#version = '';
    this.#objects = new Map();
    await destroyViewFilter(this.#s, pc, v);
  }

  async #setup(): Promise<void> {
    ({ collector: this.#collector, view: this.#view } = await createViewFilter(this.#s, this.#type, this.#paths));
  }

  /** WaitForUpdatesEx without waiting, following truncated answers; applies every update. */
  async #drain(initial: boolean): Promise<ObjectUpdate[]> {
    const all: ObjectUpdate[] = [];
    for (let page = 0; page <= MAX_PAGES; page++) {
      const rv = await this.#waitOnce();
      if (!rv) return all; // nothing changed since the version held
      this.#version = childText(rv, 'version') ?? this.#version;
      const updates = parseUpdateSet(rv, 'WaitForUpdatesEx');
      for (const u of updates) this.#apply(u);
      all.push(...updates);
      if (childText(rv, 'truncated') !== 'true') return all;
    }
    throw new VSphereError(`WaitForUpdatesEx: ${initial ? 'initial set' : 'changes'} still truncated after ${MAX_PAGES} pages`, 'WaitForUpdatesEx');
  }

  async #waitOnce(): Promise<XmlNode | undefined> {
    const options = el('options', null, el('maxWaitSeconds', null, 0), el('maxObjectUpdates', null, this.#pageSize));
    const res = await this.#s.call('WaitForUpdatesEx', this.#collector!, [el('version', null, this.#version), options], (r) => r);
    return child(res, 'returnval');
  }

  #apply(u: ObjectUpdate): void {
    const key = u.obj.value;
    if (u.kind === 'leave') {
      this.#objects.delete(key);
      return;
    }
    let o = this.#objects.get(key);
    if (!o || u.kind === 'enter') {
      o = { obj: u.obj, props: new Map() };
      this.#objects.set(key, o);
    }
    for (const c of u.changes) {
      if (c.op === 'remove' || c.op === 'indirectRemove' || c.val === undefined) o.props.delete(c.name);
      else o.props.set(c.name, c.val);
    }
  }
}
