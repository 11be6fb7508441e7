/**
 * The host view of the vSphere driver (observeAll): every VM's memory properties kept by one
 * PropertyCollector filter over a ContainerView of all VirtualMachines (src/vsphere/cache.ts).
 * The first look reads the whole set; each later one is a single WaitForUpdatesEx that carries
 * only what changed, so a host resync costs one call whatever the VM count. Only the VMs an update
 * touched are decoded again.
 *
 * The properties are exactly what observedOf() reads, so observeAll() and observe() agree.
 * `summary.quickStats` and `runtime.host` are left out on purpose: ESX refreshes quick stats every
 * 20 s per VM, which would turn every resync into a whole-fleet answer, and observedOf uses neither.
 */
import type { DriverEvent } from '../driver.ts';
import type { ObservedVM } from '../../model/memory.ts';
import type { ObjectUpdate, PropertyCache, VSphereClient } from '../../vsphere/index.ts';
import { parseVmMemory, VM_CONFIG_PROPERTIES, VSphereProtocolError } from '../../vsphere/index.ts';
import { eventsOf } from './events.ts';
import { observedOf } from './observed.ts';

/** The config paths observedOf reads: what a reconfigure can change. */
const CONFIG_PROPERTIES = VM_CONFIG_PROPERTIES;

// config.changeVersion changes on every reconfigure. vCenter also reports the nested paths that
// changed; vcsim reports only `config` and changeVersion. A VM whose changeVersion moved without
// any of CONFIG_PROPERTIES in the same update has its config paths read again, all such VMs in
// one RetrievePropertiesEx, so a resync stays O(1) calls either way.
const CHANGE_VERSION = 'config.changeVersion';

export const FLEET_PROPERTIES = ['name', 'runtime.powerState', CHANGE_VERSION, ...CONFIG_PROPERTIES] as const;

export class Fleet {
  readonly #client: VSphereClient;
  readonly #cache: PropertyCache;
  readonly #emit: (e: DriverEvent) => void;
  readonly #observed = new Map<string, ObservedVM>();
  readonly #known = new Map<string, { name: string; uuid: string }>();

  constructor(client: VSphereClient, emit: (e: DriverEvent) => void) {
    this.#client = client;
    this.#cache = client.propertyCache('VirtualMachine', FLEET_PROPERTIES);
    this.#emit = emit;
  }

  /** Syncs the copy and returns every VM as observe() would see it. */
  async observeAll(): Promise<ObservedVM[]> {
    const { updates, initial } = await this.#cache.sync();
    if (initial) this.#observed.clear();
    else await this.#rereadConfigs(updates);
    this.#refresh(updates);
    for (const e of eventsOf(updates, initial, this.#known)) this.#emit(asFleetEvent(e));
    return [...this.#observed.values()];
  }

  async close(): Promise<void> {
    await this.#cache.close();
  }

  /** Re-reads CONFIG_PROPERTIES of VMs whose config changed without saying which paths (vcsim). */
  async #rereadConfigs(updates: ObjectUpdate[]): Promise<void> {
    const stale = updates.filter(
      (u) => u.kind === 'modify' && u.changes.some((c) => c.name === CHANGE_VERSION) && !u.changes.some((c) => isConfigPath(c.name)),
    );
    if (stale.length === 0) return;
    const fresh = await this.#client.retrieveProperties(stale.map((u) => u.obj), CONFIG_PROPERTIES);
    for (const o of fresh) {
      const props = this.#cache.objects.get(o.obj.value)?.props;
      if (!props) continue;
      for (const p of CONFIG_PROPERTIES) {
        const v = o.props.get(p);
        if (v) props.set(p, v);
        else props.delete(p);
      }
    }
  }

  /** Decodes again only the VMs the updates touched. */
  #refresh(updates: ObjectUpdate[]): void {
    for (const u of updates) {
      const key = u.obj.value;
      const cached = this.#cache.objects.get(key);
      if (u.kind === 'leave' || !cached) {
        this.#observed.delete(key);
        continue;
      }
      try {
        this.#observed.set(key, observedOf(parseVmMemory(cached.obj, cached.props, 'WaitForUpdatesEx')));
      } catch (e) {
        // A VM without a readable memory config (being created, inaccessible) is not one vmmem can
        // manage; it must not hide the rest of the host. observe() of it reports the error itself.
        if (!(e instanceof VSphereProtocolError)) throw e;
        this.#observed.delete(key);
      }
    }
  }
}

function isConfigPath(name: string): boolean {
  return CONFIG_PROPERTIES.some((p) => name === p || name.startsWith(`${p}.`));
}

/** A memory reconfigure is a change of the VM's definition: DriverEvent `config`. */
function asFleetEvent(e: DriverEvent): DriverEvent {
  return e.kind === 'lifecycle' && e.detail === 'Reconfigured' ? { kind: 'config', vm: e.vm, detail: 'memory' } : e;
}
