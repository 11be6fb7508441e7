// apply for the libvirt driver: one libvirt call per step, in order, except a
// live step and its config twin on QEMU, which are one call with
// AFFECT_LIVE | AFFECT_CONFIG (live-config-pairs.ts says when and why):
// maxMemory -> virDomainSetMemoryFlags(MEM_MAXIMUM | world),
// memory -> virDomainSetMemoryFlags(world), limit ->
// virDomainSetMemoryParameters hard_limit, reservation -> min_guarantee;
// world live = AFFECT_LIVE, config = AFFECT_CONFIG. Values must be whole KiB
// (the planner rounds): others are refused, a real libvirt call cannot carry them.
// virtio-mem steps (Step.requested / sizes / balloonOffset): see updateRequested.
//
// patchFacts() then writes what libvirt accepted into the cached facts, so
// apply can return the VM's observation without reading it again — only where
// libvirt 9.0 stores exactly the value it was given (qemu and test; not Xen,
// whose live maxMemory and balloon behave differently).
import { DriverError } from '../driver.ts';
import type { VMHandle } from '../driver.ts';
import type { HypervisorType, Step } from '../../model/memory.ts';
import { DomainMemFlags, DomainXmlFlags, MEMORY_PARAM_UNLIMITED, parseDomainXml, virtioMemResizeXml, virtioMemUpdateXml } from '../../libvirt/index.ts';
import type { DomainRef, LibvirtClient } from '../../libvirt/index.ts';
import { callGroups } from '../live-config-pairs.ts';
import { abortable, checkAborted, toDriverError } from './errors.ts';
import { KIB, configXml, isActive, ref } from './observe.ts';
import type { DomainFacts, LiveTargets } from './observe.ts';

/** Bytes -> KiB for libvirt; a value that is not whole KiB cannot be sent. */
export function kib(op: string, vm: string, step: Step): number {
  const to = step.to;
  if (typeof to !== 'bigint' || to < 0n) {
    throw new DriverError('Refused', `libvirt: ${op} on ${vm}: invalid argument: ${step.field} ${String(to)} is not a number of bytes`, {
      op, vm, hypervisorMessage: `invalid argument: ${step.field} ${String(to)} is not a number of bytes`,
    });
  }
  if (to % KIB !== 0n) {
    const m = `invalid argument: ${step.field} ${to} bytes is not a whole number of KiB (libvirt takes KiB)`;
    throw new DriverError('Refused', `libvirt: ${op} on ${vm}: ${m}`, { op, vm, hypervisorMessage: m });
  }
  const k = to / KIB;
  if (k > BigInt(Number.MAX_SAFE_INTEGER)) {
    const m = `invalid argument: ${step.field} ${to} bytes is too large`;
    throw new DriverError('Refused', `libvirt: ${op} on ${vm}: ${m}`, { op, vm, hypervisorMessage: m });
  }
  return Number(k);
}

function opOf(step: Step): string {
  if (step.sizes) return 'virDomainDefineXML';
  if (step.requested) return 'virDomainUpdateDeviceFlags';
  return step.field === 'maxMemory' || step.field === 'memory' ? 'virDomainSetMemoryFlags' : 'virDomainSetMemoryParameters';
}

/** Runs `steps` in order; throws a DriverError carrying the steps applied before the refusal. */
export async function applySteps(c: LibvirtClient, vm: VMHandle, steps: readonly Step[], liveTargets: LiveTargets, type: HypervisorType, signal?: AbortSignal, knownId?: number): Promise<Step[]> {
  const applied: Step[] = [];
  const d = ref(vm);
  for (const group of callGroups(steps, type)) {
    const step = group[0];
    // A twin pair is one call for both worlds; if it fails, neither is counted as applied.
    const world = group.length === 2 ? DomainMemFlags.LIVE | DomainMemFlags.CONFIG : step.world === 'live' ? DomainMemFlags.LIVE : DomainMemFlags.CONFIG;
    const live = group.some((s) => s.world === 'live');
    const op = opOf(step);
    try {
      checkAborted(signal, op, vm.name);
      switch (step.field) {
        case 'maxMemory':
          if (step.requested) await updateRequested(c, d, vm, step, step.requested, signal);
          else await abortable(c.domainSetMemoryFlags(d, kib(op, vm.name, step), DomainMemFlags.MAXIMUM | world), signal, op, vm.name);
          break;
        case 'memory': {
          const k = kib(op, vm.name, step);
          // virtio-mem: QEMU's balloon covers boot memory only; the devices hold the rest.
          const offset = step.balloonOffset ?? 0n;
          if (offset % KIB !== 0n || BigInt(k) * KIB < offset) {
            const m = `invalid argument: memory ${String(step.to)} is below the ${offset} bytes the virtio-mem devices hold`;
            throw new DriverError('Refused', `libvirt: ${op} on ${vm.name}: ${m}`, { op, vm: vm.name, hypervisorMessage: m });
          }
          await abortable(c.domainSetMemoryFlags(d, k - Number(offset / KIB), world), signal, op, vm.name);
          if (live) {
            // Remember the target for this instance of the domain (QEMU reports only the actual size).
            // The cached id saves a round trip; a restart since would only make the driver forget the target.
            const id = knownId !== undefined && knownId >= 0 ? knownId : (await c.lookupDomainByUuid(vm.uuid)).id;
            liveTargets.set(vm.uuid, { id, kib: k });
          }
          break;
        }
        case 'limit': {
          const v: number | 'unlimited' = step.to === 'unlimited' ? 'unlimited' : kib(op, vm.name, step);
          await abortable(c.domainSetMemoryParameters(d, { hard_limit: v }, world), signal, op, vm.name);
          break;
        }
        case 'reservation':
          await abortable(c.domainSetMemoryParameters(d, { min_guarantee: kib(op, vm.name, step) }, world), signal, op, vm.name);
          break;
      }
    } catch (err) {
      throw toDriverError(err, op, vm.name, applied);
    }
    applied.push(...group);
  }
  return applied;
}

