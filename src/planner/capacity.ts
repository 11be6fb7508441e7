/**
 * Host capacity (issue #15.2): what the VMs on one host commit, against what
 * the host may give. Hypervisors accept specs that add up to more than the
 * host has (vcsim, libvirt, ESX without admission control); the host then
 * swaps or OOM-kills, so vmmem checks before it sends.
 *
 * A VM commits its guest-visible memory (maxMemory) while powered on, managed
 * by vmmem or not; where its next boot's maxMemory is larger (a change staged
 * for a restart) it commits that, because that is what the host must hold
 * once the VM restarts. Shut-off VMs commit nothing.
 *
 *   budget      = hostMemory × overcommitRatio − reserved   (only with a ratio)
 *   reservable  = hostMemory − reserved                     (always)
 *
 * A change that raises a VM's commitment past the budget, or its reservation
 * past reservable, is refused (HostCapacityExceeded). Changes on one host are
 * checked one after another, each against the host plus the changes accepted
 * before it, so two raises cannot both take the last free GiB. Lowerings are
 * not credited before they are observed (a shrink can still fail or wait for
 * a restart). Pure: no I/O.
 */
import { OVERCOMMIT_RATIO_PATTERN } from '../api/hypervisor.ts';
import type { Field, ObservedVM, Plan } from '../model/memory.ts';
import { formatValue } from './values.ts';
import { verdict } from './verdicts.ts';

const RATIO_SCALE = 1000n;

/** The ratio in thousandths ("1.5" → 1500n); throws on anything the pattern refuses or on 0. */
export function parseOvercommitRatio(text: string): bigint {
  if (!new RegExp(OVERCOMMIT_RATIO_PATTERN).test(text)) {
    throw new Error(`spec.capacity.overcommitRatio ${JSON.stringify(text.slice(0, 40))}: must be a decimal such as "1.0" or "1.5" (at most 3 decimals)`);
  }
  const [whole = '0', frac = ''] = text.split('.');
  const value = BigInt(whole) * RATIO_SCALE + BigInt(frac.padEnd(3, '0'));
  if (value === 0n) throw new Error('spec.capacity.overcommitRatio must be greater than 0');
  return value;
}

export interface HostBudget {
  /** The host's name for messages (the Hypervisor object and the hypervisor's host name). */
  host: string;
  /** Host RAM in bytes. */
  memory: bigint;
  /** Host RAM kept for the host itself (spec.capacity.reserved); 0 when unset. */
  reserved: bigint;
  /** overcommitRatio in thousandths; undefined = no commitment check (reservations are still checked). */
  ratio?: bigint;
}

/** One VM on the host as the capacity check sees it. */
export interface HostVM {
  uuid: string;
  name: string;
  poweredOn: boolean;
  /** Guest-visible memory now (live maxMemory when running, else the configuration's). */
  maxMemory: bigint;
  /** The next boot's maxMemory, when it differs. */
  configMaxMemory?: bigint;
  /** Reserved host RAM (ESX memoryAllocation.reservation); 0 when none. */
  reservation: bigint;
}

/** A VM's commitment after a plan: what it would hold once the steps are applied (and it restarts). */
export interface ProposedChange {
  /** Who asks, for messages and results: e.g. the VMM's namespace/name. */
  key: string;
  uuid: string;
  maxMemory: bigint;
  reservation: bigint;
}

export interface CapacityReport {
  memory: bigint;
  reserved: bigint;
  committed: bigint;
  reservations: bigint;
  /** Absent without an overcommitRatio. */
  budget?: bigint;
  /** budget − committed (may be negative: the host is already over), absent without a ratio. */
  free?: bigint;
  reservable: bigint;
}

export type CapacityResult = { ok: true } | { ok: false; reason: 'HostCapacityExceeded'; message: string };

/** What one VM commits: its larger maxMemory while powered on, nothing when shut off. */
export function commitmentOf(vm: HostVM): bigint {
  if (!vm.poweredOn) return 0n;
  return vm.configMaxMemory !== undefined && vm.configMaxMemory > vm.maxMemory ? vm.configMaxMemory : vm.maxMemory;
}

/** The host's memory, commitments and what is left (status.capacity). */
export function hostCapacity(budget: HostBudget, vms: readonly HostVM[]): CapacityReport {
  let committed = 0n;
  let reservations = 0n;
  for (const vm of vms) {
    committed += commitmentOf(vm);
    if (vm.poweredOn) reservations += vm.reservation;
  }
  const report: CapacityReport = { memory: budget.memory, reserved: budget.reserved, committed, reservations, reservable: budget.memory - budget.reserved };
  if (budget.ratio !== undefined) {
    report.budget = (budget.memory * budget.ratio) / RATIO_SCALE - budget.reserved;
    report.free = report.budget - committed;
  }
  return report;
}

/**
 * Checks `changes` in order against the host and each other; returns one result per change key.
 * A change for a VM the host does not list, or that is shut off, commits nothing now and passes.
 */
