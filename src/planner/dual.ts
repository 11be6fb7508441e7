/**
 * Planning for dual-world profiles (libvirt: qemu, xen, test): a running
 * domain's live values and its persistent config are planned as two worlds,
 * each with its own blocks, and their steps interleaved per phase.
 */
import type { DesiredMemory, Field, HotplugState, ObservedVM, Step, Verdict, World, WorldValues } from '../model/memory.ts';
import { hotplugRequested, spreadRequested } from '../model/hotplug.ts';
import type { Profile } from '../model/profiles.ts';
import type { Effective } from './spec.ts';
import { managedFields } from './spec.ts';
import { formatValue, PAIRS, sameValue } from './values.ts';
import { appliedText, mostSevere, verdict } from './verdicts.ts';
import type { Block, Blocks } from './verdicts.ts';
import { annotateHotplugSteps, hotplugBlock, hotplugOf } from './hotplug.ts';
import { orderSteps, resolveWorld } from './worlds.ts';
import type { Knobs, MarginRule, WorldPlan } from './worlds.ts';

/** What planDual works from: the rounded desired values and the worlds the hypervisor reported. */
interface DualInput {
  d: Effective;
  obs: ObservedVM;
  profile: Profile;
  managed: Field[];
  /** Present only while the domain runs. */
  live: WorldValues | undefined;
  /** Present only for a persistent domain. */
  config: WorldValues | undefined;
  /** virtio-mem state of each world the profile can hot-plug in (src/planner/hotplug.ts). */
  hot: Partial<Record<World, HotplugState>>;
}

export function planDual(
  d: Effective,
  desired: DesiredMemory,
  obs: ObservedVM,
  profile: Profile,
  overheadMargin: bigint | undefined,
): { steps: Step[]; verdicts: Verdict[] } {
  const input: DualInput = {
    d,
    obs,
    profile,
    managed: managedFields(desired),
    live: obs.powerState !== 'ShutOff' ? obs.live : undefined,
    config: obs.persistent ? obs.config : undefined,
    hot: {},
  };
  const hl = hotplugOf(profile, input.live);
  const hc = hotplugOf(profile, input.config);
  if (hl) input.hot.live = hl;
  if (hc) input.hot.config = hc;
  const margin = profile.unsafeLimit && !desired.allowUnsafeLimit
    ? { margin: overheadMargin ?? profile.unsafeLimit.defaultOverheadMargin }
    : undefined;

  const fieldBlock = fieldBlocks(input);
  if (margin && typeof d.limit === 'bigint' && !fieldBlock.limit) {
    const unsafe = unsafeLimit(input, d.limit, fieldBlock.maxMemory === undefined, margin);
    if (unsafe) fieldBlock.limit = unsafe;
  }

  const want: Knobs = {};
  for (const f of input.managed) want[f] = d[f];
  const worldPlans: WorldPlan[] = [];
  if (input.live) worldPlans.push(resolveWorld('live', { ...input.live }, want, liveBlocks(input, fieldBlock), PAIRS, margin));
  if (input.config) worldPlans.push(resolveWorld('config', { ...input.config }, want, configBlocks(input, fieldBlock), PAIRS, margin));

  const steps = annotateHotplugSteps(orderSteps(worldPlans), worldPlans, input.hot);
  const verdicts = input.managed.map((f) => fieldVerdict(input, f, fieldBlock, worldPlans, steps));
  return { steps, verdicts };
}

/** Blocks that hold in every world: a knob the hypervisor lacks, or one libvirt refuses on NUMA domains. */
function fieldBlocks({ managed, obs, profile, hot }: DualInput): Blocks {
  const out: Blocks = {};
  for (const f of managed) {
    const cap = profile.fields[f];
    if (!cap.supported) {
      out[f] = { kind: 'Unsupported', reason: 'Unsupported', why: `${profile.label}: ${cap.unsupportedWhy ?? 'no such knob'}` };
    } else if (cap.refusedWithNuma && obs.numa && !(f === 'maxMemory' && (hot.live || hot.config))) {
      out[f] = {
        kind: 'Unsupported',
        reason: 'Unsupported',
        why: `the domain has NUMA cells and libvirt refuses ${f} changes through the memory API for NUMA domains; change the NUMA cells' memory instead`,
      };
    }
  }
  return out;
}

/**
 * The hard_limit is written to every world, so it must cover the guest RAM
 * that will be in effect in each: the running QEMU process keeps its live
 * maxMemory until it restarts, and the next boot uses the config maxMemory,
 * which is the desired one only if this plan can set it (not on a NUMA
 * domain, not without a config). Count what stays and what is set, never
 * merely what is desired. Undefined: the limit is safe.
 */
function unsafeLimit(input: DualInput, limit: bigint, maxMemorySettable: boolean, margin: MarginRule): Block | undefined {
  const guest = guestMemoryInEffect(input.d.maxMemory, input.live, input.config, maxMemorySettable, input.profile);
  if (limit >= guest + margin.margin) return undefined;
  return {
    kind: 'Unsafe',
    reason: 'UnsafeLimit',
    why:
      `a hard_limit below guest memory ${formatValue(guest)} + overhead margin ${formatValue(margin.margin)} ` +
      `(${formatValue(guest + margin.margin)}) gets QEMU OOM-killed; raise limit or set allowUnsafeLimit to opt in`,
  };
}

/**
 * The largest guest RAM (maxMemory) a memtune hard_limit has to cover once the
 * plan is applied: per world, what that world keeps plus what the plan sets in
 * it. `settable`: maxMemory has no field-level block (NUMA, unsupported).
 * Live: the running guest keeps its boot-time RAM map (a live raise, Xen-style,
 * only adds to it). Config: the desired value replaces the observed one when
 * the config can take it; otherwise the observed one stays for the next boot.
 */
