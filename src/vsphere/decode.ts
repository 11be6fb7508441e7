// Response decoders: vim25 data objects out of parsed XML. Every number and enum is checked
// (a hostile or broken server gets a VSphereProtocolError naming the field, never a NaN).
import { VSphereFault, VSphereProtocolError } from './errors.ts';
import { decodeLocalizedFault, parseBool, parseIntStrict, parseMoRef } from './soap.ts';
import type {
  AboutInfo, MemoryAllocationInfo, ObjectContent, ObjectUpdate, PowerState, PropertyChange, ServiceContent, SharesLevel,
  UserSession, VmMemoryInfo,
} from './types.ts';
import type { XmlNode } from './xml.ts';
import { child, childrenNamed, childText } from './xml.ts';

function parseAbout(n: XmlNode | undefined): AboutInfo {
  const t = (k: string) => childText(n, k) ?? '';
  return {
    name: t('name'),
    fullName: t('fullName'),
    vendor: t('vendor'),
    version: t('version'),
    build: t('build'),
    apiType: t('apiType'),
    apiVersion: t('apiVersion'),
    instanceUuid: childText(n, 'instanceUuid'),
    osType: t('osType'),
    productLineId: t('productLineId'),
  };
}

/** RetrieveServiceContent's returnval. */
export function parseServiceContent(rv: XmlNode | undefined, method: string): ServiceContent {
  if (!rv) throw new VSphereProtocolError(`${method}: no returnval`, method);
  const vm = child(rv, 'viewManager');
  return {
    about: parseAbout(child(rv, 'about')),
    rootFolder: parseMoRef(child(rv, 'rootFolder'), method),
    propertyCollector: parseMoRef(child(rv, 'propertyCollector'), method),
    viewManager: vm ? parseMoRef(vm, method) : undefined,
    sessionManager: parseMoRef(child(rv, 'sessionManager'), method),
    searchIndex: parseMoRef(child(rv, 'searchIndex'), method),
  };
}

/** Login's returnval (a UserSession). */
export function parseUserSession(rv: XmlNode | undefined, method: string): UserSession {
  const key = childText(rv, 'key');
  if (!rv || !key) throw new VSphereProtocolError(`${method}: no session in response`, method);
  return {
    key,
    userName: childText(rv, 'userName') ?? '',
    fullName: childText(rv, 'fullName') ?? '',
    loginTime: childText(rv, 'loginTime') ?? '',
  };
}

export function parseMemoryAllocation(n: XmlNode, method: string): MemoryAllocationInfo {
  const out: MemoryAllocationInfo = {};
  const r = childText(n, 'reservation');
  if (r !== undefined) out.reservation = parseIntStrict(r, 'memoryAllocation.reservation', method);
  const l = childText(n, 'limit');
  if (l !== undefined) out.limit = parseIntStrict(l, 'memoryAllocation.limit', method);
  const e = childText(n, 'expandableReservation');
  if (e !== undefined) out.expandableReservation = parseBool(e, 'memoryAllocation.expandableReservation', method);
  const o = childText(n, 'overheadLimit');
  if (o !== undefined) out.overheadLimit = parseIntStrict(o, 'memoryAllocation.overheadLimit', method);
  const s = child(n, 'shares');
  if (s) {
    const level = childText(s, 'level') ?? 'normal';
    if (!['low', 'normal', 'high', 'custom'].includes(level)) {
      throw new VSphereProtocolError(`${method}: unknown shares level ${JSON.stringify(level)}`, method);
    }
    out.shares = { level: level as SharesLevel, shares: parseIntStrict(childText(s, 'shares') ?? '0', 'shares', method) };
  }
  return out;
}

function parseChange(cs: XmlNode, method: string): PropertyChange {
  const op = childText(cs, 'op') ?? 'assign';
  if (op !== 'add' && op !== 'remove' && op !== 'assign' && op !== 'indirectRemove') {
    throw new VSphereProtocolError(`${method}: unknown change op ${JSON.stringify(op)}`, method);
  }
  return { name: childText(cs, 'name') ?? '', op, val: child(cs, 'val') };
}

/** WaitForUpdatesEx's UpdateSet → object updates (every filter's, in order). */
export function parseUpdateSet(rv: XmlNode, method: string): ObjectUpdate[] {
  const out: ObjectUpdate[] = [];
  for (const fs of childrenNamed(rv, 'filterSet')) {
    for (const os of childrenNamed(fs, 'objectSet')) {
      const kind = childText(os, 'kind');
      if (kind !== 'enter' && kind !== 'modify' && kind !== 'leave') {
        throw new VSphereProtocolError(`${method}: unknown update kind ${JSON.stringify(kind)}`, method);
      }
      const changes = childrenNamed(os, 'changeSet').map((cs) => parseChange(cs, method));
      out.push({ obj: parseMoRef(child(os, 'obj'), method), kind, changes });
    }
  }
  return out;
}

