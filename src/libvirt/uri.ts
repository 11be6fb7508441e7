// libvirt connection URIs, parsed the way libvirt's remote driver does:
//
//   driver[+transport]://[user@][host][:port]/path[?param=value&...]
//
// - no transport and no host -> local unix socket; no transport with a host -> tls
// - the URI sent to the daemon in CONNECT_OPEN is driver:///path plus the query
//   parameters that are not consumed by the client (or the `name` parameter)
// - `test:///default` is served in-process by libvirt's C library; this client
//   has no in-process drivers, so it asks the local daemon, which has the test
//   driver too (its state then lives as long as the connection).

import { LibvirtError } from './errors.ts';

export type Transport = 'unix' | 'tcp' | 'tls' | 'ssh';

export interface LibvirtUri {
  /** The URI as given. */
  readonly uri: string;
  /** Hypervisor driver: qemu, xen, test, lxc, ... */
  readonly driver: string;
  readonly transport: Transport;
  readonly user: string | undefined;
  readonly host: string | undefined;
  readonly port: number | undefined;
  /** e.g. /system, /session, /default */
  readonly path: string;
  /** Every query parameter, decoded. */
  readonly params: Readonly<Record<string, string>>;
  /** The URI the daemon is asked to open (REMOTE_PROC_CONNECT_OPEN). */
  readonly name: string;
  /** `socket=`: the daemon's unix socket (local, or on the remote host for ssh). */
  readonly socket: string | undefined;
  /** `keyfile=` (ssh private key). */
  readonly keyfile: string | undefined;
  /** `known_hosts=` (ssh). */
  readonly knownHosts: string | undefined;
  /** `no_verify=1`: skip TLS server certificate verification (never the default). */
  readonly noVerify: boolean;
  /** `pkipath=`: directory with cacert.pem, clientcert.pem, clientkey.pem. */
  readonly pkipath: string | undefined;
  /** `command=`: the ssh binary (default "ssh"). */
  readonly command: string | undefined;
  /** `netcat=`: the netcat binary on the remote host (default "nc"). */
  readonly netcat: string | undefined;
  /** `proxy=` auto | netcat | native (virt-ssh-helper). */
  readonly proxy: 'auto' | 'netcat' | 'native';
  /** `no_tty=1` */
  readonly noTty: boolean;
  /** `mode=` auto | legacy | direct: which daemon socket to use locally. */
  readonly mode: 'auto' | 'legacy' | 'direct';
}

/** Drivers the remote protocol can reach. */
const REMOTE_DRIVERS = new Set(['qemu', 'xen', 'libxl', 'test', 'lxc', 'bhyve', 'vbox', 'vz', 'openvz', 'ch', 'network', 'storage', 'nodedev', 'secret', 'nwfilter', 'interface']);
/** Drivers libvirt implements only inside the client library (HTTP APIs), not over its RPC. */
const CLIENT_SIDE_DRIVERS = new Set(['esx', 'vpx', 'gsx', 'hyperv', 'vmwareplayer', 'vmwarews', 'vmwarefusion', 'phyp']);
const TRANSPORTS = new Set<string>(['unix', 'tcp', 'tls', 'ssh']);
/** Query parameters the client consumes; all others go to the daemon in `name`. */
const CLIENT_PARAMS = new Set([
  'name', 'command', 'socket', 'auth', 'netcat', 'keyfile', 'no_verify', 'no_tty', 'pkipath', 'known_hosts',
  'known_hosts_verify', 'sshauth', 'mode', 'proxy', 'tls_priority',
]);

export const DEFAULT_TCP_PORT = 16509;
export const DEFAULT_TLS_PORT = 16514;
export const DEFAULT_SSH_PORT = 22;
export const SYSTEM_SOCKET = '/var/run/libvirt/libvirt-sock';

function bad(uri: string, why: string): LibvirtError {
  return LibvirtError.local('uri', `invalid libvirt URI '${uri}': ${why}`);
}

function decode(uri: string, s: string, what: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    throw bad(uri, `bad percent-encoding in ${what} '${s}'`);
  }
}

const SCHEME_RE = /^([a-zA-Z][a-zA-Z0-9.-]*)(?:\+([a-zA-Z0-9-]+))?:\/\/(.*)$/s;