function guestMemoryInEffect(
  desiredMax: bigint,
  live: WorldValues | undefined,
  config: WorldValues | undefined,
  settable: boolean,
  profile: Profile,
): bigint {
  const cap = profile.fields.maxMemory;
  let guest = 0n;
  const count = (v: bigint): void => {
    if (v > guest) guest = v;
  };
  if (live) {
    count(live.maxMemory);
    if (settable && cap.live) count(desiredMax);
  }
  if (config) count(settable && cap.config ? desiredMax : config.maxMemory);
  // Neither world is known: nothing is written, but stay on the safe side.
  if (!live && !config) count(desiredMax);
  return guest;
}

/** The live world's blocks: knobs that change only in config (restart) or need a balloon. */
function liveBlocks({ d, obs, profile, managed, config, hot }: DualInput, fieldBlock: Blocks): Blocks {
  const blocks: Blocks = { ...fieldBlock };
  for (const f of managed) {
    if (blocks[f]) continue;
    const cap = profile.fields[f];
    if (f === 'maxMemory' && hot.live) {
      const b = hotplugBlock('live', hot.live, d.maxMemory, Boolean(config && hot.config));
      if (b) blocks[f] = b;
    } else if (f === 'memory' && hot.live && belowHotplug('live', d, hot.live, blocks)) {
      blocks[f] = belowHotplug('live', d, hot.live, blocks);
    } else if (!cap.live) {
      blocks[f] = config && cap.config
        ? {
            kind: 'RestartRequired',
            reason: 'RestartRequired',
            why: `${profile.label} cannot change ${f} on an active domain; the config holds ${formatValue(d[f])} and the next cold boot uses it`,
          }
        : {
            kind: 'Unsupported',
            reason: 'Unsupported',
            why: obs.persistent
              ? `${profile.label} cannot change ${f} on an active domain, and the persistent config was not reported`
              : `${profile.label} cannot change ${f} on an active domain, and this transient domain has no persistent config to stage it in`,
          };
    } else if (cap.liveNeedsBalloon && obs.balloon.device === 'none') {
      blocks[f] = {
        kind: 'Unsupported',
        reason: 'Unsupported',
        why: `the domain has no balloon device (memballoon model='none'), so ${f} cannot change while it runs${config ? '; the config is updated for the next boot' : ''}`,
      };
    }
  }
  return blocks;
}

/** The config world's blocks: knobs the persistent config cannot hold. */
function configBlocks({ d, profile, managed, hot }: DualInput, fieldBlock: Blocks): Blocks {
  const blocks: Blocks = { ...fieldBlock };
  for (const f of managed) {
    if (blocks[f]) continue;
    if (f === 'maxMemory' && hot.config) {
      const b = hotplugBlock('config', hot.config, d.maxMemory, true);
      if (b) blocks[f] = b;
    } else if (f === 'memory' && hot.config && belowHotplug('config', d, hot.config, blocks)) {
      blocks[f] = belowHotplug('config', d, hot.config, blocks);
    } else if (!profile.fields[f].config) {
      blocks[f] = { kind: 'Unsupported', reason: 'Unsupported', why: `${profile.label} cannot change ${f} in the persistent config` };
    }
  }
  return blocks;
}

/**
 * QEMU's balloon covers boot memory only: with virtio-mem, memory below what the devices will hold
 * (Σ requested after the plan) would need a negative balloon target.
 */
function belowHotplug(world: World, d: Effective, h: HotplugState, blocks: Blocks): Block | undefined {
  const requested = blocks.maxMemory ? undefined : spreadRequested(h, d.maxMemory);
  const plugged = requested ? requested.reduce((a, v) => a + v, 0n) : hotplugRequested(h);
  if (d.memory >= plugged) return undefined;
  return {
    kind: 'Invalid',
    reason: 'MemoryBelowHotplug',
    why:
      `the ${world} virtio-mem devices hold ${formatValue(plugged)} and QEMU's balloon can only take back boot memory ` +
      `(${formatValue(h.boot)}), so memory cannot go below ${formatValue(plugged)}; lower maxMemory too`,
  };
}

/** Step 4: one verdict per field, the most severe of what keeps any world from the desired value. */
function fieldVerdict(
  { d, obs, profile, live, config }: DualInput,
  f: Field,
  fieldBlock: Blocks,
  worldPlans: readonly WorldPlan[],
  steps: readonly Step[],
): Verdict {
  const observedValue = (live ?? config)?.[f];
  if (worldPlans.length === 0) {
    return verdict(f, d[f], observedValue, {
      kind: 'Unsupported',
      reason: 'NotObserved',
      why: obs.persistent
        ? 'the hypervisor reported neither live nor config values'
        : 'a transient domain that is not running has no live values and no config',
    }, '');
  }
  const found: Block[] = [];
  // An unsupported knob is Unsupported even when its value happens to match (no reservation = 0).
  const own = fieldBlock[f];
  if (!profile.fields[f].supported && own) found.push(own);
  for (const w of worldPlans) {
    if (!sameValue(f, w.target[f], d[f])) {
      found.push(w.blocks[f] ?? own ?? { kind: 'Unsupported', reason: 'Unsupported', why: `${w.world} cannot reach it` });
    }
  }
  if (profile.fields[f].liveTakesEffectAtBoot && steps.some((s) => s.field === f && s.world === 'live')) {
    found.push({
      kind: 'RestartRequired',
      reason: 'RestartRequired',
      why: `${profile.label} accepts the new ${f} live and in config, but the guest sees it only after its next cold boot (its memory map is fixed at boot)`,
    });
  }
  return verdict(f, d[f], observedValue, mostSevere(found), appliedText(f, steps));
}
