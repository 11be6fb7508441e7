/**
 * The simulated hypervisor host: VM state, the hypervisor calls with the
 * real hypervisors' refusal rules (DESIGN §2), connections, faults, latency,
 * events and call counters.
 *
 * Written independently of src/model/profiles.ts and src/planner on purpose:
 * the sim encodes what libvirt (qemu, libxl, test drivers) and vSphere do,
 * from their source and documentation, so it catches planner mistakes
 * instead of mirroring them. Refusal texts are the hypervisors' own
 * (libvirt: "<error-class prefix>: <message>"; vSphere: "<Fault>: <text>").
 *
 * One SimHost exists per inventory (a module-level registry keyed by the
 * resolved path, see registry.ts), shared by every driver in the process;
 * the same object is the out-of-band handle tests use (`simHost(path)`).
 *
 * Why one file of ~700 lines: SimHost is one class whose hypervisor calls,
 * balloon/virtio-mem timers and out-of-band controls (power, restart, setLive)
 * read and write the same private VM map and event stream; splitting the
 * class would expose that state to make the halves talk. What stands alone
 * is elsewhere: calls.ts (call vocabulary, SimConnection, SimRefusal),
 * observed.ts (the driver's view of a VM), values.ts (units, PRNG, copies).
 */
import { sleep } from '../../util/sleep.ts';
import type { DriverEvent, VMHandle } from '../driver.ts';
import { DriverError } from '../driver.ts';
import type { HypervisorType, Limit, ObservedVM } from '../../model/memory.ts';
import type { SimFaults, SimInventory, SimLatency, SimVirtioMem, SimVMState, SimWorld } from './inventory.ts';
import { parseVM, SimInventoryError } from './inventory.ts';
import { LV, SimConnection, SimRefusal, type SimAffectFlags, type SimCallRecord, type SimReconfigSpec } from './calls.ts';
import { observed } from './observed.ts';
import { KIB, MIB, cloneVM, cloneWorld, domId, fmtBytes, mulberry32 } from './values.ts';

export class SimHost {
  /** Registry key: the resolved inventory path, or "memory:<key>". */
  readonly key: string;
  /** The URI a driver uses to reach this host. */
  readonly uri: string;
  readonly version = 'sim-1';
  readonly hostname: string;
  hostMemory: bigint;
  latency: SimLatency;
  faults: SimFaults;
  qemuOverhead: bigint;
  /** false: connect and every call fail with Unreachable (host down / network cut). */
  reachable = true;
  /** Hypervisor calls that reached the host, by op (refused ones included). */
  readonly calls: Record<string, number> = {};
  /** Every call that reached the host, in order. */
  readonly callLog: SimCallRecord[] = [];

  private readonly declaredType: HypervisorType | undefined;
  private readonly vms = new Map<string, SimVMState>(); // by uuid
  private readonly connections = new Set<SimConnection>();
  private readonly balloonTimers = new Map<string, NodeJS.Timeout>();
  /** virtio-mem guests plugging toward requested: uuid -> timer. */
  private readonly plugTimers = new Map<string, NodeJS.Timeout>();
  private nextConnection = 1;
  private rng: () => number;

  constructor(key: string, uri: string, inventory: SimInventory) {
    this.key = key;
    this.uri = uri;
    this.hostname = (key.split(/[\\/:]/).pop() ?? 'sim').replace(/\.ya?ml$/, '');
    this.declaredType = inventory.type;
    this.hostMemory = inventory.hostMemory;
    this.latency = { ...inventory.latency };
    this.faults = { ...inventory.faults };
    this.qemuOverhead = inventory.qemuOverhead;
    this.rng = mulberry32(inventory.faults.seed);
    for (const vm of inventory.vms) this.vms.set(vm.uuid, cloneVM(vm));
  }

  // ---------------------------------------------------------------- identity

  /** The host's type: the inventory's top-level `type`, else the first VM's, else 'qemu'. */
  get type(): HypervisorType {
    if (this.declaredType) return this.declaredType;
    const first = this.vms.values().next();
    return first.done ? 'qemu' : first.value.type;
  }

  // ------------------------------------------------------------- connections

