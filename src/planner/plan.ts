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
 */
import { formatLimit, formatQuantity, roundUp } from '../api/quantity.ts';
import { FIELDS } from '../model/memory.ts';
import type {
  DesiredMemory,
  Field,
  Limit,
  ObservedVM,
  Plan,
  Step,
  Verdict,
  VerdictKind,
  World,
  WorldValues,
} from '../model/memory.ts';
import type { Profile } from '../model/profiles.ts';

export interface PlanOptions {
  /** QEMU hard_limit safety margin over maxMemory; default: the profile's (512Mi). */
  overheadMargin?: bigint;
}

type Value = bigint | Limit | undefined;

/** How severe a verdict is; a field whose worlds disagree takes the most severe. */
export const VERDICT_SEVERITY: Readonly<Record<VerdictKind, number>> = {
  Applied: 0,
  RestartRequired: 1,
  AwaitingPowerOff: 2,
  Unsupported: 3,
  Unsafe: 4,
  Invalid: 5,
};

interface Block {
  kind: VerdictKind;
  reason: string;
  why: string;
}

// ---------------------------------------------------------------------------
// Values

/** Human-readable value for messages: "8Gi", "Unlimited", "unset". */
export function formatValue(v: Value): string {
  if (v === undefined) return 'unset';
  if (typeof v !== 'bigint') return formatLimit(v);
  return v < 0n ? `-${formatQuantity(-v)}` : formatQuantity(v);
}

/** Byte formatter for messages (binary / decimal suffix when exact, else bytes). */
export const formatBytes = formatQuantity;

/** Normalized view of a knob: absent limit = unlimited, absent reservation = 0. */
function norm(field: Field, v: Value): bigint | 'unlimited' | undefined {
  if (v !== undefined) return v;
  if (field === 'limit') return 'unlimited';
  if (field === 'reservation') return 0n;
  return undefined;
}

function sameValue(field: Field, a: Value, b: Value): boolean {
  return norm(field, a) === norm(field, b);
}

/** a < b with 'unlimited' as +infinity; undefined compares as not-less. */
function less(a: Value, b: Value): boolean {
  if (a === undefined || b === undefined) return false;
  if (a === 'unlimited') return false;
  if (b === 'unlimited') return true;
  return a < b;
}

/** a <= b with 'unlimited' as +infinity; an absent side never violates. */
function atMost(a: Value, b: Value): boolean {
  if (a === undefined || b === undefined) return true;
  return !less(b, a);
}

/** The constraints of one world, as (low, high) pairs: low <= high. */
const PAIRS: readonly (readonly [Field, Field])[] = [
  ['reservation', 'memory'],
  ['memory', 'maxMemory'],
  ['reservation', 'limit'],
];

/**
 * Invariant violations of one world (empty = fine):
 * `0 <= reservation <= memory <= maxMemory`, `reservation <= limit`, sizes > 0.
 */
export function checkInvariants(world: WorldValues): string[] {
  const out: string[] = [];
  if (world.maxMemory <= 0n) out.push(`maxMemory ${world.maxMemory} must be > 0`);
  if (world.memory <= 0n) out.push(`memory ${world.memory} must be > 0`);
  if (world.reservation !== undefined && world.reservation < 0n) out.push('reservation must be >= 0');
  for (const [lo, hi] of PAIRS) {
    if (!atMost(world[lo], world[hi])) {
      out.push(`${lo} ${formatValue(world[lo])} > ${hi} ${formatValue(world[hi])}`);
    }
  }
  return out;
}

// ---------------------------------------------------------------------------
// Desired: validation and rounding

/** The desired values as the hypervisor will hold them (rounded up). */
interface Effective {
  maxMemory: bigint;
  memory: bigint;
  reservation?: bigint;
  limit?: Limit;
}

interface SpecProblem {
  fields: Field[];
  rule: string;
}

