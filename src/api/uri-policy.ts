/**
 * What a Hypervisor's `spec.uri` may say: the allowlist, as data, shared by
 * the zod schema (`vmmem validate`/`plan`), the CRD's CEL rules (the API
 * server) and the libvirt/vSphere transports (defence in depth).
 *
 * Whoever may create a Hypervisor is not trusted with the operator's process,
 * files or network position (docs/security.md). So a URI names a host, a port,
 * a user for ssh and a libvirt driver path, plus the few parameters in
 * LIBVIRT_PARAMS, each with a validated value. It never names a program
 * (`command=`), a local file (`keyfile=`, `pkipath=`, `known_hosts=`), a remote
 * command (`netcat=`), an ssh option, or credentials: those come from the
 * operator's flags or the referenced Secret.
 *
 * Every regular expression here is written for both JavaScript and RE2 (the
 * API server's CEL `matches`): ASCII classes only, no look-around, no
 * back-references, anchored with ^ and $. The same strings are compiled by
 * both, so they accept the same URIs.
 */

export type LibvirtTransport = 'unix' | 'tcp' | 'tls' | 'ssh';

/** One URI query parameter vmmem supports: its value's shape, and what it is for. */
export interface ParamRule {
  /** Regular expression (unanchored piece) for the raw value; no percent-encoding allowed. */
  readonly value: string;
  readonly help: string;
}

/**
 * Path of a unix socket: absolute, segments of [A-Za-z0-9._-] that do not
 * start with two dots (no `..`, so the operator's socket-directory policy
 * cannot be escaped), no percent-encoding.
 */
export const SOCKET_PATH = '(/\\.?[A-Za-z0-9_-][A-Za-z0-9._-]*)+';

/** The libvirt query parameters vmmem supports, per transport. Anything else is refused. */
export const LIBVIRT_PARAMS: Readonly<Record<LibvirtTransport, Readonly<Record<string, ParamRule>>>> = {
  unix: {
    socket: { value: SOCKET_PATH, help: 'the daemon socket; in cluster mode only under a directory the operator allows (--libvirt-socket-dir)' },
    mode: { value: '(auto|legacy|direct)', help: 'which local daemon socket: auto, legacy (libvirtd) or direct (virtqemud ...)' },
  },
  ssh: {
    socket: { value: SOCKET_PATH, help: 'the daemon socket on the remote host (relayed with nc)' },
    proxy: { value: '(auto|netcat|native)', help: 'how the remote end relays: auto, netcat (nc -U) or native (virt-ssh-helper)' },
  },
  tls: {},
  tcp: {},
};