/** Parse and validate a libvirt URI; throws a LibvirtError (reason 'uri') naming the URI and the problem. */
export function parseUri(uri: string): LibvirtUri {
  if (typeof uri !== 'string' || uri.trim() === '') throw bad(String(uri), 'empty URI (expected e.g. qemu:///system)');
  if (/\s/.test(uri)) throw bad(uri, 'URIs cannot contain whitespace');
  const m = SCHEME_RE.exec(uri);
  if (!m) {
    if (/^[a-zA-Z][a-zA-Z0-9+.-]*:(?!\/\/)/.test(uri)) throw bad(uri, "missing '//' after the scheme (expected e.g. qemu:///system)");
    throw bad(uri, 'missing scheme (expected driver[+transport]://[user@][host][:port]/path, e.g. qemu:///system)');
  }
  const driver = m[1]!.toLowerCase();
  const transportRaw = m[2]?.toLowerCase();
  let rest = m[3]!;
  if (CLIENT_SIDE_DRIVERS.has(driver)) {
    throw bad(uri, `the '${driver}' driver runs inside libvirt's client library and is not reachable over the libvirt RPC protocol`);
  }
  if (!REMOTE_DRIVERS.has(driver)) throw bad(uri, `unknown hypervisor driver '${driver}' (known: qemu, xen, test, lxc, ...)`);
  if (transportRaw !== undefined && !TRANSPORTS.has(transportRaw)) {
    const hint = transportRaw === 'libssh' || transportRaw === 'libssh2' ? "; use '+ssh', which runs the ssh client" : '';
    throw bad(uri, `unsupported transport '${transportRaw}' (supported: unix, tcp, tls, ssh)${hint}`);
  }
  // fragment
  const hashAt = rest.indexOf('#');
  if (hashAt >= 0) rest = rest.slice(0, hashAt);
  let query = '';
  const qAt = rest.indexOf('?');
  if (qAt >= 0) {
    query = rest.slice(qAt + 1);
    rest = rest.slice(0, qAt);
  }
  const slashAt = rest.indexOf('/');
  const authority = slashAt >= 0 ? rest.slice(0, slashAt) : rest;
  const path = slashAt >= 0 ? decode(uri, rest.slice(slashAt), 'path') : '';

  let user: string | undefined;
  let hostport = authority;
  const atAt = authority.lastIndexOf('@');
  if (atAt >= 0) {
    user = decode(uri, authority.slice(0, atAt), 'user');
    hostport = authority.slice(atAt + 1);
    if (user === '') throw bad(uri, "empty user name before '@'");
    if (user.includes(':')) throw bad(uri, 'passwords in URIs are not supported; use credentials instead');
  }
  let host: string | undefined;
  let port: number | undefined;
  if (hostport.startsWith('[')) {
    const close = hostport.indexOf(']');
    if (close < 0) throw bad(uri, "unterminated '[' in IPv6 host");
    host = hostport.slice(1, close);
    const after = hostport.slice(close + 1);
    if (after !== '') {
      if (!after.startsWith(':')) throw bad(uri, `unexpected '${after}' after IPv6 host`);
      port = parsePort(uri, after.slice(1));
    }
  } else if (hostport !== '') {
    const c = hostport.lastIndexOf(':');
    if (c >= 0) {
      host = hostport.slice(0, c);
      port = parsePort(uri, hostport.slice(c + 1));
    } else {
      host = hostport;
    }
    if (host === '') throw bad(uri, 'port given without a host');
    if (!/^[a-zA-Z0-9._%-]+$/.test(host)) throw bad(uri, `invalid host '${host}'`);
  }
  if (user !== undefined && host === undefined) throw bad(uri, `user '${user}' given without a host`);

  const transport: Transport = (transportRaw as Transport | undefined) ?? (host !== undefined ? 'tls' : 'unix');
  if (transport === 'unix' && host !== undefined) throw bad(uri, `the unix transport is local and cannot have a host ('${host}')`);
  if (transport !== 'unix' && host === undefined) throw bad(uri, `the ${transport} transport needs a host (e.g. ${driver}+${transport}://host/system)`);

  const params: Record<string, string> = {};
  const daemonParams: string[] = [];
  if (query !== '') {
    for (const part of query.split('&')) {
      if (part === '') continue;
      const eq = part.indexOf('=');
      const k = decode(uri, eq >= 0 ? part.slice(0, eq) : part, 'query parameter name');
      const v = decode(uri, eq >= 0 ? part.slice(eq + 1) : '', `query parameter '${k}'`);
      if (k === '') throw bad(uri, 'query parameter without a name');
      params[k] = v;
      if (!CLIENT_PARAMS.has(k)) daemonParams.push(part);
    }
  }

  validatePath(uri, driver, path);

  const socket = params.socket;
  if (socket !== undefined && !socket.startsWith('/')) throw bad(uri, `socket must be an absolute path, got '${socket}'`);
  if (socket !== undefined && transport !== 'unix' && transport !== 'ssh') throw bad(uri, `socket= only applies to the unix and ssh transports, not ${transport}`);
  const proxy = params.proxy ?? 'auto';
  if (proxy !== 'auto' && proxy !== 'netcat' && proxy !== 'native') throw bad(uri, `proxy must be auto, netcat or native, got '${proxy}'`);
  const mode = params.mode ?? 'auto';
  if (mode !== 'auto' && mode !== 'legacy' && mode !== 'direct') throw bad(uri, `mode must be auto, legacy or direct, got '${mode}'`);
  const noVerify = boolParam(uri, params, 'no_verify');
  const noTty = boolParam(uri, params, 'no_tty');
  if (params.auth !== undefined && params.auth !== 'none') {
    throw bad(uri, `auth=${params.auth} is not supported by this client (SASL/polkit); use unix socket permissions, TLS client certificates or ssh keys`);
  }

  const name = params.name ?? `${driver}://${path}${daemonParams.length ? `?${daemonParams.join('&')}` : ''}`;
  return {
    uri,
    driver,
    transport,
    user,
    host,
    port,
    path,
    params,
    name,
    socket,
    keyfile: params.keyfile,
    knownHosts: params.known_hosts,
    noVerify,
    pkipath: params.pkipath,
    command: params.command,
    netcat: params.netcat,
    proxy,
    noTty,
    mode,
  };
}