function validate(d: DesiredMemory): SpecProblem[] {
  const out: SpecProblem[] = [];
  const f = formatValue;
  if (d.maxMemory <= 0n) out.push({ fields: ['maxMemory'], rule: `maxMemory ${d.maxMemory} must be > 0` });
  if (d.memory <= 0n) out.push({ fields: ['memory'], rule: `memory ${d.memory} must be > 0` });
  if (d.memory > d.maxMemory) {
    out.push({ fields: ['memory', 'maxMemory'], rule: `memory ${f(d.memory)} exceeds maxMemory ${f(d.maxMemory)}` });
  }
  if (d.reservation !== undefined) {
    if (d.reservation < 0n) out.push({ fields: ['reservation'], rule: `reservation ${d.reservation} must be >= 0` });
    if (d.reservation > d.memory) {
      out.push({
        fields: ['reservation', 'memory'],
        rule: `reservation ${f(d.reservation)} exceeds memory ${f(d.memory)}`,
      });
    }
  }
  if (typeof d.limit === 'bigint') {
    if (d.limit <= 0n) out.push({ fields: ['limit'], rule: `limit ${d.limit} must be > 0 (write Unlimited for no cap)` });
    if (d.reservation !== undefined && d.limit < d.reservation) {
      out.push({
        fields: ['limit', 'reservation'],
        rule: `limit ${f(d.limit)} is below reservation ${f(d.reservation)}`,
      });
    }
  }
  return out;
}

function roundDesired(d: DesiredMemory, profile: Profile, roundings: Plan['roundings']): Effective {
  const up = (field: Field, v: bigint): bigint => {
    const e = roundUp(v, profile.fields[field].granularity);
    if (e !== v) roundings.push({ field, requested: v, effective: e });
    return e;
  };
  const maxMemory = up('maxMemory', d.maxMemory);
  let memory: bigint;
  if (d.memory === d.maxMemory) {
    // "all of it" stays all of it even when maxMemory rounds coarser (ESX 4 MiB).
    memory = maxMemory;
    if (memory !== d.memory) roundings.push({ field: 'memory', requested: d.memory, effective: memory });
  } else {
    memory = up('memory', d.memory);
    if (memory > maxMemory) memory = maxMemory;
  }
  const e: Effective = { maxMemory, memory };
  if (d.reservation !== undefined) e.reservation = up('reservation', d.reservation);
  if (d.limit !== undefined) e.limit = d.limit === 'unlimited' ? 'unlimited' : up('limit', d.limit);
  return e;
}

function managedFields(d: DesiredMemory): Field[] {
  return FIELDS.filter((f) => d[f] !== undefined);
}

// ---------------------------------------------------------------------------
// Targets and ordering (shared by both world shapes)

type Knobs = Partial<Record<Field, Value>>;

interface WorldPlan {
  world: World;
  observed: Knobs;
  target: Knobs;
  blocks: Partial<Record<Field, Block>>;
}

interface MarginRule {
  margin: bigint;
}

/**
 * Step 1+2: targets = wanted values unless blocked; then undo the targets
 * that would break a pair because the other side cannot move.
 */
