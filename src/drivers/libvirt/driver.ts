/**
 * The libvirt driver: the Driver interface over src/libvirt's remote-protocol
 * client, for QEMU/KVM, Xen (libxl) and the test driver.
 *
 * observe: one batch of pipelined calls (state, active, persistent, live XML,
 * inactive XML, info). Values come from the domain XML (KiB -> bytes):
 * `<memory>` = maxMemory, `<currentMemory>` = memory, `<memtune><hard_limit>` =
 * limit (absent = unlimited), `<memtune><min_guarantee>` = reservation.
 * balloon.actual = virDomainGetInfo's memory of a running domain.
 *
 * QEMU keeps no balloon *target* that libvirt reports: the live
 * `<currentMemory>` is the balloon's actual size. So the driver remembers the
 * live target it set itself for the running instance (same domain id) and
 * reports that as live memory until the domain restarts; otherwise live
 * memory is libvirt's value (docs/libvirt.md).
 *
 * apply: one libvirt call per step, in order, never coalesced:
 * maxMemory -> virDomainSetMemoryFlags(MEM_MAXIMUM | world), memory ->
 * virDomainSetMemoryFlags(world), limit -> virDomainSetMemoryParameters
 * hard_limit, reservation -> min_guarantee; world live = AFFECT_LIVE, config =
 * AFFECT_CONFIG. Values must be whole KiB (the planner rounds): others are
 * refused, a real libvirt call cannot carry them.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ApplyResult, ConnectOptions, Driver, DriverErrorCode, DriverEvent, DriverFactory, HypervisorIdentity, VMHandle } from '../driver.ts';
import { DriverError } from '../driver.ts';
import type { HypervisorType, ObservedVM, Step, VMRef, WorldValues } from '../../model/memory.ts';
import {
  DomainMemFlags,
  DomainState,
  DomainXmlFlags,
  ErrorCode,
  LibvirtClient,
  LibvirtError,
  MEMORY_PARAM_UNLIMITED,
  parseDomainXml,
} from '../../libvirt/index.ts';
import type { ConnectOptions as ClientOptions, DomainInfo, DomainRef, DomainXmlInfo, Subscription } from '../../libvirt/index.ts';

const KIB = 1024n;

export interface LibvirtDriverExtras {
  /** Use this connected client instead of opening one (tests); close() leaves it open. */
  client?: LibvirtClient;
}

function typeOf(connType: string): HypervisorType {
  switch (connType.toUpperCase()) {
    case 'QEMU':
    case 'KVM':
      return 'qemu';
    case 'XEN':
    case 'LIBXL':
      return 'xen';
    case 'TEST':
      return 'test';
    default:
      throw new DriverError('Protocol', `libvirt: hypervisor type '${connType}' is not one vmmem manages (qemu, xen, test)`, {
        op: 'virConnectGetType',
        hypervisorMessage: connType,
      });
  }
}

function version(v: number): string {
  return `${Math.floor(v / 1_000_000)}.${Math.floor(v / 1000) % 1000}.${v % 1000}`;
}

const AUTH_CODES: ReadonlySet<number> = new Set([ErrorCode.AUTH_FAILED, ErrorCode.ACCESS_DENIED, ErrorCode.AUTH_UNAVAILABLE, 79 /* AUTH_CANCELLED */]);

/** A LibvirtError (or anything) as a DriverError naming the call and the VM. */
export function toDriverError(err: unknown, op: string, vm?: string, applied?: Step[]): DriverError {
  const details = (hm: string | undefined) => ({
    op,
    ...(vm !== undefined ? { vm } : {}),
    ...(hm !== undefined ? { hypervisorMessage: hm } : {}),
    ...(applied ? { applied: [...applied] } : {}),
    cause: err,
  });
  if (err instanceof DriverError) {
    return applied ? new DriverError(err.code, err.message, { ...details(err.hypervisorMessage), op: err.op }) : err;
  }
  if (!(err instanceof LibvirtError)) {
    const msg = err instanceof Error ? err.message : String(err);
    return new DriverError('Protocol', `libvirt: ${op}${vm ? ` on ${vm}` : ''}: ${msg}`, details(msg));
  }
  let code: DriverErrorCode;
  switch (err.reason) {
    case 'uri':
      code = 'InvalidURI';
      break;
    case 'timeout':
      code = 'Timeout';
      break;
    case 'protocol':
      code = 'Protocol';
      break;
    case 'closed':
      code = /Permission denied|Host key verification failed/i.test(err.message) ? 'AuthFailed' : 'Disconnected';
      break;
    case 'connect': {
      const cause = err.cause as NodeJS.ErrnoException | undefined;
      const tlsish = /TLS|certificate|CERT|SSL/.test(`${err.message} ${cause?.code ?? ''}`);
      code = tlsish ? 'TLS' : 'Unreachable';
      break;
    }
    case 'remote':
      code = err.code === ErrorCode.NO_DOMAIN ? 'VMNotFound' : AUTH_CODES.has(err.code) ? 'AuthFailed' : 'Refused';
      break;
  }
  return new DriverError(code, `libvirt: ${op}${vm ? ` on ${vm}` : ''}: ${err.libvirtMessage}`, details(err.libvirtMessage));
}

