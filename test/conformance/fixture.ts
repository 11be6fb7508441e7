/**
 * What a driver's test file provides to run the conformance suite
 * (test/conformance/README.md). Keep it small: a way to connect, a way to
 * shape VMs on the real peer behind vmmem's back, and the peer's
 * capabilities, from which the suite chooses its tests.
 */
import type { Driver } from '../../src/drivers/driver.ts';
import type { Field, HypervisorType, Limit, World } from '../../src/model/memory.ts';

/** A VM the suite asks the fixture to create on the peer. */
export interface VMSpec {
  /** Unique, chosen by the suite (prefix `conf-`). */
  name: string;
  powerState: 'Running' | 'ShutOff';
  /** false = transient libvirt domain (only when capabilities.create.transient). */
  persistent: boolean;
  maxMemory: bigint;
  /** Balloon target; the suite sets it equal to maxMemory when the peer has no memory knob (ESX). */
  memory: bigint;
  /** false = no balloon device (only when capabilities.create.withoutBalloon). */
  balloon: boolean;
  /** NUMA cells (only when capabilities.create.numa). */
  numa?: boolean;
  /** Host RAM cap (hard_limit / memoryAllocation.limit); absent = unlimited. */
  limit?: Limit;
  /** ESX memory hot-add (only when capabilities.create.hotAdd). */
  hotAdd?: { enabled: boolean; limit?: bigint; increment?: bigint };
}

/** A change the peer accepts: this field, in this world, on a VM in this power state. */
export interface ApplyCapability {
  field: Field;
  world: World;
  power: 'Running' | 'ShutOff';
  /** ESX maxMemory while powered on: the VM needs memory hot-add enabled. */
  hotAdd?: boolean;
}

/**
 * Refusals the suite knows how to provoke. Each names the hypervisor rule
 * (DESIGN §2); the suite checks code 'Refused', a named op and a non-empty
 * hypervisorMessage, and for libvirt rules the text libvirt itself uses.
 */
export type RefusalKind =
  /** qemu/test: maxMemory, world live, running domain ("cannot resize the maximum memory on an active domain"). */
  | 'liveMaxMemory'
  /** libvirt: memory above maxMemory ("cannot set memory higher than max memory"). */
  | 'memoryAboveMax'
  /** libvirt: any live change on a shut-off domain ("domain is not running"). */
  | 'liveOnShutOff'
  /** libvirt: any config change on a transient domain ("transient domains do not have any persistent config"). */
  | 'configOnTransient'
  /** qemu/test/xen: reservation (min_guarantee) is not supported. */
  | 'reservationUnsupported'
  /** xen: limit (hard_limit) is not supported. */
  | 'limitUnsupported'
  /** qemu: live memory without a balloon device. */
  | 'liveMemoryWithoutBalloon'
  /** qemu/test: maxMemory on a domain with NUMA cells. */
  | 'numaMaxMemory'
  /** esx: memoryMB change while powered on without hot-add. */
  | 'maxMemoryPoweredOnWithoutHotAdd'
  /** esx: memoryMB decrease while powered on. */
  | 'maxMemoryDecreasePoweredOn'
  /** esx: memoryMB beyond hotPlugMemoryLimit while powered on. */
  | 'maxMemoryBeyondHotAddLimit'
  /** esx: there is no balloon-target knob: steps on 'memory' are refused. */
  | 'memoryKnobAbsent'
  /** esx: reservation above limit. */
  | 'reservationAboveLimit'
  /** Values off the hypervisor's granularity are refused rather than rounded (sim). */
  | 'offGranularity';

export interface ConformanceCapabilities {
  /** What identify().type must say, and what observe().type must say for created VMs. */
  type: HypervisorType;
  /** Every value the suite sends is a multiple of this (KiB for libvirt, 4 MiB for ESX). */
  granularity: bigint;
  /** ESX: one configuration that is also what runs (a change shows in both worlds). */
  singleConfig: boolean;
  /** VM shapes the fixture can create besides running + persistent + balloon. */
  create: { shutOff: boolean; transient: boolean; withoutBalloon: boolean; numa: boolean; hotAdd: boolean };
  /** Changes the peer applies. Every entry becomes an apply-then-observe test. */
  applies: readonly ApplyCapability[];
  /** Refusals the peer makes. Every entry becomes a refusal test. */
  refusals: readonly RefusalKind[];
  /**
   * After an accepted live memory change, what `balloon.actual` does:
   * 'follows' reaches the target (within `balloonTimeoutMs`), 'stays' keeps
   * its old value (device without a guest driver), 'unreported' is absent.
   */
  balloonActual: 'follows' | 'stays' | 'unreported';
  /**
   * Whether the peer reports a running VM's live balloon *target*.
   * 'observable' (default): live.memory is the target, whoever set it (sim,
   * the libvirt test driver, Xen). 'remembered': the peer reports only the
   * balloon's actual size (QEMU through libvirt: the live `<currentMemory>`
   * and virDomainGetInfo are the actual size), so live.memory is that size,
   * except that a driver reports the target it set itself on the running
   * instance until it restarts. Chooses which observe/apply assertions the
   * suite makes; only meaningful with a live memory knob.
   */
  liveBalloonTarget?: 'observable' | 'remembered';
  /** driver.events() reports lifecycle events for power changes. */
  lifecycleEvents: boolean;
  /** Default 5000. */
  balloonTimeoutMs?: number;
}

export interface ConformanceFixture {
  capabilities: ConformanceCapabilities;
  /** A new driver, connected. The suite closes it. */
  connect(): Promise<Driver>;
  /** Creates a VM on the peer behind vmmem's back; resolves when it is in the requested state. */
  createVM(spec: VMSpec): Promise<{ name: string; uuid: string }>;
  /** Destroys and undefines a VM behind vmmem's back. Must not throw if it is already gone. */
  removeVM(name: string): Promise<void>;
  /** Hard power-off (virDomainDestroy / PowerOffVM_Task). */
  powerOff(name: string): Promise<void>;
  /** Cold start: the config becomes live. */
  powerOn(name: string): Promise<void>;
  /** Breaks every connection that drivers from connect() hold (restart the daemon, cut the socket). */
  dropConnections(): Promise<void>;
  /** Optional: start / stop the peer (runs once around the whole suite). */
  setup?(): Promise<void>;
  teardown?(): Promise<void>;
}
