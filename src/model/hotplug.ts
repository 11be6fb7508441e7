/**
 * Memory hot-plug arithmetic (QEMU virtio-mem, issue #14), shared by the planner, the drivers
 * and the sim. Pure.
 *
 * A world with virtio-mem devices shows the guest `boot + Σ requested` (memory.ts HotplugState).
 * A new guest-visible maximum is spread over the devices in document order: the first device
 * fills up to its size before the next gets anything, each device's share rounded UP to its own
 * block size. Shrinking applies the same rule to the smaller total, so the last devices empty
 * first. The live ceiling is `boot + Σ size` (a device's size cannot change while it runs).
 */
import type { HotplugState } from './memory.ts';

const roundUp = (v: bigint, to: bigint): bigint => (to > 0n ? ((v + to - 1n) / to) * to : v);

/** Guest-visible maximum of a hot-plug world. */
export function hotplugMaximum(h: HotplugState): bigint {
  return h.boot + h.devices.reduce((a, d) => a + d.requested, 0n);
}

/** The most a running domain can reach without a restart: boot + Σ size. */
export function hotplugCeiling(h: HotplugState): bigint {
  return h.boot + h.devices.reduce((a, d) => a + d.size, 0n);
}

/** Σ requested. */
export function hotplugRequested(h: HotplugState): bigint {
  return h.devices.reduce((a, d) => a + d.requested, 0n);
}

/** Σ current (what the guest has plugged), or undefined when the world does not report it (config). */
export function hotplugCurrent(h: HotplugState): bigint | undefined {
  let sum = 0n;
  for (const d of h.devices) {
    if (d.current === undefined) return undefined;
    sum += d.current;
  }
  return sum;
}

/**
 * The per-device `requested` that gives the guest `maximum` (rounded up per device block), or
 * undefined when `maximum` is below boot memory or above the ceiling.
 */
export function spreadRequested(h: HotplugState, maximum: bigint): bigint[] | undefined {
  if (maximum < h.boot || maximum > hotplugCeiling(h)) return undefined;
  let rest = maximum - h.boot;
  const out: bigint[] = [];
  for (const d of h.devices) {
    const share = rest <= 0n ? 0n : roundUp(rest < d.size ? rest : d.size, d.block);
    const capped = share > d.size ? d.size : share;
    out.push(capped);
    rest -= capped;
  }
  // Rounding the last share up past its size cannot happen when sizes are block multiples
  // (libvirt requires it); a remainder means the ceiling was not reachable in blocks.
  return rest > 0n ? undefined : out;
}

/** The guest-visible maximum `spreadRequested` actually gives (the desired value after rounding). */
export function roundToHotplug(h: HotplugState, maximum: bigint): bigint {
  const r = spreadRequested(h, maximum);
  return r ? h.boot + r.reduce((a, v) => a + v, 0n) : maximum;
}
