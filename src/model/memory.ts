/**
 * The memory state of one VM as vmmem sees it, in exact integer bytes.
 *
 * Two worlds (DESIGN §3): `live` is the running VM, `config` is what the
 * next cold boot uses. A shut-off VM has no live world; a transient libvirt
 * domain has no config world. ESX has one VM configuration that is also what
 * runs: its driver reports it as `config`, and as `live` too while powered on.
 */

// The list lives in src/api (the CRD's enum is made from it); the model re-exports it.
import type { HypervisorType } from '../api/hypervisor-type.ts';
export { HYPERVISOR_TYPES, type HypervisorType } from '../api/hypervisor-type.ts';

export type PowerState = 'Running' | 'Paused' | 'ShutOff';

export type World = 'live' | 'config';
export const WORLDS: readonly World[] = ['live', 'config'];

/** The four fields of the normalized model (DESIGN §1), in their canonical order. */
export type Field = 'maxMemory' | 'memory' | 'reservation' | 'limit';
export const FIELDS: readonly Field[] = ['maxMemory', 'memory', 'reservation', 'limit'];

/** A cap on host RAM: bytes, or no cap at all. */
export type Limit = bigint | 'unlimited';

/** One virtio-mem device of a domain (libvirt `<memory model='virtio-mem'>`), in bytes. */
export interface HotplugDevice {
  /** libvirt's device alias (live XML only, e.g. "virtiomem0"). */
  alias?: string;
  /** Guest NUMA node the memory is plugged into. */
  node?: number;
  /** `<block>`: the guest plugs and unplugs in multiples of this. */
  block: bigint;
  /** `<size>`: the most this device can ever give the guest (fixed while the domain runs). */
  size: bigint;
  /** `<requested>`: what the host asks the guest to plug (live-updatable). */
  requested: bigint;
  /** `<current>`: what the guest has plugged (live world only; the guest driver moves it). */
  current?: bigint;
}

/**
 * Memory hot-plug state of one world (QEMU virtio-mem, issue #14). With it, the
 * world's `maxMemory` is the guest-visible maximum `boot + Σ requested` (not libvirt's
 * `<memory>`, which counts the device sizes), and `memory` is the balloon target plus
 * Σ requested: what the guest holds once balloon and devices have both converged.
 */
export interface HotplugState {
  model: 'virtio-mem';
  /** Boot memory: the NUMA cells' memory, which no live change can move. */
  boot: bigint;
  /** In document order: the order growth fills them (docs/memory-model.md). */
  devices: HotplugDevice[];
}

/** The values of one world. `undefined` = the hypervisor has no such knob or did not report it. */
export interface WorldValues {
  maxMemory: bigint;
  memory: bigint;
  reservation?: bigint;
  limit?: Limit;
  /** Present when the domain has virtio-mem devices. */
  hotplug?: HotplugState;
}

/** How a VM is found on its hypervisor: exactly one of name / uuid. */
export type VMRef = { name: string; uuid?: undefined } | { uuid: string; name?: undefined };

export interface HotAddSettings {
  enabled: boolean;
  /** Highest memoryMB reachable by hot-add (bytes); undefined = no extra limit reported. */
  limit?: bigint;
  /** Hot-add must grow by a multiple of this (bytes); undefined = no increment rule. */
  increment?: bigint;
}

export interface ObservedVM {
  name: string;
  uuid: string;
  type: HypervisorType;
  powerState: PowerState;
  /**
   * A ShutOff VM that the hypervisor says crashed (libvirt's shutoff reason "crashed": QEMU
   * killed, e.g. by the OOM killer under a low hard_limit; the sim's OOM kill). Absent: running,
   * stopped normally, or the hypervisor does not say.
   */
  stopReason?: 'Crashed';
  /** false = transient libvirt domain: it has no config world. */
  persistent: boolean;
  live?: WorldValues;
  config?: WorldValues;
  balloon: {
    /** 'none' = no balloon device (libvirt memballoon model='none'). */
    device: 'present' | 'none';
    /** What the guest actually holds, when the hypervisor reports it. */
    actual?: bigint;
  };
  /** QEMU domain with NUMA cells: libvirt refuses maxMemory changes through the memory API. */
  numa: boolean;
  /** ESX only. */
  hotAdd?: HotAddSettings;
  /** What the guest itself uses, when the hypervisor reports it (issue #15; absent = no statistics). */
  guest?: GuestUsage;
}

