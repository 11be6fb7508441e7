/**
 * `vmmem plan --observed <file|dir>`: plan from a state saved earlier instead
 * of asking the hypervisor, so a pull-request check needs no credentials and
 * connects to nothing. The saved state is what `vmmem run --once -o yaml`
 * prints, a `--status-file`, or `kubectl get vmm,hypervisors -A -o yaml`:
 * objects with their status. This file reads it (through the manifest loader,
 * so its size caps apply), checks it, and turns each VMM's status.observed
 * back into the planner's ObservedVM — the inverse of observedBlock
 * (src/controller/status.ts), which writes every fact the planner reads.
 */
import { HYPERVISOR_KIND, VMM_KIND } from '../api/group.ts';
import { HypervisorSchema, VirtualMachineMemorySchema, withoutNulls } from '../api/objects.ts';
import type { Hypervisor, VirtualMachineMemory } from '../api/objects.ts';
import { parseQuantity } from '../api/quantity.ts';
import { UNLIMITED } from '../api/fields.ts';
import type { VMMSpec, VMMStatus } from '../api/vmm.ts';
import { expandPaths, loadManifestFile } from '../manifests/load.ts';
import { isOwned, manifestProblemLines } from '../manifests/validate.ts';
import type { HotplugState, Limit, ObservedVM, WorldValues } from '../model/memory.ts';
import type { HostBudget, HostVM } from '../planner/capacity.ts';
import { commitmentOf, hostVMOf } from '../planner/capacity.ts';

type ObservedStatus = NonNullable<VMMStatus['observed']>;
type HotplugStatus = NonNullable<ObservedStatus['hotplug']>;

/** The saved file could not be used at all: every line names the file (and line, object). */
export class SavedStateError extends Error {
  readonly lines: readonly string[];
  constructor(lines: readonly string[]) {
    super(lines.join('\n'));
    this.name = 'SavedStateError';
    this.lines = lines;
  }
}

/** An observation that lacks a fact the planner needs (an older vmmem wrote it): that VMM cannot be planned. */
class IncompleteObservationError extends Error {}

interface SavedVMM {
  /** `<file>:<line>` of the object, for messages. */
  at: string;
  object: VirtualMachineMemory;
}

interface SavedHypervisor {
  at: string;
  object: Hypervisor;
}

export interface SavedState {
  vmms: Map<string, SavedVMM>;
  hypervisors: Map<string, SavedHypervisor>;
}

const keyOf = (meta: { namespace?: string | undefined; name: string }) => `${meta.namespace ?? 'default'}/${meta.name}`;

/**
 * Reads and checks the saved state. Throws SavedStateError (nothing is planned) when a file
 * cannot be read or parsed, an object is invalid (status included) or defined twice, or there is
 * no VirtualMachineMemory at all. Paths are expanded like -f (a missing path throws ENOENT).
 */
export function loadSavedState(path: string): SavedState {
  const paths = expandPaths([path]);
  const problems = manifestProblemLines(paths).lines;
  if (problems.length > 0) throw new SavedStateError(problems.map((l) => `--observed ${l}`));
  const state: SavedState = { vmms: new Map(), hypervisors: new Map() };
  for (const file of paths) {
    for (const mo of loadManifestFile(file).objects) {
      if (!isOwned(mo.object)) continue;
      const obj = withoutNulls(mo.object);
      const at = `${file}:${mo.line}`;
      if (obj.kind === VMM_KIND) {
        const parsed = VirtualMachineMemorySchema.parse(obj);
        state.vmms.set(keyOf(parsed.metadata), { at, object: parsed });
      } else if (obj.kind === HYPERVISOR_KIND) {
        const parsed = HypervisorSchema.parse(obj);
        state.hypervisors.set(keyOf(parsed.metadata), { at, object: parsed });
      }
    }
  }
  const bad = [...state.vmms].flatMap(([key, saved]) => badQuantity(key, saved));
  if (bad.length > 0) throw new SavedStateError(bad);
  if (state.vmms.size === 0) {
    throw new SavedStateError([`--observed ${path}: no VirtualMachineMemory in it (save one with \`vmmem run --once -o yaml\` or \`kubectl get vmm,hypervisors -A -o yaml\`)`]);
  }
  return state;
}

/**
 * The saved observation for the VMM `key` whose desired spec is `spec`, as the planner's
 * ObservedVM. Throws (naming the file, line and object) when there is none, when it was written
 * by a vmmem that did not record every fact the planner needs, or when it is stale: it observed
 * another VM or another Hypervisor than the desired spec names.
 */
