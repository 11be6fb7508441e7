/**
 * The driver interface (DESIGN §5): one implementation per hypervisor API
 * (libvirt, vSphere, sim). A driver translates observe/apply to protocol
 * calls; it knows nothing of Kubernetes objects or desired state.
 */
import type { HypervisorType, ObservedVM, Step, VMRef } from '../model/memory.ts';

export interface HypervisorIdentity {
  type: HypervisorType;
  /** The hypervisor's own version string, e.g. "9.0.0" or "VMware ESXi 8.0.3". */
  version: string;
  hostname?: string;
  /** Host RAM in bytes, when the hypervisor reports it. */
  hostMemory?: bigint;
}

/** Opaque handle a driver returns from lookup and accepts in observe/apply. */
export interface VMHandle {
  readonly name: string;
  readonly uuid: string;
}

/** Secret material for a connection. Never logged: registerSecret and the redaction in controller/log.ts. */
export interface Credentials {
  username?: string;
  password?: string;
  /** PEM client certificate and key (libvirt TLS). */
  clientCert?: string;
  clientKey?: string;
  /** PEM CA bundle used to verify the server (libvirt TLS, vSphere). */
  caCert?: string;
  /** PEM private key and optional known_hosts content (libvirt over SSH). */
  sshPrivateKey?: string;
  knownHosts?: string;
}

export interface ConnectOptions {
  uri: string;
  credentials?: Credentials;
  /** Only when the user set `spec.tls.insecureSkipVerify: true`. */
  insecureSkipVerify?: boolean;
  /** Per-call timeout in ms (connect and every call). */
  timeoutMs?: number;
}

export type DriverEvent =
  | { kind: 'lifecycle'; vm: VMHandle; detail: string }
  | { kind: 'balloon'; vm: VMHandle; actual: bigint }
  /** A virtio-mem device's current size changed (libvirt MEMORY_DEVICE_SIZE_CHANGE). */
  | { kind: 'memoryDevice'; vm: VMHandle; alias: string; size: bigint }
  /** The VM's definition changed (libvirt DEFINED/UNDEFINED, device added/removed; vSphere config.* update). */
  | { kind: 'config'; vm: VMHandle; detail: string }
  | { kind: 'disconnected'; reason: string };

/** One bulk look at a whole host (DESIGN §5a; contract in /work/HOSTVIEW.md). */
export interface HostObservation {
  /** Every VM the host has (managed by vmmem or not), observed as observe() would. */
  vms: ObservedVM[];
  /** Hypervisor calls this observation cost (so the bench can print calls per VMM). */
  calls: number;
}

/**
 * Per-call options. A driver stops waiting when `signal` aborts and rejects
 * with DriverError code 'Timeout' (or an AbortError) naming the call: a
 * reconcile that timed out or a stopping operator must not leave calls
 * hanging on a slow host.
 */
export interface CallOptions {
  signal?: AbortSignal;
}

export interface ApplyResult {
  /** Steps the hypervisor accepted, in order. */
  applied: Step[];
  /**
   * The VM's observation after the steps, when the driver knows it without
   * another call (e.g. its cached config patched with what the hypervisor
   * accepted). Absent: the caller observes once more.
   */
  observed?: ObservedVM;
}

export interface Driver {
  /** Which implementation this is: 'libvirt' | 'vsphere' | 'sim'. */
  readonly kind: string;
  connect(): Promise<void>;
  close(): Promise<void>;
  identify(): Promise<HypervisorIdentity>;
  /** Throws DriverError code 'VMNotFound' when no such VM. */
  lookup(ref: VMRef, opts?: CallOptions): Promise<VMHandle>;
  observe(vm: VMHandle, opts?: CallOptions): Promise<ObservedVM>;
  /**
   * Applies steps in order; stops at the first refusal and throws a
   * DriverError (code 'Refused') carrying the hypervisor's own message and
   * the steps applied before it in `applied`. A driver may coalesce adjacent
   * steps into one call but never reorders them.
   */
  apply(vm: VMHandle, steps: readonly Step[], opts?: CallOptions): Promise<ApplyResult>;
  /** Subscribe to changes; returns an unsubscribe function. Optional. */
  events?(onEvent: (event: DriverEvent) => void): Promise<() => Promise<void>>;
  /**
   * Every VM on the host, in as few hypervisor calls as the API allows
   * (libvirt: virConnectListAllDomains + virConnectGetAllDomainStats with
   * cached domain XML refreshed on events; vSphere: one PropertyCollector
   * RetrievePropertiesEx over a ContainerView; sim: one counted call).
   * Optional for now: the controller falls back to lookup + observe per VMM
   * for drivers without it.
   */
  observeAll?(opts?: CallOptions): Promise<HostObservation>;
}

export type DriverErrorCode =
  | 'VMNotFound'
  | 'Unreachable'
  | 'AuthFailed'
  | 'TLS'
  | 'Refused'
  | 'Disconnected'
  | 'Timeout'
  | 'Protocol'
  | 'InvalidURI'
  /** The admin's policy (operator flags, src/drivers/policy.ts) forbids this Hypervisor; nothing was opened. */
  | 'NotAllowed';

/** Every driver failure: which call, which VM, and the hypervisor's own message. */
export class DriverError extends Error {
  readonly code: DriverErrorCode;
  /** The hypervisor call that failed, e.g. "virDomainSetMemoryFlags" or "ReconfigVM_Task". */
  readonly op: string;
  readonly vm: string | undefined;
  /** The hypervisor's own error text, verbatim. */
  readonly hypervisorMessage: string | undefined;
  /** Steps already applied when the error happened (apply only). */
  readonly applied: Step[];

  constructor(
    code: DriverErrorCode,
    message: string,
    details: { op: string; vm?: string; hypervisorMessage?: string; applied?: Step[]; cause?: unknown },
  ) {
    super(message, { cause: details.cause });
    this.name = 'DriverError';
    this.code = code;
    this.op = details.op;
    this.vm = details.vm;
    this.hypervisorMessage = details.hypervisorMessage;
    this.applied = details.applied ?? [];
  }
}

export type DriverFactory = (options: ConnectOptions) => Driver;