  /** Opens a connection (what a driver's connect() does). */
  open(timeoutMs?: number): SimConnection {
    if (!this.reachable) {
      throw new DriverError('Unreachable', `sim host ${this.key} is unreachable`, { op: 'connect', hypervisorMessage: 'sim: host unreachable' });
    }
    const conn = new SimConnection(this.nextConnection++, timeoutMs);
    this.connections.add(conn);
    return conn;
  }

  /** Closes a connection on the client's request. */
  close(conn: SimConnection): void {
    conn.alive = false;
    conn.reason = conn.reason || 'connection closed';
    conn.subscribers.clear();
    this.connections.delete(conn);
  }

  /** Breaks every open connection, as a restarted daemon or a network cut would. */
  dropConnections(reason = 'sim: connection dropped'): void {
    for (const conn of [...this.connections]) this.drop(conn, reason);
  }

  /** Number of connections currently open. */
  get openConnections(): number {
    return this.connections.size;
  }

  private drop(conn: SimConnection, reason: string): void {
    if (!conn.alive) return;
    conn.alive = false;
    conn.reason = reason;
    const subs = [...conn.subscribers];
    conn.subscribers.clear();
    this.connections.delete(conn);
    for (const sub of subs) deliver(sub, { kind: 'disconnected', reason });
  }

  private checkConnection(conn: SimConnection, op: string, vm: string | undefined): void {
    if (!conn.alive) {
      throw new DriverError('Disconnected', `sim: ${op}: ${conn.reason || 'not connected'}`, {
        op, ...(vm !== undefined ? { vm } : {}), hypervisorMessage: conn.reason || 'not connected',
      });
    }
  }

  /**
   * Runs one hypervisor call on a connection: latency, faults, counting.
   * A fault (errorRate, disconnect) happens before the call takes effect.
   */
  async call<T>(conn: SimConnection, op: string, vm: string | undefined, fn: () => T, detail?: string, signal?: AbortSignal): Promise<T> {
    this.checkConnection(conn, op, vm);
    checkAborted(signal, op, vm);
    const delay = this.delayMs();
    if (delay > 0) {
      if (conn.timeoutMs !== undefined && delay > conn.timeoutMs) {
        await sleep(conn.timeoutMs, signal);
        checkAborted(signal, op, vm);
        throw new DriverError('Timeout', `sim: ${op} timed out after ${conn.timeoutMs} ms`, {
          op, ...(vm !== undefined ? { vm } : {}), hypervisorMessage: `no reply within ${conn.timeoutMs} ms`,
        });
      }
      await sleep(delay, signal);
      // An aborted call never reaches the host: nothing was changed.
      checkAborted(signal, op, vm);
      this.checkConnection(conn, op, vm);
    }
    if (!this.reachable) {
      this.drop(conn, 'sim: host unreachable');
      throw new DriverError('Unreachable', `sim: ${op}: host unreachable`, {
        op, ...(vm !== undefined ? { vm } : {}), hypervisorMessage: 'sim: host unreachable',
      });
    }
    const limit = this.faults.disconnectAfterCalls;
    if (limit !== undefined && conn.callsMade >= limit) {
      this.drop(conn, `sim: connection dropped after ${limit} calls (faults.disconnectAfterCalls)`);
      this.checkConnection(conn, op, vm);
    }
    conn.callsMade++;
    if (this.faults.errorRate > 0 && this.rng() < this.faults.errorRate) {
      throw new DriverError('Unreachable', `sim: ${op}: injected fault (faults.errorRate)`, {
        op, ...(vm !== undefined ? { vm } : {}), hypervisorMessage: 'sim: injected transient error',
      });
    }
    return this.record(conn.id, op, vm, fn, detail);
  }

  private record<T>(connection: number, op: string, vm: string | undefined, fn: () => T, detail?: string): T {
    this.calls[op] = (this.calls[op] ?? 0) + 1;
    const entry: SimCallRecord = { op, connection, outcome: 'ok', ...(vm !== undefined ? { vm } : {}), ...(detail ? { detail } : {}) };
    this.callLog.push(entry);
    try {
      return fn();
    } catch (err) {
      entry.outcome = err instanceof SimRefusal ? 'refused' : 'notFound';
      entry.error = (err as Error).message;
      throw err;
    }
  }

  /** Clears the call counters and log. */
  resetCalls(): void {
    for (const k of Object.keys(this.calls)) delete this.calls[k];
    this.callLog.length = 0;
  }