function resolveWorld(
  world: World,
  observed: Knobs,
  want: Knobs,
  blocks: Partial<Record<Field, Block>>,
  pairs: readonly (readonly [Field, Field])[],
  margin: MarginRule | undefined,
): WorldPlan {
  const conflictsWithUnmanaged = (moved: Field, stuck: Field): Block => ({
    kind: 'Invalid',
    reason: 'ConflictsWithUnmanagedField',
    why:
      `${stuck} is not managed by this object and holds ${formatValue(observed[stuck])} in ${world}; ` +
      `declare ${stuck} too, or choose a ${moved} that fits it`,
  });
  // A value that only waits (restart, power-off) but conflicts with an unmanaged knob would
  // still conflict once the wait is over: it is Invalid now, as it will be then, and the
  // verdict must not promise what the restart or power-off cannot deliver.
  for (const [lo, hi] of pairs) {
    for (const [mine, other] of [[lo, hi], [hi, lo]] as const) {
      const b = blocks[mine];
      if (!(mine in want) || other in want || !b || (b.kind !== 'RestartRequired' && b.kind !== 'AwaitingPowerOff')) continue;
      const fits = mine === lo ? atMost(want[lo], observed[hi]) : atMost(observed[lo], want[hi]);
      if (!fits) blocks[mine] = conflictsWithUnmanaged(mine, other);
    }
  }
  const target: Knobs = { ...observed };
  for (const f of FIELDS) {
    if (f in want && !blocks[f]) target[f] = want[f];
  }
  const inherit = (moved: Field, stuck: Field, bound: string): Block => {
    const b = blocks[stuck];
    if (b) {
      return {
        kind: b.kind,
        reason: b.reason,
        why: `it needs ${stuck} ${formatValue(want[stuck])} ${bound}, which is not in effect (${b.why})`,
      };
    }
    return conflictsWithUnmanaged(moved, stuck);
  };
  for (let round = 0; round < 8; round++) {
    let changed = false;
    for (const [lo, hi] of pairs) {
      if (atMost(target[lo], target[hi])) continue;
      const loMoved = !sameValue(lo, target[lo], observed[lo]);
      const hiMoved = !sameValue(hi, target[hi], observed[hi]);
      if (loMoved) {
        target[lo] = observed[lo];
        blocks[lo] = inherit(lo, hi, 'first');
        changed = true;
      }
      if (hiMoved && (!loMoved || !atMost(target[lo], target[hi]))) {
        target[hi] = observed[hi];
        blocks[hi] = inherit(hi, lo, 'to stay below');
        changed = true;
      }
    }
    // QEMU: never raise maxMemory over an unsafe hard_limit the plan leaves in place.
    if (margin) {
      const m = target.maxMemory;
      const l = target.limit;
      if (typeof m === 'bigint' && typeof l === 'bigint' && less(observed.maxMemory, m) && l < m + margin.margin) {
        target.maxMemory = observed.maxMemory;
        blocks.maxMemory = {
          kind: 'Unsafe',
          reason: 'UnsafeLimit',
          why:
            `the memtune hard_limit ${formatValue(l)} in ${world} would be below maxMemory ${formatValue(m)} + ` +
            `overhead margin ${formatValue(margin.margin)} and QEMU would be OOM-killed; raise limit or set allowUnsafeLimit`,
        };
        changed = true;
      }
    }
    if (!changed) break;
  }
  return { world, observed, target, blocks };
}

type Direction = 'down' | 'up';
const PHASES: readonly (readonly [Field, Direction])[] = [
  ['reservation', 'down'],
  ['memory', 'down'],
  ['maxMemory', 'down'],
  ['limit', 'down'],
  ['maxMemory', 'up'],
  ['limit', 'up'],
  ['memory', 'up'],
  ['reservation', 'up'],
];

/** Step 3: the ordered steps for all worlds; per phase live first, then config (adjacent for coalescing). */
function orderSteps(worlds: readonly WorldPlan[]): Step[] {
  const steps: Step[] = [];
  for (const [field, dir] of PHASES) {
    for (const w of worlds) {
      const from = w.observed[field];
      const to = w.target[field];
      if (to === undefined || sameValue(field, from, to)) continue;
      const down = less(norm(field, to), norm(field, from));
      if ((dir === 'down') === down) steps.push({ field, world: w.world, from, to });
    }
  }
  return steps;
}

// ---------------------------------------------------------------------------
// Verdicts

function pick(blocks: Block[]): Block | undefined {
  let best: Block | undefined;
  for (const b of blocks) if (!best || VERDICT_SEVERITY[b.kind] > VERDICT_SEVERITY[best.kind]) best = b;
  return best;
}

function verdict(field: Field, desired: Value, observed: Value, block: Block | undefined, applied: string): Verdict {
  const kind: VerdictKind = block?.kind ?? 'Applied';
  const reason = block?.reason ?? 'Applied';
  const head = `${field}: desired ${formatValue(desired)}, observed ${formatValue(observed)}`;
  const message = block ? `${head}: ${reason}: ${block.why}` : `${head}: Applied: ${applied}`;
  const v: Verdict = { field, kind, desired: desired as bigint | Limit, reason, message };
  if (observed !== undefined) v.observed = observed;
  return v;
}

function appliedText(field: Field, steps: readonly Step[], single = false): string {
  const mine = steps.filter((s) => s.field === field);
  if (mine.length === 0) return 'already in effect';
  if (single) return 'set on the VM configuration';
  const worlds = [...new Set(mine.map((s) => s.world))];
  return `set in ${worlds.join(' and ')}`;
}

// ---------------------------------------------------------------------------
// Dual-world profiles (libvirt: qemu, xen, test)

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

