// Byte streams to a libvirt daemon: unix socket, TCP, TLS (client certificate,
// server verification on by default) and SSH (the `ssh` client speaking the
// protocol over its stdio to `virt-ssh-helper` or `nc -U` on the remote host,
// as libvirt's own remote driver does).

import { spawn } from 'node:child_process';
import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import net from 'node:net';
import { Duplex } from 'node:stream';
import tls from 'node:tls';
import { LibvirtError } from './errors.ts';
import { DEFAULT_SSH_PORT, DEFAULT_TCP_PORT, DEFAULT_TLS_PORT, SYSTEM_SOCKET, localSocketCandidates } from './uri.ts';
import type { LibvirtUri } from './uri.ts';

export interface TlsOptions {
  /** PEM CA bundle used to verify the server (default: pkipath/cacert.pem or /etc/pki/CA/cacert.pem). */
  ca?: string | Buffer;
  /** PEM client certificate (default: clientcert.pem in the pki directory). */
  cert?: string | Buffer;
  /** PEM client key (default: clientkey.pem in the pki directory). */
  key?: string | Buffer;
  /** Skip server certificate verification. Off by default; `no_verify=1` in the URI also sets it. */
  insecureSkipVerify?: boolean;
  /** Name to verify the certificate against (default: the URI host). */
  servername?: string;
}

export interface SshOptions {
  /** Private key file (overrides `keyfile=`). */
  keyfile?: string;
  /** known_hosts file (overrides `known_hosts=`). */
  knownHostsFile?: string;
  /** StrictHostKeyChecking (default: true when a known_hosts file is given, else ssh's own config). */
  strictHostKeyChecking?: boolean;
  /** ssh binary (overrides `command=`; default "ssh"). */
  command?: string;
  /** Extra ssh arguments, placed before the host. */
  extraArgs?: string[];
}

export interface TransportOptions {
  /** Deadline to establish the byte stream (TCP/TLS handshake, socket connect), ms. Default 10 000. */
  connectTimeoutMs?: number;
  tls?: TlsOptions;
  ssh?: SshOptions;
}

/**
 * Plain sockets (unix, TCP) read into one preallocated buffer (`onread`) instead
 * of a fresh Buffer per read, and hand the bytes straight to a sink: the
 * RpcConnection parses frames in place. A view passed to the sink is only valid
 * during the call. Bytes read before a sink is attached are kept (copied), or
 * emitted as 'data' when someone uses the socket as a plain stream.
 */
export const RAW_READ_SINK: unique symbol = Symbol('vmmem.libvirt.rawReadSink');

export interface RawReadable {
  [RAW_READ_SINK]: (sink: (chunk: Buffer) => void) => void;
}

function rawReadSocket(connect: (onread: net.OnReadOpts) => net.Socket): net.Socket {
  let sink: ((chunk: Buffer) => void) | undefined;
  let early: Buffer[] | undefined;
  const buffer = Buffer.allocUnsafe(65536);
  const sock = connect({
    buffer,
    callback: (n: number, buf: Uint8Array) => {
      const view = (buf as Buffer).subarray(0, n);
      if (sink) sink(view);
      else if (sock.listenerCount('data') > 0) sock.emit('data', Buffer.from(view)); // a plain stream user
      else (early ??= []).push(Buffer.from(view));
      return true; // keep reading
    },
  });
  (sock as net.Socket & RawReadable)[RAW_READ_SINK] = (s) => {
    sink = s;
    if (early) for (const c of early.splice(0)) s(c);
    early = undefined;
  };
  return sock;
}

function connectError(u: LibvirtUri, where: string, err: unknown): LibvirtError {
  const e = err as NodeJS.ErrnoException;
  let hint = '';
  if (e.code === 'ENOENT' || e.code === 'ECONNREFUSED') hint = ' (is the libvirt daemon running?)';
  if (e.code === 'EACCES') hint = ' (permission denied: is this user allowed to use the socket?)';
  return LibvirtError.local('connect', `cannot connect to ${where} for '${u.uri}': ${e.message}${hint}`, undefined, err);
}

function withTimeout<T extends net.Socket>(sock: T, ms: number, u: LibvirtUri, where: string, readyEvent: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => {
      sock.destroy();
      reject(LibvirtError.local('timeout', `connecting to ${where} for '${u.uri}' took longer than ${ms} ms`));
    }, ms);
    const onErr = (err: Error) => {
      clearTimeout(timer);
      reject(connectError(u, where, err));
    };
    sock.once('error', onErr);
    sock.once(readyEvent, () => {
      clearTimeout(timer);
      sock.off('error', onErr);
      resolve(sock);
    });
  });
}

