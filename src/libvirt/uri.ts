// libvirt connection URIs, the subset vmmem accepts (src/api/uri-policy.ts):
//
//   driver[+transport]://[user@][host][:port]/path[?param=value&...]
//
// - no transport and no host -> local unix socket; no transport with a host -> tls
// - drivers qemu, xen, test; parameters only those CLIENT_PARAMS lists per
//   transport. libvirt's own client also takes command=, keyfile=, netcat=,
//   pkipath=, known_hosts=, no_verify=, name=...: a Hypervisor is tenant input,
//   so those are refused here (programs, local files, ssh options), whatever the
//   schema let through (defence in depth).
// - the URI sent to the daemon in CONNECT_OPEN is driver:///path.
// - `test:///default` is served in-process by libvirt's C library; this client
//   has no in-process drivers, so it asks the local daemon, which has the test
//   driver too (its state then lives as long as the connection).

import { LibvirtError } from './errors.ts';

export type Transport = 'unix' | 'tcp' | 'tls' | 'ssh';

// What this client accepts. The same table as src/api/uri-policy.ts (the schema and the CRD);
// the layer rules keep the protocol client free of vmmem imports, so it is a copy, and
// test/security/uri-allowlist.test.ts checks the two are equal and give the same verdicts.

/** Absolute path, segments of [A-Za-z0-9._-] not starting with '..', no percent-encoding. */
const SOCKET_PATH = '(/\\.?[A-Za-z0-9_-][A-Za-z0-9._-]*)+';

export interface ClientParamRule {
  readonly value: string;
  readonly help: string;
}

/** The query parameters this client supports, per transport, with the shape of each value. */
export const CLIENT_PARAMS: Readonly<Record<Transport, Readonly<Record<string, ClientParamRule>>>> = {
  unix: {
    socket: { value: SOCKET_PATH, help: 'the daemon socket, an absolute path' },
    mode: { value: '(auto|legacy|direct)', help: 'auto, legacy (libvirtd) or direct (virtqemud ...)' },
  },
  ssh: {
    socket: { value: SOCKET_PATH, help: 'the daemon socket on the remote host, an absolute path' },
    proxy: { value: '(auto|netcat|native)', help: 'auto, netcat (nc -U) or native (virt-ssh-helper)' },
  },
  tls: {},
  tcp: {},
};

/** libvirt client parameters refused on purpose: a URI is tenant input. */
export const REFUSED_CLIENT_PARAMS: Readonly<Record<string, string>> = {
  command: 'a program to run',
  netcat: 'a program to run on the remote host',
  keyfile: 'a local file',
  pkipath: 'a local directory',
  known_hosts: 'a local file',
  known_hosts_verify: 'an ssh host key policy',
  sshauth: 'an ssh option',
  no_tty: 'an ssh option',
  auth: 'an authentication method',
  tls_priority: 'a TLS option',
  name: 'the URI the daemon opens',
};

/** Drivers this client opens, and the paths each accepts. */
export const CLIENT_DRIVER_PATHS: Readonly<Record<string, string>> = {
  qemu: '/(system|session)',
  xen: '(/|/system)?',
  test: '/default',
};

const LABEL = '[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?';
const HOST_RE = new RegExp(`^(${LABEL}(\\.${LABEL})*|\\[[0-9A-Fa-f:.]{2,45}\\])$`);
/** Not starting with '-' (ssh would read an option), no '%' tokens. */
const SSH_USER_RE = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,63}$/;

