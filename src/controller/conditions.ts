/**
 * metav1.Condition bookkeeping (kstatus): one condition per type, every one
 * carrying observedGeneration, lastTransitionTime moving only when the
 * status flips.
 */
import type { Condition } from '../api/conditions.ts';
import type { StoredObject } from './ports.ts';

export type ConditionStatus = 'True' | 'False' | 'Unknown';

export interface DesiredCondition {
  type: string;
  status: ConditionStatus;
  reason: string;
  message: string;
}

/**
 * Merges desired conditions into the existing list. Conditions of types not
 * in `desired` are dropped (we own every type we write).
 */
export function mergeConditions(existing: readonly Condition[] | undefined, desired: readonly DesiredCondition[], generation: number, now: string): Condition[] {
  const byType = new Map((existing ?? []).map((c) => [c.type, c]));
  return desired.map((d) => {
    const old = byType.get(d.type);
    return {
      type: d.type,
      status: d.status,
      observedGeneration: generation,
      lastTransitionTime: old && old.status === d.status ? old.lastTransitionTime : now,
      reason: d.reason,
      message: truncate(d.message, 32768),
    };
  });
}

export function findCondition(conditions: readonly Condition[] | undefined, type: string): Condition | undefined {
  return conditions?.find((c) => c.type === type);
}

/** A condition of a stored object's status (undefined: no status or no such condition). */
export function conditionOf(obj: StoredObject, type: string): Condition | undefined {
  return findCondition(obj.status?.conditions as Condition[] | undefined, type);
}

function truncate(s: string, max: number): string {
  return s.length <= max ? s : `${s.slice(0, max - 1)}…`;
}

/** Current time as metav1.Time (RFC 3339, seconds precision). */
export function nowRFC3339(date = new Date()): string {
  return date.toISOString().replace(/\.\d{3}Z$/, 'Z');
}