export function savedObservation(state: SavedState, key: string, spec: VMMSpec): ObservedVM {
  const saved = state.vmms.get(key);
  if (!saved) return fail(`no saved observation of VirtualMachineMemory ${key} in --observed (a new VMM is planned once it has been observed)`);
  const where = `${saved.at}: VirtualMachineMemory ${key}`;
  const observed = saved.object.status?.observed;
  if (!observed) return fail(`${where}: no status.observed (it was never observed)`);
  const savedRef = saved.object.spec.hypervisorRef.name;
  if (savedRef !== spec.hypervisorRef.name) {
    return fail(`${where}: stale: observed through Hypervisor "${savedRef}", the spec now names "${spec.hypervisorRef.name}"`);
  }
  let vm: ObservedVM;
  try {
    vm = observedFromStatus(observed);
  } catch (err) {
    return fail(`${where}: ${(err as Error).message}`);
  }
  const wanted = spec.vm.uuid !== undefined ? { what: 'uuid', want: spec.vm.uuid.toLowerCase(), got: vm.uuid.toLowerCase() } : { what: 'name', want: spec.vm.name ?? '', got: vm.name };
  if (wanted.want !== wanted.got) {
    return fail(`${where}: stale: status.observed is of the VM with ${wanted.what} ${JSON.stringify(wanted.got)}, the spec now names ${JSON.stringify(wanted.want)}`);
  }
  return vm;
}

function fail(message: string): never {
  throw new Error(message);
}

/** A status.observed value that is not a quantity makes the whole file unusable, like a schema error. */
function badQuantity(key: string, saved: SavedVMM): string[] {
  const observed = saved.object.status?.observed;
  if (!observed) return [];
  try {
    observedFromStatus(observed);
    return [];
  } catch (err) {
    return err instanceof IncompleteObservationError ? [] : [`--observed ${saved.at}: VirtualMachineMemory ${key}: ${(err as Error).message}`];
  }
}

function incomplete(field: string): never {
  throw new IncompleteObservationError(`status.observed.${field} is missing: save the state again with this vmmem (older versions did not record what plan --observed needs)`);
}

/**
 * What the host looked like when the Hypervisor `name` was saved: its budget (from its saved
 * status.capacity and the desired spec.capacity) and its VMs. The VMs are the saved VMMs'
 * observations on that Hypervisor plus one entry for everything else the host commits (its saved
 * total minus theirs), so the check sees the same totals the operator saw. undefined: the saved
 * Hypervisor has no status.capacity, and (like the operator without a host view) nothing is checked.
 */
export function savedHost(state: SavedState, hvKey: string, budgetFor: (hostname: string | undefined, hostMemory: bigint) => HostBudget): { budget: HostBudget; vms: HostVM[] } | undefined {
  const hv = state.hypervisors.get(hvKey)?.object;
  const capacity = hv?.status?.capacity;
  if (!hv || !capacity) return undefined;
  const where = `${state.hypervisors.get(hvKey)?.at}: Hypervisor ${hvKey}`;
  const q = (v: string, field: string) => {
    try {
      return parseQuantity(v, field);
    } catch (err) {
      return fail(`${where}: ${(err as Error).message}`);
    }
  };
  const budget = budgetFor(hv.status?.hostname, q(capacity.hostMemory, 'status.capacity.hostMemory'));
  const vms: HostVM[] = [];
  const namespace = hvKey.split('/')[0];
  for (const saved of state.vmms.values()) {
    const o = saved.object;
    if ((o.metadata.namespace ?? 'default') !== namespace || o.spec.hypervisorRef.name !== hv.metadata.name || !o.status?.observed) continue;
    try {
      vms.push(hostVMOf(observedFromStatus(o.status.observed)));
    } catch {
      // Reported where that VMM is planned; here its commitment stays in the rest of the host.
    }
  }
  const mine = vms.reduce((sum, v) => sum + commitmentOf(v), 0n);
  const reserved = vms.reduce((sum, v) => sum + (v.poweredOn ? v.reservation : 0n), 0n);
  const committed = q(capacity.committed, 'status.capacity.committed');
  const reservations = q(capacity.reservations, 'status.capacity.reservations');
  // The Hypervisor's capacity was summed when it last synced; VMMs observed after it may already
  // commit more than that total. The rest of the host then counts as nothing, never as negative.
  const rest = committed > mine ? committed - mine : 0n;
  const restReserved = reservations > reserved ? reservations - reserved : 0n;
  vms.push({ uuid: `other VMs on ${hvKey}`, name: 'the other VMs', poweredOn: true, maxMemory: rest, reservation: restReserved });
  return { budget, vms };
}

