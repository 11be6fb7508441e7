/**
 * One host view per Hypervisor (issue #13, DESIGN §5a): the last bulk
 * observation of every VM on the host, shared by the VMMs that run there.
 * A VMM reconcile reads its VM from here instead of calling the hypervisor
 * to look; the view is refreshed by one observeAll per syncInterval (the
 * host resync), patched by what applies and fresh reads return, and a VM a
 * driver event names is marked dirty so its next reconcile reads it fresh.
 *
 * Each change bumps the view's revision; a snapshot carries its VM's
 * fingerprint, so "has this VM changed since the VMM last looked" is one
 * string comparison. Drivers without observeAll get no view (the VMM
 * reconciler falls back to lookup + observe per VMM).
 */
import type { Driver, VMHandle } from '../drivers/driver.ts';
import type { ObservedVM, VMRef } from '../model/memory.ts';
import type { ObjectKey } from './ports.ts';
import { keyString } from './ports.ts';
import { ObservedIndex } from './vmm-index.ts';

/** A VM as the view last saw it. */
export interface VMSnapshot {
  vm: ObservedVM;
  /** Canonical text of `vm`: equal fingerprints, equal observations. */
  fingerprint: string;
  /** A driver event named this VM since: read it fresh before trusting the snapshot. */
  dirty: boolean;
}

/** Fingerprint of a VM that is not on the host (a VMM whose VM is absent). */
export const ABSENT = 'absent';

export function fingerprintOf(vm: ObservedVM | undefined): string {
  if (vm === undefined) return ABSENT;
  return JSON.stringify(vm, (_k, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v));
}

export class HostView {
  /** Bumped by every re-list and patch. */
  revision = 0;
  /** When the last full re-list finished (ms since epoch; 0: never). */
  listedAt = 0;
  readonly driver: Driver;
  private index = new ObservedIndex();
  private readonly fingerprints = new Map<string, string>();
  private readonly dirty = new Set<string>();

  constructor(driver: Driver) {
    this.driver = driver;
  }

  /** Replaces the whole view with a host re-list. */
  replace(vms: readonly ObservedVM[], at: number): void {
    this.index = new ObservedIndex(vms);
    this.fingerprints.clear();
    this.dirty.clear();
    for (const vm of vms) this.fingerprints.set(vm.uuid.toLowerCase(), fingerprintOf(vm));
    this.listedAt = at;
    this.revision++;
  }

  /** A fresh observation of one VM (observe(), or what apply returned). */
  patch(vm: ObservedVM): void {
    const uuid = vm.uuid.toLowerCase();
    this.index.put(vm);
    this.fingerprints.set(uuid, fingerprintOf(vm));
    this.dirty.delete(uuid);
    this.revision++;
  }

  /** The balloon moved (a driver event): the snapshot takes the new actual without a call. */
  patchBalloon(vm: VMHandle, actual: bigint): void {
    const known = this.index.find({ uuid: vm.uuid });
    if (!known) return;
    this.patch({ ...known, balloon: { ...known.balloon, actual } });
  }

  /** A driver event says this VM changed in a way the snapshot cannot be patched with. */
  markDirty(vm: VMHandle): void {
    this.dirty.add(vm.uuid.toLowerCase());
    this.revision++;
  }

  find(ref: VMRef): VMSnapshot | undefined {
    const vm = this.index.find(ref);
    if (!vm) return undefined;
    const uuid = vm.uuid.toLowerCase();
    return { vm, fingerprint: this.fingerprints.get(uuid) ?? fingerprintOf(vm), dirty: this.dirty.has(uuid) };
  }

  /** Fingerprint of what the view holds for `ref` (ABSENT when the host has no such VM). */
  fingerprint(ref: VMRef): string {
    const snap = this.find(ref);
    return snap ? snap.fingerprint : ABSENT;
  }

  get size(): number {
    return this.index.size;
  }

  /** Every VM of the host as the view holds it (host capacity reads these, no call). */
  vms(): ObservedVM[] {
    return this.index.values();
  }
}