async function openUnix(u: LibvirtUri, ms: number): Promise<Duplex> {
  const candidates = localSocketCandidates(u);
  let last: unknown;
  for (const path of candidates) {
    try {
      const sock = await withTimeout(rawReadSocket((onread) => net.connect({ path, onread })), ms, u, `unix socket ${path}`, 'connect');
      sock.setNoDelay?.(true);
      return sock;
    } catch (e) {
      last = e;
      const cause = (e as LibvirtError).cause as NodeJS.ErrnoException | undefined;
      if (cause?.code !== 'ENOENT' || candidates.length === 1) throw e;
    }
  }
  throw last instanceof LibvirtError ? last : connectError(u, `unix socket ${candidates.join(' or ')}`, last);
}

function pkiPaths(u: LibvirtUri): { ca: string; cert: string; key: string } {
  if (u.pkipath) return { ca: `${u.pkipath}/cacert.pem`, cert: `${u.pkipath}/clientcert.pem`, key: `${u.pkipath}/clientkey.pem` };
  if (process.getuid?.() === 0) return { ca: '/etc/pki/CA/cacert.pem', cert: '/etc/pki/libvirt/clientcert.pem', key: '/etc/pki/libvirt/private/clientkey.pem' };
  const d = `${homedir()}/.pki/libvirt`;
  return { ca: `${d}/cacert.pem`, cert: `${d}/clientcert.pem`, key: `${d}/clientkey.pem` };
}

function readPem(u: LibvirtUri, what: string, path: string, optional: boolean): Buffer | undefined {
  try {
    return readFileSync(path);
  } catch (e) {
    if (optional && (e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw LibvirtError.local('connect', `cannot read TLS ${what} '${path}' for '${u.uri}': ${(e as Error).message}`, undefined, e);
  }
}

async function openTls(u: LibvirtUri, o: TransportOptions, ms: number): Promise<Duplex> {
  const t = o.tls ?? {};
  const paths = pkiPaths(u);
  const insecure = t.insecureSkipVerify === true || u.noVerify;
  const ca = t.ca ?? readPem(u, 'CA certificate', paths.ca, insecure);
  const cert = t.cert ?? readPem(u, 'client certificate', paths.cert, true);
  const key = t.key ?? readPem(u, 'client key', paths.key, cert === undefined);
  const host = u.host!;
  const port = u.port ?? DEFAULT_TLS_PORT;
  const where = `${host}:${port} (TLS)`;
  const opts: tls.ConnectionOptions = { host, port, rejectUnauthorized: !insecure };
  if (ca !== undefined) opts.ca = ca;
  if (cert !== undefined) opts.cert = cert;
  if (key !== undefined) opts.key = key;
  const servername = t.servername ?? (net.isIP(host) ? undefined : host);
  if (servername !== undefined) opts.servername = servername;
  if (net.isIP(host) && !insecure) opts.checkServerIdentity = (_h, c) => tls.checkServerIdentity(host, c);
  const sock = await withTimeout(tls.connect(opts), ms, u, where, 'secureConnect');
  // After the handshake the daemon sends one byte: 1 when it accepted our certificate.
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      cleanup();
      sock.destroy();
      reject(LibvirtError.local('timeout', `${where} for '${u.uri}' did not confirm the TLS session within ${ms} ms`));
    }, ms);
    const cleanup = () => {
      clearTimeout(timer);
      sock.off('readable', onReadable);
      sock.off('error', onError);
      sock.off('end', onEnd);
    };
    const onReadable = () => {
      const b = sock.read(1) as Buffer | null;
      if (b === null) return;
      cleanup();
      if (b[0] !== 1) {
        sock.destroy();
        reject(LibvirtError.local('connect', `${where} rejected our TLS client certificate or address for '${u.uri}' (status byte ${b[0]})`));
      } else resolve();
    };
    const onError = (err: Error) => {
      cleanup();
      reject(connectError(u, where, err));
    };
    const onEnd = () => {
      cleanup();
      reject(LibvirtError.local('connect', `${where} closed the TLS session for '${u.uri}': server verification (of our certificate or IP address) failed`));
    };
    sock.on('readable', onReadable);
    sock.once('error', onError);
    sock.once('end', onEnd);
  });
  sock.setNoDelay(true);
  return sock;
}

function shQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** The command run on the remote host: relays stdio to the daemon's socket. */
export function sshRemoteCommand(u: LibvirtUri): string {
  const nc = u.netcat ?? 'nc';
  const socket = u.socket ?? (u.path === '/session' ? '$XDG_RUNTIME_DIR/libvirt/libvirt-sock' : SYSTEM_SOCKET);
  const sockArg = u.socket !== undefined || u.path !== '/session' ? shQuote(socket) : `"${socket}"`;
  const netcat = `if ${shQuote(nc)} -q 2>&1 | grep "requires an argument" >/dev/null 2>&1; then ARG=-q0; else ARG=; fi; exec ${shQuote(nc)} $ARG -U ${sockArg}`;
  // virt-ssh-helper picks the right daemon for the URI itself; socket= forces netcat.
  const native = `exec virt-ssh-helper ${shQuote(u.name)}`;
  let script: string;
  if (u.proxy === 'netcat' || (u.proxy === 'auto' && u.socket !== undefined)) script = netcat;
  else if (u.proxy === 'native') script = native;
  else script = `if command -v virt-ssh-helper >/dev/null 2>&1; then ${native}; else ${netcat}; fi`;
  return `sh -c ${shQuote(script)}`;
}

export function sshArgs(u: LibvirtUri, o: SshOptions = {}): string[] {
  const args: string[] = [];
  if (u.port !== undefined && u.port !== DEFAULT_SSH_PORT) args.push('-p', String(u.port));
  if (u.user !== undefined) args.push('-l', u.user);
  const keyfile = o.keyfile ?? u.keyfile;
  if (keyfile !== undefined) args.push('-i', keyfile);
  const kh = o.knownHostsFile ?? u.knownHosts;
  if (kh !== undefined) args.push('-o', `UserKnownHostsFile=${kh}`);
  const strict = o.strictHostKeyChecking ?? (kh !== undefined ? true : undefined);
  if (strict !== undefined) args.push('-o', `StrictHostKeyChecking=${strict ? 'yes' : 'no'}`);
  // Never prompt: a controller has no terminal.
  args.push('-o', 'BatchMode=yes', '-T', '-e', 'none');
  if (o.extraArgs) args.push(...o.extraArgs);
  args.push('--', u.host!, sshRemoteCommand(u));
  return args;
}

/** A Duplex over a child process's stdout/stdin; exit with an error destroys it with ssh's stderr. */
class ChildStream extends Duplex {
  private readonly child: ChildProcessWithoutNullStreams;
  private stderrTail = '';

  constructor(child: ChildProcessWithoutNullStreams, label: string) {
    super();
    this.child = child;
    child.stdout.on('data', (d: Buffer) => {
      if (!this.push(d)) child.stdout.pause();
    });
    child.stderr.on('data', (d: Buffer) => {
      this.stderrTail = (this.stderrTail + d.toString('utf8')).slice(-2000);
    });
    // Write errors (EPIPE) mean the child is going away: its exit status and
    // stderr, reported on 'close', say why much better than EPIPE does.
    child.stdin.on('error', (err) => {
      setTimeout(() => this.destroy(err), 2000).unref();
    });
    child.on('error', (err) => this.destroy(new Error(`cannot run ${label}: ${err.message}`)));
    // 'close' comes after the process exited and its stdio closed: end or fail the stream then.
    child.on('close', (code, signal) => {
      if (code === 0) {
        this.push(null);
        return;
      }
      const why = code !== null ? `exit code ${code}` : `signal ${signal}`;
      const msg = this.stderrTail.trim();
      this.destroy(new Error(`${label} ended with ${why}${msg ? `: ${msg}` : ''}`));
    });
  }

  override _read(): void {
    this.child.stdout.resume();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.child.stdin.write(chunk, () => cb());
  }

  override _writev(chunks: { chunk: Buffer }[], cb: (err?: Error | null) => void): void {
    this.child.stdin.write(Buffer.concat(chunks.map((c) => c.chunk)), () => cb());
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.child.stdin.end();
    cb();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill();
    cb(err);
  }
}

function openSsh(u: LibvirtUri, o: TransportOptions): Promise<Duplex> {
  const cmd = o.ssh?.command ?? u.command ?? 'ssh';
  const args = sshArgs(u, o.ssh);
  const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  return new Promise((resolve, reject) => {
    child.once('spawn', () => resolve(new ChildStream(child, `${cmd} to ${u.host}`)));
    child.once('error', (err) => reject(LibvirtError.local('connect', `cannot run '${cmd}' for '${u.uri}': ${err.message}`, undefined, err)));
  });
}

/** Open the byte stream a URI asks for. */
export async function openTransport(u: LibvirtUri, o: TransportOptions = {}): Promise<Duplex> {
  const ms = o.connectTimeoutMs ?? 10_000;
  switch (u.transport) {
    case 'unix':
      return openUnix(u, ms);
    case 'tcp': {
      const port = u.port ?? DEFAULT_TCP_PORT;
      const sock = await withTimeout(rawReadSocket((onread) => net.connect({ host: u.host!, port, onread })), ms, u, `${u.host}:${port} (TCP)`, 'connect');
      sock.setNoDelay(true);
      return sock;
    }
    case 'tls':
      return openTls(u, o, ms);
    case 'ssh':
      return openSsh(u, o);
  }
}
