/**
 * The planner (DESIGN §3): pure, no I/O. From what the user declared, what
 * the hypervisor holds and what the hypervisor can do (its profile), it
 * computes the ordered steps to take and one verdict per managed field.
 *
 * How it works, per world (live, config — or ESX's single configuration):
 *  1. Decide a target value per knob: the desired value, unless the profile
 *     blocks that knob in that world (blocks carry the verdict kind and why).
 *  2. Resolve conflicts: a target that would break `reservation <= memory <=
 *     maxMemory` / `reservation <= limit` because the other side of the pair
 *     is blocked or unmanaged stays at its observed value and inherits the
 *     other side's verdict (memory waiting for a maxMemory restart is
 *     RestartRequired too).
 *  3. Order the changes: shrink content before container, grow container
 *     before content: reservation↓ memory↓ maxMemory↓ limit↓ maxMemory↑
 *     limit↑ memory↑ reservation↑. With valid start and end states every
 *     prefix is valid (each lowering goes to a value at or above the final
 *     values below it; each raise goes to a value at or below the final
 *     values above it, which are already in place).
 *  4. One verdict per managed field from the targets, the blocks and the
 *     profile (a Xen live maxMemory change still needs a restart).
 *
 * Where each part lives: values.ts (comparing and formatting knob values,
 * the invariants), spec.ts (validation, rounding), worlds.ts (steps 1–3),
 * verdicts.ts (step 4's messages), dual.ts (libvirt's live + config worlds),
 * single.ts (ESX's one configuration). This file is the entry point.
 */
import type { DesiredMemory, ObservedVM, Plan } from '../model/memory.ts';
import type { Profile } from '../model/profiles.ts';
import { planDual } from './dual.ts';
import { planSingle } from './single.ts';
import { managedFields, roundDesired, validateDesired } from './spec.ts';
import { verdict } from './verdicts.ts';
import { hotplugOf, roundedHotplugMaximum } from './hotplug.ts';
import { guardShrink } from './guard.ts';
import type { GuardOptions } from './guard.ts';

export { checkInvariants, formatValue } from './values.ts';
export { VERDICT_SEVERITY } from './verdicts.ts';
export { hotplugDetail } from './hotplug.ts';
export { DEFAULT_HEADROOM_MIN, DEFAULT_HEADROOM_PERCENT, headroomFor } from './guard.ts';

export interface PlanOptions {
  /** QEMU hard_limit safety margin over maxMemory; default: the profile's (512Mi). */
  overheadMargin?: bigint;
  /** Guest-aware shrink (src/planner/guard.ts): the Hypervisor's spec.guestHeadroom. */
  guard?: GuardOptions;
}

/**
 * Plan the steps that bring `observed` toward `desired` on a hypervisor with
 * `profile`, and one verdict per managed field. Pure: no I/O, no clock.
 */
export function plan(desired: DesiredMemory, observed: ObservedVM, profile: Profile, options: PlanOptions = {}): Plan {
  const roundings: Plan['roundings'] = [];
  const problems = validateDesired(desired);
  if (problems.length > 0) {
    const all = problems.map((p) => p.rule).join('; ');
    const verdicts = managedFields(desired).map((f) => {
      const own = problems.filter((p) => p.fields.includes(f)).map((p) => p.rule);
      const observedValue = (observed.powerState !== 'ShutOff' ? observed.live : undefined)?.[f] ?? observed.config?.[f];
      const why = own.length > 0 ? own.join('; ') : `nothing is applied while the spec is invalid (${all})`;
      return verdict(f, desired[f], observedValue, { kind: 'Invalid', reason: 'InvalidSpec', why }, '');
    });
    return { steps: [], verdicts, roundings };
  }
  const d = roundDesired(hotplugRounded(desired, observed, profile, roundings), profile, roundings);
  const out = profile.worlds === 'single'
    ? planSingle(d, desired, observed, profile)
    : planDual(d, desired, observed, profile, options.overheadMargin);
  return guardShrink({ steps: out.steps, verdicts: out.verdicts, roundings }, desired, observed, profile, options.guard);
}

/**
 * virtio-mem: maxMemory is boot + Σ requested and each device plugs whole blocks, so the desired
 * maximum rounds up to what the devices can hold (src/planner/hotplug.ts). The config's devices
 * decide (they are what the next boot has), else the live ones.
 */
function hotplugRounded(desired: DesiredMemory, observed: ObservedVM, profile: Profile, roundings: Plan['roundings']): DesiredMemory {
  const cfg = observed.persistent ? hotplugOf(profile, observed.config) : undefined;
  const live = observed.powerState !== 'ShutOff' ? hotplugOf(profile, observed.live) : undefined;
  const h = cfg ?? live;
  if (!h) return desired;
  const max = roundedHotplugMaximum(h, desired.maxMemory, cfg ? 'config' : 'live');
  if (max === desired.maxMemory) return desired;
  roundings.push({ field: 'maxMemory', requested: desired.maxMemory, effective: max });
  return { ...desired, maxMemory: max, memory: desired.memory === desired.maxMemory ? max : desired.memory };
}
