// libvirt RPC framing over any byte stream (unix socket, TCP, TLS, ssh stdio).
//
// Wire format (virnetprotocol.x): every message is a 4-byte big-endian length
// (counting itself), a 24-byte header {prog, vers, proc, type, serial, status}
// and an XDR payload. Calls carry a client-chosen serial and replies echo it,
// so many calls can be in flight at once. Asynchronous events arrive as
// type MESSAGE; the keepalive program (PING/PONG) shares the stream.

import { EventEmitter } from 'node:events';
import type { Duplex } from 'node:stream';
import { LibvirtError } from './errors.ts';
import {
  KEEPALIVE_PROC_PING,
  KEEPALIVE_PROC_PONG,
  KEEPALIVE_PROGRAM,
  KEEPALIVE_PROTOCOL_VERSION,
  MESSAGE_MAX,
  MessageStatus,
  MessageType,
  REMOTE_PROGRAM,
  REMOTE_PROTOCOL_VERSION,
  procName,
  readRemoteError,
} from './procedures.ts';
import { RAW_READ_SINK } from './transport.ts';
import type { RawReadable } from './transport.ts';
import { XdrReader, XdrWriter } from './xdr.ts';

export type Encoder = (w: XdrWriter) => void;
export type Decoder<T> = (r: XdrReader) => T;

export interface RpcOptions {
  /** Deadline for each call, in ms (default 30 000). 0 disables. */
  callTimeoutMs?: number;
  /** Send a keepalive PING after this much silence, in ms (default 5 000). 0 disables. */
  keepaliveIntervalMs?: number;
  /** Declare the peer dead after this many unanswered intervals (default 5, like libvirt). */
  keepaliveCount?: number;
  /** Name of the peer for error messages, e.g. the URI. */
  peer?: string;
  /**
   * Hand each message to the stream in its own write, waiting for the previous
   * one (TLS: one message per TLS record). libvirtd 9.0 reads one message from a
   * TLS record and leaves the rest of the record unread until more bytes arrive
   * on the socket, so several pipelined calls in one record stall.
   */
  oneMessagePerWrite?: boolean;
}

const HEADER_LEN = 28; // length word + 24-byte header

class Pending {
  proc: number;
  dec: Decoder<unknown> | null;
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
  deadline: number;
  constructor(proc: number, dec: Decoder<unknown> | null, resolve: (v: unknown) => void, reject: (e: unknown) => void, deadline: number) {
    this.proc = proc;
    this.dec = dec;
    this.resolve = resolve;
    this.reject = reject;
    this.deadline = deadline;
  }
}

/**
 * Events: 'close' (err: LibvirtError | undefined) once the connection is gone;
 * 'eventError' (err) when an event handler or event decoding threw.
 */
export class RpcConnection extends EventEmitter {
  private readonly stream: Duplex;
  private readonly pending = new Map<number, Pending>();
  private readonly handlers = new Map<number, (r: XdrReader) => void>();
  private readonly writer = new XdrWriter(4096);
  private readonly reader = new XdrReader(Buffer.alloc(0));
  private serial = 1;
  private rbuf: Buffer = Buffer.allocUnsafe(65536);
  private rstart = 0;
  private rend = 0;
  private readonly outQueue: Buffer[] = [];
  private readonly flush = (): void => {
    const q = this.outQueue;
    if (q.length === 0 || this.closedFlag) {
      q.length = 0;
      return;
    }
    if (q.length === 1) {
      this.stream.write(q[0]!);
    } else {
      this.stream.cork();
      for (let i = 0; i < q.length; i++) this.stream.write(q[i]!);
      this.stream.uncork();
    }
    q.length = 0;
  };
  private readonly oneMessagePerWrite: boolean;
  private readonly writeQueue: Buffer[] = [];
  private writing = false;

  private sweepTimer: NodeJS.Timeout | undefined;
  private sweepEvery = 0;
  private keepaliveTimer: NodeJS.Timeout | undefined;
  private lastRecv = Date.now();
  private closeError: LibvirtError | undefined;
  private closedFlag = false;
  private ending = false;
  private readonly closedPromise: Promise<void>;
  private resolveClosed!: () => void;
  readonly callTimeoutMs: number;
  readonly peer: string;
  private readonly keepaliveIntervalMs: number;
  private readonly keepaliveCount: number;

