// From what libvirt reports about one domain to an ObservedVM, and the
// per-domain read (six pipelined calls) that observe() and the fallback of
// observeAll() use. Pure mapping here; the host-level cache is hostview.ts.
//
// Values come from the domain XML (KiB -> bytes): `<memory>` = maxMemory,
// `<currentMemory>` = memory, `<memtune><hard_limit>` = limit (absent =
// unlimited), `<memtune><min_guarantee>` = reservation. QEMU keeps no balloon
// *target* that libvirt reports (the live `<currentMemory>` is the balloon's
// actual size), so the live memory of a running domain is the target this
// driver set for the same instance (domain id) when it remembers one.
//
// virtio-mem (issue #14): a domain with `<memory model='virtio-mem'>` devices reports
// maxMemory = boot (NUMA cells) + Σ requested, memory = balloon + Σ requested, and the devices
// in `hotplug` (src/model/memory.ts HotplugState).
import { DriverError } from '../driver.ts';
import type { VMHandle } from '../driver.ts';
import type { GuestUsage, HypervisorType, ObservedVM, WorldValues } from '../../model/memory.ts';
import { DomainShutoffReason, DomainState, DomainXmlFlags, MEMORY_PARAM_UNLIMITED, parseDomainXml } from '../../libvirt/index.ts';
import type { DomainInfo, DomainRef, DomainXmlInfo, LibvirtClient } from '../../libvirt/index.ts';

export const KIB = 1024n;

/** What the driver knows of one domain: enough to build its ObservedVM without a call. */
export interface DomainFacts {
  name: string;
  uuid: string;
  /** Hypervisor id while running, -1 when shut off. */
  id: number;
  /** virDomainState */
  state: number;
  /** The state's reason (virDomainGetState / stats state.reason); for SHUTOFF a virDomainShutoffReason. */
  stateReason?: number | undefined;
  persistent: boolean;
  /** The live XML of a running domain; the (only) XML of a shut-off one. */
  xml: DomainXmlInfo;
  /** The inactive XML of a running persistent domain (its next boot). */
  inactiveXml?: DomainXmlInfo | undefined;
  /** Balloon size of a running domain, KiB (virDomainGetInfo memory / stats balloon.current). */
  actualKiB?: number | undefined;
  /** What the guest reports using (balloon statistics), when its balloon driver reports them. */
  guest?: GuestUsage | undefined;
}

/**
 * The guest's use from libvirt balloon statistics (KiB): `available` − `usable` (usable counts
 * the caches the guest can drop, QEMU 2.10+/Linux 4.16+), else `available` − `unused` −
 * `disk_caches`. QEMU reports them only while the domain has a statistics period
 * (`<memballoon><stats period='10'/>` or `virsh dommemstat --period`); without one there is
 * no `available`, and the guest's shrink is not guarded (docs/conditions.md GuestMemoryInUse).
 */
