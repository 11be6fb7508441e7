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

/** Secret material for a connection. Never logged: see redact.ts in controller. */
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
  | { kind: 'disconnected'; reason: string };

export interface ApplyResult {
  /** Steps the hypervisor accepted, in order. */
  applied: Step[];
}

export interface Driver {
  /** Which implementation this is: 'libvirt' | 'vsphere' | 'sim'. */
  readonly kind: string;
  connect(): Promise<void>;
  close(): Promise<void>;
  identify(): Promise<HypervisorIdentity>;
  /** Throws DriverError code 'VMNotFound' when no such VM. */
  lookup(ref: VMRef): Promise<VMHandle>;
  observe(vm: VMHandle): Promise<ObservedVM>;
  /**
   * Applies steps in order; stops at the first refusal and throws a
   * DriverError (code 'Refused') carrying the hypervisor's own message and
   * the steps applied before it in `applied`. A driver may coalesce adjacent
   * steps into one call but never reorders them.
   */
  apply(vm: VMHandle, steps: readonly Step[]): Promise<ApplyResult>;
  /** Subscribe to changes; returns an unsubscribe function. Optional. */
  events?(onEvent: (event: DriverEvent) => void): Promise<() => Promise<void>>;
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
  | 'InvalidURI';

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
