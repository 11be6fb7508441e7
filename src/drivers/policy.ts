/**
 * The cluster admin's policy on what a Hypervisor may reach (issue #12 items 2
 * and 3; docs/security.md). A tenant who may create a Hypervisor is not trusted
 * with the operator's network position: only the operator's own flags are.
 *
 *   --allow-sim-hypervisors           sim: URIs (the simulator reads files the
 *                                     operator can read) are refused in cluster
 *                                     mode without it; standalone mode allows them.
 *   --hypervisor-allow=<rule>,...     when given, a Hypervisor may only name a
 *                                     host matching a rule: `name`, `*.suffix`,
 *                                     an IPv4/IPv6 address or CIDR, each with an
 *                                     optional `:port` (IPv6 in brackets), or
 *                                     `unix` for the local libvirt socket.
 *
 * The check runs before any connection and again on every address the name
 * resolves to, so a name cannot resolve into a CIDR the admin did not allow.
 * A refusal is DriverError code 'NotAllowed': the Hypervisor's condition says
 * HypervisorNotAllowed and names the rule that would allow it.
 */
import { lookup as dnsLookup } from 'node:dns/promises';
import { BlockList, isIP } from 'node:net';
import { DriverError } from './driver.ts';

export interface ReachRule {
  /** As the admin wrote it (for messages). */
  readonly text: string;
  readonly kind: 'name' | 'suffix' | 'cidr' | 'unix';
  /** Lower-case name, suffix (with its leading dot), or address. */
  readonly value: string;
  readonly prefix?: number;
  readonly port?: number;
}

export interface HypervisorPolicy {
  /** sim: URIs allowed (standalone mode, tests, benchmarks). */
  readonly allowSim: boolean;
  /** When set, the only hosts/CIDRs/ports a Hypervisor may name. */
  readonly allow?: readonly ReachRule[];
}

/** No restriction: standalone mode and library use (the CLI decides what cluster mode gets). */
export const OPEN_POLICY: HypervisorPolicy = { allowSim: true };

export type Lookup = (host: string) => Promise<string[]>;

const defaultLookup: Lookup = async (host) => (await dnsLookup(host, { all: true, verbatim: true })).map((a) => a.address);

const NAME_RE = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/;

/** Parses `--hypervisor-allow` (comma-separated rules); throws an Error naming the bad rule. */
export function parseReachRules(text: string): ReachRule[] {
  const rules: ReachRule[] = [];
  for (const raw of text.split(',').map((s) => s.trim()).filter((s) => s !== '')) rules.push(parseRule(raw));
  if (rules.length === 0) throw new Error('--hypervisor-allow: no rules given (e.g. --hypervisor-allow=10.0.0.0/8:16514,vcenter.example.com:443)');
  return rules;
}

function parseRule(text: string): ReachRule {
  const bad = (why: string) => new Error(`--hypervisor-allow: ${JSON.stringify(text)}: ${why}`);
  if (text === 'unix') return { text, kind: 'unix', value: '' };
  let host = text;
  let port: number | undefined;
  const bracket = /^\[([^\]]+)\](\/\d+)?(?::(\d+))?$/.exec(text);
  if (bracket) {
    host = bracket[1]! + (bracket[2] ?? '');
    if (bracket[3] !== undefined) port = Number(bracket[3]);
  } else if ((text.match(/:/g) ?? []).length === 1) {
    const at = text.lastIndexOf(':');
    host = text.slice(0, at);
    port = Number(text.slice(at + 1));
    if (!/^\d+$/.test(text.slice(at + 1))) throw bad('the port must be a number');
  } else if (text.includes(':')) {
    throw bad('write an IPv6 address in brackets, e.g. [fd00::/8]:16514');
  }
  if (port !== undefined && !(Number.isInteger(port) && port >= 1 && port <= 65535)) throw bad('the port must be 1-65535');
  const withPort = port !== undefined ? { port } : {};
  const slash = host.indexOf('/');
  const addr = slash >= 0 ? host.slice(0, slash) : host;
  const family = isIP(addr);
  if (family !== 0) {
    const max = family === 4 ? 32 : 128;
    const prefix = slash >= 0 ? Number(host.slice(slash + 1)) : max;
    if (!(Number.isInteger(prefix) && prefix >= 0 && prefix <= max) || (slash >= 0 && !/^\d+$/.test(host.slice(slash + 1)))) throw bad(`the prefix length must be 0-${max}`);
    return { text, kind: 'cidr', value: addr.toLowerCase(), prefix, ...withPort };
  }
  if (slash >= 0) throw bad('a CIDR needs an IP address before the /');
  const name = host.toLowerCase();
  if (name.startsWith('*.') && NAME_RE.test(name.slice(2))) return { text, kind: 'suffix', value: name.slice(1), ...withPort };
  if (NAME_RE.test(name)) return { text, kind: 'name', value: name, ...withPort };
  throw bad('not a host name, *.suffix, IP address or CIDR');
}

