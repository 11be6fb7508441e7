/**
 * The `sim` driver: the Driver interface over an in-process SimHost.
 *
 * Each step becomes the hypervisor call a real driver would make: libvirt
 * types use virDomainSetMemoryFlags (maxMemory with MEM_MAXIMUM, memory) and
 * virDomainSetMemoryParameters (limit = hard_limit, reservation =
 * min_guarantee) with AFFECT_LIVE / AFFECT_CONFIG from the step's world — on
 * QEMU a live step and its config twin are one call with both flags, as the
 * libvirt driver sends them (live-config-pairs.ts); ESX uses ReconfigVM_Task
 * (maxMemory = memoryMB; reservation and limit send the whole
 * memoryAllocation). Otherwise no coalescing, so every intermediate state is
 * checked by the host's rules and `applied` is exact. ESX has a single
 * configuration: the step's world is not used there.
 *
 * Values not on the hypervisor's granularity are refused, not rounded:
 * rounding is the planner's job (DESIGN §1), and a real API cannot even carry
 * such a value (libvirt takes KiB, vSphere MB).
 */
import type {
  ApplyResult, CallOptions, ConnectOptions, Driver, DriverEvent, DriverFactory, HostObservation, HypervisorIdentity, VMHandle,
} from '../driver.ts';
import { DriverError } from '../driver.ts';
import type { Limit, ObservedVM, Step, VMRef } from '../../model/memory.ts';
import type { SimHost } from './host.ts';
import type { SimConnection } from './calls.ts';
import { SimRefusal } from './calls.ts';
import { SimInventoryError } from './inventory.ts';
import { createSimHost, SimURIError, simHost } from './registry.ts';
import { callGroups } from '../live-config-pairs.ts';
import type { CallGroup } from '../live-config-pairs.ts';

const KIB = 1024n;
const MIB = 1024n * KIB;

export interface SimDriverExtras {
  /** Use this inventory object (registered as sim:memory:<key>, key from the URI or generated). */
  inventory?: unknown;
  /** Use this host directly. */
  host?: SimHost;
}

export class SimDriver implements Driver {
  readonly kind = 'sim';
  private readonly options: ConnectOptions;
  private readonly extras: SimDriverExtras;
  private host: SimHost | undefined;
  private conn: SimConnection | undefined;

  constructor(options: ConnectOptions, extras: SimDriverExtras = {}) {
    this.options = options;
    this.extras = extras;
  }

  async connect(): Promise<void> {
    if (this.conn?.alive) return;
    const host = this.resolveHost();
    this.host = host;
    this.conn = host.open(this.options.timeoutMs);
  }

  private resolveHost(): SimHost {
    if (this.extras.host) return this.extras.host;
    const uri = this.options.uri;
    try {
      if (this.extras.inventory !== undefined) {
        const key = uri.startsWith('sim:memory:') ? uri.slice('sim:memory:'.length) : undefined;
        // Created once per driver: a reconnect finds the same host.
        this.extras.host = createSimHost(this.extras.inventory, key);
        return this.extras.host;
      }
      return simHost(uri);
    } catch (err) {
      if (err instanceof SimURIError) {
        throw new DriverError('InvalidURI', err.message, { op: 'connect', hypervisorMessage: err.message, cause: err });
      }
      if (err instanceof SimInventoryError) {
        const unreadable = /: file: cannot be read/.test(err.message);
        throw new DriverError(unreadable ? 'Unreachable' : 'InvalidURI', err.message, { op: 'connect', hypervisorMessage: err.message, cause: err });
      }
      throw err;
    }
  }

  async close(): Promise<void> {
    if (this.host && this.conn) this.host.close(this.conn);
  }

  /** The simulated host this driver is connected to (for tests). */
  get simHost(): SimHost | undefined {
    return this.host;
  }

  private session(op: string, vm?: string): { host: SimHost; conn: SimConnection } {
    if (!this.host || !this.conn) {
      throw new DriverError('Disconnected', `sim: ${op}: not connected (call connect() first)`, {
        op, ...(vm !== undefined ? { vm } : {}), hypervisorMessage: 'not connected',
      });
    }
    return { host: this.host, conn: this.conn };
  }

  async identify(): Promise<HypervisorIdentity> {
    const { host, conn } = this.session('identify');
    return host.call(conn, host.identifyOp(), undefined, () => ({
      type: host.type,
      version: host.version,
      hostname: host.hostname,
      hostMemory: host.hostMemory,
    }));
  }

  async lookup(ref: VMRef, opts: CallOptions = {}): Promise<VMHandle> {
    const { host, conn } = this.session('lookup');
    if (ref.name !== undefined) {
      return host.call(conn, host.lookupOp('name'), ref.name, () => host.lookupByName(ref.name), undefined, opts.signal);
    }
    if (ref.uuid !== undefined) {
      return host.call(conn, host.lookupOp('uuid'), ref.uuid, () => host.lookupByUuid(ref.uuid), undefined, opts.signal);
    }
    throw new DriverError('VMNotFound', 'sim: lookup needs a name or a uuid', { op: host.lookupOp('name'), hypervisorMessage: 'no name or uuid given' });
  }