  constructor(stream: Duplex, opts: RpcOptions = {}) {
    super();
    this.stream = stream;
    this.callTimeoutMs = opts.callTimeoutMs ?? 30_000;
    this.keepaliveIntervalMs = opts.keepaliveIntervalMs ?? 5_000;
    this.keepaliveCount = opts.keepaliveCount ?? 5;
    this.peer = opts.peer ?? 'libvirt';
    this.oneMessagePerWrite = opts.oneMessagePerWrite ?? false;
    this.closedPromise = new Promise((res) => (this.resolveClosed = res));
    const raw = (stream as Partial<RawReadable>)[RAW_READ_SINK];
    if (raw) raw((chunk) => this.onData(chunk));
    else stream.on('data', (chunk: Buffer) => this.onData(chunk));
    stream.on('error', (err: Error) =>
      this.destroy(this.ending ? undefined : LibvirtError.local('closed', `connection to ${this.peer} failed: ${err.message}`, undefined, err)),
    );
    stream.on('end', () => this.destroy(this.ending ? undefined : LibvirtError.local('closed', `connection to ${this.peer} closed by the peer`)));
    stream.on('close', () => this.destroy(this.ending ? undefined : LibvirtError.local('closed', `connection to ${this.peer} closed`)));
    stream.resume();
  }

  get closed(): boolean {
    return this.closedFlag;
  }

  /** Resolves once the connection is gone (never rejects). */
  whenClosed(): Promise<void> {
    return this.closedPromise;
  }

  get inFlight(): number {
    return this.pending.size;
  }

  /** Handle asynchronous messages (events) of the remote program for `proc`. */
  onMessage(proc: number, handler: (r: XdrReader) => void): void {
    this.handlers.set(proc, handler);
  }

  /**
   * Call a remote procedure. `enc` writes the args (null: no args), `dec` reads
   * the ret (null: void). Rejects with a LibvirtError: reason 'remote' carries
   * the daemon's code/domain/message; 'timeout' and 'closed' are local.
   */
  call<T>(proc: number, enc: Encoder | null, dec: Decoder<T> | null, timeoutMs = this.callTimeoutMs): Promise<T> {
    if (this.closedFlag) {
      const why = this.closeError ? this.closeError.libvirtMessage : 'connection closed';
      return Promise.reject(LibvirtError.local('closed', `not connected: ${why}`, procName(proc)));
    }
    const serial = this.serial;
    this.serial = serial === 0x7fff_ffff ? 1 : serial + 1;
    const w = this.writer.reset();
    w.ensure(HEADER_LEN);
    const b = w.buf;
    b.writeUInt32BE(REMOTE_PROGRAM, 4);
    b.writeUInt32BE(REMOTE_PROTOCOL_VERSION, 8);
    b.writeInt32BE(proc, 12);
    b.writeInt32BE(MessageType.CALL, 16);
    b.writeUInt32BE(serial, 20);
    b.writeInt32BE(MessageStatus.OK, 24);
    w.pos = HEADER_LEN;
    try {
      if (enc) enc(w);
    } catch (e) {
      return Promise.reject(e);
    }
    if (w.pos > MESSAGE_MAX) {
      return Promise.reject(LibvirtError.local('protocol', `message of ${w.pos} bytes exceeds libvirt's limit of ${MESSAGE_MAX}`, procName(proc)));
    }
    w.buf.writeUInt32BE(w.pos, 0);
    const out = w.toBuffer();
    return new Promise<T>((resolve, reject) => {
      const deadline = timeoutMs > 0 ? Date.now() + timeoutMs : 0;
      if (timeoutMs > 0) this.armSweep(timeoutMs);
      this.pending.set(serial, new Pending(proc, dec, resolve as (v: unknown) => void, reject, deadline));
      this.send(out);
    });
  }