  private delayMs(): number {
    const { meanMs, jitterMs } = this.latency;
    if (meanMs <= 0 && jitterMs <= 0) return 0;
    return Math.max(0, meanMs + (jitterMs > 0 ? (this.rng() * 2 - 1) * jitterMs : 0));
  }

  // ------------------------------------------------------------------ events

  private emit(event: DriverEvent): void {
    for (const conn of this.connections) for (const sub of conn.subscribers) deliver(sub, event);
  }

  private lifecycle(vm: SimVMState, detail: string): void {
    this.emit({ kind: 'lifecycle', vm: { name: vm.name, uuid: vm.uuid }, detail });
  }

  subscribe(conn: SimConnection, onEvent: (event: DriverEvent) => void): () => void {
    this.checkConnection(conn, 'virConnectDomainEventRegisterAny', undefined);
    conn.subscribers.add(onEvent);
    return () => {
      conn.subscribers.delete(onEvent);
    };
  }

  // ------------------------------------------------------------------ lookup

  /** Snapshot of one VM's state (by name or uuid); undefined when absent. */
  vm(nameOrUuid: string): SimVMState | undefined {
    const vm = this.find(nameOrUuid);
    return vm ? cloneVM(vm) : undefined;
  }

  /** Snapshots of all VMs. */
  list(): SimVMState[] {
    return [...this.vms.values()].map(cloneVM);
  }

  private find(nameOrUuid: string): SimVMState | undefined {
    const byUuid = this.vms.get(nameOrUuid.toLowerCase());
    if (byUuid) return byUuid;
    for (const vm of this.vms.values()) if (vm.name === nameOrUuid) return vm;
    return undefined;
  }

  /** Hypervisor lookup by name (virDomainLookupByName / vSphere FindByInventoryPath). */
  lookupByName(name: string): VMHandle {
    for (const vm of this.vms.values()) if (vm.name === name) return { name: vm.name, uuid: vm.uuid };
    throw this.notFound(this.lookupOp('name'), name, 'name');
  }

  lookupByUuid(uuid: string): VMHandle {
    const vm = this.vms.get(uuid.toLowerCase());
    if (vm) return { name: vm.name, uuid: vm.uuid };
    throw this.notFound(this.lookupOp('uuid'), uuid, 'uuid');
  }

  lookupOp(by: 'name' | 'uuid'): string {
    if (this.type === 'esx') return by === 'name' ? 'FindByInventoryPath' : 'FindByUuid';
    return by === 'name' ? 'virDomainLookupByName' : 'virDomainLookupByUUIDString';
  }

  observeOp(): string {
    return this.type === 'esx' ? 'RetrievePropertiesEx' : 'virDomainGetXMLDesc';
  }

  /** The one bulk call that lists every VM with its memory (HOSTVIEW.md). */
  observeAllOp(): string {
    return this.type === 'esx' ? 'RetrievePropertiesEx' : 'virConnectGetAllDomainStats';
  }

  /** Every VM as a driver observes it (one bulk call's worth). */
  observeAll(): ObservedVM[] {
    return [...this.vms.values()].map(observed);
  }

  identifyOp(): string {
    return this.type === 'esx' ? 'RetrieveServiceContent' : 'virConnectGetVersion';
  }

  private notFound(op: string, key: string, by: 'name' | 'uuid'): DriverError {
    const msg = this.type === 'esx'
      ? `ManagedObjectNotFound: The object 'vim.VirtualMachine:${key}' has already been deleted or has not been completely created`
      : LV.noDomain(`no domain with matching ${by} '${key}'`);
    return new DriverError('VMNotFound', `${op}: ${msg}`, { op, vm: key, hypervisorMessage: msg });
  }

  /** The VM behind a handle, by uuid (a VM re-created under the same name is a different VM). */
  private byHandle(handle: VMHandle, op: string): SimVMState {
    const vm = this.vms.get(handle.uuid.toLowerCase());
    if (!vm) throw this.notFound(op, handle.uuid, 'uuid');
    return vm;
  }

  /** The VM as a driver observes it. */
  observe(handle: VMHandle): ObservedVM {
    const vm = this.byHandle(handle, this.observeOp());
    return observed(vm);
  }

  // --------------------------------------------------- libvirt: memory calls