/** The URI for messages: password and values of unsupported parameters replaced by ***. */
export function redactLibvirtUri(uri: string): string {
  const known = new Set(Object.values(CLIENT_PARAMS).flatMap((p) => Object.keys(p)));
  return String(uri)
    .replace(/[\r\n\t]/g, ' ')
    .replace(/#.*$/s, '#***')
    .replace(/^([A-Za-z][A-Za-z0-9+.-]*:\/\/[^/?#:@]*):[^/?#@]*@/, '$1:***@')
    .replace(/([?&])([^=&#]*)=([^&#]*)/g, (m, sep: string, k: string) => (known.has(k) ? m : `${sep}${k}=***`));
}

export interface LibvirtUri {
  /** The URI as given (log `redactLibvirtUri(uri)`, not this). */
  readonly uri: string;
  /** Hypervisor driver: qemu, xen or test. */
  readonly driver: string;
  readonly transport: Transport;
  /** ssh login name (ssh only). */
  readonly user: string | undefined;
  readonly host: string | undefined;
  readonly port: number | undefined;
  /** e.g. /system, /session, /default */
  readonly path: string;
  /** The supported query parameters given (CLIENT_PARAMS), as written. */
  readonly params: Readonly<Record<string, string>>;
  /** The URI the daemon is asked to open (REMOTE_PROC_CONNECT_OPEN): driver:///path. */
  readonly name: string;
  /** `socket=`: the daemon's unix socket (local, or on the remote host for ssh). */
  readonly socket: string | undefined;
  /** `proxy=` auto | netcat | native (virt-ssh-helper), ssh only. */
  readonly proxy: 'auto' | 'netcat' | 'native';
  /** `mode=` auto | legacy | direct: which daemon socket to use locally. */
  readonly mode: 'auto' | 'legacy' | 'direct';
}

/** Drivers libvirt implements only inside the client library (HTTP APIs), not over its RPC. */
const CLIENT_SIDE_DRIVERS = new Set(['esx', 'vpx', 'gsx', 'hyperv', 'vmwareplayer', 'vmwarews', 'vmwarefusion', 'phyp']);
const TRANSPORTS = new Set<string>(['unix', 'tcp', 'tls', 'ssh']);

export const DEFAULT_TCP_PORT = 16509;
export const DEFAULT_TLS_PORT = 16514;
export const DEFAULT_SSH_PORT = 22;
export const SYSTEM_SOCKET = '/var/run/libvirt/libvirt-sock';


function bad(uri: string, why: string): LibvirtError {
  return LibvirtError.local('uri', `invalid libvirt URI '${redactLibvirtUri(uri)}': ${why}`);
}

interface Parts {
  driver: string;
  transport: string | undefined;
  authority: string;
  path: string;
  query: string;
}

interface Authority {
  user: string | undefined;
  host: string | undefined;
  port: number | undefined;
}

const SCHEME_RE = /^([a-zA-Z][a-zA-Z0-9.-]*)(?:\+([a-zA-Z0-9-]+))?:\/\/(.*)$/s;

/**
 * Parse and validate a libvirt URI against this client's allowlist (CLIENT_PARAMS);
 * throws a LibvirtError (reason 'uri') naming the URI (redacted) and the problem.
 * The transport only ever sees what this returns: no field of it names a program,
 * a local file or an ssh option.
 */
export function parseUri(uri: string): LibvirtUri {
  const parts = splitUri(uri);
  const driver = checkDriver(uri, parts.driver);
  const auth = parseAuthority(uri, parts.authority);
  const transport = resolveTransport(uri, driver, parts.transport, auth);
  checkPath(uri, driver, parts.path);
  const params = parseQuery(uri, transport, parts.query);
  return {
    uri,
    driver,
    transport,
    user: auth.user,
    host: auth.host,
    port: auth.port,
    path: parts.path,
    params,
    name: `${driver}://${parts.path}`,
    socket: params.socket,
    proxy: (params.proxy ?? 'auto') as LibvirtUri['proxy'],
    mode: (params.mode ?? 'auto') as LibvirtUri['mode'],
  };
}

/**
 * scheme, authority, path, query; refuses whitespace and fragments. Nothing is percent-decoded:
 * no value vmmem accepts needs it, and each part's shape check refuses '%'.
 */
function splitUri(uri: string): Parts {
  if (typeof uri !== 'string' || uri.trim() === '') throw bad(String(uri), 'empty URI (expected e.g. qemu:///system)');
  if (/\s/.test(uri)) throw bad(uri, 'URIs cannot contain whitespace');
  const m = SCHEME_RE.exec(uri);
  if (!m) {
    if (/^[a-zA-Z][a-zA-Z0-9+.-]*:(?!\/\/)/.test(uri)) throw bad(uri, "missing '//' after the scheme (expected e.g. qemu:///system)");
    throw bad(uri, 'missing scheme (expected driver[+transport]://[user@][host][:port]/path, e.g. qemu:///system)');
  }
  let rest = m[3]!;
  if (rest.includes('#')) throw bad(uri, 'fragments (#...) are not supported');
  let query = '';
  const qAt = rest.indexOf('?');
  if (qAt >= 0) {
    query = rest.slice(qAt + 1);
    rest = rest.slice(0, qAt);
  }
  const slashAt = rest.indexOf('/');
  return {
    driver: m[1]!.toLowerCase(),
    transport: m[2]?.toLowerCase(),
    authority: slashAt >= 0 ? rest.slice(0, slashAt) : rest,
    path: slashAt >= 0 ? rest.slice(slashAt) : '',
    query,
  };
}

function checkDriver(uri: string, driver: string): string {
  if (CLIENT_SIDE_DRIVERS.has(driver)) {
    throw bad(uri, `the '${driver}' driver runs inside libvirt's client library and is not reachable over the libvirt RPC protocol`);
  }
  if (!Object.hasOwn(CLIENT_DRIVER_PATHS, driver)) throw bad(uri, `unsupported hypervisor driver '${driver}' (vmmem manages ${Object.keys(CLIENT_DRIVER_PATHS).join(', ')})`);
  return driver;
}

/** [user@]host[:port]: a user or host starting with '-' would become an ssh option, so both have strict shapes. */
function parseAuthority(uri: string, authority: string): Authority {
  let user: string | undefined;
  let hostport = authority;
  const atAt = authority.lastIndexOf('@');
  if (atAt >= 0) {
    user = authority.slice(0, atAt);
    hostport = authority.slice(atAt + 1);
    if (user.includes(':')) throw bad(uri, 'credentials in the URI are refused: use the Secret in spec.credentialsSecretRef');
    if (user === '') throw bad(uri, "empty user name before '@'");
    if (!SSH_USER_RE.test(user)) throw bad(uri, `invalid user name '${user}' (letters, digits, '.', '_', '-', not starting with '-')`);
  }
  if (hostport === '') {
    if (user !== undefined) throw bad(uri, `user '${user}' given without a host`);
    return { user, host: undefined, port: undefined };
  }
  let host: string;
  let port: number | undefined;
  const portAt = hostport.startsWith('[') ? hostport.indexOf(']:') + 1 : hostport.lastIndexOf(':');
  if (portAt > 0) {
    host = hostport.slice(0, portAt);
    port = parsePort(uri, hostport.slice(portAt + 1));
  } else {
    host = hostport;
  }
  if (host === '') throw bad(uri, 'port given without a host');
  if (!HOST_RE.test(host)) throw bad(uri, `invalid host '${host}' (a DNS name, an IPv4 address or [IPv6]; not starting with '-')`);
  return { user, host: host.replace(/^\[|\]$/g, ''), port };
}

function parsePort(uri: string, s: string): number {
  if (!/^[0-9]{1,5}$/.test(s)) throw bad(uri, `invalid port '${s}'`);
  const p = Number(s);
  if (p < 1 || p > 65535) throw bad(uri, `port ${p} out of range 1-65535`);
  return p;
}

/** No transport and no host: the local socket; no transport with a host: TLS (libvirt's rule). */
function resolveTransport(uri: string, driver: string, given: string | undefined, auth: Authority): Transport {
  if (given !== undefined && !TRANSPORTS.has(given)) {
    const hint = given === 'libssh' || given === 'libssh2' ? "; use '+ssh', which runs the ssh client" : '';
    throw bad(uri, `unsupported transport '${given}' (supported: unix, tcp, tls, ssh)${hint}`);
  }
  const transport = (given as Transport | undefined) ?? (auth.host !== undefined ? 'tls' : 'unix');
  if (transport === 'unix' && auth.host !== undefined) throw bad(uri, `the unix transport is local and cannot have a host ('${auth.host}')`);
  if (transport !== 'unix' && auth.host === undefined) throw bad(uri, `the ${transport} transport needs a host (e.g. ${driver}+${transport}://host/system)`);
  if (auth.user !== undefined && transport !== 'ssh') throw bad(uri, `a user name only applies to the ssh transport; for ${transport} the identity comes from the Secret`);
  return transport;
}

function checkPath(uri: string, driver: string, path: string): void {
  if (new RegExp(`^${CLIENT_DRIVER_PATHS[driver]!}$`).test(path)) return;
  if (driver === 'qemu') throw bad(uri, path === '' ? 'missing path: use qemu:///system or qemu:///session' : `unexpected path '${path}' for the qemu driver: use /system or /session`);
  if (driver === 'test') throw bad(uri, `the test driver path must be /default (a config file path would make the daemon read a file), got '${path}'`);
  throw bad(uri, `unexpected path '${path}' for the ${driver} driver: use /system`);
}

/** Only the parameters CLIENT_PARAMS lists for the transport, once each, each value checked. */
function parseQuery(uri: string, transport: Transport, query: string): Record<string, string> {
  const allowed = CLIENT_PARAMS[transport];
  const params: Record<string, string> = {};
  if (query === '') return params;
  for (const part of query.split('&')) {
    const eq = part.indexOf('=');
    const k = eq >= 0 ? part.slice(0, eq) : part;
    const v = eq >= 0 ? part.slice(eq + 1) : '';
    if (k === 'no_verify') throw bad(uri, 'no_verify= is refused: set spec.tls.insecureSkipVerify: true instead');
    if (Object.hasOwn(REFUSED_CLIENT_PARAMS, k)) throw bad(uri, `${k}= is refused (${REFUSED_CLIENT_PARAMS[k]} from a URI): keys, known_hosts and certificates come only from the Secret in spec.credentialsSecretRef`);
    const rule = Object.hasOwn(allowed, k) ? allowed[k] : undefined;
    if (rule === undefined) {
      const supported = Object.keys(allowed);
      throw bad(uri, `query parameter '${k}' is not supported for the ${transport} transport (supported: ${supported.length ? supported.join(', ') : 'none'})`);
    }
    if (Object.hasOwn(params, k)) throw bad(uri, `query parameter '${k}' given twice`);
    if (!new RegExp(`^${rule.value}$`).test(v)) throw bad(uri, `invalid ${k} '${v}': ${rule.help}`);
    params[k] = v;
  }
  return params;
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
