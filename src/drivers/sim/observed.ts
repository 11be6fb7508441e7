/**
 * The driver's view of a simulated VM (ObservedVM), built the way each real
 * driver reports it: ESX's one configuration also live while powered on,
 * libvirt's two worlds, virtio-mem folded into maxMemory/memory/actual.
 */
import type { HypervisorType, ObservedVM, PowerState, WorldValues } from '../../model/memory.ts';
import type { SimVirtioMem, SimVMState, SimWorld } from './inventory.ts';

function worldValues(w: SimWorld, type: HypervisorType): WorldValues {
  const out: WorldValues = { maxMemory: w.maxMemory, memory: w.memory };
  if (type === 'esx') {
    const limit = w.limit ?? 'unlimited';
    out.memory = limit === 'unlimited' || limit > w.maxMemory ? w.maxMemory : limit;
    out.reservation = w.reservation ?? 0n;
    out.limit = limit;
    return out;
  }
  if (w.reservation !== undefined) out.reservation = w.reservation;
  if (w.limit !== undefined) out.limit = w.limit;
  return out;
}

/** Builds the driver's view of a VM (both worlds, power state, balloon). */
export function observed(vm: SimVMState): ObservedVM {
  const power: PowerState = vm.powerState;
  const out: ObservedVM = {
    name: vm.name,
    uuid: vm.uuid,
    type: vm.type,
    powerState: power,
    persistent: vm.persistent,
    balloon: { device: vm.balloon === 'none' ? 'none' : 'present' },
    numa: vm.numa,
  };
  // What libvirt says of a QEMU process the OOM killer ended: shut off, reason crashed.
  if (power === 'ShutOff' && vm.stopReason) out.stopReason = vm.stopReason;
  if (vm.guestUsed !== undefined && power !== 'ShutOff') out.guest = { used: vm.guestUsed, source: 'sim guestUsed' };
  if (vm.type === 'esx') {
    const config = worldValues(vm.config as SimWorld, 'esx');
    out.config = config;
    if (power === 'Running') out.live = { ...config };
    out.hotAdd = { ...(vm.hotAdd ?? { enabled: false }) };
    return out;
  }
  if (vm.live) out.live = worldValues(vm.live, vm.type);
  if (vm.config) out.config = worldValues(vm.config, vm.type);
  if (vm.live && vm.actual !== undefined) out.balloon.actual = vm.actual;
  // virtio-mem, as the libvirt driver reports it: maxMemory = boot + Σ requested, memory = balloon
  // target + Σ requested, actual = balloon + Σ current (virDomainGetInfo memory).
  const vmem = vm.virtioMem;
  const hot = (w: WorldValues | undefined, devs: SimVirtioMem['live'], live: boolean): void => {
    if (!w || !devs) return;
    const requested = devs.reduce((a, d) => a + d.requested, 0n);
    w.hotplug = {
      model: 'virtio-mem',
      boot: w.maxMemory,
      devices: devs.map((d, i) => ({ ...(live ? { alias: `virtiomem${i}`, current: d.current ?? 0n } : {}), node: 0, block: d.block, size: d.size, requested: d.requested })),
    };
    w.maxMemory += requested;
    w.memory += requested;
  };
  if (vmem) {
    hot(out.live, vmem.live, true);
    hot(out.config, vmem.config, false);
    if (out.balloon.actual !== undefined && vmem.live) out.balloon.actual += vmem.live.reduce((a, d) => a + (d.current ?? 0n), 0n);
  }
  return out;
}