  /**
   * virDomainSetMemoryFlags(dom, kib, flags): balloon target, or with
   * `maximum` the domain's maximum (<memory>). Rules from libvirt's
   * qemuDomainSetMemoryFlags, libxlDomainSetMemoryFlags and
   * testDomainSetMemoryFlags.
   */
  virDomainSetMemoryFlags(handle: VMHandle, kib: bigint, flags: SimAffectFlags & { maximum?: boolean }): void {
    const op = 'virDomainSetMemoryFlags';
    const vm = this.byHandle(handle, op);
    const refuse = (m: string): never => {
      throw new SimRefusal(op, vm.name, m);
    };
    if (vm.type === 'esx') refuse(LV.noSupport(op));
    if (kib <= 0n) refuse(LV.invalidArg('memory in virDomainSetMemoryFlags must not be zero'));
    const bytes = kib * KIB;
    const { live, config } = this.modificationImpact(vm, op, flags);

    if (flags.maximum) {
      if (vm.type === 'xen') {
        // libxl: live raises the hypervisor cap (libxl_domain_setmaxmem), which
        // refuses to go below the current balloon target.
        if (live && bytes < (vm.live as SimWorld).memory) {
          refuse(LV.internal(`Failed to set maximum memory for domain '${domId(vm)}' with libxenlight`));
        }
      } else {
        if (live) refuse(LV.operationInvalid('cannot resize the maximum memory on an active domain'));
        if (vm.numa) refuse(LV.operationInvalid('initial memory size of a domain with NUMA nodes cannot be modified with this API'));
      }
      if (live) (vm.live as SimWorld).maxMemory = bytes;
      if (config) {
        const c = vm.config as SimWorld;
        c.maxMemory = bytes;
        if (c.memory > bytes) c.memory = bytes;
      }
      return;
    }

    if (live && bytes > (vm.live as SimWorld).maxMemory) refuse(LV.invalidArg('cannot set memory higher than max memory'));
    if (config && bytes > (vm.config as SimWorld).maxMemory) refuse(LV.invalidArg('cannot set memory higher than max memory'));
    if (live && vm.type === 'qemu' && vm.balloon === 'none') {
      refuse(LV.operationInvalid('Unable to change memory of active domain without the balloon device and guest OS balloon driver'));
    }
    if (config) (vm.config as SimWorld).memory = bytes;
    if (live) {
      (vm.live as SimWorld).memory = bytes;
      this.balloonTo(vm, bytes);
    }
  }

  /**
   * virDomainSetMemoryParameters(dom, params, flags): memtune. QEMU and test
   * accept hard_limit/soft_limit/swap_hard_limit only (virTypedParamsValidate
   * rejects min_guarantee); libxl does not implement the call at all.
   */
  virDomainSetMemoryParameters(handle: VMHandle, params: Record<string, bigint | 'unlimited'>, flags: SimAffectFlags): void {
    const op = 'virDomainSetMemoryParameters';
    const vm = this.byHandle(handle, op);
    const refuse = (m: string): never => {
      throw new SimRefusal(op, vm.name, m);
    };
    if (vm.type === 'xen' || vm.type === 'esx') refuse(LV.noSupport(op));
    for (const name of Object.keys(params)) {
      if (!['hard_limit', 'soft_limit', 'swap_hard_limit'].includes(name)) refuse(LV.argumentUnsupported(`parameter '${name}' not supported`));
    }
    const { live, config } = this.modificationImpact(vm, op, flags);
    const hard = params.hard_limit;
    if (hard === undefined) return;
    const limit: Limit = hard === 'unlimited' ? 'unlimited' : hard * KIB;
    if (config) (vm.config as SimWorld).limit = limit;
    if (live) {
      (vm.live as SimWorld).limit = limit;
      this.oomCheck(vm);
    }
  }

  /** virDomainObjUpdateModificationImpact (+ the test driver's one-def rule). */
  private modificationImpact(vm: SimVMState, op: string, flags: SimAffectFlags): { live: boolean; config: boolean } {
    let live = !!flags.live;
    let config = !!flags.config;
    const running = vm.powerState !== 'ShutOff';
    if (vm.type === 'test' && live && config) {
      throw new SimRefusal(op, vm.name, LV.invalidArg("Flags 'VIR_DOMAIN_AFFECT_LIVE' and 'VIR_DOMAIN_AFFECT_CONFIG' are mutually exclusive"));
    }
    if (!live && !config) {
      // VIR_DOMAIN_AFFECT_CURRENT
      live = running;
      config = !running;
    }
    if (live && !running) throw new SimRefusal(op, vm.name, LV.operationInvalid('domain is not running'));
    if (config && !vm.persistent) throw new SimRefusal(op, vm.name, LV.operationInvalid('transient domains do not have any persistent config'));
    return { live, config };
  }