/**
 * virtio-mem growth/shrink: one virDomainUpdateDeviceFlags per device whose `<requested>` changes,
 * with that device's XML from the world's domain XML (what `virsh update-memory-device` sends).
 * libvirt 9.0 fails LIVE|CONFIG in one call for memory devices (it looks the device up by an alias
 * only live devices have: "qom-set: Device '/machine/peripheral/(null)' not found"), so each world
 * is its own step. With `sizes` (beyond the devices, config only) the persistent definition is
 * redefined with larger devices (virDomainDefineXML): a device's size cannot change while it runs.
 */
async function updateRequested(c: LibvirtClient, d: DomainRef, vm: VMHandle, step: Step, requested: readonly bigint[], signal: AbortSignal | undefined): Promise<void> {
  const op = opOf(step);
  const refuse = (m: string) => new DriverError('Refused', `libvirt: ${op} on ${vm.name}: ${m}`, { op, vm: vm.name, hypervisorMessage: m });
  const whole = (v: bigint, what: string): number => {
    if (v % KIB !== 0n || v < 0n) throw refuse(`invalid argument: virtio-mem ${what} ${v} bytes is not a whole number of KiB`);
    return Number(v / KIB);
  };
  const xml = await abortable(c.domainGetXmlDesc(d, step.world === 'live' ? 0 : DomainXmlFlags.INACTIVE), signal, 'virDomainGetXMLDesc', vm.name);
  const devices = parseDomainXml(xml).memoryDevices.filter((m) => m.model === 'virtio-mem');
  if (devices.length !== requested.length) {
    throw refuse(`the ${step.world} XML has ${devices.length} virtio-mem devices, the plan ${requested.length} (changed since it was observed)`);
  }
  if (step.sizes) {
    if (step.world !== 'config') throw refuse('a virtio-mem device cannot be resized while the domain runs');
    const xmlOut = virtioMemResizeXml(xml, step.sizes.map((v) => whole(v, 'size')), requested.map((v) => whole(v, 'requested')));
    await abortable(c.domainDefineXml(xmlOut), signal, op, vm.name);
    return;
  }
  for (let i = 0; i < devices.length; i++) {
    const k = whole(requested[i]!, 'requested');
    if (devices[i]!.requestedKiB === k) continue;
    const flags = step.world === 'live' ? DomainMemFlags.LIVE : DomainMemFlags.CONFIG;
    await abortable(c.domainUpdateDeviceFlags(d, virtioMemUpdateXml(xml, i, k), flags), signal, op, vm.name);
  }
}

/**
 * Writes the accepted steps into `f` (in place). Returns false when the
 * result is not known exactly without a read; the caller then drops the
 * cached facts.
 */
export function patchFacts(f: DomainFacts, steps: readonly Step[], type: HypervisorType): boolean {
  if (type !== 'qemu' && type !== 'test') return false;
  for (const step of steps) {
    // virtio-mem steps change device XML (and the guest moves `current`): read it again.
    if (step.requested || step.sizes || step.balloonOffset !== undefined) return false;
    const x = step.world === 'live' ? (isActive(f) ? f.xml : undefined) : configXml(f);
    if (!x) return false;
    const to = step.to;
    const k = to === 'unlimited' ? MEMORY_PARAM_UNLIMITED : Number(to / KIB);
    switch (step.field) {
      case 'maxMemory':
        if (step.world === 'live') return false; // libvirt refuses it for QEMU; nothing to know exactly
        x.memoryKiB = k;
        // Lowering <memory> below <currentMemory> lowers <currentMemory> too.
        if (x.currentMemoryKiB !== undefined && x.currentMemoryKiB > k) x.currentMemoryKiB = k;
        break;
      case 'memory':
        if (step.world === 'config') x.currentMemoryKiB = k;
        else if (type === 'test') {
          // The test driver's balloon is the target itself (virDomainGetInfo reports it at once);
          // QEMU's moves later and says so with a BALLOON_CHANGE event. Its target is in liveTargets.
          x.currentMemoryKiB = k;
          f.actualKiB = k;
        }
        break;
      case 'limit':
        x.memtune.hardLimitKiB = k;
        break;
      case 'reservation':
        x.memtune.minGuaranteeKiB = k;
        break;
    }
  }
  return true;
}
