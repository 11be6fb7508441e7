// A small reader for the memory-related parts of libvirt domain XML:
// name, uuid, type, <memory>, <currentMemory>, <maxMemory slots>, <memtune>,
// <numa> cells, <memballoon model> and <memory model> devices (virtio-mem). Sizes are returned in KiB, converted
// with libvirt's unit rules (default KiB; k/K/KiB=1024, KB=1000, M/MiB, MB, ...),
// rounded up to a whole KiB as libvirt does.

import { XMLParser } from 'fast-xml-parser';

export interface DomainXmlInfo {
  type: string | undefined;
  /** The `id` attribute of a running domain's live XML. */
  id: number | undefined;
  name: string | undefined;
  uuid: string | undefined;
  /** `<memory>`: maximum memory at boot, KiB. */
  memoryKiB: number | undefined;
  /** `<currentMemory>`: balloon target, KiB (libvirt writes it = memory when absent). */
  currentMemoryKiB: number | undefined;
  /** `<maxMemory slots=N>`: hotplug ceiling, KiB. */
  maxMemory: { kib: number; slots: number | undefined } | undefined;
  /** `<memtune>` values, KiB. */
  memtune: { hardLimitKiB?: number; softLimitKiB?: number; swapHardLimitKiB?: number; minGuaranteeKiB?: number };
  /** `<cpu><numa><cell>` entries. */
  numaCells: { id: number | undefined; memoryKiB: number; cpus: string | undefined }[];
  /** `<devices><memballoon model=...>`; undefined when there is no element. */
  memballoonModel: string | undefined;
  /** `<devices><memory model=...>` hot-pluggable memory devices (virtio-mem, dimm, ...), in document order, KiB. */
  memoryDevices: MemoryDeviceInfo[];
}

export interface MemoryDeviceInfo {
  model: string;
  alias: string | undefined;
  /** `<target><node>` */
  node: number | undefined;
  sizeKiB: number;
  /** virtio-mem only */
  blockKiB: number | undefined;
  requestedKiB: number | undefined;
  /** virtio-mem, live XML only: what the guest has plugged. */
  currentKiB: number | undefined;
}

const UNITS: Record<string, number> = {
  b: 1, bytes: 1,
  kb: 1000, k: 1024, kib: 1024,
  mb: 1000 ** 2, m: 1024 ** 2, mib: 1024 ** 2,
  gb: 1000 ** 3, g: 1024 ** 3, gib: 1024 ** 3,
  tb: 1000 ** 4, t: 1024 ** 4, tib: 1024 ** 4,
  pb: 1000 ** 5, p: 1024 ** 5, pib: 1024 ** 5,
  eb: 1000 ** 6, e: 1024 ** 6, eib: 1024 ** 6,
};

/** Convert a libvirt scaled integer to KiB (rounded up). */
export function toKiB(value: string | number, unit: string | undefined, what = 'value'): number {
  const text = String(value).trim();
  if (!/^[0-9]+$/.test(text)) throw new Error(`domain XML: ${what} '${text}' is not a non-negative integer`);
  const u = (unit ?? 'KiB').trim();
  const factor = UNITS[u.toLowerCase()];
  // As libvirt's virScaleInteger: case-insensitive; "KB"/"kb" decimal, "k"/"KiB" binary.
  if (factor === undefined) throw new Error(`domain XML: unknown unit '${u}' for ${what}`);
  const bytes = BigInt(text) * BigInt(factor);
  const kib = (bytes + 1023n) / 1024n;
  if (kib > BigInt(Number.MAX_SAFE_INTEGER)) throw new Error(`domain XML: ${what} too large`);
  return Number(kib);
}

const parser = new XMLParser({
  ignoreAttributes: false,
  attributeNamePrefix: '@',
  parseTagValue: false,
  parseAttributeValue: false,
  trimValues: true,
  isArray: (name, jpath) => name === 'cell' || name === 'memballoon' || (name === 'memory' && jpath === 'domain.devices.memory'),
});

type Node = Record<string, unknown>;