export function checkChanges(budget: HostBudget, vms: readonly HostVM[], changes: readonly ProposedChange[]): Map<string, CapacityResult> {
  const base = hostCapacity(budget, vms);
  const byUuid = new Map(vms.map((v) => [v.uuid.toLowerCase(), v]));
  let committed = base.committed;
  let reservations = base.reservations;
  const out = new Map<string, CapacityResult>();
  for (const c of changes) {
    const vm = byUuid.get(c.uuid.toLowerCase());
    if (!vm?.poweredOn) {
      out.set(c.key, { ok: true });
      continue;
    }
    const grow = c.maxMemory - commitmentOf(vm);
    const reserve = c.reservation - vm.reservation;
    const problem = overBudget(budget, base, committed, grow, vm) ?? overReservable(budget, base, reservations, reserve, vm);
    if (problem) {
      out.set(c.key, { ok: false, reason: 'HostCapacityExceeded', message: problem });
      continue;
    }
    if (grow > 0n) committed += grow;
    if (reserve > 0n) reservations += reserve;
    out.set(c.key, { ok: true });
  }
  return out;
}

function overBudget(b: HostBudget, base: CapacityReport, committed: bigint, grow: bigint, vm: HostVM): string | undefined {
  if (grow <= 0n || base.budget === undefined || committed + grow <= base.budget) return undefined;
  const f = formatValue;
  return `host ${b.host}: raising ${vm.name} by ${f(grow)} would commit ${f(committed + grow)} of a budget of ${f(base.budget)} (host memory ${f(b.memory)} × overcommitRatio ${ratioText(b.ratio)} − reserved ${f(b.reserved)}; ${f(committed)} committed including changes accepted before this one); free memory on the host first, or raise spec.capacity.overcommitRatio`;
}

function overReservable(b: HostBudget, base: CapacityReport, reservations: bigint, reserve: bigint, vm: HostVM): string | undefined {
  if (reserve <= 0n || reservations + reserve <= base.reservable) return undefined;
  const f = formatValue;
  return `host ${b.host}: raising ${vm.name}'s reservation by ${f(reserve)} would reserve ${f(reservations + reserve)} of the ${f(base.reservable)} the host can reserve (host memory ${f(b.memory)} − reserved ${f(b.reserved)}; ${f(reservations)} reserved by powered-on VMs); lower other reservations first`;
}

function ratioText(ratio: bigint | undefined): string {
  if (ratio === undefined) return 'none';
  const whole = ratio / RATIO_SCALE;
  const frac = (ratio % RATIO_SCALE).toString().padStart(3, '0').replace(/0+$/, '');
  return frac ? `${whole}.${frac}` : `${whole}.0`;
}

/** A VM's observation as the capacity check sees it. */
export function hostVMOf(o: ObservedVM): HostVM {
  const poweredOn = o.powerState !== 'ShutOff';
  const now = poweredOn && o.live ? o.live : o.config ?? o.live;
  const vm: HostVM = { uuid: o.uuid, name: o.name, poweredOn, maxMemory: now?.maxMemory ?? 0n, reservation: now?.reservation ?? 0n };
  if (o.config && o.config.maxMemory !== vm.maxMemory) vm.configMaxMemory = o.config.maxMemory;
  return vm;
}

/**
 * The commitment a plan leads to: the VM's larger maxMemory across worlds once the steps
 * are applied, and its reservation. undefined when the plan sends nothing.
 */
export function proposedChange(key: string, o: ObservedVM, p: Plan): ProposedChange | undefined {
  if (p.steps.length === 0) return undefined;
  const vm = hostVMOf(o);
  let live = vm.maxMemory;
  let config = vm.configMaxMemory ?? vm.maxMemory;
  let reservation = vm.reservation;
  for (const s of p.steps) {
    if (typeof s.to !== 'bigint') continue;
    if (s.field === 'maxMemory' && s.world === 'live') live = s.to;
    if (s.field === 'maxMemory' && s.world === 'config') config = s.to;
    if (s.field === 'reservation') reservation = s.to;
  }
  // ESX's one configuration is what runs: its driver reports it as config and live alike.
  if (!o.live || o.type === 'esx') live = config;
  return { key, uuid: o.uuid, maxMemory: live > config ? live : config, reservation };
}

/** The plan held whole (Stalled, nothing sent): every field with a step becomes Unsafe HostCapacityExceeded. */
export function holdForCapacity(p: Plan, message: string): Plan {
  const moving = new Set<Field>(p.steps.map((s) => s.field));
  // ESX carries memory in the limit knob: a held limit step holds memory too.
  if (moving.has('limit')) moving.add('memory');
  const block = { kind: 'Unsafe' as const, reason: 'HostCapacityExceeded', why: message };
  const verdicts = p.verdicts.map((v) => (moving.has(v.field) && v.kind !== 'Invalid' ? verdict(v.field, v.desired, v.observed, block, '') : v));
  return { ...p, steps: [], verdicts };
}
