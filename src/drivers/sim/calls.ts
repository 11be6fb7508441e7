/**
 * The vocabulary of the simulated host's hypervisor calls: libvirt's error
 * prefixes, the call flags and specs, the call record tests read, a client
 * connection, and the refusal the driver turns into DriverError('Refused').
 */
import type { DriverEvent } from '../driver.ts';

/** libvirt's error-class prefixes (virerror.c), as they appear in the message. */
export const LV = {
  operationInvalid: (m: string) => `Requested operation is not valid: ${m}`,
  invalidArg: (m: string) => `invalid argument: ${m}`,
  argumentUnsupported: (m: string) => `argument unsupported: ${m}`,
  noSupport: (m: string) => `this function is not supported by the connection driver: ${m}`,
  internal: (m: string) => `internal error: ${m}`,
  noDomain: (m: string) => `Domain not found: ${m}`,
};

/** libvirt virDomainModificationImpact flags, as booleans. */
export interface SimAffectFlags {
  live?: boolean;
  config?: boolean;
}

/** vSphere VirtualMachineConfigSpec, memory part only. Values in MB; limit -1 = unlimited. */
export interface SimReconfigSpec {
  memoryMB?: number;
  memoryAllocation?: { reservation?: number; limit?: number; shares?: unknown };
}

export interface SimCallRecord {
  /** Hypervisor call name, e.g. virDomainSetMemoryFlags, ReconfigVM_Task. */
  op: string;
  vm?: string;
  /** Connection id the call came on (0 = out of band). */
  connection: number;
  outcome: 'ok' | 'refused' | 'notFound';
  /** Call arguments in readable form, e.g. "4194304KiB live maximum". */
  detail?: string;
  error?: string;
}

/** One client connection to the host (one per connected driver). */
export class SimConnection {
  readonly id: number;
  readonly timeoutMs: number | undefined;
  alive = true;
  /** Why the connection ended, when it did. */
  reason = '';
  callsMade = 0;
  readonly subscribers = new Set<(event: DriverEvent) => void>();
  constructor(id: number, timeoutMs?: number) {
    this.id = id;
    this.timeoutMs = timeoutMs;
  }
}

/** Thrown by the hypervisor calls; the driver turns it into DriverError('Refused'). */
export class SimRefusal extends Error {
  readonly op: string;
  readonly vm: string;
  readonly hypervisorMessage: string;
  constructor(op: string, vm: string, hypervisorMessage: string) {
    super(`${op} on ${vm}: ${hypervisorMessage}`);
    this.name = 'SimRefusal';
    this.op = op;
    this.vm = vm;
    this.hypervisorMessage = hypervisorMessage;
  }
}