  /**
   * virDomainUpdateDeviceFlags for a virtio-mem device's `<requested>` (libvirt
   * qemuDomainChangeMemoryRequestedSize + virDomainMemoryDefValidate). libvirt 9.0 fails
   * LIVE|CONFIG together for memory devices (it looks up the device by an alias only live
   * devices have), so the sim refuses that combination with the same words.
   */
  virDomainUpdateDeviceFlags(handle: VMHandle, index: number, requestedKiB: bigint, flags: SimAffectFlags): void {
    const op = 'virDomainUpdateDeviceFlags';
    const vm = this.byHandle(handle, op);
    const refuse = (m: string): never => {
      throw new SimRefusal(op, vm.name, m);
    };
    if (!vm.virtioMem) refuse(LV.operationInvalid('matching memory device was not found'));
    const vmem = vm.virtioMem as SimVirtioMem;
    const { live, config } = this.modificationImpact(vm, op, flags);
    if (live && config) refuse(LV.internal("unable to execute QEMU command 'qom-set': Device '/machine/peripheral/(null)' not found"));
    const devs = (live ? vmem.live : vmem.config) ?? [];
    const dev = devs[index];
    if (!dev) refuse(LV.operationInvalid('matching memory device was not found'));
    const bytes = requestedKiB * KIB;
    const d = dev as NonNullable<typeof dev>;
    if (bytes > d.size) refuse(LV.invalidArg(`requested size must be smaller than or equal to @size (${d.size / KIB}KiB)`));
    if (bytes % d.block !== 0n) refuse(LV.invalidArg('requested size must be an integer multiple of block size'));
    d.requested = bytes;
    if (live) this.plugTo(vm);
  }

  /** virDomainDefineXML of a running domain's persistent config with resized virtio-mem devices. */
  redefineVirtioMem(handle: VMHandle, sizes: readonly bigint[], requested: readonly bigint[]): void {
    const op = 'virDomainDefineXML';
    const vm = this.byHandle(handle, op);
    const devs = vm.virtioMem?.config;
    if (!devs || !vm.persistent) throw new SimRefusal(op, vm.name, LV.operationInvalid('no persistent virtio-mem devices to resize'));
    if (sizes.length !== devs.length || requested.length !== devs.length) throw new SimRefusal(op, vm.name, LV.invalidArg('device list changed'));
    devs.forEach((d, i) => {
      const size = sizes[i]! * KIB;
      const req = requested[i]! * KIB;
      if (size % d.block !== 0n || req % d.block !== 0n || req > size) throw new SimRefusal(op, vm.name, LV.invalidArg('requested size must be an integer multiple of block size'));
      d.size = size;
      d.requested = req;
    });
    if (vm.powerState === 'ShutOff' && vm.virtioMem) delete vm.virtioMem.live;
  }

  /** The guest plugs (or unplugs) toward the live requested sizes, per its behaviour. */
  private plugTo(vm: SimVMState): void {
    const timer = this.plugTimers.get(vm.uuid);
    if (timer) clearTimeout(timer);
    this.plugTimers.delete(vm.uuid);
    const vmem = vm.virtioMem;
    if (!vmem?.live || vmem.guest !== 'responsive') return;
    const plug = (): void => {
      vmem.live?.forEach((d, i) => {
        if (d.current === d.requested) return;
        d.current = d.requested;
        this.emit({ kind: 'memoryDevice', vm: { name: vm.name, uuid: vm.uuid }, alias: `virtiomem${i}`, size: d.current });
      });
    };
    if (vmem.plugDelayMs <= 0) return plug();
    const t = setTimeout(() => {
      this.plugTimers.delete(vm.uuid);
      if (this.vms.get(vm.uuid) === vm && vm.powerState !== 'ShutOff') plug();
    }, vmem.plugDelayMs);
    t.unref();
    this.plugTimers.set(vm.uuid, t);
  }

