/**
 * The sim inventory: the YAML file (or in-memory object) that describes a
 * simulated hypervisor host and its VMs. See docs/sim.md for the format.
 *
 * Validation is total and happens before anything is built: an invalid
 * inventory throws SimInventoryError naming the source, the VM and the field,
 * and no simulated host changes.
 */
import { createHash } from 'node:crypto';
import { closeSync, constants as fsConstants, fstatSync, openSync, readSync } from 'node:fs';
import { parseDuration } from '../../api/duration.ts';
import { parseQuantity } from '../../api/quantity.ts';
import { closest } from '../../util/closest.ts';
import { parseYamlDocuments, type YamlPath } from '../../util/yaml.ts';
import { canonicalUuid } from '../../api/uuid.ts';
import { HYPERVISOR_TYPES } from '../../model/memory.ts';
import type { HypervisorType, Limit, PowerState } from '../../model/memory.ts';

export type BalloonMode = 'responsive' | 'unresponsive' | 'none';

const KIB = 1024n;
const MIB = 1024n * 1024n;
const ESX_MEMORY_MB_STEP = 4n * MIB;

/** Memory values of one world, exact bytes. */
export interface SimWorld {
  maxMemory: bigint;
  memory: bigint;
  reservation?: bigint;
  limit?: Limit;
}

/** One VM after validation. ESX VMs keep their single configuration in `config`. */
export interface SimVMState {
  name: string;
  uuid: string;
  type: HypervisorType;
  powerState: PowerState;
  /** Set when the VM last stopped by crashing (the OOM kill), cleared when it starts. */
  stopReason?: 'Crashed';
  persistent: boolean;
  numa: boolean;
  /** Present while the VM runs (libvirt types). ESX: derived from config. */
  live?: SimWorld;
  /** Present for persistent VMs (always for ESX). */
  config?: SimWorld;
  balloon: BalloonMode;
  balloonDelayMs: number;
  /** What the guest holds; libvirt types while running. */
  actual?: bigint;
  hotAdd?: { enabled: boolean; limit?: bigint; increment?: bigint };
  /** What the guest reports using (issue #15: libvirt memory stats / vSphere quickStats in the sim). */
  guestUsed?: bigint;
  /**
   * QEMU virtio-mem devices (issue #14). With them the worlds' `maxMemory` is the boot memory
   * (the NUMA cell) and `memory` the balloon target within it, as libvirt's balloon sees them.
   */
  virtioMem?: SimVirtioMem;
}

/** One virtio-mem device of one world, bytes. `current` only live (what the guest plugged). */
export interface SimMemDevice {
  size: bigint;
  block: bigint;
  requested: bigint;
  current?: bigint;
}

export interface SimVirtioMem {
  /** 'responsive': the guest plugs what is requested after plugDelayMs; 'none': no guest driver, current stays. */
  guest: 'responsive' | 'none';
  plugDelayMs: number;
  live?: SimMemDevice[];
  config?: SimMemDevice[];
}

export interface SimLatency {
  meanMs: number;
  jitterMs: number;
}

export interface SimFaults {
  /** Probability (0..1) that a call fails with Unreachable before it takes effect. */
  errorRate: number;
  /** Each connection dies (Disconnected) after this many calls. */
  disconnectAfterCalls?: number;
  seed: number;
}

export interface SimInventory {
  /** What identify() reports; defaults to the first VM's type, else 'qemu'. */
  type?: HypervisorType;
  hostMemory: bigint;
  latency: SimLatency;
  faults: SimFaults;
  /** QEMU process overhead above guest RAM: a live hard_limit below maxMemory + this OOM-kills the domain. */
  qemuOverhead: bigint;
  vms: SimVMState[];
}

export class SimInventoryError extends Error {
  readonly source: string;
  readonly where: string;
  readonly reason: string;
  constructor(source: string, where: string, reason: string) {
    super(`sim inventory ${source}: ${where}: ${reason}`);
    this.name = 'SimInventoryError';
    this.source = source;
    this.where = where;
    this.reason = reason;
  }
}