export interface HostViewsOptions {
  /** Wraps each observeAll (metrics). */
  timeCall?: <T>(driver: string, op: string, fn: () => Promise<T>) => Promise<T>;
  now?: () => number;
}

/** The host views of every Hypervisor, keyed like the connection pool. */
export class HostViews {
  private readonly views = new Map<string, HostView>();
  private readonly listing = new Map<string, Promise<HostView>>();
  private readonly opts: HostViewsOptions;
  /** observeAll calls made (tests and the bench compare this with the VMM count). */
  relists = 0;

  constructor(opts: HostViewsOptions = {}) {
    this.opts = opts;
  }

  /** The view of a Hypervisor if one was listed with this driver (a reconnect starts a new one). */
  peek(hv: ObjectKey): HostView | undefined {
    return this.views.get(keyString(hv));
  }

  /**
   * The view for `driver`, listing the host once if there is none yet
   * (concurrent callers share the one listing). Undefined when the driver
   * has no bulk observation.
   */
  async ensure(hv: ObjectKey, driver: Driver, signal?: AbortSignal): Promise<HostView | undefined> {
    if (!driver.observeAll) return undefined;
    const view = this.views.get(keyString(hv));
    if (view && view.driver === driver && view.listedAt > 0) return view;
    return this.relist(hv, driver, signal);
  }

  /**
   * The host resync: one observeAll, unless the view was listed less than
   * `maxAgeMs` ago (the first VMM reconciles of a fresh connection just did).
   * Resolves the view and whether a new listing happened.
   */
  async resync(hv: ObjectKey, driver: Driver, opts: { signal?: AbortSignal; maxAgeMs?: number } = {}): Promise<{ view: HostView; listed: boolean } | undefined> {
    if (!driver.observeAll) return undefined;
    const view = this.views.get(keyString(hv));
    const age = this.now() - (view?.listedAt ?? 0);
    if (view && view.driver === driver && view.listedAt > 0 && opts.maxAgeMs !== undefined && age < opts.maxAgeMs) return { view, listed: false };
    return { view: await this.relist(hv, driver, opts.signal), listed: true };
  }

  /** Forget a Hypervisor's view (deleted, or its connection dropped). */
  drop(hv: ObjectKey): void {
    this.views.delete(keyString(hv));
  }

  private relist(hv: ObjectKey, driver: Driver, signal?: AbortSignal): Promise<HostView> {
    const id = keyString(hv);
    const pending = this.listing.get(id);
    if (pending) return pending;
    const run = async () => {
      const observeAll = driver.observeAll?.bind(driver);
      if (!observeAll) throw new Error(`driver ${driver.kind} has no observeAll`);
      const call = () => observeAll(signal ? { signal } : {});
      this.relists++;
      const observation = this.opts.timeCall ? await this.opts.timeCall(driver.kind, 'observeAll', call) : await call();
      let view = this.views.get(id);
      if (!view || view.driver !== driver) view = new HostView(driver);
      view.replace(observation.vms, this.now());
      this.views.set(id, view);
      return view;
    };
    const p = run().finally(() => this.listing.delete(id));
    this.listing.set(id, p);
    return p;
  }

  private now(): number {
    return this.opts.now ? this.opts.now() : Date.now();
  }
}

/**
 * After a host re-list: the VMMs whose VM now looks different from what
 * their last reconcile saw (or that have not been reconciled since the
 * controller started). Only these are worth a reconcile.
 */
export function changedSinceSeen(view: HostView, vmms: readonly string[], refOf: (vmm: string) => VMRef | undefined, lastSeen: (vmm: string) => string | undefined): string[] {
  const out: string[] = [];
  for (const vmm of vmms) {
    const ref = refOf(vmm);
    const seen = lastSeen(vmm);
    if (!ref || seen === undefined || view.fingerprint(ref) !== seen) out.push(vmm);
  }
  return out;
}
