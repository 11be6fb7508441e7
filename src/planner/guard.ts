/**
 * Guest-aware shrink (issue #15.1): a plan that lowers the memory a running
 * guest holds is checked against what the guest says it uses. Balloon a
 * guest below its working set and it swaps or its OOM killer picks a
 * process; the hypervisor accepts the call either way, so vmmem must refuse.
 *
 * The rule: after the plan the running guest must keep at least
 * `used + headroom`. Headroom defaults to 10% of use, at least 256Mi
 * (DEFAULT_HEADROOM_*), and a Hypervisor can set it (spec.guestHeadroom).
 * Below it: the steps that lower memory, maxMemory or limit are removed (in
 * every world: the field stays where it is) and memory is Unsafe with reason GuestMemoryInUse, unless the VMM opts in
 * (spec.allowUnsafeShrink). A guest that reports no statistics cannot be
 * guarded; the shrink goes ahead (the user asked for it, and refusing would
 * leave every guest without a balloon driver's stats unmanageable) and the
 * verdict message says it was not guarded.
 *
 * Pure: works on a finished plan, no I/O, no clock.
 */
import type { DesiredMemory, Field, ObservedVM, Plan, ShrinkGuard, Step, Verdict } from '../model/memory.ts';
import type { Profile } from '../model/profiles.ts';
import { effectiveMemory } from './single.ts';
import { formatValue } from './values.ts';
import { verdict } from './verdicts.ts';

const MIB = 1024n * 1024n;
/** Headroom when the Hypervisor sets none: this share of the guest's use (percent)… */
export const DEFAULT_HEADROOM_PERCENT = 10n;
/** …but never less than this (a small guest's page cache and kernel need room too). */
export const DEFAULT_HEADROOM_MIN = 256n * MIB;

export interface GuardOptions {
  /** spec.guestHeadroom of the Hypervisor; absent = the default above. */
  headroom?: bigint;
}

/** The headroom a guest using `used` bytes gets: the override, else max(10% of use, 256Mi). */
export function headroomFor(used: bigint, override?: bigint): bigint {
  if (override !== undefined) return override;
  const share = (used * DEFAULT_HEADROOM_PERCENT) / 100n;
  return share > DEFAULT_HEADROOM_MIN ? share : DEFAULT_HEADROOM_MIN;
}

/** The world whose values the running guest holds: libvirt's live world, ESX's one configuration. */
function runningWorld(profile: Profile): 'live' | 'config' {
  return profile.worlds === 'single' ? 'config' : 'live';
}

/** Memory the running guest holds with these values (ESX: min(memoryMB, limit)). */
function heldBy(profile: Profile, v: { maxMemory: bigint; memory: bigint; limit?: bigint | 'unlimited' | undefined }): bigint {
  return profile.worlds === 'single' ? effectiveMemory(v.maxMemory, v.limit) : v.memory;
}

/**
 * Is this a lowering of memory, maxMemory or limit (in any world)? A blocked shrink keeps all of
 * them where they are: the field stays as it is in every world (the next boot too), and a lowered
 * maxMemory or hard_limit cannot slip under the memory that stays.
 */
function lowers(step: Step): boolean {
  if (step.field === 'reservation' || typeof step.to !== 'bigint') return false;
  if (step.from === undefined || step.from === 'unlimited') return step.field === 'limit';
  return step.to < step.from;
}

/**
 * Memory the running guest holds before and after `steps` (undefined: the VM is
 * not running, or the hypervisor reported no running world).
 */
export function runningShrink(observed: ObservedVM, steps: readonly Step[], profile: Profile): { before: bigint; after: bigint } | undefined {
  if (observed.powerState === 'ShutOff') return undefined;
  const world = runningWorld(profile);
  const w = world === 'live' ? observed.live : observed.config ?? observed.live;
  if (!w) return undefined;
  const after = { maxMemory: w.maxMemory, memory: w.memory, limit: w.limit };
  for (const s of steps) {
    if (s.world !== world) continue;
    if (s.field === 'maxMemory' && typeof s.to === 'bigint') after.maxMemory = s.to;
    if (s.field === 'memory' && typeof s.to === 'bigint') after.memory = s.to;
    if (s.field === 'limit') after.limit = s.to;
  }
  return { before: heldBy(profile, w), after: heldBy(profile, after) };
}

/** Applies the guest-use rule to a finished plan (see the file comment). */
export function guardShrink(p: Plan, desired: DesiredMemory, observed: ObservedVM, profile: Profile, options: GuardOptions = {}): Plan {
  const held = runningShrink(observed, p.steps, profile);
  if (!held || held.after >= held.before) return p;
  const shrink = `${formatValue(held.before)} → ${formatValue(held.after)}`;
  const guest = observed.guest;
  if (!guest) {
    const message = `shrink ${shrink} not guarded: ${observed.name} reports no guest memory statistics (no balloon statistics or guest tools), so vmmem cannot tell what the guest uses`;
    return withGuard(p, { state: 'unguarded', message });
  }
  const headroom = headroomFor(guest.used, options.headroom);
  const floor = guest.used + headroom;
  const uses = `the guest uses ${formatValue(guest.used)} (${guest.source}${guest.sampledAt ? `, sampled ${guest.sampledAt}` : ''})`;
  if (held.after >= floor) {
    return withGuard(p, { state: 'guarded', message: `shrink ${shrink} guarded: ${uses}, in use + headroom ${formatValue(headroom)} = ${formatValue(floor)}` });
  }
  if (desired.allowUnsafeShrink) {
    const message = `shrink ${shrink} below in use + headroom ${formatValue(floor)} allowed by spec.allowUnsafeShrink: ${uses}`;
    return withGuard(p, { state: 'overridden', message });
  }
  const why = `${uses}; ${formatValue(held.after)} is below in use + headroom ${formatValue(headroom)} = ${formatValue(floor)}, so the running guest keeps ${formatValue(held.before)} (it would swap or OOM-kill). Lower the use inside the guest, raise spec.memory to at least ${formatValue(floor)}, or set spec.allowUnsafeShrink: true`;
  return blocked(p, observed, why);
}

/** The plan with the steps that lower the running guest removed and their fields Unsafe. */
function blocked(p: Plan, observed: ObservedVM, why: string): Plan {
  const removed = p.steps.filter(lowers);
  const fields = new Set<Field>(['memory', ...removed.map((s) => s.field)]);
  const block = { kind: 'Unsafe' as const, reason: 'GuestMemoryInUse', why };
  const verdicts = p.verdicts.map((v) => (fields.has(v.field) ? reverdict(v, block) : v));
  const steps = p.steps.filter((s) => !removed.includes(s));
  return { ...p, steps, verdicts, shrinkGuard: { state: 'blocked', message: `${observed.name}: ${why}` } };
}

function reverdict(v: Verdict, block: { kind: 'Unsafe'; reason: string; why: string }): Verdict {
  return verdict(v.field, v.desired, v.observed, block, '');
}

/** Records the guard and, for an unguarded or overridden shrink, says so in memory's message. */
function withGuard(p: Plan, guard: ShrinkGuard): Plan {
  if (guard.state === 'guarded') return { ...p, shrinkGuard: guard };
  const verdicts = p.verdicts.map((v) => (v.field === 'memory' && v.kind === 'Applied' ? { ...v, message: `${v.message}; ${guard.message}` } : v));
  return { ...p, verdicts, shrinkGuard: guard };
}