function textOf(n: unknown): string | undefined {
  if (n === undefined || n === null) return undefined;
  if (typeof n === 'string' || typeof n === 'number') return String(n);
  if (typeof n === 'object' && '#text' in (n as Node)) return String((n as Node)['#text']);
  return undefined;
}

function attr(n: unknown, name: string): string | undefined {
  if (n && typeof n === 'object') {
    const v = (n as Node)[`@${name}`];
    return v === undefined ? undefined : String(v);
  }
  return undefined;
}

function scaled(n: unknown, what: string): number | undefined {
  const t = textOf(n);
  if (t === undefined) return undefined;
  return toKiB(t, attr(n, 'unit'), what);
}

/**
 * The largest domain XML parsed. libvirt's own string cap is 4 MiB (REMOTE_STRING_MAX); a real
 * domain's XML is a few KiB even with many devices, while 4 MiB of hostile XML costs ~300 MiB
 * of heap in the parser. The daemon a Hypervisor names may be the tenant's own.
 */
export const DOMAIN_XML_MAX_BYTES = 1024 * 1024;

export function parseDomainXml(xml: string): DomainXmlInfo {
  if (xml.length > DOMAIN_XML_MAX_BYTES) throw new Error(`domain XML of ${xml.length} characters exceeds vmmem's ${DOMAIN_XML_MAX_BYTES}-byte cap (a real domain's XML is a few KiB)`);
  let doc: Node;
  try {
    doc = parser.parse(xml) as Node;
  } catch (e) {
    throw new Error(`domain XML does not parse: ${(e as Error).message}`, { cause: e });
  }
  const d = doc.domain as Node | undefined;
  if (!d || typeof d !== 'object') throw new Error('domain XML has no <domain> root element');
  const mt = (d.memtune ?? {}) as Node;
  const memtune: DomainXmlInfo['memtune'] = {};
  const hard = scaled(mt.hard_limit, 'memtune/hard_limit');
  if (hard !== undefined) memtune.hardLimitKiB = hard;
  const soft = scaled(mt.soft_limit, 'memtune/soft_limit');
  if (soft !== undefined) memtune.softLimitKiB = soft;
  const swap = scaled(mt.swap_hard_limit, 'memtune/swap_hard_limit');
  if (swap !== undefined) memtune.swapHardLimitKiB = swap;
  const ming = scaled(mt.min_guarantee, 'memtune/min_guarantee');
  if (ming !== undefined) memtune.minGuaranteeKiB = ming;

  const cpu = (d.cpu ?? {}) as Node;
  const numa = (cpu.numa ?? {}) as Node;
  const cells = (numa.cell ?? []) as Node[];
  const numaCells = cells.map((c, i) => {
    const mem = attr(c, 'memory');
    if (mem === undefined) throw new Error(`domain XML: NUMA cell ${i} has no memory attribute`);
    const id = attr(c, 'id');
    return { id: id === undefined ? undefined : Number(id), memoryKiB: toKiB(mem, attr(c, 'unit'), `numa cell ${i} memory`), cpus: attr(c, 'cpus') };
  });

  const maxMemNode = d.maxMemory;
  let maxMemory: DomainXmlInfo['maxMemory'];
  if (maxMemNode !== undefined) {
    const slots = attr(maxMemNode, 'slots');
    maxMemory = { kib: scaled(maxMemNode, 'maxMemory')!, slots: slots === undefined ? undefined : Number(slots) };
  }
  const devices = (d.devices ?? {}) as Node;
  const balloons = (devices.memballoon ?? []) as Node[];
  const memoryDevices = ((devices.memory ?? []) as Node[]).map((m, i): MemoryDeviceInfo => {
    const t = (m.target ?? {}) as Node;
    const size = scaled(t.size, `memory device ${i} size`);
    if (size === undefined) throw new Error(`domain XML: memory device ${i} has no <target><size>`);
    const node = textOf(t.node);
    return {
      model: attr(m, 'model') ?? '',
      alias: attr(m.alias, 'name'),
      node: node === undefined ? undefined : Number(node),
      sizeKiB: size,
      blockKiB: scaled(t.block, `memory device ${i} block`),
      requestedKiB: scaled(t.requested, `memory device ${i} requested`),
      currentKiB: scaled(t.current, `memory device ${i} current`),
    };
  });
  const id = attr(d, 'id');
  return {
    type: attr(d, 'type'),
    id: id === undefined ? undefined : Number(id),
    name: textOf(d.name),
    uuid: textOf(d.uuid),
    memoryKiB: scaled(d.memory, 'memory'),
    currentMemoryKiB: scaled(d.currentMemory, 'currentMemory'),
    maxMemory,
    memtune,
    numaCells,
    memballoonModel: balloons.length > 0 ? attr(balloons[0], 'model') : undefined,
    memoryDevices,
  };
}

