/**
 * Hypervisor profiles: what each hypervisor can do with each memory knob
 * (DESIGN §2), as data. The planner reads these tables; it never asks
 * "is this ESX?". This is libvirt's `driver-hypervisor.h` idea (one table
 * per hypervisor) applied to vmmem's four fields.
 *
 * Two shapes of hypervisor exist:
 *  - `dual` worlds (libvirt: qemu, xen, test): a running domain has a live
 *    definition and a persistent config (the next cold boot's), changed
 *    separately with AFFECT_LIVE / AFFECT_CONFIG.
 *  - `single` world (ESX): one VM configuration which is also what runs.
 *    Its steps are in world `config`; while powered on some knobs are
 *    restricted (`poweredOn`).
 */
import type { Field, HypervisorType } from './memory.ts';

const KiB = 1024n;
const MiB = 1024n * KiB;

/** What a powered-on single-world VM accepts for a knob. */
export type PoweredOnRule =
  /** Any change, immediately (ESX memoryAllocation.reservation / .limit). */
  | 'any'
  /** Only an increase by memory hot-add, within its limit and increment (ESX memoryMB). */
  | 'hotAddIncrease'
  /** Nothing: wait for power-off. */
  | 'none';

export interface FieldCapability {
  /** The hypervisor has this knob. false: managing the field is `Unsupported`. */
  readonly supported: boolean;
  /** Why not, quoted in the verdict message (the hypervisor's own words where known). */
  readonly unsupportedWhy?: string;

  // --- dual-world (libvirt) profiles -------------------------------------
  /** A running/paused domain accepts a live (AFFECT_LIVE) change. */
  readonly live: boolean;
  /**
   * The hypervisor accepts the live change but the guest only sees it after
   * its next cold boot (Xen maxmem: the e820 map is fixed at boot). The
   * planner applies it live and in config and reports RestartRequired.
   */
  readonly liveTakesEffectAtBoot: boolean;
  /** The persistent config (AFFECT_CONFIG, or a shut-off domain) accepts a change. */
  readonly config: boolean;
  /**
   * A live change must also be written to the config or the next boot
   * reverts it (true for every libvirt knob): the planner emits both steps.
   */
  readonly liveAlsoConfig: boolean;
  /** A live change needs a balloon device (memballoon model != 'none'). */
  readonly liveNeedsBalloon: boolean;
  /** Domains with NUMA cells refuse changes to this knob through the memory API. */
  readonly refusedWithNuma: boolean;

  // --- single-world (ESX) profiles ---------------------------------------
  /** What a powered-on VM accepts. Powered off: any change. */
  readonly poweredOn: PoweredOnRule;

  /** Desired values are rounded UP to a multiple of this many bytes. */
  readonly granularity: bigint;
}