/** status.observed back to the planner's model. Throws naming the first missing or bad field. */
export function observedFromStatus(s: ObservedStatus): ObservedVM {
  const need = <T>(v: T | undefined, field: string): T => {
    if (v === undefined) incomplete(field);
    return v;
  };
  const vm = need(s.vm, 'vm');
  const powerState = need(s.powerState, 'powerState');
  const now: WorldValues = world(s.maxMemory, s.memory, s.reservation, s.limit, s.hotplug, '');
  const out: ObservedVM = {
    name: vm.name,
    uuid: vm.uuid,
    type: need(s.hypervisorType, 'hypervisorType'),
    powerState,
    persistent: need(s.persistent, 'persistent'),
    balloon: { device: need(s.balloonDevice, 'balloonDevice') },
    numa: s.numa === true,
  };
  if (powerState === 'ShutOff') out.config = now;
  else {
    out.live = now;
    if (out.persistent) out.config = world(s.configMaxMemory, s.configMemory, s.configReservation, s.configLimit, s.configHotplug, 'config');
  }
  if (s.actualMemory !== undefined) out.balloon.actual = parseQuantity(s.actualMemory, 'status.observed.actualMemory');
  if (s.hotAdd) {
    out.hotAdd = { enabled: s.hotAdd.enabled };
    if (s.hotAdd.limit !== undefined) out.hotAdd.limit = parseQuantity(s.hotAdd.limit, 'status.observed.hotAdd.limit');
    if (s.hotAdd.increment !== undefined) out.hotAdd.increment = parseQuantity(s.hotAdd.increment, 'status.observed.hotAdd.increment');
  }
  if (s.guest) {
    out.guest = { used: parseQuantity(s.guest.used, 'status.observed.guest.used'), source: s.guest.source };
    if (s.guest.sampledAt !== undefined) out.guest.sampledAt = s.guest.sampledAt;
  }
  return out;
}

/** One world's values; `prefix` is '' for the fields in effect now, 'config' for the next boot's. */
function world(maxMemory: string | undefined, memory: string | undefined, reservation: string | undefined, limit: string | undefined, hotplug: HotplugStatus | undefined, prefix: '' | 'config'): WorldValues {
  const short = (f: string) => (prefix ? prefix + f.charAt(0).toUpperCase() + f.slice(1) : f);
  const name = (f: string) => `status.observed.${short(f)}`;
  const q = (v: string | undefined, f: string): bigint => {
    if (v === undefined) incomplete(short(f));
    return parseQuantity(v, name(f));
  };
  const w: WorldValues = { maxMemory: q(maxMemory, 'maxMemory'), memory: q(memory, 'memory') };
  if (reservation !== undefined) w.reservation = parseQuantity(reservation, name('reservation'));
  if (limit !== undefined) w.limit = limitOf(limit, name('limit'));
  if (hotplug) w.hotplug = hotplugOf(hotplug, `status.observed.${prefix ? 'configHotplug' : 'hotplug'}`);
  return w;
}

function limitOf(v: string, field: string): Limit {
  return v === UNLIMITED ? 'unlimited' : parseQuantity(v, field);
}

function hotplugOf(h: HotplugStatus, field: string): HotplugState {
  const q = (v: string | undefined, f: string): bigint => {
    if (v === undefined) incomplete(`${field.replace(/^status\.observed\./, '')}.${f}`);
    return parseQuantity(v, `${field}.${f}`);
  };
  return {
    model: h.model,
    boot: q(h.bootMemory, 'bootMemory'),
    devices: h.devices.map((d, i) => {
      const dev: HotplugState['devices'][number] = {
        block: q(d.blockSize, `devices[${i}].blockSize`),
        size: q(d.size, `devices[${i}].size`),
        requested: q(d.requested, `devices[${i}].requested`),
      };
      if (d.alias !== undefined) dev.alias = d.alias;
      if (d.node !== undefined) dev.node = d.node;
      if (d.current !== undefined) dev.current = q(d.current, `devices[${i}].current`);
      return dev;
    }),
  };
}
