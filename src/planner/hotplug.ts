/**
 * Planning for worlds with virtio-mem devices (issue #14, docs/memory-model.md "virtio-mem").
 *
 * maxMemory of such a world is `boot + Σ requested` (src/model/hotplug.ts). Within
 * [boot, boot + Σ size] it changes live and in config by updating the devices' `requested`
 * (steps carry the per-device values). Above the live ceiling the running devices cannot grow
 * (a device's size is fixed while QEMU runs): RestartRequired, and the config's last device is
 * enlarged so the next cold boot has the room (steps carry the new sizes). Below boot memory:
 * only the NUMA cells could shrink it, which vmmem does not edit: Unsupported.
 *
 * The balloon keeps working on top, but QEMU's balloon only covers boot memory: a memory step
 * carries `balloonOffset` = Σ requested once the plan is applied, and the driver sets the balloon
 * to `memory - balloonOffset`. Changing requested moves the guest's memory by the same amount, so
 * a plan that changes maxMemory also (re)sets the balloon whenever its part changes.
 */
import type { HotplugState, Step, World, WorldValues } from '../model/memory.ts';
import { hotplugCeiling, hotplugRequested, spreadRequested } from '../model/hotplug.ts';
import type { Profile } from '../model/profiles.ts';
import { formatValue } from './values.ts';
import type { Block } from './verdicts.ts';
import type { WorldPlan } from './worlds.ts';

/** The hot-plug state of a world this profile can drive, else undefined. */
export function hotplugOf(profile: Profile, w: WorldValues | undefined): HotplugState | undefined {
  return profile.hotplug && w?.hotplug && w.hotplug.devices.length > 0 ? w.hotplug : undefined;
}

const describe = (h: HotplugState): string =>
  `boot memory ${formatValue(h.boot)} + virtio-mem size ${formatValue(hotplugCeiling(h) - h.boot)} = ${formatValue(hotplugCeiling(h))}`;

/**
 * The block on maxMemory in a hot-plug world, or undefined when `want` is reachable there.
 * `configCanGrow`: the live world's block is RestartRequired (the config is enlarged) rather than
 * Unsupported (no persistent config to enlarge).
 */
export function hotplugBlock(world: World, h: HotplugState, want: bigint, configCanGrow: boolean): Block | undefined {
  if (want < h.boot) {
    return {
      kind: 'Unsupported',
      reason: 'Unsupported',
      why:
        `maxMemory ${formatValue(want)} is below the boot memory ${formatValue(h.boot)} (the NUMA cells), which virtio-mem cannot take away; ` +
        'only a change of the NUMA cells\' memory can lower it, which vmmem does not make',
    };
  }
  if (world === 'live' && want > hotplugCeiling(h)) {
    return configCanGrow
      ? {
          kind: 'RestartRequired',
          reason: 'RestartRequired',
          why:
            `the running domain can grow to at most ${describe(h)}: a virtio-mem device's size cannot change while QEMU runs; ` +
            'the config\'s last virtio-mem device is enlarged to make room, and the next cold boot uses it',
        }
      : {
          kind: 'Unsupported',
          reason: 'Unsupported',
          why: `the running domain can grow to at most ${describe(h)}, and this transient domain has no persistent config to enlarge`,
        };
  }
  return undefined;
}

/**
 * The steps of the hot-plug worlds, annotated: maxMemory steps get per-device `requested`
 * (and `sizes` when the config's last device grows), memory steps get `balloonOffset`, and a
 * balloon step is added where maxMemory moves and the balloon's share changes with it.
 */
export function annotateHotplugSteps(steps: readonly Step[], worlds: readonly WorldPlan[], hot: Partial<Record<World, HotplugState>>): Step[] {
  let out = [...steps];
  for (const w of worlds) {
    const h = hot[w.world];
    if (!h) continue;
    const oldR = hotplugRequested(h);
    const targetMax = typeof w.target.maxMemory === 'bigint' ? w.target.maxMemory : h.boot + oldR;
    const layout = layoutFor(h, targetMax);
    const newR = layout.requested.reduce((a, v) => a + v, 0n);
    out = out.map((s) => {
      if (s.world !== w.world) return s;
      if (s.field === 'maxMemory') return { ...s, requested: layout.requested, ...(layout.sizes ? { sizes: layout.sizes } : {}) };
      if (s.field === 'memory') return { ...s, balloonOffset: newR };
      return s;
    });
    const mem = w.target.memory;
    const obsMem = w.observed.memory;
    const hasMemStep = out.some((s) => s.world === w.world && s.field === 'memory');
    if (newR === oldR || hasMemStep || typeof mem !== 'bigint' || typeof obsMem !== 'bigint' || w.blocks.memory) continue;
    // memory stays, maxMemory moves: the balloon's share (memory - Σ requested) must move the other way.
    if (mem - newR === obsMem - oldR) continue;
    const balloon: Step = { field: 'memory', world: w.world, from: obsMem + (newR - oldR), to: mem, balloonOffset: newR };
    const at = out.findIndex((s) => s.world === w.world && s.field === 'maxMemory');
    // Growing: plug first, then shrink the balloon's share; shrinking: the balloon first.
    out.splice(newR > oldR ? at + 1 : at, 0, balloon);
  }
  return out;
}

/** Per-device requested (and, above the ceiling, the config's new sizes) for a guest maximum. */
function layoutFor(h: HotplugState, maximum: bigint): { requested: bigint[]; sizes?: bigint[] } {
  const requested = spreadRequested(h, maximum);
  if (requested) return { requested };
  // Above the ceiling (config only; the live world is blocked there): every device full, the
  // last one enlarged by the rest, rounded up to its block.
  const last = h.devices.length - 1;
  const dev = h.devices[last]!;
  const extra = maximum - hotplugCeiling(h);
  const grown = dev.size + (dev.block > 0n ? ((extra + dev.block - 1n) / dev.block) * dev.block : extra);
  const sizes = h.devices.map((d, i) => (i === last ? grown : d.size));
  return { requested: sizes, sizes };
}

/** The guest maximum a hot-plug world gets for `maximum` (rounded up to the device blocks). */
export function roundedHotplugMaximum(h: HotplugState, maximum: bigint, world: World): bigint {
  if (maximum < h.boot) return maximum;
  if (maximum <= hotplugCeiling(h) || world === 'config') return h.boot + layoutFor(h, maximum).requested.reduce((a, v) => a + v, 0n);
  return maximum;
}

/**
 * How a virtio-mem step is carried out, for logs, events and `vmmem plan`:
 * "virtio-mem requested 128Mi", "virtio-mem size 768Mi, requested 768Mi (config)",
 * "balloon 192Mi + virtio-mem 128Mi". undefined for ordinary steps.
 */
export function hotplugDetail(step: Step): string | undefined {
  const list = (v: readonly bigint[]) => v.map((x) => formatValue(x)).join(' + ');
  if (step.sizes && step.requested) return `virtio-mem size ${list(step.sizes)}, requested ${list(step.requested)}`;
  if (step.requested) return `virtio-mem requested ${list(step.requested)}`;
  if (step.balloonOffset !== undefined && typeof step.to === 'bigint') {
    return `balloon ${formatValue(step.to - step.balloonOffset)} + virtio-mem ${formatValue(step.balloonOffset)}`;
  }
  return undefined;
}
