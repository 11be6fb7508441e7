/**
 * Where `vmmem plan` gets what each VM looks like: the hypervisor itself
 * (read-only calls through the operator's connection pool), or a state saved
 * earlier (src/cli/plan-observed.ts), which connects to nothing. Both answer
 * the same two questions, so the planning after them is one code path.
 */
import type { HypervisorSpec } from '../api/hypervisor.ts';
import type { VMMSpec } from '../api/vmm.ts';
import { budgetOf } from '../controller/capacity.ts';
import type { Logger, ObjectStore } from '../controller/ports.ts';
import { vmRefFromSpec } from '../model/desired.ts';
import type { ObservedVM } from '../model/memory.ts';
import { hostVMOf } from '../planner/capacity.ts';
import type { HostBudget } from '../planner/capacity.ts';
import type { SavedState } from './plan-observed.ts';
import { savedHost, savedObservation } from './plan-observed.ts';
import type { HostFacts } from './plan-report.ts';

/** The Hypervisor a VMM is planned against. */
export interface PlanHost {
  /** namespace/name (or "--hypervisor" for the override): groups VMMs per host. */
  key: string;
  /** For messages: the object's name, or the override's URI. */
  name: string;
  spec: HypervisorSpec;
}

/** The host as capacity messages name it: namespace/name, like the operator's (src/controller/capacity.ts). */
const budgetName = (h: PlanHost) => (h.key.includes('/') ? h.key : h.name);

export interface ObservationSource {
  /** What the VMM's VM looks like; throws with a message naming what failed. */
  observe(vmm: string, spec: VMMSpec, host: PlanHost): Promise<ObservedVM>;
  /** The host's budget and VMs for the capacity check (asked only for hosts with changes). */
  host(host: PlanHost): Promise<HostFacts>;
  close(): Promise<void>;
}

/** The hypervisors themselves: lookup + observe per VMM, identify + observeAll per host. */
export async function liveSource(store: ObjectStore, log: Logger): Promise<ObservationSource> {
  // Loaded here, not at the top: a plan from a saved state never loads the pool or any driver.
  const { HypervisorPool } = await import('../controller/pool.ts');
  const pool = new HypervisorPool({ store, log, timeoutMs: 30_000 });
  const poolKey = (h: PlanHost) => {
    const i = h.key.indexOf('/');
    return i < 0 ? { namespace: h.key, name: 'override' } : { namespace: h.key.slice(0, i), name: h.key.slice(i + 1) };
  };
  return {
    async observe(_vmm, spec, host) {
      const { driver } = await pool.get(poolKey(host), host.spec);
      return driver.observe(await driver.lookup(vmRefFromSpec(spec)));
    },
    async host(host) {
      const { driver, identity } = await pool.get(poolKey(host), host.spec);
      const budget = budgetOf(budgetName(host), host.spec, identity);
      // Without a bulk observation the operator cannot see the host either and lets plans through.
      if (!budget || !driver.observeAll) return budget ? { budget } : {};
      return { budget, vms: (await driver.observeAll()).vms.map(hostVMOf) };
    },
    close: () => pool.closeAll(),
  };
}

/** A saved state: no connection, no credentials, no driver. */
export function savedSource(state: SavedState): ObservationSource {
  return {
    observe: (vmm, spec) => Promise.resolve().then(() => savedObservation(state, vmm, spec)),
    host: (host) =>
      Promise.resolve().then(() => {
        const budgetFor = (hostname: string | undefined, hostMemory: bigint) =>
          budgetOf(budgetName(host), host.spec, { hostMemory, ...(hostname !== undefined ? { hostname } : {}) }) as HostBudget;
        return savedHost(state, host.key, budgetFor) ?? {};
      }),
    close: () => Promise.resolve(),
  };
}