/** Parameters libvirt knows that vmmem refuses on purpose, with the reason given to the user. */
export const REFUSED_PARAMS: Readonly<Record<string, string>> = {
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

/** The libvirt drivers vmmem manages, and the paths each accepts. */
export const LIBVIRT_DRIVER_PATHS: Readonly<Record<string, string>> = {
  qemu: '/(system|session)',
  xen: '(/|/system)?',
  test: '/default',
};

export const DEFAULT_PORTS: Readonly<Record<LibvirtTransport | 'https', number | undefined>> = {
  unix: undefined,
  tcp: 16509,
  tls: 16514,
  ssh: 22,
  https: 443,
};

const LABEL = '[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?';
/** A DNS name or IPv4 address, or an IPv6 address in brackets (no zone). */
export const HOST = `(${LABEL}(\\.${LABEL})*|\\[[0-9A-Fa-f:.]{2,45}\\])`;
/** 1-65535, exactly. */
export const PORT = '([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])';
/** An ssh login name: not starting with '-' (it would be read as an option), no '%' tokens. */
export const SSH_USER = '[A-Za-z0-9_][A-Za-z0-9._-]{0,63}';
/** A vSphere SDK path: `/sdk` or similar; no query, no fragment. */
const HTTPS_PATH = '(/[A-Za-z0-9._~-]+)*/?';
/** The simulator: `sim:memory:<key>` or an inventory path. */
const SIM = 'sim:[-A-Za-z0-9._~/:@+=,%]+';
/** A sim host served over a local unix socket (src/drivers/sim/remote.ts): absolute path, one inventory name. */
const SIM_UNIX = 'sim\\+unix:///[-A-Za-z0-9._~/]+\\?inventory=[a-z0-9-]{1,63}';

function queryOf(t: LibvirtTransport): string {
  const params = Object.entries(LIBVIRT_PARAMS[t]).map(([k, r]) => `${k}=${r.value}`);
  if (params.length === 0) return '';
  const one = `(${params.join('|')})`;
  return `(\\?${one}(&${one})*)?`;
}

function libvirtForms(): string[] {
  const forms: string[] = [];
  for (const [driver, path] of Object.entries(LIBVIRT_DRIVER_PATHS)) {
    const q = (t: LibvirtTransport) => queryOf(t);
    // No transport and no host means the local socket; no transport with a host means TLS (libvirt's rule).
    forms.push(`${driver}(\\+unix)?://${path}${q('unix')}`);
    forms.push(`${driver}(\\+tls)?://${HOST}(:${PORT})?${path}${q('tls')}`);
    forms.push(`${driver}\\+tcp://${HOST}(:${PORT})?${path}${q('tcp')}`);
    forms.push(`${driver}\\+ssh://(${SSH_USER}@)?${HOST}(:${PORT})?${path}${q('ssh')}`);
  }
  return forms;
}

/** The whole grammar of an acceptable `spec.uri`. */
export const URI_GRAMMAR = `^(${[...libvirtForms(), `https://${HOST}(:${PORT})?${HTTPS_PATH}`, SIM, SIM_UNIX].join('|')})$`;

/** A specific refusal: a URI matching `pattern` is refused with `message` (these explain the common attacks). */
export interface UriRefusal {
  readonly id: string;
  readonly pattern: string;
  readonly message: string;
}

const NEVER = Object.keys(REFUSED_PARAMS).filter((k) => k !== 'no_verify');

export const URI_REFUSALS: readonly UriRefusal[] = [
  {
    id: 'refused-param',
    pattern: `[?&](${NEVER.join('|')})(=|&|$)`,
    message:
      'the URI may not name a program, a local file, a remote command or an ssh option (command=, netcat=, keyfile=, pkipath=, known_hosts=, ...): vmmem takes SSH keys, known_hosts and TLS material only from the Secret in spec.credentialsSecretRef',
  },
  {
    id: 'no-verify',
    pattern: '[?&]no_verify(=|&|$)',
    message: 'no_verify= is refused: set spec.tls.insecureSkipVerify: true instead (and vmmem logs a warning for it)',
  },
  {
    id: 'credentials',
    pattern: '^(https://[^/?#]*@|[A-Za-z][A-Za-z0-9+.-]*://[^/?#@]*:[^/?#@]*@)',
    message: 'credentials in the URI are refused: put username and password in the Secret named by spec.credentialsSecretRef',
  },
  {
    id: 'duplicate',
    pattern: [...new Set(Object.values(LIBVIRT_PARAMS).flatMap((p) => Object.keys(p)))].map((k) => `[?&]${k}=.*&${k}=`).join('|'),
    message: 'a URI parameter is given twice',
  },
  {
    id: 'dash',
    pattern: '^[A-Za-z][A-Za-z0-9+.-]*://([^/?#]*@)?-',
    message: "a user or host name may not begin with '-' (ssh would read it as an option)",
  },
];

export const GRAMMAR_MESSAGE =
  'not a supported URI: use qemu:///system, qemu+ssh://user@host/system, qemu+tls://host/system, qemu+tcp://host/system, xen:///system, test+unix:///default, https://vcenter/sdk (vSphere) or sim:///path/inventory.yaml; ' +
  `parameters: ${(Object.keys(LIBVIRT_PARAMS) as LibvirtTransport[])
    .map((t) => `${t}: ${Object.keys(LIBVIRT_PARAMS[t]).join(', ') || 'none'}`)
    .join('; ')}`;

const REFUSAL_RES = URI_REFUSALS.map((r) => ({ ...r, re: new RegExp(r.pattern) }));
const GRAMMAR_RE = new RegExp(URI_GRAMMAR);

/**
 * Why `uri` is not acceptable (empty when it is). Exactly the checks the
 * CRD's CEL rules make (same regular expressions), so validate and the API
 * server agree; the specific refusals come first.
 */
export function uriProblems(uri: string): string[] {
  const specific = REFUSAL_RES.filter((r) => r.re.test(uri)).map((r) => r.message);
  if (specific.length > 0) return specific; // the grammar refuses these too; the specific reason says more
  return GRAMMAR_RE.test(uri) ? [] : [GRAMMAR_MESSAGE];
}

/** The CEL rules for the CRD (x-kubernetes-validations on spec.uri). */
export function uriCelRules(): { rule: string; message: string }[] {
  return [
    ...URI_REFUSALS.map((r) => ({ rule: `!self.matches(${celString(r.pattern)})`, message: r.message })),
    { rule: `self.matches(${celString(URI_GRAMMAR)})`, message: GRAMMAR_MESSAGE },
  ];
}

function celString(s: string): string {
  return `'${s.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
}

/**
 * A URI safe to log or put in a message: user info without its password,
 * values of query parameters vmmem does not support replaced by `***`
 * (a refused URI may carry anything), fragment dropped.
 */
export function redactUri(uri: string): string {
  if (typeof uri !== 'string') return String(uri);
  let s = uri.replace(/[\r\n\t]/g, ' ');
  const hash = s.indexOf('#');
  if (hash >= 0) s = `${s.slice(0, hash)}#***`;
  s = s.replace(/^([A-Za-z][A-Za-z0-9+.-]*:\/\/)([^/?#]*)@/, (_m, scheme: string, info: string) => {
    const colon = info.indexOf(':');
    return `${scheme}${colon >= 0 ? `${info.slice(0, colon)}:***` : info}@`;
  });
  const q = s.indexOf('?');
  if (q < 0) return s;
  const known = new Set(Object.values(LIBVIRT_PARAMS).flatMap((p) => Object.keys(p)));
  const query = s
    .slice(q + 1)
    .split('&')
    .map((part) => {
      const eq = part.indexOf('=');
      if (eq < 0) return part;
      const k = part.slice(0, eq);
      return known.has(k) ? part : `${k}=***`;
    })
    .join('&');
  return `${s.slice(0, q)}?${query}`;
}
