// Byte streams to a libvirt daemon: unix socket, TCP, TLS (client certificate,
// server verification on by default) and SSH (the `ssh` client speaking the
// protocol over its stdio to `virt-ssh-helper` or `nc -U` on the remote host,
// as libvirt's own remote driver does).

import { spawn } from 'node:child_process';
import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import net from 'node:net';
import { Duplex } from 'node:stream';
import tls from 'node:tls';
import { LibvirtError } from './errors.ts';
import { DEFAULT_SSH_PORT, DEFAULT_TCP_PORT, DEFAULT_TLS_PORT, SYSTEM_SOCKET, localSocketCandidates, redactLibvirtUri } from './uri.ts';
import type { LibvirtUri } from './uri.ts';

/**
 * TLS material comes only from here (the Hypervisor's Secret), never from files
 * a URI names (libvirt's pkipath=) nor the operator's own default locations
 * (/etc/pki, ~/.pki): a tenant must not borrow the operator's client certificate.
 */
export interface TlsOptions {
  /** PEM CA bundle used to verify the server (default: the system roots). */
  ca?: string | Buffer;
  /** PEM client certificate (default: none). */
  cert?: string | Buffer;
  /** PEM client key (with cert). */
  key?: string | Buffer;
  /** Skip server certificate verification (spec.tls.insecureSkipVerify). Off by default. */
  insecureSkipVerify?: boolean;
  /** Name to verify the certificate against (default: the URI host). */
  servername?: string;
}

/**
 * The key and known_hosts are files the driver wrote from the Hypervisor's
 * Secret; both are required. ssh then uses only them: no config files, no
 * agent, no default identities or known_hosts of the operator's user.
 */
export interface SshOptions {
  /** Private key file, from the Secret's ssh-privatekey. */
  keyfile?: string;
  /** known_hosts file, from the Secret's known_hosts; host keys are always checked strictly. */
  knownHostsFile?: string;
  /** The ssh binary (code only, e.g. tests; never from a URI). Default "ssh". */
  command?: string;
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
  return LibvirtError.local('connect', `cannot connect to ${where} for '${redactLibvirtUri(u.uri)}': ${e.message}${hint}`, undefined, err);
}

function withTimeout<T extends net.Socket>(sock: T, ms: number, u: LibvirtUri, where: string, readyEvent: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => {
      sock.destroy();
      reject(LibvirtError.local('timeout', `connecting to ${where} for '${redactLibvirtUri(u.uri)}' took longer than ${ms} ms`));
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

async function openTls(u: LibvirtUri, o: TransportOptions, ms: number): Promise<Duplex> {
  const t = o.tls ?? {};
  const insecure = t.insecureSkipVerify === true;
  const { ca, cert, key } = t;
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
      reject(LibvirtError.local('timeout', `${where} for '${redactLibvirtUri(u.uri)}' did not confirm the TLS session within ${ms} ms`));
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
        reject(LibvirtError.local('connect', `${where} rejected our TLS client certificate or address for '${redactLibvirtUri(u.uri)}' (status byte ${b[0]})`));
      } else resolve();
    };
    const onError = (err: Error) => {
      cleanup();
      reject(connectError(u, where, err));
    };
    const onEnd = () => {
      cleanup();
      reject(LibvirtError.local('connect', `${where} closed the TLS session for '${redactLibvirtUri(u.uri)}': server verification (of our certificate or IP address) failed`));
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
  const nc = 'nc';
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

/**
 * The ssh command line. Only the host, port and user come from the URI (their
 * shapes are checked by parseUri, and `--` ends the options anyway); everything
 * else is fixed here so that nothing a tenant writes becomes an ssh option, and
 * ssh uses only the Secret's key and known_hosts.
 */
export function sshArgs(u: LibvirtUri, o: SshOptions): string[] {
  if (o.keyfile === undefined || o.knownHostsFile === undefined) {
    throw LibvirtError.local('connect', `ssh to '${redactLibvirtUri(u.uri)}' needs ssh-privatekey and known_hosts in the Secret named by spec.credentialsSecretRef (vmmem uses no other key or host list)`);
  }
  const args = ['-F', 'none']; // no ~/.ssh/config or /etc/ssh/ssh_config: no ProxyCommand, Match exec, ...
  if (u.port !== undefined && u.port !== DEFAULT_SSH_PORT) args.push('-p', String(u.port));
  if (u.user !== undefined) args.push('-l', u.user);
  args.push('-i', o.keyfile);
  const fixed = [
    'IdentitiesOnly=yes',
    'IdentityAgent=none',
    'PKCS11Provider=none',
    `UserKnownHostsFile=${o.knownHostsFile}`,
    'GlobalKnownHostsFile=/dev/null',
    'StrictHostKeyChecking=yes',
    'UpdateHostKeys=no',
    'CheckHostIP=no',
    'BatchMode=yes', // never prompt: a controller has no terminal
    'ControlMaster=no',
    'ControlPath=none',
    'PermitLocalCommand=no',
    'ForwardAgent=no',
    'ForwardX11=no',
    'ClearAllForwardings=yes',
    'ProxyCommand=none',
    'ProxyJump=none',
  ];
  for (const opt of fixed) args.push('-o', opt);
  args.push('-T', '-e', 'none', '--', u.host!, sshRemoteCommand(u));
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
  const ssh = o.ssh ?? {};
  const cmd = ssh.command ?? 'ssh';
  const args = sshArgs(u, ssh);
  // No agent socket in the child's environment either (IdentityAgent=none already ignores it).
  const { SSH_AUTH_SOCK: _agent, SSH_AGENT_PID: _pid, ...env } = process.env;
  const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], env, shell: false });
  return new Promise((resolve, reject) => {
    child.once('spawn', () => resolve(new ChildStream(child, `${cmd} to ${u.host}`)));
    child.once('error', (err) => reject(LibvirtError.local('connect', `cannot run '${cmd}' for '${redactLibvirtUri(u.uri)}': ${err.message}`, undefined, err)));
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
