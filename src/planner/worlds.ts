/**
 * Steps 1–3 of planning, shared by both world shapes (DESIGN §3): per world,
 * a target per knob (the wanted value unless blocked), conflicts resolved so
 * the pair invariants hold, then the changes of all worlds in an order in
 * which every prefix is valid.
 */
import { FIELDS } from '../model/memory.ts';
import type { Field, Step, World } from '../model/memory.ts';
import { atMost, formatValue, less, norm, sameValue } from './values.ts';
import type { Pairs, Value } from './values.ts';
import type { Block, Blocks } from './verdicts.ts';

export type Knobs = Partial<Record<Field, Value>>;

/** One world's plan: what it holds, what it will hold, and why a knob stays. */
export interface WorldPlan {
  world: World;
  observed: Knobs;
  target: Knobs;
  blocks: Blocks;
}

/** QEMU's hard_limit rule: limit must stay at least maxMemory + margin. */
export interface MarginRule {
  margin: bigint;
}

/**
 * Step 1+2: targets = wanted values unless blocked; then undo the targets
 * that would break a pair because the other side cannot move. `blocks` is
 * updated in place with the blocks the conflicts add.
 */
export function resolveWorld(
  world: World,
  observed: Knobs,
  want: Knobs,
  blocks: Blocks,
  pairs: Pairs,
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

/** Shrink content before container, grow container before content. */
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
export function orderSteps(worlds: readonly WorldPlan[]): Step[] {
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
