/**
 * One simulated host per inventory per process. Every driver that opens the
 * same inventory path (resolved to an absolute path) shares one SimHost, so
 * the controller, tests and out-of-band actions see each other's changes.
 * In-memory inventories (tests) register under "memory:<key>".
 *
 * URIs:
 *   sim:///abs/path.yaml      absolute path; if no such file exists but
 *                             ./abs/path.yaml does (relative to the process
 *                             cwd), that one
 *   sim://rel/path.yaml       relative to the process cwd
 *   sim:rel/path.yaml         relative to the process cwd
 *   sim:memory:<key>          a host created with createSimHost(inventory, key)
 */
import { existsSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import { SimHost } from './host.ts';
import { loadInventoryFile, parseInventory } from './inventory.ts';

const hosts = new Map<string, SimHost>();
let anonymous = 0;

export type SimTarget = { kind: 'file'; path: string } | { kind: 'memory'; key: string };

export class SimURIError extends Error {
  constructor(uri: string, reason: string) {
    super(`sim URI ${JSON.stringify(uri)}: ${reason}`);
    this.name = 'SimURIError';
  }
}

/** Resolves a sim: URI (or a plain path) to an inventory file or an in-memory host key. */
export function resolveSimTarget(uriOrPath: string, cwd = process.cwd()): SimTarget {
  if (!uriOrPath.startsWith('sim:')) {
    if (uriOrPath === '') throw new SimURIError(uriOrPath, 'empty');
    if (uriOrPath.startsWith('memory:')) return { kind: 'memory', key: uriOrPath.slice('memory:'.length) };
    return { kind: 'file', path: resolve(cwd, uriOrPath) };
  }
  let rest = uriOrPath.slice('sim:'.length);
  if (rest.startsWith('memory:')) {
    const key = rest.slice('memory:'.length);
    if (!key) throw new SimURIError(uriOrPath, 'sim:memory: needs a key');
    return { kind: 'memory', key };
  }
  rest = rest.split(/[?#]/)[0] ?? '';
  if (rest.startsWith('//')) rest = rest.slice(2);
  let path: string;
  try {
    path = decodeURIComponent(rest);
  } catch {
    throw new SimURIError(uriOrPath, 'bad percent-encoding');
  }
  if (path === '' || path === '/') throw new SimURIError(uriOrPath, 'no inventory path (expected sim:///path/to/inventory.yaml)');
  if (isAbsolute(path)) {
    const relative = resolve(cwd, path.replace(/^\/+/, ''));
    if (!existsSync(path) && existsSync(relative)) return { kind: 'file', path: relative };
    return { kind: 'file', path };
  }
  return { kind: 'file', path: resolve(cwd, path) };
}

function keyOf(target: SimTarget): string {
  return target.kind === 'file' ? target.path : `memory:${target.key}`;
}

/**
 * The shared simulated host for an inventory path or sim: URI, loading the
 * inventory on first use. This is also the out-of-band handle for tests and
 * operators: powerOff/powerOn/restart, setLive/setConfig, remove/add,
 * dropConnections, calls. Throws SimInventoryError for an invalid inventory
 * (nothing is registered then) and SimURIError for an unusable URI.
 */
export function simHost(uriOrPath: string): SimHost {
  const target = resolveSimTarget(uriOrPath);
  const key = keyOf(target);
  const existing = hosts.get(key);
  if (existing) return existing;
  if (target.kind === 'memory') throw new SimURIError(uriOrPath, `no in-memory sim host "${target.key}" (create it with createSimHost)`);
  const inventory = loadInventoryFile(target.path);
  const host = new SimHost(key, `sim://${target.path}`, inventory);
  hosts.set(key, host);
  return host;
}

/**
 * Creates an in-memory host from an inventory object (same shape as the
 * YAML), registered as sim:memory:<key>. An existing host with that key is
 * replaced (its connections are dropped).
 */
export function createSimHost(inventory: unknown, key?: string): SimHost {
  const k = key ?? `anonymous-${++anonymous}`;
  const parsed = parseInventory(inventory, `memory:${k}`);
  const registryKey = `memory:${k}`;
  hosts.get(registryKey)?.dropConnections('sim: host replaced');
  const host = new SimHost(registryKey, `sim:memory:${k}`, parsed);
  hosts.set(registryKey, host);
  return host;
}

/** Forgets a host (the next simHost() of a file reloads it). Open connections are dropped. */
export function forgetSimHost(uriOrPath: string): void {
  const key = keyOf(resolveSimTarget(uriOrPath));
  hosts.get(key)?.dropConnections('sim: host forgotten');
  hosts.delete(key);
}

/** Forgets every host (test isolation). */
export function resetSimHosts(): void {
  for (const host of hosts.values()) host.dropConnections('sim: hosts reset');
  hosts.clear();
}