/**
 * The guest's own memory use as the hypervisor last sampled it: libvirt memory
 * statistics (available - usable), vSphere quickStats.guestMemoryUsage, the sim's
 * `guestUsed`. The planner compares a live shrink against it (src/planner/guard.ts).
 */
export interface GuestUsage {
  /** Bytes the guest uses (not counting caches it can drop). */
  used: bigint;
  /** When the hypervisor sampled it (RFC 3339), when known. */
  sampledAt?: string;
  /** Where the number comes from, for messages: e.g. "libvirt memory stats", "quickStats.guestMemoryUsage". */
  source: string;
}

/** What the user declared, parsed to bytes. Absent optional field = not managed. */
export interface DesiredMemory {
  maxMemory: bigint;
  memory: bigint;
  reservation?: bigint;
  limit?: Limit;
  /** Explicit opt-in to a QEMU hard_limit below maxMemory + overhead margin. */
  allowUnsafeLimit?: boolean;
  /** Explicit opt-in to shrinking a running guest below what it uses + headroom (spec.allowUnsafeShrink). */
  allowUnsafeShrink?: boolean;
}

/**
 * One change to one hypervisor knob in one world. `field` names the knob in
 * the normalized model; for ESX the `limit` knob is memoryAllocation.limit and
 * carries min(memory, limit) (DESIGN §2).
 */
export interface Step {
  field: Field;
  world: World;
  from: bigint | Limit | undefined;
  to: bigint | Limit;
  /**
   * maxMemory on a virtio-mem world: the new `<requested>` of each device, in the
   * world's device order (the planner spreads the change; the driver updates the
   * devices whose value changes). Absent: maxMemory is the hypervisor's own knob.
   */
  requested?: bigint[];
  /**
   * maxMemory on a virtio-mem config world beyond its devices' sizes: the new `<size>` of each
   * device (the last one grows). Takes effect at the next cold boot.
   */
  sizes?: bigint[];
  /**
   * memory on a virtio-mem world: Σ requested once the plan is applied. The balloon
   * only covers boot memory, so the hypervisor's balloon target is `to - balloonOffset`.
   */
  balloonOffset?: bigint;
}

export type VerdictKind = 'Applied' | 'RestartRequired' | 'AwaitingPowerOff' | 'Unsupported' | 'Unsafe' | 'Invalid';

/** The outcome for one managed field. */
export interface Verdict {
  field: Field;
  kind: VerdictKind;
  /** Desired value as the hypervisor will hold it (after rounding). */
  desired: bigint | Limit;
  /** Observed value before the plan (undefined = not reported). */
  observed?: bigint | Limit;
  /** CamelCase reason for conditions, e.g. UnsafeLimit, Unsupported, RestartRequired. */
  reason: string;
  /** Human sentence naming the field, both values and the reason. */
  message: string;
}

export interface Plan {
  /** Ordered: every prefix keeps each world's invariants. */
  steps: Step[];
  /** Exactly one per managed field. */
  verdicts: Verdict[];
  /** Fields whose desired value was rounded up to the hypervisor's granularity. */
  roundings: { field: Field; requested: bigint; effective: bigint }[];
  /**
   * How a live shrink of the running guest was judged against its use (src/planner/guard.ts):
   * absent when the plan shrinks nothing live.
   */
  shrinkGuard?: ShrinkGuard;
}

/**
 * guarded: the guest reported its use and the shrink leaves it headroom.
 * blocked: it would not; the shrinking steps were removed (verdict Unsafe, GuestMemoryInUse).
 * overridden: it would not, and spec.allowUnsafeShrink let it through.
 * unguarded: the guest reports no statistics; the shrink goes ahead, and the message says so.
 */
export interface ShrinkGuard {
  state: 'guarded' | 'blocked' | 'overridden' | 'unguarded';
  message: string;
}
