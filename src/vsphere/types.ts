// The vim25 data the client reads and writes, in vSphere's own units (MiB for memory sizes and
// allocation, bytes for host memory). Plain data: no behaviour lives here.
import type { VSphereError, VSphereFault } from './errors.ts';
import type { MoRef } from './soap.ts';
import type { XmlNode } from './xml.ts';

export type { MoRef } from './soap.ts';

export interface AboutInfo {
  name: string;
  fullName: string;
  vendor: string;
  version: string;
  build: string;
  apiType: string; // 'HostAgent' (ESXi) | 'VirtualCenter'
  apiVersion: string;
  instanceUuid: string | undefined;
  osType: string;
  productLineId: string;
}

export interface ServiceContent {
  about: AboutInfo;
  rootFolder: MoRef;
  propertyCollector: MoRef;
  viewManager: MoRef | undefined;
  sessionManager: MoRef;
  searchIndex: MoRef;
}

export interface UserSession {
  key: string;
  userName: string;
  fullName: string;
  loginTime: string;
}

export type SharesLevel = 'low' | 'normal' | 'high' | 'custom';

export interface SharesInfo {
  level: SharesLevel;
  /** Number of shares; meaningful for `custom` (the server computes it for the other levels). */
  shares: number;
}

/** A VM's memory allocation as read: any field may be absent (vcsim drops unsent ones). MiB. */
export interface MemoryAllocationInfo {
  reservation?: number;
  /** -1 = unlimited. */
  limit?: number;
  expandableReservation?: boolean;
  shares?: SharesInfo;
  overheadLimit?: number;
}

/**
 * A whole memory allocation for ReconfigVM_Task: every field is required on purpose, because a
 * partial `memoryAllocation` resets the fields left out (see docs/vsphere.md). MiB; limit -1 = unlimited.
 */
export interface MemoryAllocationSpec {
  reservation: number;
  limit: number;
  shares: SharesInfo;
  expandableReservation?: boolean;
}

export type PowerState = 'poweredOn' | 'poweredOff' | 'suspended';

export interface VmMemoryInfo {
  ref: MoRef;
  name: string;
  uuid: string | undefined;
  instanceUuid: string | undefined;
  /** Configured memory (guest-visible RAM), MiB. */
  memoryMB: number;
  memoryAllocation: MemoryAllocationInfo;
  memoryHotAddEnabled: boolean;
  /** MiB; undefined when the server does not report it. */
  hotPlugMemoryLimit: number | undefined;
  /** MiB; undefined when the server does not report it. */
  hotPlugMemoryIncrementSize: number | undefined;
  powerState: PowerState;
  host: MoRef | undefined;
  quickStats: { guestMemoryUsage: number; hostMemoryUsage: number; balloonedMemory: number };
}

export interface HostMemoryInfo {
  ref: MoRef;
  name: string;
  /** `summary.hardware.memorySize`: physical memory, bytes. */
  memorySizeBytes: bigint;
}

export interface ReconfigSpec {
  /** MiB (vSphere wants a multiple of 4). */
  memoryMB?: number;
  memoryAllocation?: MemoryAllocationSpec;
}

export interface ObjectContent {
  obj: MoRef;
  props: Map<string, XmlNode>;
  /** Properties the server could not return, with the fault. */
  missing: Map<string, VSphereFault>;
}

export interface PropertyChange {
  name: string;
  op: 'add' | 'remove' | 'assign' | 'indirectRemove';
  /** Absent for removals. */
  val: XmlNode | undefined;
}

export interface ObjectUpdate {
  obj: MoRef;
  kind: 'enter' | 'modify' | 'leave';
  changes: PropertyChange[];
}

export interface WatchOptions {
  /** How long one WaitForUpdatesEx may wait on the server. Default 60 s. */
  maxWaitSeconds?: number;
  /** Called when the watch breaks (it then restarts by itself with a fresh initial set). */
  onError?: (err: VSphereError) => void;
  /** First and longest pause before re-establishing a broken watch. Default 1 s and 30 s. */
  retryMinMs?: number;
  retryMaxMs?: number;
}

export interface Watch {
  /** Cancels the wait on the server, destroys the collector and view; resolves when done. */
  stop(): Promise<void>;
}

export type VmSelector =
  | { name: string }
  | { uuid: string }
  | { instanceUuid: string }
  | { inventoryPath: string }
  | { moref: string };

/** The config paths of a VM's memory view (parseVmMemory): what a reconfigure can change. */
export const VM_CONFIG_PROPERTIES = [
  'config.uuid',
  'config.instanceUuid',
  'config.hardware.memoryMB',
  'config.memoryAllocation',
  'config.memoryHotAddEnabled',
  'config.hotPlugMemoryLimit',
  'config.hotPlugMemoryIncrementSize',
] as const;

export const VM_MEMORY_PROPERTIES = [
  'name',
  ...VM_CONFIG_PROPERTIES,
  'runtime.powerState',
  'runtime.host',
  'summary.quickStats',
] as const;
