/**
 * Knob values as the planner compares them: an absent limit is unlimited, an
 * absent reservation is 0, 'unlimited' sorts above every size. The same rules
 * serve the invariant check that the property tests run after every step.
 */
import { formatLimit, formatQuantity } from '../api/quantity.ts';
import type { Field, Limit, WorldValues } from '../model/memory.ts';

/** One knob's value: a size, a limit ('unlimited'), or unset. */
export type Value = bigint | Limit | undefined;

/** Human-readable value for messages: "8Gi", "Unlimited", "unset". */
export function formatValue(v: Value): string {
  if (v === undefined) return 'unset';
  if (typeof v !== 'bigint') return formatLimit(v);
  return v < 0n ? `-${formatQuantity(-v)}` : formatQuantity(v);
}

/** Normalized view of a knob: absent limit = unlimited, absent reservation = 0. */
export function norm(field: Field, v: Value): bigint | 'unlimited' | undefined {
  if (v !== undefined) return v;
  if (field === 'limit') return 'unlimited';
  if (field === 'reservation') return 0n;
  return undefined;
}

export function sameValue(field: Field, a: Value, b: Value): boolean {
  return norm(field, a) === norm(field, b);
}

/** a < b with 'unlimited' as +infinity; undefined compares as not-less. */
export function less(a: Value, b: Value): boolean {
  if (a === undefined || b === undefined) return false;
  if (a === 'unlimited') return false;
  if (b === 'unlimited') return true;
  return a < b;
}

/** a <= b with 'unlimited' as +infinity; an absent side never violates. */
export function atMost(a: Value, b: Value): boolean {
  if (a === undefined || b === undefined) return true;
  return !less(b, a);
}

/** (low, high) pairs of knobs that must hold low <= high. */
export type Pairs = readonly (readonly [Field, Field])[];

/** The constraints of one libvirt world. */
export const PAIRS: Pairs = [
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