  /** Moves the balloon toward a new live target, per the VM's guest behaviour. */
  private balloonTo(vm: SimVMState, target: bigint): void {
    const timer = this.balloonTimers.get(vm.uuid);
    if (timer) {
      clearTimeout(timer);
      this.balloonTimers.delete(vm.uuid);
    }
    // The test and libxl drivers report the target itself; Xen ballooning is synchronous.
    const mode = vm.type === 'qemu' ? vm.balloon : 'responsive';
    const delay = vm.type === 'qemu' ? vm.balloonDelayMs : 0;
    if (mode !== 'responsive') return; // no guest driver: libvirt accepts, actual stays put
    if (delay <= 0) {
      this.setActual(vm, target);
      return;
    }
    const t = setTimeout(() => {
      this.balloonTimers.delete(vm.uuid);
      const current = this.vms.get(vm.uuid);
      if (current === vm && vm.powerState !== 'ShutOff') this.setActual(vm, target);
    }, delay);
    t.unref();
    this.balloonTimers.set(vm.uuid, t);
  }

  private setActual(vm: SimVMState, actual: bigint): void {
    if (vm.actual === actual) return;
    vm.actual = actual;
    this.emit({ kind: 'balloon', vm: { name: vm.name, uuid: vm.uuid }, actual });
  }

  /** A QEMU hard_limit below guest RAM + overhead gets the QEMU process OOM-killed. */
  private oomCheck(vm: SimVMState): void {
    if (vm.type !== 'qemu' || !vm.live) return;
    const limit = vm.live.limit;
    if (limit === undefined || limit === 'unlimited') return;
    if (limit < vm.live.maxMemory + this.qemuOverhead) this.stop(vm, 'Crashed');
  }

  // ------------------------------------------------------ vSphere: reconfig

  /**
   * ReconfigVM_Task(vm, spec): memoryMB and memoryAllocation. Enforces the
   * rules real ESX enforces (vcsim does not): 4 MB multiples, hot-add only
   * to increase, within hotPlugMemoryLimit and by hotPlugMemoryIncrementSize,
   * reservation <= limit, reservation within host capacity. Like vcsim, a
   * memoryAllocation without reservation or limit resets the missing ones.
   */
  ReconfigVM_Task(handle: VMHandle, spec: SimReconfigSpec): void {
    const op = 'ReconfigVM_Task';
    const vm = this.byHandle(handle, op);
    const refuse = (m: string): never => {
      throw new SimRefusal(op, vm.name, m);
    };
    if (vm.type !== 'esx') refuse(LV.noSupport(op));
    const c = vm.config as SimWorld;
    const curMB = c.maxMemory / MIB;
    let newMB = curMB;
    const invalid = (what: string, why: string): never => refuse(`InvalidArgument: A specified parameter was not correct: ${what} (${why})`);
    if (spec.memoryMB !== undefined) {
      if (!Number.isSafeInteger(spec.memoryMB) || spec.memoryMB <= 0) invalid('spec.memoryMB', `${spec.memoryMB} is not a positive whole number of MB`);
      newMB = BigInt(spec.memoryMB);
      if (newMB % 4n !== 0n) invalid('spec.memoryMB', `memory size ${newMB} MB is not a multiple of 4 MB`);
      if (newMB !== curMB) {
        if (vm.powerState === 'Paused') refuse('InvalidPowerState: The attempted operation cannot be performed in the current state (Suspended).');
        if (vm.powerState === 'Running') {
          const hot = vm.hotAdd ?? { enabled: false };
          if (!hot.enabled) refuse('InvalidPowerState: The attempted operation cannot be performed in the current state (Powered on). Memory hot-add is not enabled for this virtual machine.');
          if (newMB < curMB) refuse(`NotSupported: The operation is not supported on the object. Memory hot-remove is not supported: memoryMB can only grow (${curMB} MB -> ${newMB} MB) while the virtual machine is powered on.`);
          if (hot.limit !== undefined && newMB * MIB > hot.limit) invalid('spec.memoryMB', `${newMB} MB exceeds hotPlugMemoryLimit ${hot.limit / MIB} MB`);
          if (hot.increment !== undefined && ((newMB - curMB) * MIB) % hot.increment !== 0n) {
            invalid('spec.memoryMB', `hot-added memory ${newMB - curMB} MB is not a multiple of hotPlugMemoryIncrementSize ${hot.increment / MIB} MB`);
          }
        }
      }
    }
    let reservation = c.reservation ?? 0n;
    let limit: Limit = c.limit ?? 'unlimited';
    if (spec.memoryAllocation !== undefined) {
      const r = spec.memoryAllocation.reservation ?? 0;
      const l = spec.memoryAllocation.limit ?? -1;
      if (!Number.isSafeInteger(r) || r < 0) invalid('spec.memoryAllocation.reservation', `${r} is not a whole number of MB >= 0`);
      if (!Number.isSafeInteger(l) || l < -1) invalid('spec.memoryAllocation.limit', `${l} is not -1 or a whole number of MB`);
      reservation = BigInt(r) * MIB;
      limit = l === -1 ? 'unlimited' : BigInt(l) * MIB;
    }
    if (limit !== 'unlimited' && reservation > limit) {
      invalid('spec.memoryAllocation.reservation', `reservation ${reservation / MIB} MB is above limit ${limit / MIB} MB`);
    }
    if (reservation > newMB * MIB) {
      invalid('spec.memoryAllocation.reservation', `reservation ${reservation / MIB} MB is above the memory size ${newMB} MB`);
    }
    if (reservation !== (c.reservation ?? 0n)) {
      const others = vm.powerState === 'Running'
        ? [...this.vms.values()].filter((o) => o !== vm && o.type === 'esx' && o.powerState === 'Running').reduce((s, o) => s + (o.config?.reservation ?? 0n), 0n)
        : 0n;
      if (others + reservation > this.hostMemory) {
        refuse('InsufficientResourcesFault: The available Memory resources in the parent resource pool are insufficient for the operation.');
      }
    }
    c.maxMemory = newMB * MIB;
    c.memory = c.maxMemory;
    c.reservation = reservation;
    c.limit = limit;
  }

