/**
 * Which VMMs point at which VM (issue #13): driver events and host re-lists
 * name a VM on a Hypervisor, and must find the few VMMs that manage it
 * without scanning every VMM of the fleet. Kept current from the store's
 * change feed; reads each VMM's raw spec (the reconciler validates it).
 */
import type { ObservedVM, VMRef } from '../model/memory.ts';
import type { ObjectKey, StoredObject } from './ports.ts';
import { keyString } from './ports.ts';

interface Entry {
  hypervisor: string;
  ref: VMRef;
}

/** A VMM's raw spec.hypervisorRef + spec.vm, or undefined when unusable (the reconciler reports why). */
function entryOf(obj: StoredObject): Entry | undefined {
  const spec = obj.spec as { hypervisorRef?: { name?: unknown }; vm?: { name?: unknown; uuid?: unknown } } | undefined;
  const hv = spec?.hypervisorRef?.name;
  if (typeof hv !== 'string') return undefined;
  // UUID first, as vmRefFromSpec resolves it.
  let ref: VMRef;
  if (typeof spec?.vm?.uuid === 'string') ref = { uuid: spec.vm.uuid.toLowerCase() };
  else if (typeof spec?.vm?.name === 'string') ref = { name: spec.vm.name };
  else return undefined;
  return { hypervisor: keyString({ namespace: obj.metadata.namespace, name: hv }), ref };
}

export class VMMIndex {
  private readonly entries = new Map<string, Entry>();
  /** Hypervisor key → VMM keys referencing it. */
  private readonly byHypervisor = new Map<string, Set<string>>();

  /** Records (or replaces) what a VMM references. */
  upsert(obj: StoredObject): void {
    const id = keyString(obj.metadata);
    const next = entryOf(obj);
    const prev = this.entries.get(id);
    if (prev && next && prev.hypervisor === next.hypervisor && prev.ref.name === next.ref.name && prev.ref.uuid === next.ref.uuid) return;
    this.remove(obj.metadata);
    if (!next) return;
    this.entries.set(id, next);
    let set = this.byHypervisor.get(next.hypervisor);
    if (!set) this.byHypervisor.set(next.hypervisor, (set = new Set()));
    set.add(id);
  }

  remove(key: ObjectKey): void {
    const id = keyString(key);
    const prev = this.entries.get(id);
    if (!prev) return;
    this.entries.delete(id);
    const set = this.byHypervisor.get(prev.hypervisor);
    set?.delete(id);
    if (set?.size === 0) this.byHypervisor.delete(prev.hypervisor);
  }

  /** VMM keys referencing this Hypervisor, without a copy (do not change the index while iterating). */
  idsOfHypervisor(hv: ObjectKey): Iterable<string> {
    return this.byHypervisor.get(keyString(hv)) ?? [];
  }

  /** VMM keys referencing this Hypervisor. */
  ofHypervisor(hv: ObjectKey): string[] {
    return [...(this.byHypervisor.get(keyString(hv)) ?? [])];
  }

  /** The VM reference of a VMM (lower-case UUID), as last indexed. */
  refOf(vmm: string): VMRef | undefined {
    return this.entries.get(vmm)?.ref;
  }

  /** VMM keys on this Hypervisor whose spec.vm names this VM (by name or UUID). */
  forVM(hv: ObjectKey, vm: { name: string; uuid: string }): string[] {
    const uuid = vm.uuid.toLowerCase();
    const out: string[] = [];
    for (const id of this.byHypervisor.get(keyString(hv)) ?? []) {
      if (refMatches(this.entries.get(id)?.ref, vm.name, uuid)) out.push(id);
    }
    return out;
  }
}

function refMatches(ref: VMRef | undefined, name: string, uuid: string): boolean {
  if (!ref) return false;
  if (ref.uuid !== undefined) return ref.uuid === uuid;
  return ref.name === name;
}

/** Observed VMs of one host, found by name or UUID (the spec.vm a VMM declares). */
export class ObservedIndex {
  private readonly byName = new Map<string, ObservedVM>();
  private readonly byUuid = new Map<string, ObservedVM>();

  constructor(vms: readonly ObservedVM[] = []) {
    for (const vm of vms) this.put(vm);
  }

  put(vm: ObservedVM): void {
    const old = this.byUuid.get(vm.uuid.toLowerCase());
    if (old && old.name !== vm.name) this.byName.delete(old.name);
    this.byName.set(vm.name, vm);
    this.byUuid.set(vm.uuid.toLowerCase(), vm);
  }

  /** UUID wins when the reference has one (a name can be reused by another VM). */
  find(ref: VMRef): ObservedVM | undefined {
    if (ref.uuid !== undefined) return this.byUuid.get(ref.uuid.toLowerCase());
    return ref.name !== undefined ? this.byName.get(ref.name) : undefined;
  }

  get size(): number {
    return this.byUuid.size;
  }

  values(): ObservedVM[] {
    return [...this.byUuid.values()];
  }
}