export function guestUsageOf(stat: (name: string) => number | undefined, source: string): GuestUsage | undefined {
  const available = stat('available');
  if (available === undefined || available <= 0) return undefined;
  const usable = stat('usable');
  const unused = stat('unused');
  let usedKiB: number;
  if (usable !== undefined) usedKiB = available - usable;
  else if (unused !== undefined) usedKiB = available - unused - (stat('disk_caches') ?? 0);
  else return undefined;
  if (usedKiB < 0) return undefined;
  const out: GuestUsage = { used: BigInt(usedKiB) * KIB, source };
  const last = stat('last_update') ?? stat('last-update');
  if (last !== undefined && last > 0) out.sampledAt = new Date(last * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');
  return out;
}

/** Live balloon targets this driver set: uuid -> {domain id at the time, KiB}. */
export type LiveTargets = Map<string, { id: number; kib: number }>;

export function isActive(f: Pick<DomainFacts, 'id'>): boolean {
  return f.id !== -1;
}

/** The XML whose values the next boot uses, if the domain has one. */
export function configXml(f: DomainFacts): DomainXmlInfo | undefined {
  if (!f.persistent) return undefined;
  return isActive(f) ? f.inactiveXml : f.xml;
}

function kibToBytes(kib: number | undefined): bigint | undefined {
  return kib === undefined ? undefined : BigInt(kib) * KIB;
}

export function world(x: DomainXmlInfo, type: HypervisorType): WorldValues {
  const maxMemory = kibToBytes(x.memoryKiB);
  if (maxMemory === undefined) {
    throw new DriverError('Protocol', `libvirt: domain XML of ${x.name ?? '?'} has no <memory>`, { op: 'virDomainGetXMLDesc', hypervisorMessage: 'no <memory> element' });
  }
  const w: WorldValues = { maxMemory, memory: kibToBytes(x.currentMemoryKiB) ?? maxMemory };
  const vmem = x.memoryDevices.filter((m) => m.model === 'virtio-mem');
  if (vmem.length > 0) {
    // libvirt's <memory> counts each device's full size; the guest sees boot + Σ requested.
    const devices = vmem.map((m) => ({
      ...(m.alias !== undefined ? { alias: m.alias } : {}),
      ...(m.node !== undefined ? { node: m.node } : {}),
      block: BigInt(m.blockKiB ?? 0) * KIB,
      size: BigInt(m.sizeKiB) * KIB,
      requested: BigInt(m.requestedKiB ?? 0) * KIB,
      ...(m.currentKiB !== undefined ? { current: BigInt(m.currentKiB) * KIB } : {}),
    }));
    const sizes = devices.reduce((a, dev) => a + dev.size, 0n);
    const cells = x.numaCells.reduce((a, c) => a + BigInt(c.memoryKiB) * KIB, 0n);
    const boot = cells > 0n ? cells : maxMemory - sizes;
    const requested = devices.reduce((a, dev) => a + dev.requested, 0n);
    w.hotplug = { model: 'virtio-mem', boot, devices };
    w.maxMemory = boot + requested;
    if (x.id === undefined) {
      // A config's <currentMemory> is the balloon target, which covers boot memory only.
      w.memory = (kibToBytes(x.currentMemoryKiB) ?? boot) + requested;
    } else {
      // The live <currentMemory> is the balloon's actual size plus what the guest has plugged;
      // in vmmem's terms memory is balloon + Σ requested (memory.ts HotplugState).
      w.memory += devices.reduce((a, dev) => a + dev.requested - (dev.current ?? 0n), 0n);
    }
  }
  const ming = kibToBytes(x.memtune.minGuaranteeKiB);
  if (ming !== undefined) w.reservation = ming;
  if (type !== 'xen') {
    const hard = x.memtune.hardLimitKiB;
    w.limit = hard === undefined || hard >= MEMORY_PARAM_UNLIMITED ? 'unlimited' : BigInt(hard) * KIB;
  }
  return w;
}

/** A shut-off domain whose process died (libvirt's default on_crash=destroy). */
function crashed(f: DomainFacts): boolean {
  return f.state === DomainState.SHUTOFF && f.stateReason === DomainShutoffReason.CRASHED;
}

/**
 * The ObservedVM of `f`. Forgets a remembered live target whose domain
 * instance is gone (restarted or shut off), as observe() always did.
 */
export function observedOf(f: DomainFacts, type: HypervisorType, liveTargets: LiveTargets): ObservedVM {
  const active = isActive(f);
  const paused = f.state === DomainState.PAUSED || f.state === DomainState.PMSUSPENDED;
  const config = configXml(f);
  const out: ObservedVM = {
    name: f.xml.name ?? f.name,
    uuid: f.xml.uuid ?? f.uuid,
    type,
    powerState: !active ? 'ShutOff' : paused ? 'Paused' : 'Running',
    persistent: f.persistent,
    balloon: { device: f.xml.memballoonModel === 'none' ? 'none' : 'present' },
    numa: (config ?? f.xml).numaCells.length > 0,
  };
  // QEMU killed (the OOM killer under a hard_limit, or any other death): libvirt says shut off, reason crashed.
  if (!active && crashed(f)) out.stopReason = 'Crashed';
  if (active) {
    const w = world(f.xml, type);
    const remembered = liveTargets.get(f.uuid);
    if (remembered && remembered.id === f.id) w.memory = BigInt(remembered.kib) * KIB;
    else liveTargets.delete(f.uuid);
    out.live = w;
    if (f.actualKiB !== undefined) out.balloon.actual = BigInt(f.actualKiB) * KIB;
    if (f.guest) out.guest = f.guest;
  } else {
    liveTargets.delete(f.uuid);
  }
  if (config) out.config = world(config, type);
  return out;
}

/** The handle the daemon needs: it finds domains by UUID; the id is not used. */
export function ref(vm: VMHandle): DomainRef {
  return { name: vm.name, uuid: vm.uuid, id: -1 };
}

/** Calls one per-domain read costs. */
/** Calls for one running domain (a shut-off one skips virDomainMemoryStats). */
export const PER_DOMAIN_CALLS = 7;

/**
 * One domain, fresh: state, active, persistent, live XML, inactive XML and
 * info in one pipelined batch (PER_DOMAIN_CALLS calls). `op` is updated with
 * the call being waited on, for the error message.
 */
export async function readDomainFacts(c: LibvirtClient, vm: VMHandle, op: { name: string }): Promise<DomainFacts> {
  const d = ref(vm);
  // The inactive XML only matters for a persistent running domain; asked anyway to keep one round.
  const inactive = c.domainGetXmlDesc(d, DomainXmlFlags.INACTIVE).catch((e: unknown) => e);
  const info = c.domainGetInfo(d).catch((e: unknown) => e);
  // Statistics are best effort: a domain without a balloon, or the test driver, has none (the no-stats path).
  const stats = c.domainMemoryStats(d).then((m) => guestUsageOf((k) => m[k as keyof typeof m], 'libvirt memory stats'), () => undefined);
  op.name = 'virDomainGetState';
  const [state, active, persistent, liveXml] = await Promise.all([c.domainGetState(d), c.domainIsActive(d), c.domainIsPersistent(d), c.domainGetXmlDesc(d, 0)]);
  op.name = 'virDomainGetXMLDesc';
  const xml = parseDomainXml(liveXml);
  let inactiveXml: DomainXmlInfo | undefined;
  const x = await inactive;
  if (persistent && active) {
    if (x instanceof Error) throw x;
    inactiveXml = parseDomainXml(x as string);
  }
  op.name = 'virDomainGetInfo';
  const i = await info;
  if (i instanceof Error) throw i;
  const di = i as DomainInfo;
  // A running domain's XML carries its id; a shut-off one has none.
  const id = active ? (xml.id ?? 0) : -1;
  const guest = active ? await stats : undefined;
  return { name: xml.name ?? vm.name, uuid: xml.uuid ?? vm.uuid, id, state: state.state, stateReason: state.reason, persistent, xml, inactiveXml, actualKiB: active ? di.memoryKiB : undefined, guest };
}
