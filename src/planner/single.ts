/**
 * Planning for single-world profiles (ESX): the VM has one configuration,
 * the running VM is that configuration, and memory is not a knob of its
 * own: ESX gives a VM min(memoryMB, memoryAllocation.limit), so desired
 * memory and limit share the limit knob.
 */
import type { DesiredMemory, Limit, ObservedVM, Step, Verdict, WorldValues } from '../model/memory.ts';
import type { Profile } from '../model/profiles.ts';
import type { Effective } from './spec.ts';
import { managedFields } from './spec.ts';
import { formatValue, less, norm, sameValue } from './values.ts';
import type { Pairs, Value } from './values.ts';
import { appliedText, verdict } from './verdicts.ts';
import type { Block, Blocks } from './verdicts.ts';
import { orderSteps, resolveWorld } from './worlds.ts';
import type { Knobs, WorldPlan } from './worlds.ts';

/** ESX: the memory a VM gets is min(memoryMB, memoryAllocation.limit). */
export function effectiveMemory(maxMemory: bigint, limit: Value): bigint {
  return typeof limit === 'bigint' && limit < maxMemory ? limit : maxMemory;
}

const ESX_PAIRS: Pairs = [
  ['reservation', 'maxMemory'],
  ['reservation', 'limit'],
];

export function planSingle(d: Effective, desired: DesiredMemory, obs: ObservedVM, profile: Profile): { steps: Step[]; verdicts: Verdict[] } {
  const managed = managedFields(desired);
  const w = obs.config ?? obs.live;
  if (!w) {
    return {
      steps: [],
      verdicts: managed.map((f) =>
        verdict(f, d[f], undefined, { kind: 'Unsupported', reason: 'NotObserved', why: 'the hypervisor reported no configuration' }, ''),
      ),
    };
  }
  const observed: Knobs = { maxMemory: w.maxMemory, limit: w.limit, reservation: w.reservation };
  const limitKnob = limitKnobFor(d, w);
  const want: Knobs = { maxMemory: d.maxMemory, limit: limitKnob };
  if (d.reservation !== undefined) want.reservation = d.reservation;

  const wp = resolveWorld('config', observed, want, poweredOnBlocks(observed, want, obs, profile), ESX_PAIRS, undefined);
  const steps = orderSteps([wp]);
  const verdicts = managed.map((f) => fieldVerdict(f, d, w, wp, want, limitKnob, steps));
  return { steps, verdicts };
}

/** memory and limit share the limit knob: it carries min(memory, limit). */
function limitKnobFor(d: Effective, w: WorldValues): Limit {
  if (d.limit === 'unlimited') return d.memory === d.maxMemory ? 'unlimited' : d.memory;
  if (d.limit !== undefined) return d.memory < d.limit ? d.memory : d.limit;
  if (d.memory === d.maxMemory) {
    // All of maxMemory: no cap needed. An observed cap at or above maxMemory already gives that.
    return !less(norm('limit', w.limit), d.maxMemory) ? (norm('limit', w.limit) as Limit) : 'unlimited';
  }
  return d.memory;
}

/** Blocks for knobs the hypervisor lacks, or cannot change while the VM is powered on. */
function poweredOnBlocks(observed: Knobs, want: Knobs, obs: ObservedVM, profile: Profile): Blocks {
  const poweredOn = obs.powerState !== 'ShutOff';
  const blocks: Blocks = {};
  for (const f of ['maxMemory', 'limit', 'reservation'] as const) {
    const cap = profile.fields[f];
    if (!(f in want) || sameValue(f, want[f], observed[f])) continue;
    if (!cap.supported) {
      blocks[f] = { kind: 'Unsupported', reason: 'Unsupported', why: `${profile.label}: ${cap.unsupportedWhy ?? 'no such knob'}` };
    } else if (poweredOn && cap.poweredOn !== 'any') {
      const why = poweredOnRefusal(cap.poweredOn, observed[f], want[f], obs);
      if (why) {
        blocks[f] = {
          kind: 'AwaitingPowerOff',
          reason: 'AwaitingPowerOff',
          why: `${why}; vmmem applies it when it observes the VM powered off`,
        };
      }
    }
  }
  return blocks;
}

/** One field's verdict; memory is judged by what the VM gets, min(memoryMB, limit). */
function fieldVerdict(
  f: keyof Knobs,
  d: Effective,
  w: WorldValues,
  wp: WorldPlan,
  want: Knobs,
  limitKnob: Limit,
  steps: readonly Step[],
): Verdict {
  const t = wp.target;
  /** What the VM gets: min(memory, limit). */
  const memoryHeld = typeof d.limit === 'bigint' && d.limit < d.memory ? d.limit : d.memory;
  let block: Block | undefined;
  let observedValue: Value = w[f];
  if (f === 'memory') {
    const effTarget = effectiveMemory(t.maxMemory as bigint, t.limit);
    observedValue = effectiveMemory(w.maxMemory, w.limit);
    if (effTarget !== memoryHeld) {
      block = wp.blocks.limit ?? (wp.blocks.maxMemory && {
        ...wp.blocks.maxMemory,
        why: `it needs maxMemory ${formatValue(d.maxMemory)}, which is not in effect (${wp.blocks.maxMemory.why})`,
      }) ?? { kind: 'Unsupported', reason: 'Unsupported', why: 'memoryAllocation.limit cannot express it' };
    }
  } else if (!sameValue(f, t[f], want[f])) {
    block = wp.blocks[f] ?? { kind: 'Unsupported', reason: 'Unsupported', why: 'cannot reach it' };
  }
  let applied = appliedText(f === 'memory' ? 'limit' : f, steps, true);
  if (f === 'memory' || f === 'limit') {
    applied += ` (memoryAllocation.limit = ${formatValue(limitKnob)}: ESX enforces memory through the limit, min(memory, limit))`;
  }
  if (f === 'memory' && memoryHeld !== d.memory) {
    applied += `; memory ${formatValue(d.memory)} is capped by limit ${formatValue(d.limit)}`;
  }
  const desiredValue = f === 'limit' ? limitKnob : f === 'memory' ? memoryHeld : d[f];
  return verdict(f, desiredValue, observedValue, block, applied);
}

/** Why a powered-on VM cannot take this change now (undefined = it can). */
export function poweredOnRefusal(rule: 'hotAddIncrease' | 'none', from: Value, to: Value, obs: ObservedVM): string | undefined {
  if (rule === 'none') return 'the VM is powered on and this cannot change until it is powered off';
  if (typeof from !== 'bigint' || typeof to !== 'bigint') return 'the VM is powered on';
  const hot = obs.hotAdd;
  if (obs.powerState === 'Paused') return 'the VM is suspended and memory hot-add needs a running guest';
  if (to < from) return `the VM is powered on and memory cannot shrink while it runs (${formatValue(from)} → ${formatValue(to)})`;
  if (!hot?.enabled) return 'the VM is powered on and memory hot-add is not enabled (memoryHotAddEnabled=false)';
  if (hot.limit !== undefined && to > hot.limit) {
    return `the VM is powered on and ${formatValue(to)} exceeds the hot-add limit hotPlugMemoryLimit ${formatValue(hot.limit)}`;
  }
  if (hot.increment !== undefined && hot.increment > 0n && (to - from) % hot.increment !== 0n) {
    return `the VM is powered on and hot-add grows in multiples of hotPlugMemoryIncrementSize ${formatValue(hot.increment)}; ${formatValue(to - from)} is not one`;
  }
  return undefined;
}