function planDual(
  d: Effective,
  desired: DesiredMemory,
  obs: ObservedVM,
  profile: Profile,
  opts: PlanOptions,
): { steps: Step[]; verdicts: Verdict[] } {
  const managed = managedFields(desired);
  const live = obs.powerState !== 'ShutOff' ? obs.live : undefined;
  const config = obs.persistent ? obs.config : undefined;
  const margin = profile.unsafeLimit && !desired.allowUnsafeLimit
    ? { margin: opts.overheadMargin ?? profile.unsafeLimit.defaultOverheadMargin }
    : undefined;

  // Field-level blocks: the same in every world.
  const fieldBlock: Partial<Record<Field, Block>> = {};
  for (const f of managed) {
    const cap = profile.fields[f];
    if (!cap.supported) {
      fieldBlock[f] = { kind: 'Unsupported', reason: 'Unsupported', why: `${profile.label}: ${cap.unsupportedWhy ?? 'no such knob'}` };
    } else if (cap.refusedWithNuma && obs.numa) {
      fieldBlock[f] = {
        kind: 'Unsupported',
        reason: 'Unsupported',
        why: `the domain has NUMA cells and libvirt refuses ${f} changes through the memory API for NUMA domains; change the NUMA cells' memory instead`,
      };
    }
  }
  if (margin && typeof d.limit === 'bigint' && !fieldBlock.limit) {
    // The hard_limit is written to every world, so it must cover the guest RAM that will be in
    // effect in each: the running QEMU process keeps its live maxMemory until it restarts, and the
    // next boot uses the config maxMemory, which is the desired one only if this plan can set it
    // (not on a NUMA domain, not without a config). Count what stays and what is set, never
    // merely what is desired.
    const guest = guestMemoryInEffect(d.maxMemory, live, config, fieldBlock.maxMemory === undefined, profile);
    if (d.limit < guest + margin.margin) {
      fieldBlock.limit = {
        kind: 'Unsafe',
        reason: 'UnsafeLimit',
        why:
          `a hard_limit below guest memory ${formatValue(guest)} + overhead margin ${formatValue(margin.margin)} ` +
          `(${formatValue(guest + margin.margin)}) gets QEMU OOM-killed; raise limit or set allowUnsafeLimit to opt in`,
      };
    }
  }

  const want: Knobs = {};
  for (const f of managed) want[f] = d[f];

  const worldPlans: WorldPlan[] = [];
  if (live) {
    const blocks: Partial<Record<Field, Block>> = { ...fieldBlock };
    for (const f of managed) {
      if (blocks[f]) continue;
      const cap = profile.fields[f];
      if (!cap.live) {
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
    worldPlans.push(resolveWorld('live', { ...live }, want, blocks, PAIRS, margin));
  }
  if (config) {
    const blocks: Partial<Record<Field, Block>> = { ...fieldBlock };
    for (const f of managed) {
      if (!blocks[f] && !profile.fields[f].config) {
        blocks[f] = { kind: 'Unsupported', reason: 'Unsupported', why: `${profile.label} cannot change ${f} in the persistent config` };
      }
    }
    worldPlans.push(resolveWorld('config', { ...config }, want, blocks, PAIRS, margin));
  }

  const steps = orderSteps(worldPlans);
  const verdicts: Verdict[] = [];
  for (const f of managed) {
    const observedValue = (live ?? config)?.[f];
    if (worldPlans.length === 0) {
      verdicts.push(verdict(f, d[f], observedValue, {
        kind: 'Unsupported',
        reason: 'NotObserved',
        why: obs.persistent
          ? 'the hypervisor reported neither live nor config values'
          : 'a transient domain that is not running has no live values and no config',
      }, ''));
      continue;
    }
    const found: Block[] = [];
    // An unsupported knob is Unsupported even when its value happens to match (no reservation = 0).
    if (!profile.fields[f].supported && fieldBlock[f]) found.push(fieldBlock[f]);
    for (const w of worldPlans) {
      if (!sameValue(f, w.target[f], d[f])) {
        found.push(w.blocks[f] ?? fieldBlock[f] ?? { kind: 'Unsupported', reason: 'Unsupported', why: `${w.world} cannot reach it` });
      }
    }
    const cap = profile.fields[f];
    if (cap.liveTakesEffectAtBoot && steps.some((s) => s.field === f && s.world === 'live')) {
      found.push({
        kind: 'RestartRequired',
        reason: 'RestartRequired',
        why: `${profile.label} accepts the new ${f} live and in config, but the guest sees it only after its next cold boot (its memory map is fixed at boot)`,
      });
    }
    verdicts.push(verdict(f, d[f], observedValue, pick(found), appliedText(f, steps)));
  }
  return { steps, verdicts };
}

// ---------------------------------------------------------------------------
// Single-world profiles (ESX)

/** ESX: the memory a VM gets is min(memoryMB, memoryAllocation.limit). */
function effectiveMemory(maxMemory: bigint, limit: Value): bigint {
  return typeof limit === 'bigint' && limit < maxMemory ? limit : maxMemory;
}

const ESX_PAIRS: readonly (readonly [Field, Field])[] = [
  ['reservation', 'maxMemory'],
  ['reservation', 'limit'],
];

function planSingle(d: Effective, desired: DesiredMemory, obs: ObservedVM, profile: Profile): { steps: Step[]; verdicts: Verdict[] } {
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
  const poweredOn = obs.powerState !== 'ShutOff';
  const observed: Knobs = { maxMemory: w.maxMemory, limit: w.limit, reservation: w.reservation };
  const want: Knobs = { maxMemory: d.maxMemory };

  // memory and limit share the limit knob: it carries min(memory, limit).
  let limitKnob: Limit;
  if (d.limit === 'unlimited') {
    limitKnob = d.memory === d.maxMemory ? 'unlimited' : d.memory;
  } else if (d.limit !== undefined) {
    limitKnob = d.memory < d.limit ? d.memory : d.limit;
  } else if (d.memory === d.maxMemory) {
    // All of maxMemory: no cap needed. An observed cap at or above maxMemory already gives that.
    limitKnob = !less(norm('limit', w.limit), d.maxMemory) ? (norm('limit', w.limit) as Limit) : 'unlimited';
  } else {
    limitKnob = d.memory;
  }
  want.limit = limitKnob;
  /** What the VM gets: min(memory, limit). */
  const memoryHeld = typeof d.limit === 'bigint' && d.limit < d.memory ? d.limit : d.memory;
  if (d.reservation !== undefined) want.reservation = d.reservation;

  const blocks: Partial<Record<Field, Block>> = {};
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
  const wp = resolveWorld('config', observed, want, blocks, ESX_PAIRS, undefined);
  const steps = orderSteps([wp]);

  const t = wp.target;
  const verdicts: Verdict[] = [];
  for (const f of managed) {
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
    verdicts.push(verdict(f, desiredValue, observedValue, block, applied));
  }
  return { steps, verdicts };
}

/** Why a powered-on VM cannot take this change now (undefined = it can). */
function poweredOnRefusal(rule: 'hotAddIncrease' | 'none', from: Value, to: Value, obs: ObservedVM): string | undefined {
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

// ---------------------------------------------------------------------------
// Entry point

/**
 * Plan the steps that bring `observed` toward `desired` on a hypervisor with
 * `profile`, and one verdict per managed field. Pure: no I/O, no clock.
 */
export function plan(desired: DesiredMemory, observed: ObservedVM, profile: Profile, options: PlanOptions = {}): Plan {
  const roundings: Plan['roundings'] = [];
  const managed = managedFields(desired);
  const problems = validate(desired);
  if (problems.length > 0) {
    const all = problems.map((p) => p.rule).join('; ');
    const verdicts = managed.map((f) => {
      const own = problems.filter((p) => p.fields.includes(f)).map((p) => p.rule);
      const observedValue = (observed.powerState !== 'ShutOff' ? observed.live : undefined)?.[f] ?? observed.config?.[f];
      const why = own.length > 0 ? own.join('; ') : `nothing is applied while the spec is invalid (${all})`;
      return verdict(f, desired[f], observedValue, { kind: 'Invalid', reason: 'InvalidSpec', why }, '');
    });
    return { steps: [], verdicts, roundings };
  }
  const d = roundDesired(desired, profile, roundings);
  const out = profile.worlds === 'single' ? planSingle(d, desired, observed, profile) : planDual(d, desired, observed, profile, options);
  return { steps: out.steps, verdicts: out.verdicts, roundings };
}

// ---------------------------------------------------------------------------
// Simulation

/** A step the simulated hypervisor refuses, with the hypervisor's kind of message. */
export class StepRefused extends Error {
  readonly step: Step;
  constructor(step: Step, message: string) {
    super(`${step.world} ${step.field} ${formatValue(step.from)} → ${formatValue(step.to)} refused: ${message}`);
    this.name = 'StepRefused';
    this.step = step;
  }
}

function cloneWorld(w: WorldValues | undefined): WorldValues | undefined {
  return w ? { ...w } : undefined;
}

/**
 * Pure simulation of a hypervisor with `profile` applying `steps` in order:
 * returns the next ObservedVM (the input is not modified). Models what the
 * real hypervisors do, side effects included (libvirt lowers config memory
 * with config maxMemory; ESX memory follows min(memoryMB, limit) and the
 * running VM is its configuration). Throws StepRefused for a step the
 * hypervisor would refuse (live change on a shut-off or transient-config
 * domain, live maxMemory on QEMU, memory above maxMemory, ESX shrink while
 * powered on, ...). Invariants between steps are not enforced here:
 * check them with checkInvariants.
 */
export function applyStepsToObserved(observed: ObservedVM, steps: readonly Step[], profile: Profile): ObservedVM {
  const next: ObservedVM = {
    ...observed,
    balloon: { ...observed.balloon },
    live: cloneWorld(observed.live),
    config: cloneWorld(observed.config),
  };
  if (observed.hotAdd) next.hotAdd = { ...observed.hotAdd };
  for (const step of steps) applyOne(next, step, profile);
  return next;
}

function applyOne(vm: ObservedVM, step: Step, profile: Profile): void {
  const cap = profile.fields[step.field];
  const refuse = (msg: string): never => {
    throw new StepRefused(step, msg);
  };
  if (!cap.supported) refuse(cap.unsupportedWhy ?? 'unsupported');
  const poweredOn = vm.powerState !== 'ShutOff';

  if (profile.worlds === 'single') {
    if (step.world !== 'config') refuse('this hypervisor has a single configuration: steps go to world config');
    const w = vm.config ?? vm.live ?? refuse('no configuration');
    if (poweredOn && cap.poweredOn !== 'any') {
      const why = poweredOnRefusal(cap.poweredOn as 'hotAddIncrease' | 'none', w[step.field], step.to, vm);
      if (why) refuse(why);
    }
    if (step.field === 'memory') refuse('ESX has no memory knob: memory goes through limit');
    setKnob(w, step);
    w.memory = effectiveMemory(w.maxMemory, w.limit);
    if (vm.config && vm.live && poweredOn) vm.live = { ...vm.config };
    return;
  }

  if (step.field === 'maxMemory' && cap.refusedWithNuma && vm.numa) refuse('NUMA domains refuse maxMemory changes through this API');
  let w: WorldValues;
  if (step.world === 'live') {
    if (!poweredOn || !vm.live) return refuse('domain is not running');
    if (!cap.live) refuse(`cannot resize the ${step.field} on an active domain`);
    if (cap.liveNeedsBalloon && vm.balloon.device === 'none') refuse('no balloon device');
    w = vm.live;
  } else {
    if (!vm.persistent || !vm.config) return refuse('transient domains do not have any persistent config');
    if (!cap.config) refuse(`cannot change ${step.field} in config`);
    w = vm.config;
  }
  if (typeof step.to === 'bigint' && step.field === 'memory' && profile.enforcesMemoryAtMostMax && step.to > w.maxMemory) {
    refuse('cannot set memory higher than max memory');
  }
  if (typeof step.to === 'bigint' && step.field === 'maxMemory' && step.to < w.memory) {
    if (step.world === 'config' && profile.maxMemoryLowersMemory) w.memory = step.to;
    else refuse('cannot set max memory below the current balloon target');
  }
  setKnob(w, step);
}

function setKnob(w: WorldValues, step: Step): void {
  const to = step.to;
  if (step.field === 'limit') {
    w.limit = to;
  } else if (typeof to === 'bigint') {
    w[step.field] = to;
  } else {
    throw new StepRefused(step, `${step.field} cannot be ${formatValue(to)}`);
  }
}
