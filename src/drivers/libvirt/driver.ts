/**
 * The libvirt driver: the Driver interface over src/libvirt's remote-protocol
 * client, for QEMU/KVM, Xen (libxl) and the test driver.
 *
 * observe: one batch of pipelined calls per domain (observe.ts).
 * observeAll: the whole host in one round of bulk calls plus cached domain
 * XML (hostview.ts); the cache hears definition changes through the driver's
 * own event registrations (events.ts), made once per connection.
 * apply: one libvirt call per step (apply.ts); the result carries the VM's
 * observation patched from the cache when libvirt's outcome is exact.
 * Every call takes an optional AbortSignal; an aborted caller stops waiting
 * (DriverError 'Timeout'). docs/libvirt.md has the call counts, measured.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type {
  ApplyResult,
  CallOptions,
  ConnectOptions,
  Driver,
  DriverEvent,
  DriverFactory,
  HostObservation,
  HypervisorIdentity,
  VMHandle,
} from '../driver.ts';
import { DriverError } from '../driver.ts';
import type { HypervisorType, ObservedVM, Step, VMRef } from '../../model/memory.ts';
import { LibvirtClient } from '../../libvirt/index.ts';
import type { ConnectOptions as ClientOptions, DomainEvent, LibvirtError } from '../../libvirt/index.ts';
import { applySteps, patchFacts } from './apply.ts';
import { abortable, checkAborted, toDriverError } from './errors.ts';
import { EventHub, changesDefinition, driverEventOf } from './events.ts';
import { DomainCache, observeHost } from './hostview.ts';
import { KIB, observedOf, readDomainFacts } from './observe.ts';
import type { LiveTargets } from './observe.ts';

export { toDriverError } from './errors.ts';

export interface LibvirtDriverExtras {
  /** Use this connected client instead of opening one (tests); close() leaves it open. */
  client?: LibvirtClient;
  /**
   * observeAll re-reads a domain's XML at least this often (default 10 min):
   * libvirt sends no event for memtune or config-only memory changes, so an
   * out-of-band change of those is seen within this age (or on any event of
   * that domain, or by observe()).
   */
  xmlMaxAgeMs?: number;
  /** Behave as with a daemon lacking virConnectGetAllDomainStats (tests of the per-domain fallback). */
  noBulkStats?: boolean;
}

const DEFAULT_XML_MAX_AGE_MS = 10 * 60_000;

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

export class LibvirtDriver implements Driver {
  readonly kind = 'libvirt';
  private readonly options: ConnectOptions;
  private readonly extras: LibvirtDriverExtras;
  private client: LibvirtClient | undefined;
  private type: HypervisorType | undefined;
  private secretsDir: string | undefined;
  /** Live balloon targets this driver set: uuid -> {domain id at the time, KiB}. */
  private readonly liveTargets: LiveTargets = new Map();
  private readonly cache: DomainCache;
  private readonly hub = new EventHub();

  constructor(options: ConnectOptions, extras: LibvirtDriverExtras = {}) {
    this.options = options;
    this.extras = extras;
    this.cache = new DomainCache(extras.xmlMaxAgeMs ?? DEFAULT_XML_MAX_AGE_MS);
    this.hub.add(this.onDomainEvent);
  }

  /** Keeps the XML cache true to the daemon's events, whether or not anyone called events(). */
  private readonly onDomainEvent = (ev: DomainEvent): void => {
    if (ev.kind === 'balloonChange') this.cache.balloon(ev.dom.uuid, ev.actualKiB);
    else if (changesDefinition(ev)) this.cache.invalidate(ev.dom.uuid);
  };

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
    this.cache.clear();
    if (this.extras.noBulkStats) this.cache.bulkStats = false;
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
    await this.hub.close();
    this.cache.clear();
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

  async lookup(vmRef: VMRef, opts: CallOptions = {}): Promise<VMHandle> {
    const c = this.session('lookup');
    const signal = opts.signal;
    if (vmRef.name !== undefined) {
      try {
        const d = await abortable(c.lookupDomainByName(vmRef.name), signal, 'virDomainLookupByName', vmRef.name);
        return { name: d.name, uuid: d.uuid };
      } catch (err) {
        throw toDriverError(err, 'virDomainLookupByName', vmRef.name);
      }
    }
    if (vmRef.uuid !== undefined) {
      try {
        const d = await abortable(c.lookupDomainByUuid(vmRef.uuid), signal, 'virDomainLookupByUUID', vmRef.uuid);
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

  async observe(vm: VMHandle, opts: CallOptions = {}): Promise<ObservedVM> {
    const c = this.session('observe', vm.name);
    const op = { name: 'virDomainGetState' };
    checkAborted(opts.signal, op.name, vm.name);
    try {
      const gen = this.cache.generation(vm.uuid);
      const facts = await abortable(readDomainFacts(c, vm, op), opts.signal, op.name, vm.name);
      // A fresh read refreshes the host view's copy too (observeAll reuses it).
      this.cache.store(facts, gen);
      return observedOf(facts, this.type ?? 'qemu', this.liveTargets);
    } catch (err) {
      throw toDriverError(err, op.name, vm.name);
    }
  }

  async observeAll(opts: CallOptions = {}): Promise<HostObservation> {
    const c = this.session('observeAll');
    // The cache is only as good as the events it hears: register them before the first look.
    try {
      this.cache.pendingCalls += await abortable(this.hub.ensure(c), opts.signal, 'virConnectDomainEventRegisterAny');
    } catch (err) {
      throw toDriverError(err, 'virConnectDomainEventRegisterAny');
    }
    return observeHost(this.cache, { client: c, type: this.type ?? 'qemu', liveTargets: this.liveTargets, signal: opts.signal });
  }

  async apply(vm: VMHandle, steps: readonly Step[], opts: CallOptions = {}): Promise<ApplyResult> {
    if (steps.length === 0) return { applied: [] };
    const c = this.session('apply', vm.name);
    const type = this.type ?? 'qemu';
    const gen = this.cache.generation(vm.uuid);
    let applied: Step[];
    try {
      applied = await applySteps(c, vm, steps, this.liveTargets, type, opts.signal, this.cache.get(vm.uuid)?.id);
    } catch (err) {
      // Some steps may have taken: the cached definition is no longer known.
      this.cache.invalidate(vm.uuid);
      throw err;
    }
    const facts = this.cache.get(vm.uuid);
    // Exact only when the cache held this domain and no event arrived meanwhile.
    if (facts && this.cache.generation(vm.uuid) === gen && patchFacts(facts, applied, type)) {
      return { applied, observed: observedOf(facts, type, this.liveTargets) };
    }
    this.cache.invalidate(vm.uuid);
    return { applied };
  }

  async events(onEvent: (event: DriverEvent) => void): Promise<() => Promise<void>> {
    const c = this.session('events');
    const listener = (ev: DomainEvent) => onEvent(driverEventOf(ev));
    const onClose = (err?: LibvirtError) => onEvent({ kind: 'disconnected', reason: err ? err.libvirtMessage : 'connection closed' });
    this.hub.add(listener);
    try {
      this.cache.pendingCalls += await this.hub.ensure(c);
    } catch (err) {
      this.hub.remove(listener);
      throw toDriverError(err, 'virConnectDomainEventRegisterAny');
    }
    c.on('close', onClose);
    return async () => {
      c.off('close', onClose);
      this.hub.remove(listener);
    };
  }
}

/** The DriverFactory for libvirt URIs (qemu, xen, test). */
export const createLibvirtDriver: DriverFactory = (options: ConnectOptions) => new LibvirtDriver(options);