  async observe(vm: VMHandle, opts: CallOptions = {}): Promise<ObservedVM> {
    const { host, conn } = this.session('observe', vm.name);
    return host.call(conn, host.observeOp(), vm.name, () => host.observe(vm), undefined, opts.signal);
  }

  /** One counted call (virConnectGetAllDomainStats / RetrievePropertiesEx) returning every VM. */
  async observeAll(opts: CallOptions = {}): Promise<HostObservation> {
    const { host, conn } = this.session('observeAll');
    const vms = await host.call(conn, host.observeAllOp(), undefined, () => host.observeAll(), undefined, opts.signal);
    return { vms, calls: 1 };
  }

  /**
   * Applies steps one call each. `observed` is the VM after the steps, read
   * from the host without a counted call: it models a real driver patching
   * its cached definition with what the hypervisor accepted (HOSTVIEW.md).
   */
  async apply(vm: VMHandle, steps: readonly Step[], opts: CallOptions = {}): Promise<ApplyResult> {
    const applied: Step[] = [];
    if (steps.length === 0) return { applied };
    const { host, conn } = this.session('apply', vm.name);
    // The VM's own type decides the API (an inventory may mix types; see docs/sim.md).
    const type = host.vm(vm.uuid)?.type ?? host.type;
    for (const group of callGroups(steps, type)) {
      try {
        await this.applyOne(host, conn, vm, group, opts.signal);
      } catch (err) {
        throw withApplied(err, applied, vm.name);
      }
      applied.push(...group);
    }
    const after = host.vm(vm.uuid);
    return after ? { applied, observed: host.observe(vm) } : { applied };
  }

  /** One hypervisor call: a step, or (QEMU) a live step and its config twin with both flags. */
  private async applyOne(host: SimHost, conn: SimConnection, vm: VMHandle, group: CallGroup, signal?: AbortSignal): Promise<void> {
    const step = group[0];
    const type = host.vm(vm.uuid)?.type ?? host.type;
    if (type === 'esx') return this.applyEsx(host, conn, vm, step, signal);
    const both = group.length === 2;
    const flags = both ? { live: true, config: true } : step.world === 'live' ? { live: true } : { config: true };
    const world = both ? 'AFFECT_LIVE|AFFECT_CONFIG' : step.world === 'live' ? 'AFFECT_LIVE' : 'AFFECT_CONFIG';
    if (step.field === 'maxMemory' && step.requested) return this.applyVirtioMem(host, conn, vm, step, step.requested, signal);
    switch (step.field) {
      case 'maxMemory':
      case 'memory': {
        const op = 'virDomainSetMemoryFlags';
        // virtio-mem: the balloon covers boot memory only (Step.balloonOffset).
        const kib = toKiB(op, vm.name, step) - (step.balloonOffset ?? 0n) / 1024n;
        const maximum = step.field === 'maxMemory';
        await host.call(conn, op, vm.name, () => host.virDomainSetMemoryFlags(vm, kib, { ...flags, maximum }),
          `${kib}KiB ${world}${maximum ? '|MEM_MAXIMUM' : ''}`, signal);
        return;
      }
      case 'limit':
      case 'reservation': {
        const op = 'virDomainSetMemoryParameters';
        const param = step.field === 'limit' ? 'hard_limit' : 'min_guarantee';
        const value: bigint | 'unlimited' = step.to === 'unlimited' && step.field === 'limit' ? 'unlimited' : toKiB(op, vm.name, step);
        await host.call(conn, op, vm.name, () => host.virDomainSetMemoryParameters(vm, { [param]: value }, flags),
          `${param}=${value === 'unlimited' ? 'unlimited' : `${value}KiB`} ${world}`, signal);
        return;
      }
    }
  }

  /** virtio-mem requested (virDomainUpdateDeviceFlags per changed device) or, beyond the sizes, a redefined config. */
  private async applyVirtioMem(host: SimHost, conn: SimConnection, vm: VMHandle, step: Step, requested: readonly bigint[], signal?: AbortSignal): Promise<void> {
    const state = host.vm(vm.uuid);
    const devs = (step.world === 'live' ? state?.virtioMem?.live : state?.virtioMem?.config) ?? [];
    const kibs = requested.map((r) => r / 1024n);
    if (step.sizes) {
      const sizes = step.sizes.map((v) => v / 1024n);
      await host.call(conn, 'virDomainDefineXML', vm.name, () => host.redefineVirtioMem(vm, sizes, kibs), `virtio-mem sizes ${sizes.join(',')}KiB requested ${kibs.join(',')}KiB`, signal);
      return;
    }
    const flags = step.world === 'live' ? { live: true } : { config: true };
    for (let i = 0; i < kibs.length; i++) {
      if (devs[i] && devs[i]!.requested === requested[i]) continue;
      const k = kibs[i]!;
      await host.call(conn, 'virDomainUpdateDeviceFlags', vm.name, () => host.virDomainUpdateDeviceFlags(vm, i, k, flags), `virtiomem${i} requested=${k}KiB ${step.world === 'live' ? 'AFFECT_LIVE' : 'AFFECT_CONFIG'}`, signal);
    }
  }