  private send(buf: Buffer): void {
    if (this.oneMessagePerWrite) {
      if (this.writing) {
        this.writeQueue.push(buf);
        return;
      }
      this.writeOne(buf);
      return;
    }
    // Messages of one tick leave together on the next tick: a lone call is one
    // plain write (no cork/uncork), a pipelined burst one corked writev.
    const q = this.outQueue;
    q.push(buf);
    if (q.length === 1) process.nextTick(this.flush);
  }

  private writeOne(buf: Buffer): void {
    this.writing = true;
    this.stream.write(buf, () => {
      this.writing = false;
      if (this.closedFlag) return;
      const next = this.writeQueue.shift();
      if (next) this.writeOne(next);
    });
  }

  private armSweep(timeoutMs: number): void {
    const every = Math.min(500, Math.max(5, Math.floor(timeoutMs / 8)));
    if (this.sweepTimer && every >= this.sweepEvery) return;
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    this.sweepEvery = every;
    this.sweepTimer = setInterval(() => this.sweep(), every);
    this.sweepTimer.unref();
  }

  private sweep(): void {
    if (this.pending.size === 0) return;
    const now = Date.now();
    for (const [serial, p] of this.pending) {
      if (p.deadline !== 0 && now >= p.deadline) {
        this.pending.delete(serial);
        const name = procName(p.proc);
        p.reject(LibvirtError.local('timeout', `no reply from ${this.peer} within the call timeout (serial ${serial})`, name));
      }
    }
  }

  /** Start libvirt-style keepalive: PING after silence, give up after `count` silent intervals. */
  startKeepalive(): void {
    if (this.keepaliveIntervalMs <= 0 || this.keepaliveTimer || this.closedFlag) return;
    const iv = this.keepaliveIntervalMs;
    this.keepaliveTimer = setInterval(() => {
      const silent = Date.now() - this.lastRecv;
      if (silent >= iv * (this.keepaliveCount + 1)) {
        this.destroy(LibvirtError.local('closed', `connection to ${this.peer} is dead: no keepalive response for ${silent} ms`));
      } else if (silent >= iv) {
        this.sendKeepalive(KEEPALIVE_PROC_PING);
      }
    }, iv);
    this.keepaliveTimer.unref();
  }

  private sendKeepalive(proc: number): void {
    if (this.closedFlag) return;
    const b = Buffer.allocUnsafe(HEADER_LEN);
    b.writeUInt32BE(HEADER_LEN, 0);
    b.writeUInt32BE(KEEPALIVE_PROGRAM, 4);
    b.writeUInt32BE(KEEPALIVE_PROTOCOL_VERSION, 8);
    b.writeInt32BE(proc, 12);
    b.writeInt32BE(MessageType.MESSAGE, 16);
    b.writeUInt32BE(0, 20);
    b.writeInt32BE(MessageStatus.OK, 24);
    this.send(b);
  }

  private onData(chunk: Buffer): void {
    this.lastRecv = Date.now();
    let buf: Buffer;
    let start: number;
    let end: number;
    if (this.rstart === this.rend) {
      // Nothing buffered: parse straight from the chunk.
      buf = chunk;
      start = 0;
      end = chunk.length;
    } else {
      this.append(chunk);
      buf = this.rbuf;
      start = this.rstart;
      end = this.rend;
    }
    while (end - start >= 4) {
      const len = buf.readUInt32BE(start);
      if (len < HEADER_LEN || len > MESSAGE_MAX) {
        this.destroy(LibvirtError.local('protocol', `invalid message length ${len} from ${this.peer}: not a libvirt RPC stream`));
        return;
      }
      if (end - start < len) break;
      this.dispatch(buf, start, start + len);
      if (this.closedFlag) return;
      start += len;
    }
    if (buf === chunk) {
      this.rstart = 0;
      this.rend = 0;
      if (start < end) this.append(chunk.subarray(start, end));
    } else {
      this.rstart = start;
      this.rend = end;
      if (start === end) {
        this.rstart = 0;
        this.rend = 0;
      }
    }
  }