export interface Profile {
  readonly type: HypervisorType;
  /** Human name for messages and docs. */
  readonly label: string;
  /** The API vmmem talks to. */
  readonly api: 'libvirt' | 'vsphere';
  /** 'dual': live + config worlds (libvirt); 'single': one configuration that also runs (ESX). */
  readonly worlds: 'dual' | 'single';
  /**
   * How the `memory` field is enforced. 'balloon': its own knob (libvirt
   * currentMemory). 'limit': through the `limit` knob, which then carries
   * min(memory, limit) (ESX memoryAllocation.limit; libvirt's ESX driver
   * does the same).
   */
  readonly memoryVia: 'balloon' | 'limit';
  readonly fields: Readonly<Record<Field, FieldCapability>>;
  /**
   * A driver may send a live and a config step of the same knob in one call
   * (VIR_DOMAIN_AFFECT_LIVE | VIR_DOMAIN_AFFECT_CONFIG). The libvirt test
   * driver rejects the combination, so there they are separate calls.
   */
  readonly liveAndConfigInOneCall: boolean;
  /** Lowering config maxMemory below config memory lowers memory too (libvirt does it). */
  readonly maxMemoryLowersMemory: boolean;
  /** The hypervisor refuses memory > maxMemory in a step (libvirt: "cannot set memory higher than max memory"). */
  readonly enforcesMemoryAtMostMax: boolean;
  /** Only config changes are valid on a shut-off VM (libvirt: "domain is not running"). */
  readonly shutOffConfigOnly: boolean;
  /**
   * QEMU hard_limit caps the whole QEMU process (guest RAM + overhead): a
   * limit below maxMemory + margin gets the VM OOM-killed, so the planner
   * refuses it (UnsafeLimit) unless the user opts in. undefined = no such rule.
   */
  readonly unsafeLimit?: { readonly defaultOverheadMargin: bigint };
  /** What `Unlimited` means for the limit knob, for messages. */
  readonly unlimitedMeans: string;
  /**
   * Memory hot-plug the planner may drive (issue #14). 'virtio-mem': a domain with
   * `<memory model='virtio-mem'>` devices changes maxMemory by their `requested` size, live
   * (virDomainUpdateDeviceFlags AFFECT_LIVE) and in config (AFFECT_CONFIG, a separate call:
   * libvirt 9.0 fails LIVE|CONFIG for memory devices), within boot + Σ size live; beyond it only
   * the config (a larger device) and a restart. undefined: no hot-plug path; maxMemory follows
   * `fields.maxMemory`.
   */
  readonly hotplug?: {
    readonly model: 'virtio-mem';
    /** `requested` changes on a running domain. */
    readonly live: boolean;
    /** `requested` and `size` change in the persistent config. */
    readonly config: boolean;
  };
}

const unsupported = (why: string, granularity: bigint): FieldCapability => ({
  supported: false,
  unsupportedWhy: why,
  live: false,
  liveTakesEffectAtBoot: false,
  config: false,
  liveAlsoConfig: false,
  liveNeedsBalloon: false,
  refusedWithNuma: false,
  poweredOn: 'none',
  granularity,
});

/** A libvirt knob changeable live and in config (balloon target, memtune hard_limit). */
const libvirtLiveAndConfig = (extra: Partial<FieldCapability> = {}): FieldCapability => ({
  supported: true,
  live: true,
  liveTakesEffectAtBoot: false,
  config: true,
  liveAlsoConfig: true,
  liveNeedsBalloon: false,
  refusedWithNuma: false,
  poweredOn: 'any',
  granularity: KiB,
  ...extra,
});

const MIN_GUARANTEE_REJECTED =
  "libvirt rejects min_guarantee for this hypervisor (\"parameter 'min_guarantee' not supported\")";

const qemu: Profile = {
  type: 'qemu',
  label: 'QEMU/KVM (libvirt)',
  api: 'libvirt',
  worlds: 'dual',
  memoryVia: 'balloon',
  fields: {
    // virDomainSetMemoryFlags(MEM_MAXIMUM|AFFECT_CONFIG); active domains refuse a live change:
    // "cannot resize the maximum memory on an active domain". NUMA domains refuse the API.
    maxMemory: libvirtLiveAndConfig({ live: false, refusedWithNuma: true }),
    // Balloon target: live needs a balloon device; libvirt accepts it even without a guest driver.
    memory: libvirtLiveAndConfig({ liveNeedsBalloon: true }),
    reservation: unsupported(MIN_GUARANTEE_REJECTED, KiB),
    // memtune hard_limit (cgroup limit of the QEMU process), live and config.
    limit: libvirtLiveAndConfig(),
  },
  liveAndConfigInOneCall: true,
  maxMemoryLowersMemory: true,
  enforcesMemoryAtMostMax: true,
  shutOffConfigOnly: true,
  unsafeLimit: { defaultOverheadMargin: 512n * MiB },
  unlimitedMeans: 'no memtune hard_limit',
  // libvirt >= 7.9 + QEMU >= 6.2 (checked with libvirtd 9.0 + QEMU 7.2, test/peer/libvirt/guest-virtio-mem.test.ts).
  hotplug: { model: 'virtio-mem', live: true, config: true },
};

