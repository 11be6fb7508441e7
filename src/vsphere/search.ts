// Finding VMs: SearchIndex (by uuid, by inventory path), by name over a ContainerView, and by
// managed object id. A selector resolves to exactly one VM or a VSphereNotFoundError saying
// what was looked for (and, for a name shared by several VMs, which ones).
import { VSphereFault, VSphereNotFoundError } from './errors.ts';
import { listObjects, retrieveProperties } from './properties.ts';
import type { Session } from './session.ts';
import type { MoRef } from './soap.ts';
import { parseMoRef } from './soap.ts';
import { escapeEntityName } from './specs.ts';
import type { VmSelector } from './types.ts';
import type { XmlNode } from './xml.ts';
import { child, el, moRef } from './xml.ts';

function optionalMoRef(res: XmlNode, method: string): MoRef | undefined {
  const rv = child(res, 'returnval');
  return rv ? parseMoRef(rv, method) : undefined;
}

/** SearchIndex.FindByUuid for VMs: BIOS uuid (`config.uuid`) or, with instanceUuid, `config.instanceUuid`. */
export async function findVmByUuid(
  s: Session,
  uuid: string,
  opts: { instanceUuid?: boolean; datacenter?: MoRef } = {},
): Promise<MoRef | undefined> {
  const method = 'FindByUuid';
  const params = [
    opts.datacenter ? moRef('datacenter', opts.datacenter) : undefined,
    el('uuid', null, uuid),
    el('vmSearch', null, true),
    el('instanceUuid', null, opts.instanceUuid === true),
  ];
  return await s.call(method, (await s.content()).searchIndex, params, (res) => optionalMoRef(res, method));
}

/** SearchIndex.FindByInventoryPath, e.g. `DC0/vm/web-01`. Returns any managed entity found. */
export async function findByInventoryPath(s: Session, path: string): Promise<MoRef | undefined> {
  const method = 'FindByInventoryPath';
  return await s.call(method, (await s.content()).searchIndex, [el('inventoryPath', null, path)], (res) => optionalMoRef(res, method));
}

/**
 * VMs whose name is exactly `name` (names are unique per folder only, so there may be several).
 * vCenter reports `/`, `\` and `%` in entity names escaped (`%2f`, `%5c`, `%25`): both the
 * name as given and its escaped form match.
 */
export async function findVmsByName(s: Session, pageSize: number, name: string): Promise<MoRef[]> {
  const escaped = escapeEntityName(name);
  const all = await listObjects(s, pageSize, 'VirtualMachine', ['name']);
  return all
    .filter((o) => {
      const n = o.props.get('name')?.text;
      return n === name || n === escaped;
    })
    .map((o) => o.obj);
}

async function lookupByName(s: Session, pageSize: number, name: string): Promise<MoRef | undefined> {
  const refs = await findVmsByName(s, pageSize, name);
  if (refs.length > 1) {
    throw new VSphereNotFoundError(
      `${refs.length} VMs are named ${JSON.stringify(name)} (${refs.map((r) => r.value).join(', ')}): use a uuid`,
      'lookupVm',
      true,
    );
  }
  return refs[0];
}

async function lookupByPath(s: Session, path: string, what: string): Promise<MoRef | undefined> {
  const ref = await findByInventoryPath(s, path);
  if (ref && ref.type !== 'VirtualMachine') {
    throw new VSphereNotFoundError(`${what} is a ${ref.type}, not a VirtualMachine`, 'lookupVm');
  }
  return ref;
}

/** A VirtualMachine moref if the server knows it (ManagedObjectNotFound → undefined). */
async function lookupByMoref(s: Session, pageSize: number, value: string): Promise<MoRef | undefined> {
  const ref = { type: 'VirtualMachine', value };
  try {
    await retrieveProperties(s, pageSize, [ref], ['name']);
    return ref;
  } catch (e) {
    if (e instanceof VSphereFault && e.faultName === 'ManagedObjectNotFound') return undefined;
    throw e;
  }
}

function describe(sel: VmSelector): string {
  if ('name' in sel) return `name ${JSON.stringify(sel.name)}`;
  if ('uuid' in sel) return `BIOS uuid ${sel.uuid}`;
  if ('instanceUuid' in sel) return `instance uuid ${sel.instanceUuid}`;
  if ('inventoryPath' in sel) return `inventory path ${JSON.stringify(sel.inventoryPath)}`;
  return `managed object ${sel.moref}`;
}

/** Resolves a selector to exactly one VM, or throws VSphereNotFoundError naming what was looked for. */
export async function lookupVm(s: Session, pageSize: number, sel: VmSelector): Promise<MoRef> {
  const what = describe(sel);
  let ref: MoRef | undefined;
  if ('name' in sel) ref = await lookupByName(s, pageSize, sel.name);
  else if ('uuid' in sel) ref = await findVmByUuid(s, sel.uuid);
  else if ('instanceUuid' in sel) ref = await findVmByUuid(s, sel.instanceUuid, { instanceUuid: true });
  else if ('inventoryPath' in sel) ref = await lookupByPath(s, sel.inventoryPath, what);
  else ref = await lookupByMoref(s, pageSize, sel.moref);
  if (!ref) throw new VSphereNotFoundError(`no VM with ${what} on ${s.url}`, 'lookupVm');
  return ref;
}