  // ------------------------------------------------------- out-of-band ops

  /** Power off (virDomainDestroy / PowerOffVM_Task). A transient domain vanishes. */
  powerOff(name: string): void {
    const vm = this.must(name);
    if (vm.powerState === 'ShutOff') return;
    this.stop(vm, 'Stopped');
  }

  /** Cold start: the config becomes live (what makes RestartRequired effective). */
  powerOn(name: string): void {
    const vm = this.must(name);
    if (vm.powerState !== 'ShutOff') return;
    this.start(vm);
  }

  /**
   * Cold restart (power off + power on): config becomes live. A transient
   * domain has no config, so it reboots with its live definition unchanged.
   */
  restart(name: string): void {
    const vm = this.must(name);
    if (!vm.persistent) {
      this.lifecycle(vm, 'Rebooted');
      return;
    }
    if (vm.powerState !== 'ShutOff') this.stop(vm, 'Stopped');
    if (this.vms.get(vm.uuid) === vm) this.start(vm);
  }

  pause(name: string): void {
    const vm = this.must(name);
    if (vm.powerState !== 'Running') return;
    vm.powerState = 'Paused';
    this.lifecycle(vm, 'Suspended');
  }

  resume(name: string): void {
    const vm = this.must(name);
    if (vm.powerState !== 'Paused') return;
    vm.powerState = 'Running';
    this.lifecycle(vm, 'Resumed');
  }

  /** Out-of-band drift of the live world (virsh setmem --live, or the guest). `actual` moves the balloon. */
  setLive(name: string, values: Partial<SimWorld> & { actual?: bigint }): void {
    const vm = this.must(name);
    const { actual, ...world } = values;
    if (vm.type === 'esx') {
      if (vm.powerState !== 'Running') throw new Error(`sim: ${name} is not powered on`);
      this.setWorld(vm, 'config', world);
      return;
    }
    if (!vm.live) throw new Error(`sim: ${name} is not running: it has no live world`);
    this.setWorld(vm, 'live', world);
    if (actual !== undefined) this.setActual(vm, actual);
    else if (world.memory !== undefined) this.balloonTo(vm, world.memory);
    this.oomCheck(vm);
  }

  /** Out-of-band drift of the config world (virsh edit / another tool). */
  setConfig(name: string, values: Partial<SimWorld>): void {
    const vm = this.must(name);
    if (!vm.config) throw new Error(`sim: ${name} is transient: it has no config world`);
    this.setWorld(vm, 'config', values);
    this.lifecycle(vm, 'Defined');
  }

