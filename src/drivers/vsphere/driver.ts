/**
 * The vSphere driver: the Driver interface over the vim25 client (src/vsphere/).
 *
 * ESX has one VM configuration that is also what runs: observe() reports it as `config`, and as
 * `live` too while the VM is powered on; apply() takes steps in world `config` (a `live` step of
 * the same field and value is the same change and is not sent twice).
 *
 * Knobs (DESIGN §2): maxMemory = `memoryMB`; reservation and limit = `memoryAllocation` (MiB,
 * limit -1 = unlimited); `memory` has no knob of its own (the planner carries it in the limit),
 * so a `memory` step is refused. Every ReconfigVM_Task sends the WHOLE memoryAllocation
 * (reservation, limit, shares as currently configured, expandableReservation when reported),
 * read just before: a partial one resets the fields left out.
 *
 * Coalescing: consecutive steps go into one ReconfigVM_Task as long as no field repeats with
 * another value (a repeat starts a new task), so the order of the plan is kept and each task's
 * result is a state the plan passes through. A refused task applied none of its steps: `applied`
 * lists exactly the steps of the tasks before it.
 *
 * Values must be whole MiB (the planner rounds; maxMemory to 4 MiB): anything else is refused,
 * not rounded here.
 */
import type {
  ApplyResult, CallOptions, ConnectOptions, Driver, DriverErrorCode, DriverEvent, DriverFactory, HostObservation, HypervisorIdentity, VMHandle,
} from '../driver.ts';
import { DriverError } from '../driver.ts';
import type { Field, Limit, ObservedVM, Step, VMRef } from '../../model/memory.ts';
import type {
  MemoryAllocationSpec, MoRef, ReconfigSpec, VmMemoryInfo, VSphereClientOptions, WatchOptions,
} from '../../vsphere/index.ts';
import {
  VSphereClient,
  VSphereError,
  VSphereFault,
  VSphereNotFoundError,
  VSphereProtocolError,
  VSphereTimeoutError,
  VSphereTransportError,
} from '../../vsphere/index.ts';

import { WATCHED, eventsOf } from './events.ts';
import { Fleet } from './fleet.ts';
import { MIB, VSphereVMHandle, handleOf, observedOf } from './observed.ts';

export { eventsOf } from './events.ts';
export { VSphereVMHandle, observedOf } from './observed.ts';

export interface VSphereDriverExtras {
  /** Deadline for each ReconfigVM_Task to finish (default: the client's, 5 min). */
  taskTimeoutMs?: number;
  /** Watch tuning for events() (long-poll length, retry pauses). */
  watch?: Omit<WatchOptions, 'onError'>;
}

export class VSphereDriver implements Driver {
  readonly kind = 'vsphere';
  readonly #options: ConnectOptions;
  readonly #extras: VSphereDriverExtras;
  #client: VSphereClient | undefined;
  #reconfigureCalls = 0;
  #fleet: Fleet | undefined;
  readonly #subscribers = new Set<(event: DriverEvent) => void>();

  constructor(options: ConnectOptions, extras: VSphereDriverExtras = {}) {
    this.#options = options;
    this.#extras = extras;
  }

  /** How many ReconfigVM_Task calls this driver has made (coalescing is observable in tests). */
  get reconfigureCalls(): number {
    return this.#reconfigureCalls;
  }