  private async applyEsx(host: SimHost, conn: SimConnection, vm: VMHandle, step: Step, signal?: AbortSignal): Promise<void> {
    const op = 'ReconfigVM_Task';
    switch (step.field) {
      case 'memory':
        throw new DriverError('Refused', `${op} on ${vm.name}: ESX has no balloon target`, {
          op, vm: vm.name,
          hypervisorMessage: "NotSupported: VirtualMachineConfigSpec has no setting for the balloon target ('memory'); ESX enforces it through memoryAllocation.limit",
        });
      case 'maxMemory': {
        const mb = toMB(op, vm.name, step, 'spec.memoryMB');
        await host.call(conn, op, vm.name, () => host.ReconfigVM_Task(vm, { memoryMB: Number(mb) }), `memoryMB=${mb}`, signal);
        return;
      }
      case 'reservation':
      case 'limit': {
        // The whole memoryAllocation, always (a partial one resets the rest).
        const current = host.observe(vm).config;
        if (!current) throw new DriverError('Protocol', `sim: ${vm.name} has no configuration`, { op, vm: vm.name });
        let reservation = (current.reservation ?? 0n) / MIB;
        const curLimit: Limit = current.limit ?? 'unlimited';
        let limit = curLimit === 'unlimited' ? -1n : curLimit / MIB;
        if (step.field === 'reservation') reservation = toMB(op, vm.name, step, 'spec.memoryAllocation.reservation');
        else limit = step.to === 'unlimited' ? -1n : toMB(op, vm.name, step, 'spec.memoryAllocation.limit');
        const spec = { memoryAllocation: { reservation: Number(reservation), limit: Number(limit), shares: { level: 'normal' } } };
        await host.call(conn, op, vm.name, () => host.ReconfigVM_Task(vm, spec), `memoryAllocation={reservation: ${reservation}, limit: ${limit}}`, signal);
        return;
      }
    }
  }

  async events(onEvent: (event: DriverEvent) => void): Promise<() => Promise<void>> {
    const { host, conn } = this.session('events');
    const unsubscribe = host.subscribe(conn, onEvent);
    return async () => unsubscribe();
  }
}

function refuse(op: string, vm: string, hypervisorMessage: string): DriverError {
  return new DriverError('Refused', `${op} on ${vm}: ${hypervisorMessage}`, { op, vm, hypervisorMessage });
}

function asBytes(op: string, vm: string, step: Step, message: string): bigint {
  if (typeof step.to !== 'bigint' || step.to < 0n) throw refuse(op, vm, message);
  return step.to;
}

/** libvirt takes KiB: a value that is not a whole number of KiB cannot be sent. */
function toKiB(op: string, vm: string, step: Step): bigint {
  const bytes = asBytes(op, vm, step, `invalid argument: ${step.field} ${String(step.to)} is not a number of bytes`);
  if (bytes % KIB !== 0n) throw refuse(op, vm, `invalid argument: ${step.field} ${bytes} bytes is not a whole number of KiB (libvirt takes KiB)`);
  return bytes / KIB;
}

/** vSphere takes MB. */
function toMB(op: string, vm: string, step: Step, what: string): bigint {
  const bytes = asBytes(op, vm, step, `InvalidArgument: A specified parameter was not correct: ${what} (${String(step.to)})`);
  if (bytes % MIB !== 0n) throw refuse(op, vm, `InvalidArgument: A specified parameter was not correct: ${what} (${bytes} bytes is not a whole number of MB)`);
  return bytes / MIB;
}

/** Re-throws a failure as a DriverError carrying the steps applied before it. */
function withApplied(err: unknown, applied: Step[], vm: string): DriverError {
  if (err instanceof SimRefusal) {
    return new DriverError('Refused', err.message, { op: err.op, vm: err.vm, hypervisorMessage: err.hypervisorMessage, applied: [...applied], cause: err });
  }
  if (err instanceof DriverError) {
    return new DriverError(err.code, err.message, {
      op: err.op, vm: err.vm ?? vm, ...(err.hypervisorMessage !== undefined ? { hypervisorMessage: err.hypervisorMessage } : {}),
      applied: [...applied], cause: err.cause ?? err,
    });
  }
  return new DriverError('Protocol', `sim: ${(err as Error)?.message ?? String(err)}`, { op: 'apply', vm, applied: [...applied], cause: err });
}

/** The DriverFactory for `sim:` URIs. */
export const createSimDriver: DriverFactory = (options: ConnectOptions) => new SimDriver(options);
