// Spec builders: the vim25 data objects requests carry (VirtualMachineConfigSpec, PropertyFilterSpec,
// ObjectSpec with a traversal), written in schema order because vSphere rejects misordered elements.
import type { MoRef } from './soap.ts';
import { typed } from './soap.ts';
import type { MemoryAllocationSpec, ReconfigSpec, SharesInfo } from './types.ts';
import type { Raw } from './xml.ts';
import { el, moRef, opt } from './xml.ts';

export function sharesXml(name: string, s: SharesInfo): Raw {
  if (!Number.isSafeInteger(s.shares) || s.shares < 0) throw new RangeError(`shares must be a non-negative integer, got ${s.shares}`);
  // SharesInfo: shares, level (schema order)
  return el(name, null, el('shares', null, s.shares), el('level', null, s.level));
}

/** ResourceAllocationInfo in schema order: reservation, expandableReservation, limit, shares. */
export function memoryAllocationXml(a: MemoryAllocationSpec): Raw {
  for (const [k, v] of [['reservation', a.reservation], ['limit', a.limit]] as const) {
    if (!Number.isSafeInteger(v)) throw new RangeError(`memoryAllocation.${k} must be an integer (MiB), got ${v}`);
  }
  return el(
    'memoryAllocation',
    null,
    el('reservation', null, a.reservation),
    opt('expandableReservation', a.expandableReservation),
    el('limit', null, a.limit),
    sharesXml('shares', a.shares),
  );
}

/** VirtualMachineConfigSpec with only the memory fields, in schema order (memoryMB before memoryAllocation). */
export function configSpecXml(spec: ReconfigSpec): Raw {
  if (spec.memoryMB !== undefined && (!Number.isSafeInteger(spec.memoryMB) || spec.memoryMB <= 0)) {
    throw new RangeError(`memoryMB must be a positive integer (MiB), got ${spec.memoryMB}`);
  }
  return el(
    'spec',
    null,
    opt('memoryMB', spec.memoryMB),
    spec.memoryAllocation ? memoryAllocationXml(spec.memoryAllocation) : undefined,
  );
}

export function propertyFilterSpecXml(
  type: string,
  paths: readonly string[],
  objects: Raw[],
  elementName = 'specSet',
): Raw {
  return el(
    elementName,
    null,
    el('propSet', null, el('type', null, type), el('all', null, false), paths.map((p) => el('pathSet', null, p))),
    objects,
  );
}

export function objectSpecXml(obj: MoRef): Raw {
  return el('objectSet', null, moRef('obj', obj), el('skip', null, false));
}

export function containerViewObjectSpecXml(view: MoRef): Raw {
  return el(
    'objectSet',
    null,
    moRef('obj', view),
    el('skip', null, true),
    typed('selectSet', 'TraversalSpec', el('name', null, 'traverseView'), el('type', null, 'ContainerView'), el('path', null, 'view'), el('skip', null, false)),
  );
}

/**
 * An entity name as vCenter stores it: `%` (unless it already starts an escape `%xx`), `/` and `\`
 * escaped as `%25`, `%2f`, `%5c` (vim25 ManagedEntity.name).
 */
export function escapeEntityName(name: string): string {
  return name.replace(/%(?![0-9a-fA-F]{2})|\/|\\/g, (c) => (c === '%' ? '%25' : c === '/' ? '%2f' : '%5c'));
}