  async connect(): Promise<void> {
    if (this.#client) return;
    const o = this.#options;
    let url: URL;
    try {
      url = new URL(o.uri);
    } catch {
      throw new DriverError('InvalidURI', `vsphere: invalid URI ${JSON.stringify(redactUri(o.uri))}: use https://host/sdk`, { op: 'connect' });
    }
    if (url.protocol !== 'https:') {
      throw new DriverError('InvalidURI', `vsphere: URI must be https://host/sdk, got ${url.protocol}//`, { op: 'connect' });
    }
    if (url.username !== '' || url.password !== '') {
      // A URI is tenant-visible (spec, logs): credentials live only in the Secret.
      throw new DriverError('InvalidURI', `vsphere: credentials in the URI ${JSON.stringify(redactUri(o.uri))} are refused: put username and password in the Secret named by spec.credentialsSecretRef`, { op: 'connect' });
    }
    const username = o.credentials?.username;
    const password = o.credentials?.password;
    if (username === undefined || password === undefined) {
      throw new DriverError('AuthFailed', 'vsphere: credentials need a username and a password (Secret keys username/password)', {
        op: 'Login',
      });
    }
    const copts: VSphereClientOptions = { url: o.uri, username, password };
    if (o.credentials?.caCert !== undefined) copts.caPem = o.credentials.caCert;
    if (o.insecureSkipVerify === true) copts.insecureSkipVerify = true;
    if (o.timeoutMs !== undefined) copts.requestTimeoutMs = o.timeoutMs;
    if (this.#extras.taskTimeoutMs !== undefined) copts.taskTimeoutMs = this.#extras.taskTimeoutMs;
    try {
      this.#client = await VSphereClient.connect(copts);
    } catch (e) {
      throw toDriverError(e, 'Login');
    }
  }

  async close(): Promise<void> {
    const c = this.#client;
    const f = this.#fleet;
    this.#client = undefined;
    this.#fleet = undefined;
    await f?.close();
    await c?.close();
  }

  #c(op: string, vm?: string): VSphereClient {
    if (!this.#client) {
      throw new DriverError('Disconnected', `vsphere: ${op}: not connected (call connect() first)`, {
        op,
        ...(vm !== undefined ? { vm } : {}),
        hypervisorMessage: 'not connected',
      });
    }
    return this.#client;
  }

  async identify(): Promise<HypervisorIdentity> {
    const c = this.#c('RetrieveServiceContent');
    try {
      const about = await c.about();
      const hosts = await c.hostMemory();
      const id: HypervisorIdentity = {
        type: 'esx',
        version: about.fullName || `${about.name} ${about.version}`.trim(),
        hostname: new URL(c.url).hostname,
      };
      // ESXi: its own RAM. vCenter: the sum over the hosts it manages.
      if (hosts.length > 0) id.hostMemory = hosts.reduce((s, h) => s + h.memorySizeBytes, 0n);
      return id;
    } catch (e) {
      throw toDriverError(e, 'RetrieveServiceContent');
    }
  }

  async lookup(ref: VMRef): Promise<VSphereVMHandle> {
    const c = this.#c('lookup');
    const op = ref.name !== undefined ? 'RetrievePropertiesEx' : 'FindByUuid';
    const label = ref.name ?? ref.uuid;
    try {
      let moref: MoRef;
      if (ref.name !== undefined) {
        moref = await c.lookupVm({ name: ref.name });
      } else if (ref.uuid !== undefined) {
        // The instance uuid is unique within a vCenter; the BIOS uuid is what the guest sees
        // (and may repeat in clones). Accept either.
        moref = (await c.findVmByUuid(ref.uuid, { instanceUuid: true })) ?? (await c.lookupVm({ uuid: ref.uuid }));
      } else {
        throw new DriverError('VMNotFound', 'vsphere: lookup needs a name or a uuid', { op, hypervisorMessage: 'no name or uuid given' });
      }
      const info = await c.getVmMemory(moref);
      return handleOf(info);
    } catch (e) {
      throw toDriverError(e, op, label);
    }
  }

  async #moref(vm: VMHandle): Promise<MoRef> {
    if (vm instanceof VSphereVMHandle) return vm.moref;
    return (await this.lookup({ uuid: vm.uuid })).moref;
  }