function parsePort(uri: string, s: string): number {
  if (!/^[0-9]{1,5}$/.test(s)) throw bad(uri, `invalid port '${s}'`);
  const p = Number(s);
  if (p < 1 || p > 65535) throw bad(uri, `port ${p} out of range 1-65535`);
  return p;
}

function boolParam(uri: string, params: Record<string, string>, k: string): boolean {
  const v = params[k];
  if (v === undefined) return false;
  if (v === '1') return true;
  if (v === '0') return false;
  throw bad(uri, `${k} must be 0 or 1, got '${v}'`);
}

function validatePath(uri: string, driver: string, path: string): void {
  switch (driver) {
    case 'qemu':
    case 'lxc':
    case 'bhyve':
    case 'vbox':
    case 'ch':
      if (path === '') throw bad(uri, `missing path: use ${driver}:///system or ${driver}:///session`);
      if (path !== '/system' && path !== '/session') throw bad(uri, `unexpected path '${path}' for the ${driver} driver: use /system or /session`);
      return;
    case 'xen':
    case 'libxl':
      if (path !== '' && path !== '/' && path !== '/system') throw bad(uri, `unexpected path '${path}' for the ${driver} driver: use /system`);
      return;
    case 'test':
      if (path === '' || path === '/') throw bad(uri, 'the test driver needs a path: /default or an absolute path to a test config file');
      return;
    default:
      if (path === '') throw bad(uri, `missing path: use ${driver}:///system`);
  }
}

/** Where the daemon's unix socket is for a local URI, in order of preference. */
export function localSocketCandidates(u: LibvirtUri, env: NodeJS.ProcessEnv = process.env): string[] {
  if (u.socket) return [u.socket];
  const session = u.path === '/session';
  let dir: string;
  if (session) {
    const runtime = env.XDG_RUNTIME_DIR;
    dir = runtime ? `${runtime}/libvirt` : `${env.HOME ?? '~'}/.cache/libvirt`;
  } else {
    dir = '/var/run/libvirt';
  }
  const legacy = `${dir}/libvirt-sock`;
  // libvirtd and virtproxyd listen on libvirt-sock; modular daemons on virt<driver>d-sock.
  const direct = `${dir}/virt${u.driver === 'libxl' ? 'xen' : u.driver}d-sock`;
  if (u.mode === 'legacy' || u.driver === 'test') return [legacy];
  if (u.mode === 'direct') return [direct];
  return [legacy, direct];
}
