/**
 * The sim driver for a sim host served by another process (server.ts):
 * `sim+unix:///path/to/sim.sock?inventory=<name>`. Every Driver method is one
 * request on the socket; the server's SimDriver does the work, so the
 * semantics are exactly the in-process sim's. Only for tests and benchmarks,
 * like every sim URI: cluster mode refuses it unless the admin allows sims.
 */
import { connect as netConnect, type Socket } from 'node:net';
import type { ApplyResult, CallOptions, ConnectOptions, Driver, DriverEvent, HostObservation, HypervisorIdentity, VMHandle } from '../driver.ts';
import { DriverError } from '../driver.ts';
import type { ObservedVM, Step, VMRef } from '../../model/memory.ts';
import { SIM_INVENTORY_NAME } from './server.ts';
import { LineReader, decode, encode, fromWireError, type SimMessage, type SimRequest, type WireError } from './wire.ts';

export interface RemoteSimTarget {
  socketPath: string;
  inventory: string;
}

/** Parses `sim+unix:///abs/socket?inventory=name`; anything else is an InvalidURI DriverError. */
export function parseRemoteSimURI(uri: string): RemoteSimTarget {
  const bad = (why: string) => new DriverError('InvalidURI', `sim URI ${JSON.stringify(uri)}: ${why}`, { op: 'connect', hypervisorMessage: why });
  let url: URL;
  try {
    url = new URL(uri);
  } catch {
    throw bad('not a URI');
  }
  if (url.protocol !== 'sim+unix:') throw bad('expected sim+unix:///path/to/socket?inventory=<name>');
  if (url.host !== '') throw bad('a sim socket is local: no host');
  const socketPath = decodeURIComponent(url.pathname);
  if (!socketPath.startsWith('/') || socketPath.includes('\0')) throw bad('the socket path must be absolute');
  const params = [...url.searchParams.keys()];
  const unknown = params.filter((p) => p !== 'inventory');
  if (unknown.length) throw bad(`unsupported parameter(s) ${unknown.join(', ')} (only inventory=)`);
  const inventory = url.searchParams.get('inventory') ?? '';
  if (!SIM_INVENTORY_NAME.test(inventory)) throw bad('inventory= must be a name of [a-z0-9-] (at most 63)');
  return { socketPath, inventory };
}

interface Pending {
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
  method: string;
  timer: NodeJS.Timeout | undefined;
}

export class RemoteSimDriver implements Driver {
  readonly kind = 'sim';
  private readonly options: ConnectOptions;
  private readonly target: RemoteSimTarget;
  private socket: Socket | undefined;
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private readonly subscribers = new Set<(event: DriverEvent) => void>();
  private closedReason: string | undefined;

  constructor(options: ConnectOptions) {
    this.options = options;
    this.target = parseRemoteSimURI(options.uri);
  }

  async connect(): Promise<void> {
    if (this.socket && !this.socket.destroyed) return;
    this.closedReason = undefined;
    const socket = netConnect(this.target.socketPath);
    socket.setEncoding('utf8');
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', () => resolve());
      socket.once('error', (err) => reject(new DriverError('Unreachable', `sim: cannot connect to ${this.target.socketPath}: ${err.message}`, { op: 'connect', hypervisorMessage: err.message, cause: err })));
    });
    this.socket = socket;
    const reader = new LineReader((line) => this.onMessage(decode(line) as SimMessage));
    socket.on('data', (chunk: string) => {
      try {
        reader.push(chunk);
      } catch (err) {
        socket.destroy(err as Error);
      }
    });
    socket.on('close', () => this.onClose('sim: connection to the sim server closed'));
    socket.on('error', () => undefined);
    await this.request('connect', [this.target.inventory, this.options.timeoutMs]);
  }

  async close(): Promise<void> {
    const socket = this.socket;
    if (!socket || socket.destroyed) return;
    await this.request('close', []).catch(() => undefined);
    this.closedReason = 'closed';
    socket.destroy();
  }

  identify(): Promise<HypervisorIdentity> {
    return this.request('identify', []) as Promise<HypervisorIdentity>;
  }

  lookup(ref: VMRef, opts?: CallOptions): Promise<VMHandle> {
    return this.request('lookup', [ref], opts) as Promise<VMHandle>;
  }

  observe(vm: VMHandle, opts?: CallOptions): Promise<ObservedVM> {
    return this.request('observe', [vm], opts) as Promise<ObservedVM>;
  }

  observeAll(opts?: CallOptions): Promise<HostObservation> {
    return this.request('observeAll', [], opts) as Promise<HostObservation>;
  }

  apply(vm: VMHandle, steps: readonly Step[], opts?: CallOptions): Promise<ApplyResult> {
    return this.request('apply', [vm, steps], opts) as Promise<ApplyResult>;
  }

  async events(onEvent: (event: DriverEvent) => void): Promise<() => Promise<void>> {
    this.subscribers.add(onEvent);
    if (this.subscribers.size === 1) await this.request('subscribe', []);
    return async () => {
      this.subscribers.delete(onEvent);
    };
  }

  private request(method: SimRequest['method'], args: unknown[], opts?: CallOptions): Promise<unknown> {
    const socket = this.socket;
    if (!socket || socket.destroyed) {
      return Promise.reject(new DriverError('Disconnected', `sim: ${method}: ${this.closedReason ?? 'not connected'}`, { op: method, hypervisorMessage: this.closedReason ?? 'not connected' }));
    }
    if (opts?.signal?.aborted) return Promise.reject(new DriverError('Timeout', `sim: ${method} aborted`, { op: method, hypervisorMessage: 'aborted' }));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timeoutMs = this.options.timeoutMs;
      const timer = timeoutMs ? setTimeout(() => this.settle(id, undefined, { code: 'Timeout', message: `sim: ${method} timed out after ${timeoutMs} ms`, op: method, hypervisorMessage: `no reply within ${timeoutMs} ms` }), timeoutMs + 1000) : undefined;
      this.pending.set(id, { resolve, reject, method, timer });
      // An abort stops the wait; the server may still complete the call (as a real hypervisor would).
      opts?.signal?.addEventListener('abort', () => this.settle(id, undefined, { code: 'Timeout', message: `sim: ${method} aborted`, op: method, hypervisorMessage: 'aborted' }), { once: true });
      socket.write(`${encode({ id, method, args })}\n`);
    });
  }

  private settle(id: number, value: unknown, error?: WireError): void {
    const p = this.pending.get(id);
    if (!p) return;
    this.pending.delete(id);
    if (p.timer) clearTimeout(p.timer);
    if (error) p.reject(fromWireError(error));
    else p.resolve(value);
  }

  private onMessage(msg: SimMessage): void {
    if ('event' in msg) {
      for (const sub of this.subscribers) sub(msg.event as DriverEvent);
      return;
    }
    if (msg.ok) this.settle(msg.id, msg.value);
    else this.settle(msg.id, undefined, msg.error);
  }

  private onClose(reason: string): void {
    if (this.closedReason === 'closed') return;
    this.closedReason = reason;
    for (const id of [...this.pending.keys()]) this.settle(id, undefined, { code: 'Disconnected', message: reason, op: this.pending.get(id)?.method ?? 'call', hypervisorMessage: reason });
    for (const sub of this.subscribers) sub({ kind: 'disconnected', reason });
  }
}