  async observe(vm: VMHandle): Promise<ObservedVM> {
    const c = this.#c('RetrievePropertiesEx', vm.name);
    try {
      return observedOf(await c.getVmMemory(await this.#moref(vm)));
    } catch (e) {
      throw toDriverError(e, 'RetrievePropertiesEx', vm.name);
    }
  }

  /**
   * Every VM on the server through one PropertyCollector filter (fleet.ts): the first call reads
   * the whole set, each later one is one WaitForUpdatesEx of what changed. Changes it sees are
   * also given to events() subscribers (`config` for a memory reconfigure, lifecycle otherwise).
   */
  async observeAll(opts: CallOptions = {}): Promise<HostObservation> {
    const op = 'WaitForUpdatesEx';
    const c = this.#c(op);
    if (opts.signal?.aborted) throw new DriverError('Timeout', `vsphere: ${op}: aborted before the call`, { op });
    this.#fleet ??= new Fleet(c, (e) => this.#publish(e));
    const fleet = this.#fleet;
    try {
      const { result: vms, calls } = await c.countCalls(() => fleet.observeAll());
      return { vms, calls };
    } catch (e) {
      throw toDriverError(e, op);
    }
  }

  #publish(e: DriverEvent): void {
    for (const s of this.#subscribers) {
      try {
        s(e);
      } catch {
        // a subscriber's failure is its own
      }
    }
  }

  /**
   * VM changes as they happen (WaitForUpdatesEx): power changes → lifecycle `Started`/`Stopped`/
   * `Suspended`, memory reconfigures → `Reconfigured`, new/removed VMs → `Defined`/`Undefined`,
   * renames → `Renamed`. A broken watch → `disconnected` (then it re-establishes itself).
   */
  async events(onEvent: (event: DriverEvent) => void): Promise<() => Promise<void>> {
    const c = this.#c('WaitForUpdatesEx');
    const known = new Map<string, { name: string; uuid: string }>();
    const emit = (e: DriverEvent) => {
      try {
        onEvent(e);
      } catch {
        // a subscriber's failure is its own
      }
    };
    try {
      const w = await c.watch(
        'VirtualMachine',
        WATCHED,
        (updates, initial) => {
          for (const e of eventsOf(updates, initial, known)) emit(e);
        },
        { onError: (err) => emit({ kind: 'disconnected', reason: err.message }), ...this.#extras.watch },
      );
      this.#subscribers.add(emit);
      return async () => {
        this.#subscribers.delete(emit);
        await w.stop();
      };
    } catch (e) {
      throw toDriverError(e, 'WaitForUpdatesEx');
    }
  }

  async apply(vm: VMHandle, steps: readonly Step[]): Promise<ApplyResult> {
    const op = 'ReconfigVM_Task';
    const applied: Step[] = [];
    if (steps.length === 0) return { applied };
    const c = this.#c(op, vm.name);
    for (const group of coalesce(steps)) {
      try {
        const moref = await this.#moref(vm);
        const spec = specFor(group.values, await c.getVmMemory(moref), vm.name);
        if (spec.memoryMB !== undefined || spec.memoryAllocation !== undefined) {
          this.#reconfigureCalls++;
          await c.reconfigureVm(moref, spec);
        }
      } catch (e) {
        const d = toDriverError(e, op, vm.name);
        throw new DriverError(d.code, d.message, {
          op: d.op,
          vm: vm.name,
          ...(d.hypervisorMessage !== undefined ? { hypervisorMessage: d.hypervisorMessage } : {}),
          applied: [...applied],
          cause: e,
        });
      }
      applied.push(...group.steps);
    }
    return { applied };
  }
}

// Pure helpers (exported for unit tests) ---------------------------------------------------------

export interface StepGroup {
  steps: Step[];
  values: Partial<Record<Field, bigint | Limit>>;
}

/**
 * Splits steps into ReconfigVM_Task groups without reordering: a group grows until a field
 * comes back with another value. A step repeating a field's value in the group (the same change
 * in the other world) joins it without effect. A `memory` step is a group of its own (refused).
 */
export function coalesce(steps: readonly Step[]): StepGroup[] {
  const groups: StepGroup[] = [];
  let cur: StepGroup | undefined;
  for (const s of steps) {
    const prev = cur?.values[s.field];
    // A `memory` step has no knob and is refused on its own, after the steps before it are applied.
    const alone = s.field === 'memory' || cur?.values.memory !== undefined;
    if (!cur || alone || (prev !== undefined && prev !== s.to)) {
      cur = { steps: [], values: {} };
      groups.push(cur);
    }
    cur.steps.push(s);
    cur.values[s.field] = s.to;
  }
  return groups;
}

function refused(vm: string, hypervisorMessage: string): DriverError {
  const op = 'ReconfigVM_Task';
  return new DriverError('Refused', `${op} on ${vm}: ${hypervisorMessage}`, { op, vm, hypervisorMessage });
}

function toMiB(v: bigint | Limit, what: string, vm: string): number {
  if (typeof v !== 'bigint' || v < 0n) throw refused(vm, `InvalidArgument: ${what} ${String(v)} is not a number of bytes`);
  if (v % MIB !== 0n) throw refused(vm, `InvalidArgument: ${what} ${v} bytes is not a whole number of MB (vSphere takes MB)`);
  return Number(v / MIB);
}

/**
 * The ReconfigVM_Task spec for one group, given the VM as it is now: memoryMB when maxMemory
 * changes; the WHOLE memoryAllocation (current values, with this group's changes) when
 * reservation or limit changes.
 */
export function specFor(values: StepGroup['values'], current: VmMemoryInfo, vm: string): ReconfigSpec {
  if (values.memory !== undefined) {
    throw refused(
      vm,
      "NotSupported: VirtualMachineConfigSpec has no setting for the balloon target ('memory'); ESX enforces it through memoryAllocation.limit",
    );
  }
  const spec: ReconfigSpec = {};
  if (values.maxMemory !== undefined) {
    const mb = toMiB(values.maxMemory, 'spec.memoryMB', vm);
    if (mb <= 0) throw refused(vm, 'InvalidArgument: spec.memoryMB must be positive');
    spec.memoryMB = mb;
  }
  if (values.reservation !== undefined || values.limit !== undefined) {
    const a = current.memoryAllocation;
    const alloc: MemoryAllocationSpec = {
      reservation: values.reservation !== undefined ? toMiB(values.reservation, 'spec.memoryAllocation.reservation', vm) : (a.reservation ?? 0),
      limit:
        values.limit !== undefined
          ? values.limit === 'unlimited'
            ? -1
            : toMiB(values.limit, 'spec.memoryAllocation.limit', vm)
          : (a.limit ?? -1),
      shares: a.shares ?? { level: 'normal', shares: 0 },
    };
    if (a.expandableReservation !== undefined) alloc.expandableReservation = a.expandableReservation;
    spec.memoryAllocation = alloc;
  }
  return spec;
}

function redactUri(uri: string): string {
  return uri.replace(/\/\/[^@/]*@/, '//');
}

/** Maps a client error to a DriverError, keeping vSphere's own message. */
export function toDriverError(e: unknown, op: string, vm?: string): DriverError {
  if (e instanceof DriverError) return e;
  const base = { op, ...(vm !== undefined ? { vm } : {}), cause: e };
  if (e instanceof VSphereFault) {
    const hypervisorMessage = e.faultString !== '' ? `${e.faultName}: ${e.faultString}` : e.faultName;
    let code: DriverErrorCode = 'Refused';
    if (e.faultName === 'InvalidLogin' || e.faultName === 'NotAuthenticated' || e.faultName === 'NoPermission') code = 'AuthFailed';
    else if (e.faultName === 'ManagedObjectNotFound') code = 'VMNotFound';
    return new DriverError(code, `vsphere: ${e.method} on ${vm ?? 'the server'}: ${hypervisorMessage}`, {
      ...base,
      op: e.method,
      hypervisorMessage,
    });
  }
  if (e instanceof VSphereNotFoundError) {
    return new DriverError('VMNotFound', `vsphere: ${e.message}`, { ...base, hypervisorMessage: e.message });
  }
  if (e instanceof VSphereTransportError) {
    const tls = /TLS verification/.test(e.message);
    const closed = e.code === 'ERR_CLIENT_CLOSED';
    return new DriverError(tls ? 'TLS' : closed ? 'Disconnected' : 'Unreachable', `vsphere: ${e.message}`, {
      ...base,
      op: e.method,
      hypervisorMessage: e.message,
    });
  }
  if (e instanceof VSphereTimeoutError) {
    return new DriverError('Timeout', `vsphere: ${e.message}`, { ...base, op: e.method, hypervisorMessage: e.message });
  }
  if (e instanceof VSphereProtocolError || e instanceof VSphereError) {
    return new DriverError('Protocol', `vsphere: ${e.message}`, { ...base, op: e.method, hypervisorMessage: e.message });
  }
  return new DriverError('Protocol', `vsphere: ${op}: ${(e as Error)?.message ?? String(e)}`, base);
}

/** The DriverFactory for `https://host/sdk` URIs. */
export const createVSphereDriver: DriverFactory = (options: ConnectOptions) => new VSphereDriver(options);