const xen: Profile = {
  type: 'xen',
  label: 'Xen PV/HVM (libvirt libxl)',
  api: 'libvirt',
  worlds: 'dual',
  memoryVia: 'balloon',
  fields: {
    // libxl_domain_setmaxmem raises the hypervisor cap live, but the guest's e820 map is
    // fixed at boot: applied live + config, in effect after restart.
    maxMemory: libvirtLiveAndConfig({ liveTakesEffectAtBoot: true }),
    // Balloon target, live (synchronous) and config.
    memory: libvirtLiveAndConfig({ liveNeedsBalloon: true }),
    reservation: unsupported(MIN_GUARANTEE_REJECTED, KiB),
    limit: unsupported('the libxl driver has no memtune hard_limit', KiB),
  },
  liveAndConfigInOneCall: true,
  maxMemoryLowersMemory: true,
  enforcesMemoryAtMostMax: true,
  shutOffConfigOnly: true,
  unlimitedMeans: 'no limit',
};

const test: Profile = {
  type: 'test',
  label: 'libvirt test driver (test:///default)',
  api: 'libvirt',
  worlds: 'dual',
  memoryVia: 'balloon',
  fields: {
    // testDomainSetMemoryFlags(MEM_MAXIMUM): live refused ("cannot resize the maximum memory on
    // an active domain"); config accepted, except on a domain with NUMA cells ("initial memory
    // size of a domain with NUMA nodes cannot be modified with this API"), as in QEMU.
    maxMemory: libvirtLiveAndConfig({ live: false, refusedWithNuma: true }),
    // Balloon target, live and config. testDomainSetMemoryFlags only checks memory <= max: it
    // never looks at def->memballoon, so memballoon model='none' does not block a live change.
    memory: libvirtLiveAndConfig(),
    reservation: unsupported(MIN_GUARANTEE_REJECTED, KiB),
    // testDomainSetMemoryParameters accepts hard_limit live and config (no real process: no margin rule).
    limit: libvirtLiveAndConfig(),
  },
  // "LIVE and CONFIG together rejected": one step, one call.
  liveAndConfigInOneCall: false,
  maxMemoryLowersMemory: true,
  enforcesMemoryAtMostMax: true,
  shutOffConfigOnly: true,
  unlimitedMeans: 'no memtune hard_limit',
};

const esxField = (poweredOn: PoweredOnRule, granularity: bigint): FieldCapability => ({
  supported: true,
  live: false,
  liveTakesEffectAtBoot: false,
  config: true,
  liveAlsoConfig: false,
  liveNeedsBalloon: false,
  refusedWithNuma: false,
  poweredOn,
  granularity,
});

const esx: Profile = {
  type: 'esx',
  label: 'VMware ESX / vCenter (vSphere API)',
  api: 'vsphere',
  worlds: 'single',
  memoryVia: 'limit',
  fields: {
    // ReconfigVM_Task memoryMB, multiples of 4 MiB. Powered on: hot-add increase only.
    maxMemory: esxField('hotAddIncrease', 4n * MiB),
    // No balloon target: enforced through memoryAllocation.limit (MiB).
    memory: esxField('any', MiB),
    // memoryAllocation.reservation (MiB), live.
    reservation: esxField('any', MiB),
    // memoryAllocation.limit (MiB, -1 = unlimited), live.
    limit: esxField('any', MiB),
  },
  liveAndConfigInOneCall: true,
  maxMemoryLowersMemory: false,
  enforcesMemoryAtMostMax: false,
  shutOffConfigOnly: false,
  unlimitedMeans: 'memoryAllocation.limit = -1',
};

export const PROFILES: Readonly<Record<HypervisorType, Profile>> = { qemu, xen, esx, test };

export function profileFor(type: HypervisorType): Profile {
  const profile = PROFILES[type];
  if (!profile) throw new Error(`no hypervisor profile for type ${JSON.stringify(type)}`);
  return profile;
}
