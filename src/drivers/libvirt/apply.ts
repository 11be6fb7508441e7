// apply for the libvirt driver: one libvirt call per step, in order, never
// coalesced: maxMemory -> virDomainSetMemoryFlags(MEM_MAXIMUM | world),
// memory -> virDomainSetMemoryFlags(world), limit ->
// virDomainSetMemoryParameters hard_limit, reservation -> min_guarantee;
// world live = AFFECT_LIVE, config = AFFECT_CONFIG. Values must be whole KiB
// (the planner rounds): others are refused, a real libvirt call cannot carry them.
//
// patchFacts() then writes what libvirt accepted into the cached facts, so
// apply can return the VM's observation without reading it again — only where
// libvirt 9.0 stores exactly the value it was given (qemu and test; not Xen,
// whose live maxMemory and balloon behave differently).
import { DriverError } from '../driver.ts';
import type { VMHandle } from '../driver.ts';
import type { HypervisorType, Step } from '../../model/memory.ts';
import { DomainMemFlags, MEMORY_PARAM_UNLIMITED } from '../../libvirt/index.ts';
import type { LibvirtClient } from '../../libvirt/index.ts';
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
  return step.field === 'maxMemory' || step.field === 'memory' ? 'virDomainSetMemoryFlags' : 'virDomainSetMemoryParameters';
}

/** Runs `steps` in order; throws a DriverError carrying the steps applied before the refusal. */
export async function applySteps(c: LibvirtClient, vm: VMHandle, steps: readonly Step[], liveTargets: LiveTargets, signal?: AbortSignal): Promise<Step[]> {
  const applied: Step[] = [];
  const d = ref(vm);
  for (const step of steps) {
    const world = step.world === 'live' ? DomainMemFlags.LIVE : DomainMemFlags.CONFIG;
    const op = opOf(step);
    try {
      checkAborted(signal, op, vm.name);
      switch (step.field) {
        case 'maxMemory':
          await abortable(c.domainSetMemoryFlags(d, kib(op, vm.name, step), DomainMemFlags.MAXIMUM | world), signal, op, vm.name);
          break;
        case 'memory': {
          const k = kib(op, vm.name, step);
          await abortable(c.domainSetMemoryFlags(d, k, world), signal, op, vm.name);
          if (step.world === 'live') {
            // Remember the target for this instance of the domain (QEMU reports only the actual size).
            const id = (await c.lookupDomainByUuid(vm.uuid)).id;
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
    applied.push(step);
  }
  return applied;
}

/**
 * Writes the accepted steps into `f` (in place). Returns false when the
 * result is not known exactly without a read; the caller then drops the
 * cached facts.
 */
export function patchFacts(f: DomainFacts, steps: readonly Step[], type: HypervisorType): boolean {
  if (type !== 'qemu' && type !== 'test') return false;
  for (const step of steps) {
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
