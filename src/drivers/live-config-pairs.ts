/**
 * Which steps one libvirt call may carry (issue #13: hypervisor calls per change).
 *
 * The planner emits a live step and the matching config step for most changes
 * (`live memory 6Gi`, `config memory 6Gi`). QEMU's libvirt driver takes
 * VIR_DOMAIN_AFFECT_LIVE | VIR_DOMAIN_AFFECT_CONFIG in one virDomainSetMemoryFlags
 * or virDomainSetMemoryParameters call and checks the value against both worlds
 * before it changes either (test/peer/libvirt/driver-qemu.test.ts shows both on a
 * real libvirtd 9.0 + QEMU), so such a pair is one call instead of two.
 *
 * Only a pair that is adjacent in the plan, of the same field and the same value,
 * is joined: the planner's order (DESIGN §3) is kept, and the state between the
 * two steps — one world changed, the other not — is one the planner already
 * accepted either way. Where the profile says so (`liveAndConfigInOneCall`: QEMU
 * and Xen; not the test driver, which answers "Flags 'VIR_DOMAIN_AFFECT_LIVE' and
 * 'VIR_DOMAIN_AFFECT_CONFIG' are mutually exclusive"), and never for maxMemory
 * (QEMU refuses it live; Xen's live cap is a different call), virtio-mem steps
 * (libvirt 9.0 fails LIVE|CONFIG for memory devices) or ESX (no libvirt flags:
 * its driver has its own one-call rules).
 */
import type { HypervisorType, Step } from '../model/memory.ts';
import { profileFor } from '../model/profiles.ts';

/** One hypervisor call: a single step, or a live step and its config twin. */
export type CallGroup = readonly [Step] | readonly [Step, Step];

const JOINABLE_FIELDS: ReadonlySet<Step['field']> = new Set(['memory', 'limit']);

function plain(step: Step): boolean {
  return JOINABLE_FIELDS.has(step.field) && !step.requested && !step.sizes && step.balloonOffset === undefined;
}

/** True when `a` then `b` set the same field to the same value in the two worlds. */
export function twins(a: Step, b: Step): boolean {
  return plain(a) && plain(b) && a.field === b.field && a.world !== b.world && a.to === b.to;
}

/** `steps` in plan order, each group one call; pairs only where `type` takes both worlds at once. */
export function callGroups(steps: readonly Step[], type: HypervisorType): CallGroup[] {
  const joins = type !== 'esx' && profileFor(type).liveAndConfigInOneCall;
  const out: CallGroup[] = [];
  for (let i = 0; i < steps.length; i++) {
    const a = steps[i]!;
    const b = steps[i + 1];
    if (joins && b && twins(a, b)) {
      out.push([a, b]);
      i++;
    } else {
      out.push([a]);
    }
  }
  return out;
}