/**
 * The device XML of the `index`-th `<memory model='virtio-mem'>` of a domain XML with
 * `<requested>` set to `requestedKiB`, for virDomainUpdateDeviceFlags (what `virsh
 * update-memory-device` sends). `<current>` is output-only and dropped. The live XML's
 * `<alias>` is kept: libvirt finds the running device by it.
 */
export function virtioMemUpdateXml(domainXml: string, index: number, requestedKiB: number): string {
  const devices = /<devices>([\s\S]*)<\/devices>/.exec(domainXml)?.[1] ?? '';
  const all = [...devices.matchAll(/<memory\s+model=(['"])virtio-mem\1[\s\S]*?<\/memory>/g)].map((m) => m[0]);
  const dev = all[index];
  if (dev === undefined) throw new Error(`domain XML has no virtio-mem device #${index} (it has ${all.length})`);
  if (!/<requested\b[^>]*>[^<]*<\/requested>/.test(dev)) throw new Error(`virtio-mem device #${index} has no <requested> element`);
  return dev
    .replace(/\s*<current\b[^>]*>[^<]*<\/current>/, '')
    .replace(/<requested\b[^>]*>[^<]*<\/requested>/, `<requested unit='KiB'>${requestedKiB}</requested>`);
}

/**
 * A persistent domain XML with its virtio-mem devices' `<size>` and `<requested>` replaced (KiB,
 * in device order), `<memory>` set to the NUMA cells + Σ size as libvirt counts it, and
 * `<maxMemory>` raised to that when it was lower; for virDomainDefineXML (the config only: a
 * device's size cannot change while the domain runs).
 */
export function virtioMemResizeXml(domainXml: string, sizesKiB: readonly number[], requestedKiB: readonly number[]): string {
  const info = parseDomainXml(domainXml);
  const n = info.memoryDevices.filter((m) => m.model === 'virtio-mem').length;
  if (n !== sizesKiB.length || n !== requestedKiB.length) throw new Error(`domain XML has ${n} virtio-mem devices, ${sizesKiB.length} sizes given`);
  let i = 0;
  let xml = domainXml.replace(/<memory\s+model=(['"])virtio-mem\1[\s\S]*?<\/memory>/g, (dev) => {
    const k = i++;
    return dev
      .replace(/<size\b[^>]*>[^<]*<\/size>/, `<size unit='KiB'>${sizesKiB[k]}</size>`)
      .replace(/<requested\b[^>]*>[^<]*<\/requested>/, `<requested unit='KiB'>${requestedKiB[k]}</requested>`);
  });
  const others = info.memoryDevices.filter((m) => m.model !== 'virtio-mem').reduce((a, m) => a + m.sizeKiB, 0);
  const total = info.numaCells.reduce((a, c) => a + c.memoryKiB, 0) + sizesKiB.reduce((a, v) => a + v, 0) + others;
  xml = xml.replace(/<memory(\s+unit=(['"])[^'"]*\2)?\s*>[^<]*<\/memory>/, `<memory unit='KiB'>${total}</memory>`);
  if (info.maxMemory && info.maxMemory.kib < total) {
    xml = xml.replace(/<maxMemory\b([^>]*?)(\s+unit=(['"])[^'"]*\3)?([^>]*)>[^<]*<\/maxMemory>/, (_m, a: string, _u, _q, b: string) => `<maxMemory${a}${b} unit='KiB'>${total}</maxMemory>`);
  }
  return xml;
}
