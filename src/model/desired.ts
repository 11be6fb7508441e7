/** From a validated spec (strings) to the planner's DesiredMemory (exact bytes). */
import { parseQuantity } from '../api/quantity.ts';
import { UNLIMITED } from '../api/fields.ts';
import type { VMMSpec } from '../api/vmm.ts';
import type { DesiredMemory, VMRef } from './memory.ts';

export function desiredFromSpec(spec: VMMSpec): DesiredMemory {
  const maxMemory = parseQuantity(spec.maxMemory, 'spec.maxMemory');
  const desired: DesiredMemory = {
    maxMemory,
    // DESIGN §1: memory defaults to maxMemory.
    memory: spec.memory === undefined ? maxMemory : parseQuantity(spec.memory, 'spec.memory'),
  };
  if (spec.reservation !== undefined) desired.reservation = parseQuantity(spec.reservation, 'spec.reservation');
  if (spec.limit !== undefined) desired.limit = spec.limit === UNLIMITED ? 'unlimited' : parseQuantity(spec.limit, 'spec.limit');
  if (spec.allowUnsafeLimit) desired.allowUnsafeLimit = true;
  if (spec.allowUnsafeShrink) desired.allowUnsafeShrink = true;
  return desired;
}

export function vmRefFromSpec(spec: VMMSpec): VMRef {
  return spec.vm.uuid !== undefined ? { uuid: spec.vm.uuid } : { name: spec.vm.name as string };
}

export function describeVMRef(ref: VMRef): string {
  return ref.name !== undefined ? `VM "${ref.name}"` : `VM uuid ${ref.uuid}`;
}