/** The handle the daemon needs: it finds domains by UUID; the id is not used. */
function ref(vm: VMHandle): DomainRef {
  return { name: vm.name, uuid: vm.uuid, id: -1 };
}

function kibToBytes(kib: number | undefined): bigint | undefined {
  return kib === undefined ? undefined : BigInt(kib) * KIB;
}

export class LibvirtDriver implements Driver {
  readonly kind = 'libvirt';
  private readonly options: ConnectOptions;
  private readonly extras: LibvirtDriverExtras;
  private client: LibvirtClient | undefined;
  private type: HypervisorType | undefined;
  private secretsDir: string | undefined;
  /** Live balloon targets this driver set: uuid -> {domain id at the time, KiB}. */
  private readonly liveTargets = new Map<string, { id: number; kib: number }>();

  constructor(options: ConnectOptions, extras: LibvirtDriverExtras = {}) {
    this.options = options;
    this.extras = extras;
  }

  async connect(): Promise<void> {
    if (this.client && !this.client.closed) return;
    if (this.extras.client) {
      this.client = this.extras.client;
    } else {
      const o: ClientOptions = {};
      const t = this.options.timeoutMs;
      if (t !== undefined) {
        o.callTimeoutMs = t;
        o.connectTimeoutMs = t;
      }
      const cr = this.options.credentials;
      if (cr?.clientCert || cr?.clientKey || cr?.caCert || this.options.insecureSkipVerify) {
        o.tls = {};
        if (cr?.caCert) o.tls.ca = cr.caCert;
        if (cr?.clientCert) o.tls.cert = cr.clientCert;
        if (cr?.clientKey) o.tls.key = cr.clientKey;
        if (this.options.insecureSkipVerify) o.tls.insecureSkipVerify = true;
      }
      if (cr?.sshPrivateKey || cr?.knownHosts) {
        // ssh reads keys from files: private to this driver, removed on close().
        this.cleanupSecrets();
        const dir = mkdtempSync(join(tmpdir(), 'vmmem-ssh-'));
        this.secretsDir = dir;
        o.ssh = {};
        if (cr.sshPrivateKey) {
          const key = join(dir, 'id');
          writeFileSync(key, cr.sshPrivateKey.endsWith('\n') ? cr.sshPrivateKey : `${cr.sshPrivateKey}\n`, { mode: 0o600 });
          o.ssh.keyfile = key;
        }
        if (cr.knownHosts) {
          const kh = join(dir, 'known_hosts');
          writeFileSync(kh, cr.knownHosts, { mode: 0o600 });
          o.ssh.knownHostsFile = kh;
        }
      }
      try {
        this.client = await LibvirtClient.connect(this.options.uri, o);
      } catch (err) {
        this.cleanupSecrets();
        throw toDriverError(err, 'virConnectOpen');
      }
    }
    this.liveTargets.clear();
    try {
      this.type = typeOf(await this.client.getType());
    } catch (err) {
      throw toDriverError(err, 'virConnectGetType');
    }
  }

  private cleanupSecrets(): void {
    if (this.secretsDir) rmSync(this.secretsDir, { recursive: true, force: true });
    this.secretsDir = undefined;
  }

  async close(): Promise<void> {
    const c = this.client;
    this.client = undefined;
    if (c && c !== this.extras.client) await c.close();
    this.cleanupSecrets();
  }

  private session(op: string, vm?: string): LibvirtClient {
    const c = this.client;
    if (!c || c.closed) {
      throw new DriverError('Disconnected', `libvirt: ${op}${vm ? ` on ${vm}` : ''}: not connected${c ? ' (the connection was lost)' : ' (call connect() first)'}`, {
        op,
        ...(vm !== undefined ? { vm } : {}),
        hypervisorMessage: 'not connected',
      });
    }
    return c;
  }

