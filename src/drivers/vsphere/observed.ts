// vSphere's view of a VM (VmMemoryInfo, MiB) → vmmem's (ObservedVM, bytes): one mapping, shared by
// observe() and observeAll() so the two cannot disagree.
import type { VMHandle } from '../driver.ts';
import type { Limit, ObservedVM, PowerState, WorldValues } from '../../model/memory.ts';
import type { MoRef, VmMemoryInfo } from '../../vsphere/index.ts';

export const MIB = 1024n * 1024n;

/** A VM found by this driver: name and BIOS uuid, plus its managed object reference. */
export class VSphereVMHandle implements VMHandle {
  readonly name: string;
  readonly uuid: string;
  readonly instanceUuid: string | undefined;
  readonly moref: MoRef;
  constructor(name: string, uuid: string, instanceUuid: string | undefined, moref: MoRef) {
    this.name = name;
    this.uuid = uuid;
    this.instanceUuid = instanceUuid;
    this.moref = moref;
  }
}

export function handleOf(info: VmMemoryInfo): VSphereVMHandle {
  return new VSphereVMHandle(info.name, info.uuid ?? info.instanceUuid ?? info.ref.value, info.instanceUuid, info.ref);
}

const POWER: Record<VmMemoryInfo['powerState'], PowerState> = {
  poweredOn: 'Running',
  poweredOff: 'ShutOff',
  suspended: 'Paused',
};

/** vSphere's view of a VM → vmmem's (bytes; ESX memory = min(memoryMB, limit)). */
export function observedOf(info: VmMemoryInfo): ObservedVM {
  const maxMemory = BigInt(info.memoryMB) * MIB;
  const a = info.memoryAllocation;
  const limit: Limit = a.limit === undefined || a.limit < 0 ? 'unlimited' : BigInt(a.limit) * MIB;
  const config: WorldValues = {
    maxMemory,
    memory: limit !== 'unlimited' && limit < maxMemory ? limit : maxMemory,
    reservation: BigInt(a.reservation ?? 0) * MIB,
    limit,
  };
  const powerState = POWER[info.powerState];
  const out: ObservedVM = {
    name: info.name,
    uuid: info.uuid ?? info.instanceUuid ?? info.ref.value,
    type: 'esx',
    powerState,
    persistent: true,
    config,
    balloon: { device: 'present' },
    numa: false,
    hotAdd: { enabled: info.memoryHotAddEnabled },
  };
  if (powerState !== 'ShutOff') out.live = { ...config };
  // guestMemoryUsage is the guest's active memory (MB) as VMware Tools / the host estimate it; 0 = not reported.
  if (powerState === 'Running' && info.quickStats.guestMemoryUsage > 0) {
    out.guest = { used: BigInt(info.quickStats.guestMemoryUsage) * MIB, source: 'vSphere quickStats.guestMemoryUsage' };
  }
  if (info.hotPlugMemoryLimit !== undefined && info.hotPlugMemoryLimit > 0) out.hotAdd!.limit = BigInt(info.hotPlugMemoryLimit) * MIB;
  if (info.hotPlugMemoryIncrementSize !== undefined && info.hotPlugMemoryIncrementSize > 0) {
    out.hotAdd!.increment = BigInt(info.hotPlugMemoryIncrementSize) * MIB;
  }
  return out;
}