/** Where a URI points: a network host and port, the local socket, or the simulator. */
export type Target = { kind: 'sim' } | { kind: 'local' } | { kind: 'network'; host: string; port: number };

const DEFAULT_PORT: Readonly<Record<string, number>> = { tcp: 16509, tls: 16514, ssh: 22, https: 443 };

/** The target of a URI the schema accepted (refused shapes are InvalidURI elsewhere; undefined here). */
export function targetOf(uri: string): Target | undefined {
  if (/^sim(\+[a-z]+)?:/.test(uri)) return { kind: 'sim' };
  const m = /^(?:(qemu|xen|test)(?:\+([a-z]+))?|(https)):\/\/(?:[^@/?#]*@)?(\[[^\]]*\]|[^/:?#]*)(?::(\d+))?/.exec(uri);
  if (!m) return undefined;
  const transport = m[3] ?? m[2] ?? (m[4] ? 'tls' : 'unix');
  if (transport === 'unix') return { kind: 'local' };
  const host = m[4]!.replace(/^\[|\]$/g, '').toLowerCase();
  const port = m[5] !== undefined ? Number(m[5]) : DEFAULT_PORT[transport];
  if (host === '' || port === undefined) return undefined;
  return { kind: 'network', host, port };
}

function notAllowed(message: string): DriverError {
  return new DriverError('NotAllowed', message, { op: 'connect' });
}

function portOk(rule: ReachRule, port: number): boolean {
  return rule.port === undefined || rule.port === port;
}

function addressAllowed(rules: readonly ReachRule[], address: string, port: number): boolean {
  const family = isIP(address) === 6 ? 'ipv6' : 'ipv4';
  return rules.some((r) => {
    if (r.kind !== 'cidr' || !portOk(r, port) || (isIP(r.value) === 6 ? 'ipv6' : 'ipv4') !== family) return false;
    const list = new BlockList();
    list.addSubnet(r.value, r.prefix!, family);
    return list.check(address, family);
  });
}

function nameAllowed(rules: readonly ReachRule[], host: string, port: number): boolean {
  return rules.some((r) => portOk(r, port) && ((r.kind === 'name' && r.value === host) || (r.kind === 'suffix' && host.endsWith(r.value))));
}

/**
 * Throws DriverError 'NotAllowed' unless the admin's policy allows `uri`.
 * Runs before any connection; a host name allowed by no name rule is resolved
 * and every address must fall in an allowed CIDR (so a tenant's DNS name
 * cannot point the operator at 169.254.169.254 or the API server).
 */
export async function checkHypervisorAllowed(uri: string, policy: HypervisorPolicy, lookup: Lookup = defaultLookup): Promise<void> {
  const target = targetOf(uri);
  if (target?.kind === 'sim') {
    if (!policy.allowSim) {
      throw notAllowed('sim: URIs (the simulator) are refused in cluster mode: it is for demos, tests and benchmarks; the cluster admin enables it with the operator flag --allow-sim-hypervisors');
    }
    return;
  }
  const rules = policy.allow;
  if (!rules || !target) return;
  const flag = `the operator's --hypervisor-allow (${rules.map((r) => r.text).join(',')})`;
  if (target.kind === 'local') {
    if (rules.some((r) => r.kind === 'unix')) return;
    throw notAllowed(`the local libvirt socket is not allowed by ${flag}: the cluster admin adds "unix" to allow it`);
  }
  const { host, port } = target;
  if (isIP(host) !== 0) {
    if (addressAllowed(rules, host, port)) return;
    throw notAllowed(`${host} port ${port} is not allowed by ${flag}`);
  }
  if (nameAllowed(rules, host, port)) return;
  let addresses: string[];
  try {
    addresses = await lookup(host);
  } catch (err) {
    throw notAllowed(`${host} port ${port} matches no name in ${flag}, and resolving it to check the CIDRs failed: ${(err as Error).message}`);
  }
  const outside = addresses.filter((a) => !addressAllowed(rules, a, port));
  if (addresses.length > 0 && outside.length === 0) return;
  throw notAllowed(`${host} port ${port} is not allowed by ${flag}${outside.length ? `: it resolves to ${outside.join(', ')}` : ''}`);
}