  private append(data: Buffer): void {
    const used = this.rend - this.rstart;
    if (this.rend + data.length > this.rbuf.length) {
      if (used + data.length <= this.rbuf.length) {
        this.rbuf.copy(this.rbuf, 0, this.rstart, this.rend);
      } else {
        let size = this.rbuf.length * 2;
        while (size < used + data.length) size *= 2;
        const next = Buffer.allocUnsafe(size);
        this.rbuf.copy(next, 0, this.rstart, this.rend);
        this.rbuf = next;
      }
      this.rstart = 0;
      this.rend = used;
    }
    data.copy(this.rbuf, this.rend);
    this.rend += data.length;
  }

  private dispatch(buf: Buffer, start: number, end: number): void {
    const prog = buf.readUInt32BE(start + 4);
    const vers = buf.readUInt32BE(start + 8);
    const proc = buf.readInt32BE(start + 12);
    const type = buf.readInt32BE(start + 16);
    const serial = buf.readUInt32BE(start + 20);
    const status = buf.readInt32BE(start + 24);
    if (prog === KEEPALIVE_PROGRAM) {
      if (proc === KEEPALIVE_PROC_PING) this.sendKeepalive(KEEPALIVE_PROC_PONG);
      return; // PONG: lastRecv already updated
    }
    if (prog !== REMOTE_PROGRAM || vers !== REMOTE_PROTOCOL_VERSION) {
      this.destroy(LibvirtError.local('protocol', `unexpected program 0x${prog.toString(16)} version ${vers} from ${this.peer}`));
      return;
    }
    const r = this.reader;
    r.buf = buf;
    r.pos = start + HEADER_LEN;
    r.end = end;
    if (type === MessageType.REPLY || type === MessageType.REPLY_WITH_FDS) {
      if (type === MessageType.REPLY_WITH_FDS) r.pos += 4; // fd count: we never ask for fds
      const p = this.pending.get(serial);
      if (!p) return; // already timed out
      this.pending.delete(serial);
      if (status === MessageStatus.OK) {
        let v: unknown;
        try {
          v = p.dec ? p.dec(r) : undefined;
          r.done(`reply to ${procName(p.proc)}`);
        } catch (e) {
          p.reject(LibvirtError.local('protocol', `cannot decode reply: ${(e as Error).message}`, procName(p.proc), e));
          return;
        }
        p.resolve(v);
      } else {
        let err: LibvirtError;
        try {
          err = LibvirtError.fromRemote(readRemoteError(r), procName(p.proc));
        } catch (e) {
          err = LibvirtError.local('protocol', `cannot decode error reply: ${(e as Error).message}`, procName(p.proc), e);
        }
        p.reject(err);
      }
    } else if (type === MessageType.MESSAGE) {
      const h = this.handlers.get(proc);
      if (!h) return;
      try {
        h(r);
      } catch (e) {
        this.emit('eventError', e);
      }
    }
    // STREAM messages are not used by this client.
  }

  /** Tear down now: pending calls reject with `err` (or a 'closed' error). */
  destroy(err?: LibvirtError): void {
    if (this.closedFlag) return;
    this.closedFlag = true;
    this.closeError = err;
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    if (this.keepaliveTimer) clearInterval(this.keepaliveTimer);
    const base = err ?? LibvirtError.local('closed', `connection to ${this.peer} closed`);
    for (const [, p] of this.pending) {
      p.reject(
        new LibvirtError({
          code: base.code,
          domain: base.domain,
          message: `${base.libvirtMessage} before the reply arrived`,
          procedure: procName(p.proc),
          reason: base.reason,
          cause: base,
        }),
      );
    }
    this.pending.clear();
    this.writeQueue.length = 0;
    this.outQueue.length = 0;
    this.stream.destroy();
    this.emit('close', err);
    this.resolveClosed();
  }

  /** Close gracefully: stop writing, wait for the peer to close (max `graceMs`), then destroy. */
  async end(graceMs = 1000): Promise<void> {
    if (this.closedFlag) return;
    this.ending = true;
    this.stream.end();
    const t = setTimeout(() => this.destroy(), graceMs);
    await this.closedPromise;
    clearTimeout(t);
  }
}
