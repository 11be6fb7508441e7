/**
 * What `vmmem plan` computes once it has an observation for each VMM, live or
 * saved: the plan with the operator's own options (the Hypervisor's guest
 * headroom), the host-capacity check across the VMMs of one host, the report
 * rows every output format prints, and the exit code. The same code for both
 * sources, so a plan from a saved state equals the live one for that state.
 */
import type { HypervisorSpec } from '../api/hypervisor.ts';
import { planOptionsOf } from '../controller/vmm-converge.ts';
import type { VMMSpec } from '../api/vmm.ts';
import { desiredFromSpec } from '../model/desired.ts';
import type { ObservedVM, Plan } from '../model/memory.ts';
import { profileFor } from '../model/profiles.ts';
import { checkChanges, holdForCapacity, hostVMOf, proposedChange } from '../planner/capacity.ts';
import type { HostBudget, HostVM, ProposedChange } from '../planner/capacity.ts';
import { formatValue, hotplugDetail, plan as planMemory } from '../planner/plan.ts';

export interface PlanReport {
  object: string;
  vm?: string;
  hypervisor?: string;
  hypervisorType?: string;
  powerState?: string;
  steps?: { field: string; world: string; from: string; to: string; via?: string }[];
  verdicts?: { field: string; verdict: string; reason: string; desired: string; observed: string; message: string }[];
  roundings?: { field: string; requested: string; effective: string }[];
  /** A live shrink the guest's use did not guard (no statistics) or that spec.allowUnsafeShrink let through. */
  shrink?: { state: 'unguarded' | 'overridden'; message: string };
  error?: string;
}

/** A VMM with its observation, planned but not yet checked against its host. */
export interface Planned {
  report: PlanReport;
  observed: ObservedVM;
  plan: Plan;
  /** The Hypervisor whose host it runs on (namespace/name, or the --hypervisor override). */
  host: string;
}

/** What one host has, for the capacity check; vms undefined: the host cannot be listed, nothing is checked. */
export interface HostFacts {
  budget?: HostBudget;
  vms?: readonly HostVM[];
}

export function planVMM(key: string, spec: VMMSpec, hvSpec: HypervisorSpec, observed: ObservedVM, host: string, hypervisor: string): Planned {
  const plan = planMemory(desiredFromSpec(spec), observed, profileFor(observed.type), planOptionsOf(hvSpec));
  const report: PlanReport = { object: key, vm: observed.name, hypervisor, hypervisorType: observed.type, powerState: observed.powerState };
  return { report, observed, plan, host };
}

/**
 * Holds every plan that would push its host past its budget (Unsafe HostCapacityExceeded,
 * nothing sent), checking the VMMs of one host in order against the host and each other, as
 * the operator's gate does for VMMs reconciled at once: two raises cannot both take the last GiB.
 */
export function checkCapacity(planned: readonly Planned[], hosts: ReadonlyMap<string, HostFacts>): void {
  const byHost = new Map<string, Planned[]>();
  for (const p of planned) byHost.set(p.host, [...(byHost.get(p.host) ?? []), p]);
  for (const [host, group] of byHost) {
    const facts = hosts.get(host);
    if (!facts?.budget || !facts.vms) continue;
    // The planned VMs as just observed, the rest of the host as it was listed.
    const mine = new Set(group.map((p) => p.observed.uuid.toLowerCase()));
    const vms = [...facts.vms.filter((v) => !mine.has(v.uuid.toLowerCase())), ...group.map((p) => hostVMOf(p.observed))];
    const changes = group.map((p) => proposedChange(p.report.object, p.observed, p.plan)).filter((c): c is ProposedChange => c !== undefined);
    const results = checkChanges(facts.budget, vms, changes);
    for (const p of group) {
      const r = results.get(p.report.object);
      if (r && !r.ok) p.plan = holdForCapacity(p.plan, r.message);
    }
  }
}

/** The report rows for a checked plan (filled into the VMM's report). */
export function describe(p: Planned): PlanReport {
  Object.assign(p.report, {
    steps: p.plan.steps.map((s) => {
      const via = hotplugDetail(s);
      return { field: s.field, world: s.world, from: formatValue(s.from), to: formatValue(s.to), ...(via ? { via } : {}) };
    }),
    verdicts: p.plan.verdicts.map((v) => ({
      field: v.field,
      verdict: v.kind,
      reason: v.reason,
      desired: formatValue(v.desired),
      observed: formatValue(v.observed),
      message: v.message,
    })),
    roundings: p.plan.roundings.map((r) => ({ field: r.field, requested: formatValue(r.requested), effective: formatValue(r.effective) })),
  });
  const guard = p.plan.shrinkGuard;
  if (guard && (guard.state === 'unguarded' || guard.state === 'overridden')) p.report.shrink = { state: guard.state, message: guard.message };
  return p.report;
}

const STALLING = new Set(['Unsupported', 'Unsafe', 'Invalid']);

/** Some field is Unsupported, Unsafe or Invalid: its owner must change the spec (kstatus Stalled). */
export const isStalled = (r: PlanReport) => r.verdicts?.some((v) => STALLING.has(v.verdict)) ?? false;
/** vmmem would send something for this VMM. */
export const hasChanges = (r: PlanReport) => (r.steps?.length ?? 0) > 0;

/**
 * The exit code. Default: 1 something could not be planned (or the manifests are invalid),
 * 3 something is Stalled, else 0. With --detailed-exitcode (terraform's sense): 1, then 3, then
 * 2 when some VMM has steps to send, 0 when nothing would change.
 */
export function planExitCode(reports: readonly PlanReport[], failed: boolean, detailed: boolean): number {
  if (failed || reports.some((r) => r.error !== undefined)) return 1;
  if (reports.some(isStalled)) return 3;
  if (detailed && reports.some(hasChanges)) return 2;
  return 0;
}
