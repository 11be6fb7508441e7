/**
 * The desired side of a plan: which fields the object manages, whether the
 * declared values are consistent, and the values as the hypervisor will hold
 * them once rounded up to the profile's granularity.
 */
import { roundUp } from '../api/quantity.ts';
import { FIELDS } from '../model/memory.ts';
import type { DesiredMemory, Field, Limit, Plan } from '../model/memory.ts';
import type { Profile } from '../model/profiles.ts';
import { formatValue } from './values.ts';

/** The desired values as the hypervisor will hold them (rounded up). */
export interface Effective {
  maxMemory: bigint;
  memory: bigint;
  reservation?: bigint;
  limit?: Limit;
}

/** A rule the spec breaks, and the fields whose verdicts carry it. */
export interface SpecProblem {
  fields: Field[];
  rule: string;
}

export function managedFields(d: DesiredMemory): Field[] {
  return FIELDS.filter((f) => d[f] !== undefined);
}

export function validateDesired(d: DesiredMemory): SpecProblem[] {
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

/** Rounds every desired size up to the profile's granularity, recording each change in `roundings`. */
export function roundDesired(d: DesiredMemory, profile: Profile, roundings: Plan['roundings']): Effective {
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