  async identify(): Promise<HypervisorIdentity> {
    const c = this.session('identify');
    try {
      const [type, hv, lib, hostname, node] = await Promise.all([c.getType(), c.getVersion(), c.getLibVersion(), c.getHostname(), c.nodeGetInfo()]);
      return {
        type: typeOf(type),
        version: `${type} ${version(hv)} (libvirt ${version(lib)})`,
        hostname,
        hostMemory: BigInt(node.memoryKiB) * KIB,
      };
    } catch (err) {
      throw toDriverError(err, 'virConnectGetVersion');
    }
  }

  async lookup(vmRef: VMRef): Promise<VMHandle> {
    const c = this.session('lookup');
    if (vmRef.name !== undefined) {
      try {
        const d = await c.lookupDomainByName(vmRef.name);
        return { name: d.name, uuid: d.uuid };
      } catch (err) {
        throw toDriverError(err, 'virDomainLookupByName', vmRef.name);
      }
    }
    if (vmRef.uuid !== undefined) {
      try {
        const d = await c.lookupDomainByUuid(vmRef.uuid);
        return { name: d.name, uuid: d.uuid };
      } catch (err) {
        if (err instanceof TypeError) {
          throw new DriverError('VMNotFound', `libvirt: virDomainLookupByUUID: ${err.message}`, { op: 'virDomainLookupByUUID', vm: vmRef.uuid, hypervisorMessage: err.message });
        }
        throw toDriverError(err, 'virDomainLookupByUUID', vmRef.uuid);
      }
    }
    throw new DriverError('VMNotFound', 'libvirt: lookup needs a name or a uuid', { op: 'virDomainLookupByName', hypervisorMessage: 'no name or uuid given' });
  }

  async observe(vm: VMHandle): Promise<ObservedVM> {
    const c = this.session('observe', vm.name);
    const d = ref(vm);
    let op = 'virDomainGetState';
    try {
      // One pipelined batch; the inactive XML only matters for a persistent domain.
      const inactive = c.domainGetXmlDesc(d, DomainXmlFlags.INACTIVE).catch((e: unknown) => e);
      const info = c.domainGetInfo(d).catch((e: unknown) => e);
      const [state, active, persistent, liveXml] = await Promise.all([
        c.domainGetState(d),
        c.domainIsActive(d),
        c.domainIsPersistent(d),
        c.domainGetXmlDesc(d, 0),
      ]);
      op = 'virDomainGetXMLDesc';
      const live = parseDomainXml(liveXml);
      let config: DomainXmlInfo | undefined;
      if (persistent) {
        const x = await inactive;
        if (x instanceof Error) throw x;
        config = active ? parseDomainXml(x as string) : live;
      } else {
        await inactive;
      }
      op = 'virDomainGetInfo';
      const i = await info;
      if (i instanceof Error) throw i;
      const di = i as DomainInfo;
      const type = this.type ?? 'qemu';
      const paused = state.state === DomainState.PAUSED || state.state === DomainState.PMSUSPENDED;
      const powerState = !active ? 'ShutOff' : paused ? 'Paused' : 'Running';
      const out: ObservedVM = {
        name: live.name ?? vm.name,
        uuid: live.uuid ?? vm.uuid,
        type,
        powerState,
        persistent,
        balloon: { device: live.memballoonModel === 'none' ? 'none' : 'present' },
        numa: (config ?? live).numaCells.length > 0,
      };
      if (active) {
        const w = this.world(live, type);
        const remembered = this.liveTargets.get(vm.uuid);
        if (remembered && remembered.id === live.id) w.memory = BigInt(remembered.kib) * KIB;
        else this.liveTargets.delete(vm.uuid);
        out.live = w;
        out.balloon.actual = BigInt(di.memoryKiB) * KIB;
      } else {
        this.liveTargets.delete(vm.uuid);
      }
      if (config) out.config = this.world(config, type);
      return out;
    } catch (err) {
      throw toDriverError(err, op, vm.name);
    }
  }

