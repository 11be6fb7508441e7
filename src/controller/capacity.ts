/**
 * Host capacity in the controller (issue #15.2): the Hypervisor's
 * status.capacity, and the gate a VMM's plan passes before anything is sent.
 * The rules are the planner's (src/planner/capacity.ts); this file only
 * reads the host's VMs from its host view and remembers the raises in flight,
 * so two VMMs reconciled at once on one host are checked against each other.
 */
import type { HypervisorSpec, HypervisorStatus } from '../api/hypervisor.ts';
import { formatQuantity, parseQuantity } from '../api/quantity.ts';
import type { HypervisorIdentity } from '../drivers/driver.ts';
import type { ObservedVM, Plan } from '../model/memory.ts';
import { checkChanges, commitmentOf, holdForCapacity, hostCapacity, hostVMOf, parseOvercommitRatio, proposedChange } from '../planner/capacity.ts';
import type { HostBudget, ProposedChange } from '../planner/capacity.ts';

/** The budget a Hypervisor's spec and identity give; undefined when the host reports no memory. */
export function budgetOf(host: string, spec: HypervisorSpec, identity: Pick<HypervisorIdentity, 'hostname' | 'hostMemory'>): HostBudget | undefined {
  if (identity.hostMemory === undefined) return undefined;
  const c = spec.capacity;
  const budget: HostBudget = {
    host: identity.hostname ? `${host} (${identity.hostname})` : host,
    memory: identity.hostMemory,
    reserved: c?.reserved === undefined ? 0n : parseQuantity(c.reserved, 'spec.capacity.reserved'),
  };
  if (c?.overcommitRatio !== undefined) budget.ratio = parseOvercommitRatio(c.overcommitRatio);
  return budget;
}

/** status.capacity from one look at every VM on the host. */
export function capacityStatus(spec: HypervisorSpec, budget: HostBudget, vms: readonly ObservedVM[]): NonNullable<HypervisorStatus['capacity']> {
  const r = hostCapacity(budget, vms.map(hostVMOf));
  const out: NonNullable<HypervisorStatus['capacity']> = {
    hostMemory: formatQuantity(r.memory),
    committed: formatQuantity(r.committed),
    reservations: formatQuantity(r.reservations),
    vms: vms.length,
  };
  if (r.reserved > 0n) out.reserved = formatQuantity(r.reserved);
  if (spec.capacity?.overcommitRatio !== undefined) out.overcommitRatio = spec.capacity.overcommitRatio;
  if (r.budget !== undefined) out.budget = formatQuantity(r.budget);
  if (r.free !== undefined) out.free = r.free < 0n ? `-${formatQuantity(-r.free)}` : formatQuantity(r.free);
  return out;
}

export interface Gated {
  plan: Plan;
  /** Forget this VMM's raise once it has been applied and observed (or failed). */
  release(): void;
}

const NO_RELEASE = (): void => undefined;

/** Raises in flight per Hypervisor: accepted by the gate, not yet observed on the host. */
export class CapacityGate {
  private readonly inflight = new Map<string, Map<string, ProposedChange>>();

  /**
   * Holds `plan` (nothing sent, Unsafe HostCapacityExceeded) when it would raise the VM's
   * commitment past the host's budget or its reservation past what the host can reserve.
   * `hostVMs` gives the host's VMs as its host view holds them (hostview.ts: the last re-list,
   * patched by every apply and fresh read), so the gate costs no call; undefined when the
   * driver has no bulk observation (the gate cannot see the host and lets the plan through).
   * A function, because copying the host's VMs is O(VMs on the host) and only a plan that
   * raises a commitment needs them: every other reconcile must not pay it.
   * Synchronous on purpose: the check and the record of the raise in flight happen with no
   * await between them, so two VMMs reconciled at once cannot both take the last GiB.
   */
  gate(hv: string, vmm: string, budget: HostBudget | undefined, hostVMs: (() => readonly ObservedVM[]) | undefined, observed: ObservedVM, plan: Plan): Gated {
    const change = proposedChange(vmm, observed, plan);
    if (!change || !hostVMs || !budget) return { plan, release: NO_RELEASE };
    const me = hostVMOf(observed);
    const grows = change.maxMemory > commitmentOf(me) && me.poweredOn;
    const reserves = change.reservation > me.reservation && me.poweredOn;
    if (!((grows && budget.ratio !== undefined) || reserves)) return { plan, release: NO_RELEASE };
    // Our own VM as just observed (fresher than the host view), the others as the view holds them.
    const uuid = observed.uuid.toLowerCase();
    const vms = hostVMs().filter((v) => v.uuid.toLowerCase() !== uuid).map(hostVMOf);
    vms.push(me);
    const mine = this.inflight.get(hv) ?? new Map<string, ProposedChange>();
    const others = [...mine.values()].filter((c) => c.key !== vmm);
    const result = checkChanges(budget, vms, [...others, change]).get(vmm);
    if (result && !result.ok) return { plan: holdForCapacity(plan, result.message), release: NO_RELEASE };
    mine.set(vmm, change);
    this.inflight.set(hv, mine);
    return {
      plan,
      release: () => {
        if (mine.get(vmm) === change) mine.delete(vmm);
        if (mine.size === 0 && this.inflight.get(hv) === mine) this.inflight.delete(hv);
      },
    };
  }
}
