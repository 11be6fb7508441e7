/**
 * Verdicts: what a field's plan comes to (Applied, or why not) and the
 * message a user reads in status. A block is the reason one knob does not
 * move in one world; a field whose worlds disagree takes the most severe.
 */
import type { Field, Limit, Step, Verdict, VerdictKind } from '../model/memory.ts';
import { formatValue } from './values.ts';
import type { Value } from './values.ts';

/** Why a knob does not reach its desired value (in one world, or in all). */
export interface Block {
  kind: VerdictKind;
  reason: string;
  why: string;
}

export type Blocks = Partial<Record<Field, Block>>;

/** How severe a verdict is; a field whose worlds disagree takes the most severe. */
export const VERDICT_SEVERITY: Readonly<Record<VerdictKind, number>> = {
  Applied: 0,
  RestartRequired: 1,
  AwaitingPowerOff: 2,
  Unsupported: 3,
  Unsafe: 4,
  Invalid: 5,
};

export function mostSevere(blocks: readonly Block[]): Block | undefined {
  let best: Block | undefined;
  for (const b of blocks) if (!best || VERDICT_SEVERITY[b.kind] > VERDICT_SEVERITY[best.kind]) best = b;
  return best;
}

/** The verdict for one field: Applied with `applied` as the message, or the block's kind and why. */
export function verdict(field: Field, desired: Value, observed: Value, block: Block | undefined, applied: string): Verdict {
  const kind: VerdictKind = block?.kind ?? 'Applied';
  const reason = block?.reason ?? 'Applied';
  const head = `${field}: desired ${formatValue(desired)}, observed ${formatValue(observed)}`;
  const message = block ? `${head}: ${reason}: ${block.why}` : `${head}: Applied: ${applied}`;
  const v: Verdict = { field, kind, desired: desired as bigint | Limit, reason, message };
  if (observed !== undefined) v.observed = observed;
  return v;
}

/** How an Applied field got there: already in effect, or set in which worlds. */
export function appliedText(field: Field, steps: readonly Step[], single = false): string {
  const mine = steps.filter((s) => s.field === field);
  if (mine.length === 0) return 'already in effect';
  if (single) return 'set on the VM configuration';
  const worlds = [...new Set(mine.map((s) => s.world))];
  return `set in ${worlds.join(' and ')}`;
}