  private world(x: DomainXmlInfo, type: HypervisorType): WorldValues {
    const maxMemory = kibToBytes(x.memoryKiB);
    if (maxMemory === undefined) {
      throw new DriverError('Protocol', `libvirt: domain XML of ${x.name ?? '?'} has no <memory>`, { op: 'virDomainGetXMLDesc', hypervisorMessage: 'no <memory> element' });
    }
    const w: WorldValues = { maxMemory, memory: kibToBytes(x.currentMemoryKiB) ?? maxMemory };
    const ming = kibToBytes(x.memtune.minGuaranteeKiB);
    if (ming !== undefined) w.reservation = ming;
    if (type !== 'xen') {
      const hard = x.memtune.hardLimitKiB;
      w.limit = hard === undefined || hard >= MEMORY_PARAM_UNLIMITED ? 'unlimited' : BigInt(hard) * KIB;
    }
    return w;
  }

  async apply(vm: VMHandle, steps: readonly Step[]): Promise<ApplyResult> {
    const applied: Step[] = [];
    if (steps.length === 0) return { applied };
    const c = this.session('apply', vm.name);
    const d = ref(vm);
    for (const step of steps) {
      const world = step.world === 'live' ? DomainMemFlags.LIVE : DomainMemFlags.CONFIG;
      const op = step.field === 'maxMemory' || step.field === 'memory' ? 'virDomainSetMemoryFlags' : 'virDomainSetMemoryParameters';
      try {
        switch (step.field) {
          case 'maxMemory':
            await c.domainSetMemoryFlags(d, kib(op, vm.name, step), DomainMemFlags.MAXIMUM | world);
            break;
          case 'memory': {
            const k = kib(op, vm.name, step);
            await c.domainSetMemoryFlags(d, k, world);
            if (step.world === 'live') {
              const id = (await c.lookupDomainByUuid(vm.uuid)).id;
              this.liveTargets.set(vm.uuid, { id, kib: k });
            }
            break;
          }
          case 'limit': {
            const v: number | 'unlimited' = step.to === 'unlimited' ? 'unlimited' : kib(op, vm.name, step);
            await c.domainSetMemoryParameters(d, { hard_limit: v }, world);
            break;
          }
          case 'reservation':
            await c.domainSetMemoryParameters(d, { min_guarantee: kib(op, vm.name, step) }, world);
            break;
        }
      } catch (err) {
        throw toDriverError(err, op, vm.name, applied);
      }
      applied.push(step);
    }
    return { applied };
  }

  async events(onEvent: (event: DriverEvent) => void): Promise<() => Promise<void>> {
    const c = this.session('events');
    const subs: Subscription[] = [];
    const onClose = (err?: LibvirtError) => onEvent({ kind: 'disconnected', reason: err ? err.libvirtMessage : 'connection closed' });
    try {
      subs.push(await c.onLifecycle((e) => onEvent({ kind: 'lifecycle', vm: { name: e.dom.name, uuid: e.dom.uuid }, detail: `${e.eventName}(${e.detail})` })));
      subs.push(await c.onBalloonChange((e) => onEvent({ kind: 'balloon', vm: { name: e.dom.name, uuid: e.dom.uuid }, actual: BigInt(e.actualKiB) * KIB })));
    } catch (err) {
      await Promise.allSettled(subs.map((s) => s.close()));
      throw toDriverError(err, 'virConnectDomainEventRegisterAny');
    }
    c.on('close', onClose);
    return async () => {
      c.off('close', onClose);
      await Promise.allSettled(subs.map((s) => s.close()));
    };
  }
}

/** Bytes -> KiB for libvirt; a value that is not whole KiB cannot be sent. */
function kib(op: string, vm: string, step: Step): number {
  const to = step.to;
  if (typeof to !== 'bigint' || to < 0n) {
    throw new DriverError('Refused', `libvirt: ${op} on ${vm}: invalid argument: ${step.field} ${String(to)} is not a number of bytes`, {
      op, vm, hypervisorMessage: `invalid argument: ${step.field} ${String(to)} is not a number of bytes`,
    });
  }
  if (to % KIB !== 0n) {
    const m = `invalid argument: ${step.field} ${to} bytes is not a whole number of KiB (libvirt takes KiB)`;
    throw new DriverError('Refused', `libvirt: ${op} on ${vm}: ${m}`, { op, vm, hypervisorMessage: m });
  }
  const k = to / KIB;
  if (k > BigInt(Number.MAX_SAFE_INTEGER)) {
    const m = `invalid argument: ${step.field} ${to} bytes is too large`;
    throw new DriverError('Refused', `libvirt: ${op} on ${vm}: ${m}`, { op, vm, hypervisorMessage: m });
  }
  return Number(k);
}

/** The DriverFactory for libvirt URIs (qemu, xen, test). */
export const createLibvirtDriver: DriverFactory = (options: ConnectOptions) => new LibvirtDriver(options);
