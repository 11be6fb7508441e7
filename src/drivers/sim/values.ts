/**
 * Small helpers of the simulated host: byte units and formatting, the seeded
 * PRNG behind faults and jitter, deep copies of VM state (out-of-band reads
 * never hand out the host's own objects), a stable domain id for messages.
 */
import type { SimVirtioMem, SimVMState, SimWorld } from './inventory.ts';

export const KIB = 1024n;
export const MIB = 1024n * KIB;

/** Small seeded PRNG (mulberry32): fault injection and jitter are reproducible. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function cloneWorld(w: SimWorld): SimWorld {
  return { ...w };
}

export function cloneVirtioMem(v: SimVirtioMem): SimVirtioMem {
  return {
    ...v,
    ...(v.live ? { live: v.live.map((d) => ({ ...d })) } : {}),
    ...(v.config ? { config: v.config.map((d) => ({ ...d })) } : {}),
  };
}

export function cloneVM(vm: SimVMState): SimVMState {
  return {
    ...vm,
    ...(vm.virtioMem ? { virtioMem: cloneVirtioMem(vm.virtioMem) } : {}),
    ...(vm.live ? { live: cloneWorld(vm.live) } : {}),
    ...(vm.config ? { config: cloneWorld(vm.config) } : {}),
    ...(vm.hotAdd ? { hotAdd: { ...vm.hotAdd } } : {}),
  };
}

export function fmtBytes(b: bigint): string {
  if (b % (1024n * MIB) === 0n) return `${b / (1024n * MIB)}Gi`;
  if (b % MIB === 0n) return `${b / MIB}Mi`;
  if (b % KIB === 0n) return `${b / KIB}Ki`;
  return `${b}`;
}

/** A stable small domain id for messages (libxl reports numeric ids). */
export function domId(vm: SimVMState): number {
  return (parseInt(vm.uuid.slice(0, 4), 16) % 4000) + 1;
}