function parseObjectContent(o: XmlNode, method: string): ObjectContent {
  const props = new Map<string, XmlNode>();
  for (const p of childrenNamed(o, 'propSet')) {
    const name = childText(p, 'name');
    const val = child(p, 'val');
    if (name !== undefined && val) props.set(name, val);
  }
  const missing = new Map<string, VSphereFault>();
  for (const m of childrenNamed(o, 'missingSet')) {
    const path = childText(m, 'path') ?? '';
    const f = child(m, 'fault');
    const fault = f ? decodeLocalizedFault(method, f) : new VSphereFault({ method, faultName: 'MethodFault', faultString: '' });
    if (fault.faultName === 'NotAuthenticated') throw fault; // triggers re-login
    missing.set(path, fault);
  }
  return { obj: parseMoRef(child(o, 'obj'), method), props, missing };
}

/** A RetrieveResult (RetrievePropertiesEx / ContinueRetrievePropertiesEx): one page and its continuation token. */
export function parseRetrieveResult(method: string, rv: XmlNode | undefined): { objects: ObjectContent[]; token: string | undefined } {
  if (!rv) return { objects: [], token: undefined };
  const objects = childrenNamed(rv, 'objects').map((o) => parseObjectContent(o, method));
  return { objects, token: childText(rv, 'token') };
}

// A VM's memory properties (VM_MEMORY_PROPERTIES) ------------------------------------------------

/** Reads typed values out of one VM's property map, naming the VM and property in every error. */
class VmProps {
  readonly #props: ReadonlyMap<string, XmlNode>;
  readonly #vm: string;
  readonly #method: string;
  constructor(props: ReadonlyMap<string, XmlNode>, vm: string, method: string) {
    this.#props = props;
    this.#vm = vm;
    this.#method = method;
  }
  node(k: string): XmlNode | undefined {
    return this.#props.get(k);
  }
  text(k: string): string | undefined {
    return this.#props.get(k)?.text;
  }
  int(k: string): number | undefined {
    const t = this.text(k);
    return t === undefined ? undefined : parseIntStrict(t, k, this.#method);
  }
  bool(k: string, dflt: boolean): boolean {
    const t = this.text(k);
    return t === undefined ? dflt : parseBool(t, k, this.#method);
  }
  requiredInt(k: string): number {
    const n = this.int(k);
    if (n === undefined) throw new VSphereProtocolError(`${this.#method}: VM ${this.#vm} has no ${k}`, this.#method);
    return n;
  }
  powerState(): PowerState {
    const ps = this.text('runtime.powerState');
    if (ps !== 'poweredOn' && ps !== 'poweredOff' && ps !== 'suspended') {
      throw new VSphereProtocolError(`${this.#method}: VM ${this.#vm}: unknown runtime.powerState ${JSON.stringify(ps)}`, this.#method);
    }
    return ps;
  }
  quickStat(qs: XmlNode | undefined, k: string): number {
    const t = childText(qs, k);
    return t === undefined ? 0 : parseIntStrict(t, `summary.quickStats.${k}`, this.#method);
  }
}

/** One VM's memory view out of its VM_MEMORY_PROPERTIES (as retrieved, or as kept current by a watch). */
export function parseVmMemory(obj: ObjectContent['obj'], props: ReadonlyMap<string, XmlNode>, method: string): VmMemoryInfo {
  const p = new VmProps(props, obj.value, method);
  const alloc = p.node('config.memoryAllocation');
  const qs = p.node('summary.quickStats');
  const host = p.node('runtime.host');
  return {
    ref: obj,
    name: p.text('name') ?? '',
    uuid: p.text('config.uuid'),
    instanceUuid: p.text('config.instanceUuid'),
    memoryMB: p.requiredInt('config.hardware.memoryMB'),
    memoryAllocation: alloc ? parseMemoryAllocation(alloc, method) : {},
    memoryHotAddEnabled: p.bool('config.memoryHotAddEnabled', false),
    hotPlugMemoryLimit: p.int('config.hotPlugMemoryLimit'),
    hotPlugMemoryIncrementSize: p.int('config.hotPlugMemoryIncrementSize'),
    powerState: p.powerState(),
    host: host ? parseMoRef(host, method) : undefined,
    quickStats: {
      guestMemoryUsage: p.quickStat(qs, 'guestMemoryUsage'),
      hostMemoryUsage: p.quickStat(qs, 'hostMemoryUsage'),
      balloonedMemory: p.quickStat(qs, 'balloonedMemory'),
    },
  };
}