  private setWorld(vm: SimVMState, which: 'live' | 'config', values: Partial<SimWorld>): void {
    const target = vm[which] as SimWorld;
    const next: SimWorld = { ...target };
    for (const [k, v] of Object.entries(values)) if (v !== undefined) (next as unknown as Record<string, unknown>)[k] = v;
    if (vm.type === 'esx') next.memory = next.maxMemory;
    if (next.memory <= 0n || next.memory > next.maxMemory) {
      throw new Error(`sim: ${vm.name}: ${which} memory ${fmtBytes(next.memory)} must be in (0, maxMemory ${fmtBytes(next.maxMemory)}]`);
    }
    vm[which] = next;
  }

  /** Removes a VM behind vmmem's back (destroy + undefine). */
  remove(name: string): void {
    const vm = this.must(name);
    this.forget(vm);
    this.lifecycle(vm, 'Undefined');
  }

  /** Adds a VM (same fields as an inventory entry). Validation errors change nothing. */
  add(spec: unknown): SimVMState {
    const vm = parseVM(spec, this.key, 'add()');
    const clash = this.find(vm.name) ?? this.vms.get(vm.uuid);
    if (clash) throw new SimInventoryError(this.key, `add() (${vm.name})`, `a VM named ${clash.name} with uuid ${clash.uuid} exists`);
    this.vms.set(vm.uuid, vm);
    this.lifecycle(vm, 'Defined');
    if (vm.powerState !== 'ShutOff') this.lifecycle(vm, 'Started');
    return cloneVM(vm);
  }

  private must(name: string): SimVMState {
    const vm = this.find(name);
    if (!vm) throw new Error(`sim host ${this.key}: no VM named ${name}`);
    return vm;
  }

  private forget(vm: SimVMState): void {
    const timer = this.balloonTimers.get(vm.uuid);
    if (timer) clearTimeout(timer);
    this.balloonTimers.delete(vm.uuid);
    this.vms.delete(vm.uuid);
  }

  private stop(vm: SimVMState, detail: 'Stopped' | 'Crashed'): void {
    const plug = this.plugTimers.get(vm.uuid);
    if (plug) clearTimeout(plug);
    this.plugTimers.delete(vm.uuid);
    if (vm.virtioMem) delete vm.virtioMem.live;
    const timer = this.balloonTimers.get(vm.uuid);
    if (timer) clearTimeout(timer);
    this.balloonTimers.delete(vm.uuid);
    vm.powerState = 'ShutOff';
    if (detail === 'Crashed') vm.stopReason = 'Crashed';
    else delete vm.stopReason;
    delete vm.live;
    delete vm.actual;
    this.lifecycle(vm, detail);
    if (!vm.persistent) {
      this.forget(vm);
      this.lifecycle(vm, 'Undefined');
    }
  }

  private start(vm: SimVMState): void {
    vm.powerState = 'Running';
    delete vm.stopReason;
    if (vm.type !== 'esx') {
      const config = vm.config as SimWorld;
      vm.live = cloneWorld(config);
      // The guest boots with all of maxMemory; a working balloon driver then
      // inflates down to the target.
      vm.actual = config.maxMemory;
      if (config.memory !== config.maxMemory) this.balloonTo(vm, config.memory);
      // virtio-mem: the config's devices become live; a guest with the driver plugs `requested` at boot.
      if (vm.virtioMem?.config) {
        const plugs = vm.virtioMem.guest === 'responsive';
        vm.virtioMem.live = vm.virtioMem.config.map((d) => ({ ...d, current: plugs ? d.requested : 0n }));
      }
    }
    this.lifecycle(vm, 'Started');
    this.oomCheck(vm);
  }
}

function checkAborted(signal: AbortSignal | undefined, op: string, vm: string | undefined): void {
  if (!signal?.aborted) return;
  const why = signal.reason instanceof Error ? signal.reason.message : 'aborted';
  throw new DriverError('Timeout', `sim: ${op} aborted by the caller (${why})`, {
    op, ...(vm !== undefined ? { vm } : {}), hypervisorMessage: `call abandoned: ${why}`,
  });
}

function deliver(sub: (event: DriverEvent) => void, event: DriverEvent): void {
  queueMicrotask(() => {
    try {
      sub(event);
    } catch {
      // A subscriber's failure is its own; the host keeps going.
    }
  });
}