const POWER: readonly PowerState[] = ['Running', 'ShutOff', 'Paused'];
const BALLOON: readonly BalloonMode[] = ['responsive', 'unresponsive', 'none'];
const TOP_KEYS = new Set(['type', 'hostMemory', 'latency', 'faults', 'qemuOverhead', 'vms']);
const FAULT_KEYS = ['errorRate', 'disconnectAfterCalls', 'seed'];
const VM_KEYS = new Set([
  'name', 'uuid', 'type', 'powerState', 'maxMemory', 'memory', 'configMaxMemory', 'configMemory',
  'reservation', 'limit', 'balloon', 'balloonDelay', 'actual', 'memoryHotAddEnabled', 'hotPlugMemoryLimit',
  'hotPlugMemoryIncrementSize', 'transient', 'numa', 'virtioMem', 'guestUsed',
]);

/** A stable UUID derived from the VM name, so a reloaded inventory keeps its UUIDs. */
export function uuidFromName(name: string): string {
  const h = createHash('sha1').update(`vmmem-sim:${name}`).digest('hex');
  const variant = ((parseInt(h.slice(16, 18), 16) & 0x3f) | 0x80).toString(16);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-5${h.slice(13, 16)}-${variant}${h.slice(18, 20)}-${h.slice(20, 32)}`;
}

/**
 * The largest inventory file read (bytes). 10,000 VMs take about 2 MiB; a bigger file is a
 * mistake or an attack (a Hypervisor naming a huge log file) and would cost the operator
 * its heap in the YAML parser.
 */
export const SIM_INVENTORY_MAX_BYTES = 16 * 1024 * 1024;

/**
 * Reads and validates an inventory file. Only a regular file under the size cap is read:
 * /dev/zero, a FIFO (opened non-blocking, so it cannot hang the operator) or a directory is
 * refused at once. Errors name the file and the line, never its contents (a tenant could
 * otherwise point a sim: URI at a file and read it back through status).
 */
export function loadInventoryFile(path: string): SimInventory {
  return parseInventoryText(readBoundedRegularFile(path), path);
}

function readBoundedRegularFile(path: string): string {
  let fd: number;
  try {
    fd = openSync(path, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK | fsConstants.O_NOCTTY);
  } catch (err) {
    throw new SimInventoryError(path, 'file', `cannot be read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new SimInventoryError(path, 'file', 'is not a regular file (a device, FIFO, socket or directory is never read as an inventory)');
    if (st.size > SIM_INVENTORY_MAX_BYTES) throw new SimInventoryError(path, 'file', `is ${st.size} bytes, over the ${SIM_INVENTORY_MAX_BYTES}-byte cap for a sim inventory`);
    // Read at most cap+1 bytes: a file growing after fstat is still bounded.
    const buf = Buffer.alloc(Math.min(st.size, SIM_INVENTORY_MAX_BYTES) + 1);
    let n = 0;
    for (let r = 1; r > 0 && n < buf.length; n += r) r = readSync(fd, buf, n, buf.length - n, null);
    if (n > SIM_INVENTORY_MAX_BYTES) throw new SimInventoryError(path, 'file', `is over the ${SIM_INVENTORY_MAX_BYTES}-byte cap for a sim inventory`);
    return buf.subarray(0, n).toString('utf8');
  } catch (err) {
    if (err instanceof SimInventoryError) throw err;
    throw new SimInventoryError(path, 'file', `cannot be read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  } finally {
    closeSync(fd);
  }
}

/**
 * A key or value from the file, shown only when it is a near miss of a known one (a typo such as
 * "vm" for "vms"). Anything else may be the content of a file that is no inventory at all (a
 * tenant's sim: URI naming the operator's token file): an identifier-looking secret must not
 * come back through status.
 */
function shown(v: unknown, known: Iterable<string>): string {
  if (typeof v !== 'string' || v.length > 24) return '(not shown)';
  return closest(v, [...known]) !== undefined ? JSON.stringify(v) : '(not shown)';
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function quantityOf(v: unknown, source: string, where: string, field: string): bigint {
  // Plain YAML integers are accepted as bytes (parseQuantity itself insists on strings).
  const value = typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 ? String(v) : v;
  try {
    return parseQuantity(value, field);
  } catch (err) {
    throw new SimInventoryError(source, where, (err as Error).message);
  }
}

function durationMs(v: unknown, source: string, where: string, field: string): number {
  if (typeof v === 'number' && Number.isFinite(v) && v >= 0) return v;
  if (typeof v !== 'string') throw new SimInventoryError(source, where, `${field}: ${JSON.stringify(v)} is not a duration such as "5ms"`);
  try {
    return parseDuration(v, field);
  } catch (err) {
    throw new SimInventoryError(source, where, (err as Error).message);
  }
}

function limitOf(v: unknown, source: string, where: string, field: string): Limit {
  if (typeof v === 'string' && v.toLowerCase() === 'unlimited') return 'unlimited';
  return quantityOf(v, source, where, field);
}

/** Validates an inventory document (the parsed YAML, or an object written in a test). */
export function parseInventory(doc: unknown, source = '<memory>'): SimInventory {
  if (doc === undefined || doc === null) doc = {};
  if (!isRecord(doc)) throw new SimInventoryError(source, 'top level', 'must be a mapping with a "vms" list');
  for (const key of Object.keys(doc)) {
    if (!TOP_KEYS.has(key)) throw new SimInventoryError(source, 'top level', `unknown field ${shown(key, TOP_KEYS)} (known: ${[...TOP_KEYS].join(', ')})`);
  }
  let type: HypervisorType | undefined;
  if (doc.type !== undefined) {
    if (!HYPERVISOR_TYPES.includes(doc.type as HypervisorType)) throw new SimInventoryError(source, 'type', `${shown(doc.type, HYPERVISOR_TYPES)} is not one of ${HYPERVISOR_TYPES.join(', ')}`);
    type = doc.type as HypervisorType;
  }
  const hostMemory = doc.hostMemory === undefined ? 256n * 1024n * MIB : quantityOf(doc.hostMemory, source, 'hostMemory', 'hostMemory');
  if (hostMemory <= 0n) throw new SimInventoryError(source, 'hostMemory', 'must be > 0');
  const qemuOverhead = doc.qemuOverhead === undefined ? 256n * MIB : quantityOf(doc.qemuOverhead, source, 'qemuOverhead', 'qemuOverhead');

  const latency: SimLatency = { meanMs: 0, jitterMs: 0 };
  if (doc.latency !== undefined) {
    if (isRecord(doc.latency)) {
      for (const k of Object.keys(doc.latency)) {
        if (k !== 'mean' && k !== 'jitter') throw new SimInventoryError(source, 'latency', `unknown field ${shown(k, ['mean', 'jitter'])} (known: mean, jitter)`);
      }
      latency.meanMs = durationMs(doc.latency.mean ?? 0, source, 'latency', 'latency.mean');
      latency.jitterMs = durationMs(doc.latency.jitter ?? 0, source, 'latency', 'latency.jitter');
    } else {
      latency.meanMs = durationMs(doc.latency, source, 'latency', 'latency');
    }
  }

  const faults: SimFaults = { errorRate: 0, seed: 1 };
  if (doc.faults !== undefined) {
    if (!isRecord(doc.faults)) throw new SimInventoryError(source, 'faults', 'must be a mapping {errorRate, disconnectAfterCalls, seed}');
    for (const k of Object.keys(doc.faults)) {
      if (!FAULT_KEYS.includes(k)) throw new SimInventoryError(source, 'faults', `unknown field ${shown(k, FAULT_KEYS)} (known: ${FAULT_KEYS.join(', ')})`);
    }
    const { errorRate, disconnectAfterCalls, seed } = doc.faults;
    if (errorRate !== undefined) {
      if (typeof errorRate !== 'number' || !(errorRate >= 0 && errorRate <= 1)) throw new SimInventoryError(source, 'faults.errorRate', 'must be a number in 0..1');
      faults.errorRate = errorRate;
    }
    if (disconnectAfterCalls !== undefined) {
      if (!Number.isSafeInteger(disconnectAfterCalls) || (disconnectAfterCalls as number) < 1) throw new SimInventoryError(source, 'faults.disconnectAfterCalls', 'must be an integer >= 1');
      faults.disconnectAfterCalls = disconnectAfterCalls as number;
    }
    if (seed !== undefined) {
      if (!Number.isSafeInteger(seed)) throw new SimInventoryError(source, 'faults.seed', 'must be an integer');
      faults.seed = seed as number;
    }
  }

  const rawVMs = doc.vms ?? [];
  if (!Array.isArray(rawVMs)) throw new SimInventoryError(source, 'vms', 'must be a list');
  const vms: SimVMState[] = [];
  const names = new Set<string>();
  const uuids = new Set<string>();
  rawVMs.forEach((raw, i) => {
    const vm = parseVM(raw, source, `vms[${i}]`);
    if (names.has(vm.name)) throw new SimInventoryError(source, `vms[${i}] (${vm.name})`, 'duplicate name');
    if (uuids.has(vm.uuid)) throw new SimInventoryError(source, `vms[${i}] (${vm.name})`, `duplicate uuid ${vm.uuid}`);
    names.add(vm.name);
    uuids.add(vm.uuid);
    vms.push(vm);
  });
  return { ...(type ? { type } : {}), hostMemory, latency, faults, qemuOverhead, vms };
}

/** One raw VM entry with the helpers every check uses: where it is, and how to fail there. */
interface VmInput {
  raw: Record<string, unknown>;
  source: string;
  name: string;
  /** "vms[2] (web)": the entry and its name, the prefix of every error. */
  where: string;
  fail: (field: string, reason: string) => never;
  /** An optional boolean field, false when absent. */
  bool: (field: string) => boolean;
  /** An optional quantity field in bytes. */
  q: (field: string) => bigint | undefined;
}

/** What every VM has, whichever hypervisor type. */
interface VmIdentity {
  name: string;
  uuid: string;
  type: HypervisorType;
  powerState: PowerState;
  transient: boolean;
  numa: boolean;
  balloon: BalloonMode;
  balloonDelayMs: number;
}

/** The entry's memory fields as given, bytes; each type's rules are checked after. */
interface VmMemory {
  maxMemory: bigint;
  memory: bigint;
  configMaxMemory?: bigint;
  configMemory?: bigint;
  reservation?: bigint;
  limit?: Limit;
  actual?: bigint;
  guest: { guestUsed?: bigint };
  /** Fails when `v` is not a multiple of the type's granularity (or of `g`, named `u`). */
  checkGran: (field: string, v: bigint | undefined, g?: bigint, u?: string) => void;
}

/** Validates one VM entry (inventory `vms[i]`, or simHost().add()). */
export function parseVM(raw: unknown, source: string, at: string): SimVMState {
  const input = vmInput(raw, source, at);
  const id = vmIdentity(input);
  const mem = vmMemory(input, id);
  return id.type === 'esx' ? esxVM(input, id, mem) : libvirtVM(input, id, mem);
}

function vmInput(raw: unknown, source: string, at: string): VmInput {
  if (!isRecord(raw)) throw new SimInventoryError(source, at, 'must be a mapping');
  const name = raw.name;
  if (typeof name !== 'string' || name === '') throw new SimInventoryError(source, at, 'name: required, a non-empty string');
  const where = `${at} (${name})`;
  const fail = (field: string, reason: string): never => {
    throw new SimInventoryError(source, `${where}.${field}`, reason);
  };
  for (const key of Object.keys(raw)) {
    if (!VM_KEYS.has(key)) fail(key, `unknown field (known: ${[...VM_KEYS].join(', ')})`);
  }
  const bool = (field: string): boolean => {
    const v = raw[field];
    if (v === undefined) return false;
    if (typeof v !== 'boolean') fail(field, 'must be true or false');
    return v as boolean;
  };
  const q = (field: string): bigint | undefined => (raw[field] === undefined ? undefined : quantityOf(raw[field], source, where, field));
  return { raw, source, name, where, fail, bool, q };
}

function vmIdentity({ raw, source, name, where, fail, bool }: VmInput): VmIdentity {
  const type = raw.type as HypervisorType;
  if (!HYPERVISOR_TYPES.includes(type)) fail('type', `${JSON.stringify(raw.type)} is not one of ${HYPERVISOR_TYPES.join(', ')}`);
  const powerState = (raw.powerState ?? 'Running') as PowerState;
  if (!POWER.includes(powerState)) fail('powerState', `${JSON.stringify(raw.powerState)} is not one of ${POWER.join(', ')}`);
  const uuid = raw.uuid === undefined ? uuidFromName(name) : typeof raw.uuid === 'string' ? canonicalUuid(raw.uuid) : undefined;
  if (uuid === undefined) return fail('uuid', `${JSON.stringify(raw.uuid)} is not a UUID`);
  const transient = bool('transient');
  const numa = bool('numa');
  const balloon = (raw.balloon ?? 'responsive') as BalloonMode;
  if (!BALLOON.includes(balloon)) fail('balloon', `${JSON.stringify(raw.balloon)} is not one of ${BALLOON.join(', ')}`);
  const balloonDelayMs = raw.balloonDelay === undefined ? 0 : durationMs(raw.balloonDelay, source, `${where}.balloonDelay`, 'balloonDelay');
  return { name, uuid, type, powerState, transient, numa, balloon, balloonDelayMs };
}

/** The memory fields, and the checks every type shares: granularity and > 0 of maxMemory. */
function vmMemory({ raw, source, where, fail, q }: VmInput, { type, powerState }: VmIdentity): VmMemory {
  if (raw.maxMemory === undefined) fail('maxMemory', 'required');
  const maxMemory = q('maxMemory') as bigint;
  const memory = q('memory') ?? maxMemory;
  const configMaxMemory = q('configMaxMemory');
  const configMemory = q('configMemory');
  const reservation = q('reservation');
  const limit = raw.limit === undefined ? undefined : limitOf(raw.limit, source, where, 'limit');
  const actual = q('actual');
  const guestUsed = q('guestUsed');
  // Only a running guest reports its use, and it cannot use more than it sees.
  if (guestUsed !== undefined && (powerState === 'ShutOff' || guestUsed > maxMemory)) fail('guestUsed', 'only for a powered-on VM, and <= maxMemory');
  const guest = guestUsed !== undefined ? { guestUsed } : {};

  const isEsx = type === 'esx';
  const granularity = isEsx ? ESX_MEMORY_MB_STEP : KIB;
  const unit = isEsx ? 'multiple of 4 MiB (ESX memoryMB)' : 'whole number of KiB (libvirt)';
  const checkGran = (field: string, v: bigint | undefined, g = granularity, u = unit): void => {
    if (v !== undefined && v % g !== 0n) fail(field, `${v} bytes is not a ${u}`);
  };
  checkGran('maxMemory', maxMemory);
  checkGran('configMaxMemory', configMaxMemory);
  if (maxMemory <= 0n) fail('maxMemory', 'must be > 0');
  if (configMaxMemory !== undefined && configMaxMemory <= 0n) fail('configMaxMemory', 'must be > 0');
  return { maxMemory, memory, configMaxMemory, configMemory, reservation, limit, actual, guest, checkGran };
}

/** ESX: one persistent configuration, memory enforced through reservation/limit, hot-add settings. */
function esxVM({ raw, fail, bool, q }: VmInput, id: VmIdentity, mem: VmMemory): SimVMState {
  const { maxMemory, memory, configMaxMemory, configMemory, reservation, limit, actual, checkGran } = mem;
  if (id.transient) fail('transient', 'ESX VMs are always persistent');
  if (id.numa) fail('numa', 'only libvirt domains (qemu, test) model NUMA cells here');
  if (raw.memory !== undefined && memory !== maxMemory) fail('memory', 'ESX has no balloon target: memory is enforced through limit; omit memory or set it equal to maxMemory');
  if (configMaxMemory !== undefined || configMemory !== undefined) fail(configMaxMemory !== undefined ? 'configMaxMemory' : 'configMemory', 'ESX has one configuration: use maxMemory');
  checkGran('reservation', reservation, MIB, 'whole number of MiB');
  if (limit !== undefined && limit !== 'unlimited') checkGran('limit', limit, MIB, 'whole number of MiB');
  const res = reservation ?? 0n;
  const lim = limit ?? 'unlimited';
  if (res > maxMemory) fail('reservation', 'must be <= maxMemory');
  if (lim !== 'unlimited' && res > lim) fail('reservation', 'must be <= limit');
  const enabled = bool('memoryHotAddEnabled');
  const hotLimit = q('hotPlugMemoryLimit');
  const increment = q('hotPlugMemoryIncrementSize');
  checkGran('hotPlugMemoryLimit', hotLimit, MIB, 'whole number of MiB');
  checkGran('hotPlugMemoryIncrementSize', increment, MIB, 'whole number of MiB');
  if (increment !== undefined && increment <= 0n) fail('hotPlugMemoryIncrementSize', 'must be > 0');
  if (actual !== undefined) fail('actual', 'ESX reports no balloon actual');
  const config: SimWorld = { maxMemory, memory: maxMemory, reservation: res, limit: lim };
  const { name, uuid, type, powerState, balloon, balloonDelayMs } = id;
  return {
    name, uuid, type, powerState, persistent: true, numa: false, config, balloon, balloonDelayMs, ...mem.guest,
    hotAdd: {
      enabled,
      ...(hotLimit !== undefined ? { limit: hotLimit } : {}),
      ...(increment !== undefined ? { increment } : {}),
    },
  };
}

/** libvirt types (qemu, xen, test): a live world while running, a config world unless transient. */
function libvirtVM(input: VmInput, id: VmIdentity, mem: VmMemory): SimVMState {
  libvirtRefusals(input, id, mem);
  const { fail } = input;
  const { type, powerState, transient, numa } = id;
  const { maxMemory, memory, configMaxMemory, configMemory, limit, actual } = mem;
  const running = powerState !== 'ShutOff';
  const hostLimit: Limit | undefined = type === 'xen' ? undefined : (limit ?? 'unlimited');
  const world = (max: bigint, target: bigint): SimWorld => ({ maxMemory: max, memory: target, ...(hostLimit !== undefined ? { limit: hostLimit } : {}) });
  let config: SimWorld | undefined;
  if (!transient) {
    const cMax = configMaxMemory ?? maxMemory;
    const cMem = configMemory ?? (configMaxMemory !== undefined && memory > cMax ? cMax : memory);
    if (cMem <= 0n) fail('configMemory', 'must be > 0');
    if (cMem > cMax) fail('configMemory', 'must be <= configMaxMemory');
    config = world(cMax, cMem);
  }
  if (!running && (configMaxMemory !== undefined || configMemory !== undefined)) {
    fail('configMaxMemory', 'a shut-off domain has only a config world: give it as maxMemory/memory');
  }
  if (actual !== undefined && (!running || actual > maxMemory)) fail('actual', 'only for a running domain, and <= maxMemory');
  const virtioMem = input.raw.virtioMem === undefined
    ? undefined
    : virtioMemOf(input.raw.virtioMem, { source: input.source, where: input.where, type, numa, running, persistent: !transient, fail });
  const { name, uuid, balloon, balloonDelayMs } = id;
  return {
    name, uuid, type, powerState, persistent: !transient, numa,
    ...(running ? { live: world(maxMemory, memory), actual: actual ?? memory } : {}),
    ...(config ? { config } : {}),
    balloon, balloonDelayMs, ...mem.guest,
    ...(virtioMem ? { virtioMem } : {}),
  };
}

/** What libvirt's drivers do not have (ESX-only settings, Xen's missing tunables) and bad sizes. */
function libvirtRefusals({ raw, fail }: VmInput, { type, powerState, transient, numa }: VmIdentity, mem: VmMemory): void {
  const { maxMemory, memory, configMaxMemory, configMemory, reservation, limit, actual, checkGran } = mem;
  for (const f of ['memoryHotAddEnabled', 'hotPlugMemoryLimit', 'hotPlugMemoryIncrementSize']) {
    if (raw[f] !== undefined) fail(f, 'only ESX VMs have memory hot-add settings');
  }
  if (reservation !== undefined) {
    fail('reservation', type === 'xen' ? 'Xen (libxl) has no memory reservation' : "libvirt's QEMU and test drivers do not support min_guarantee");
  }
  if (limit !== undefined && type === 'xen') fail('limit', 'Xen (libxl) has no memtune hard_limit');
  if (numa && type === 'xen') fail('numa', 'only qemu and test domains model NUMA cells here');
  checkGran('memory', memory);
  checkGran('configMemory', configMemory);
  checkGran('actual', actual);
  if (limit !== undefined && limit !== 'unlimited') checkGran('limit', limit);
  if (memory <= 0n) fail('memory', 'must be > 0');
  if (memory > maxMemory) fail('memory', 'must be <= maxMemory');
  if (transient && powerState === 'ShutOff') fail('transient', 'a transient domain cannot be shut off (it vanishes when it stops)');
  if (transient && (configMaxMemory !== undefined || configMemory !== undefined)) fail('transient', 'a transient domain has no config world (configMaxMemory/configMemory)');
}

/**
 * `virtioMem: { size, block?, requested?, guest?, plugDelay? }` or a list of them (one guest
 * behaviour for all: the first entry's). maxMemory/memory of such a VM are the boot memory and the
 * balloon target within it; the guest sees maxMemory + Σ requested.
 */
function virtioMemOf(
  raw: unknown,
  ctx: { source: string; where: string; type: HypervisorType; numa: boolean; running: boolean; persistent: boolean; fail: (field: string, reason: string) => never },
): SimVirtioMem {
  const { fail } = ctx;
  if (ctx.type !== 'qemu') fail('virtioMem', 'only QEMU domains have virtio-mem devices');
  if (!ctx.numa) fail('virtioMem', 'virtio-mem needs a NUMA cell (set numa: true), as libvirt requires');
  const list = Array.isArray(raw) ? raw : [raw];
  if (list.length === 0) fail('virtioMem', 'needs at least one device');
  const devices: SimMemDevice[] = [];
  let guest: SimVirtioMem['guest'] = 'responsive';
  let plugDelayMs = 0;
  list.forEach((d, i) => {
    const at = `virtioMem[${i}]`;
    if (!isRecord(d)) return fail(at, 'must be a mapping');
    for (const k of Object.keys(d)) if (!['size', 'block', 'requested', 'guest', 'plugDelay'].includes(k)) fail(`${at}.${k}`, 'unknown field (known: size, block, requested, guest, plugDelay)');
    if (d.size === undefined) fail(`${at}.size`, 'required');
    const size = quantityOf(d.size, ctx.source, ctx.where, `${at}.size`);
    const block = d.block === undefined ? 2n * MIB : quantityOf(d.block, ctx.source, ctx.where, `${at}.block`);
    const requested = d.requested === undefined ? 0n : quantityOf(d.requested, ctx.source, ctx.where, `${at}.requested`);
    if (block <= 0n || size <= 0n || size % block !== 0n) fail(`${at}.size`, 'must be a positive multiple of block');
    if (requested % block !== 0n || requested > size) fail(`${at}.requested`, 'must be a multiple of block and <= size');
    if (i === 0) {
      if (d.guest !== undefined && d.guest !== 'responsive' && d.guest !== 'none') fail(`${at}.guest`, 'is responsive or none');
      guest = (d.guest as SimVirtioMem['guest'] | undefined) ?? 'responsive';
      plugDelayMs = d.plugDelay === undefined ? 0 : durationMs(d.plugDelay, ctx.source, `${ctx.where}.${at}.plugDelay`, 'plugDelay');
    }
    devices.push({ size, block, requested });
  });
  return {
    guest,
    plugDelayMs,
    ...(ctx.running ? { live: devices.map((d) => ({ ...d, current: guest === 'responsive' ? d.requested : 0n })) } : {}),
    ...(ctx.persistent ? { config: devices.map((d) => ({ ...d })) } : {}),
  };
}

/**
 * Parses inventory YAML with the manifests' reader (src/util/yaml.ts), so every
 * error, syntax or validation, names `<file>:<line>`.
 */
export function parseInventoryText(text: string, path: string): SimInventory {
  const entries = parseYamlDocuments(text);
  const problem = entries.find((e) => e.kind === 'problem');
  // The reader's message never quotes the text (the line number says where); capped all the same.
  if (problem) throw new SimInventoryError(`${path}:${problem.line}`, 'YAML', problem.message.slice(0, 160));
  const docs = entries.filter((e) => e.kind === 'document');
  if (docs.length > 1) throw new SimInventoryError(`${path}:${docs[1]?.line ?? 1}`, 'YAML', 'an inventory is one YAML document; found a second');
  const doc = docs[0];
  try {
    return parseInventory(doc?.value ?? null, path);
  } catch (err) {
    if (!(err instanceof SimInventoryError) || !doc) throw err;
    // Some checks name the field in the reason ("vms[0] (web): maxMemory: …"): point at it too.
    const field = /^([A-Za-z][A-Za-z0-9]*): /.exec(err.reason)?.[1];
    const at = [...pathOfWhere(err.where), ...(field ? [field] : [])];
    throw new SimInventoryError(`${path}:${doc.lineOf(at)}`, err.where, err.reason);
  }
}

/**
 * The document path an error's `where` names: "vms[2] (web).memory" is
 * vms / 2 / memory (the VM's name in parentheses is only for the reader).
 */
function pathOfWhere(where: string): YamlPath {
  if (where === 'top level') return [];
  return where
    .replace(/ \([^)]*\)/g, '')
    .split(/\.|(?=\[)/)
    .filter((part) => part !== '')
    .map((part) => (/^\[\d+\]$/.test(part) ? Number(part.slice(1, -1)) : part));
}
