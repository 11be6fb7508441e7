// A test world for the reliability/chaos suites and the scale benchmark: a namespace on the real
// API server (test/env/kube.ts), sim hypervisors written as inventory files (so the Hypervisor
// objects carry ordinary `sim:///abs/path.yaml` URIs the CRD accepts), one VMM per VM, a raw HTTPS
// client (merge patches, lists, watches) and the invariant checks shared by every scenario.
import { mkdirSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:https';
import { join } from 'node:path';
import { stringify } from 'yaml';
import type { KubeEnv } from '../../env/kube.ts';
import type { SimHost } from '../../../src/drivers/sim/index.ts';
import { parseQuantity } from '../../../src/api/quantity.ts';

export const GROUP_PATH = '/apis/vmmem.io/v1alpha1';
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------------------
// Raw client

export interface RawResponse {
  status: number;
  body: string;
}

/** A minimal HTTPS client for the test API server (admin bearer token, keep-alive, bounded sockets). */
export class RawKube {
  readonly server: string;
  private readonly ca: string;
  private readonly token: string;
  readonly agent: Agent;
  requests = 0;

  constructor(env: Pick<KubeEnv, 'server' | 'adminToken'> & { caPem: string }, maxSockets = 64) {
    this.server = env.server;
    this.ca = env.caPem;
    this.token = env.adminToken;
    this.agent = new Agent({ keepAlive: true, maxSockets, ca: this.ca });
  }

  request(method: string, path: string, body?: unknown, contentType = 'application/json', timeoutMs = 30_000): Promise<RawResponse> {
    this.requests++;
    const data = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
    return new Promise((resolve, reject) => {
      const req = request(
        this.server + path,
        {
          method,
          agent: this.agent,
          headers: { authorization: `Bearer ${this.token}`, accept: 'application/json', ...(data !== undefined ? { 'content-type': contentType, 'content-length': Buffer.byteLength(data) } : {}) },
          timeout: timeoutMs,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
          res.on('error', reject);
        },
      );
      req.on('timeout', () => req.destroy(new Error(`${method} ${path}: timeout`)));
      req.on('error', reject);
      if (data !== undefined) req.write(data);
      req.end();
    });
  }

  async json<T = unknown>(method: string, path: string, body?: unknown, contentType?: string): Promise<T> {
    const r = await this.request(method, path, body, contentType);
    if (r.status >= 300) throw new Error(`${method} ${path}: HTTP ${r.status}: ${r.body.slice(0, 300)}`);
    return JSON.parse(r.body) as T;
  }

  /** Retries while the API server is down or restarting (connection refused, 5xx, 429). */
  async retrying<T = unknown>(method: string, path: string, body?: unknown, contentType?: string, deadlineMs = 120_000): Promise<T> {
    const until = Date.now() + deadlineMs;
    for (;;) {
      try {
        const r = await this.request(method, path, body, contentType);
        if (r.status < 300) return JSON.parse(r.body) as T;
        if (r.status !== 429 && r.status < 500) throw new Error(`${method} ${path}: HTTP ${r.status}: ${r.body.slice(0, 300)}`);
      } catch (e) {
        if (!/ECONNREFUSED|ECONNRESET|socket hang up|timeout|EPIPE/.test((e as Error).message) || Date.now() > until) throw e;
      }
      if (Date.now() > until) throw new Error(`${method} ${path}: API server not back within ${deadlineMs} ms`);
      await sleep(200);
    }
  }

  /**
   * Watches a collection, reconnecting after every failure (API server restarts); calls
   * `onObject` for each ADDED/MODIFIED object. Returns a stop function.
   */
  watch(path: string, onObject: (type: string, obj: KObj) => void): () => void {
    let stopped = false;
    let current: { destroy(): void } | undefined;
    const loop = async () => {
      while (!stopped) {
        await new Promise<void>((done) => {
          const req = request(this.server + `${path}?watch=1&allowWatchBookmarks=false`, { agent: false, ca: this.ca, headers: { authorization: `Bearer ${this.token}` } }, (res) => {
            let buf = '';
            res.setEncoding('utf8');
            res.on('data', (c: string) => {
              buf += c;
              let i: number;
              while ((i = buf.indexOf('\n')) >= 0) {
                const line = buf.slice(0, i);
                buf = buf.slice(i + 1);
                if (!line.trim()) continue;
                try {
                  const ev = JSON.parse(line) as { type: string; object: KObj };
                  if (ev.type === 'ADDED' || ev.type === 'MODIFIED') onObject(ev.type, ev.object);
                } catch {
                  /* a partial line at a disconnect */
                }
              }
            });
            res.on('end', () => done());
            res.on('error', () => done());
            res.on('close', () => done());
          });
          req.on('error', () => done());
          req.end();
          current = req;
        });
        if (!stopped) await sleep(100);
      }
    };
    void loop();
    return () => {
      stopped = true;
      current?.destroy();
    };
  }

  close(): void {
    this.agent.destroy();
  }
}

export interface KObj {
  metadata: { name: string; namespace: string; uid: string; generation?: number; resourceVersion?: string };
  spec?: Record<string, unknown>;
  status?: { observedGeneration?: number; conditions?: { type: string; status: string; reason?: string; observedGeneration?: number; message?: string }[] };
}

// ---------------------------------------------------------------------------------------------
// World

export interface WorldOptions {
  ns: string;
  dir: string;
  hosts: number;
  vmsPerHost: number;
  /** Per-call sim latency (ms). */
  latencyMs?: number;
  /** VM type in the sim ('test': balloon at once; 'qemu': balloonDelay). */
  vmType?: 'test' | 'qemu' | 'xen';
  /** Hypervisor spec.syncInterval (default: none = 5m). */
  syncInterval?: string;
  initialMemory?: string;
  maxMemory?: string;
}

export interface VMMInfo {
  name: string;
  vm: string;
  host: number;
}

export interface World {
  opts: WorldOptions;
  inventories: string[];
  vmms: VMMInfo[];
  /** Every memory value each VMM's spec has declared (bytes), including the initial one. */
  allowed: Map<string, Set<bigint>>;
  /** The latest spec memory per VMM. */
  desired: Map<string, string>;
  /** Spec changes made per VMM (each is one live + one config step at most). */
  changes: Map<string, number>;
}

/** Writes the inventories (does not touch the API server). */
export function writeInventories(opts: WorldOptions): { inventories: string[]; vmms: VMMInfo[] } {
  mkdirSync(opts.dir, { recursive: true });
  const inventories: string[] = [];
  const vmms: VMMInfo[] = [];
  for (let h = 0; h < opts.hosts; h++) {
    const vms = [];
    for (let v = 0; v < opts.vmsPerHost; v++) {
      const vm = `vm-${h}-${v}`;
      vms.push({ name: vm, type: opts.vmType ?? 'test', maxMemory: opts.maxMemory ?? '8Gi', memory: opts.initialMemory ?? '4Gi' });
      vmms.push({ name: vm, vm, host: h });
    }
    const path = join(opts.dir, `host-${h}.yaml`);
    writeFileSync(path, stringify({ type: opts.vmType ?? 'test', ...(opts.latencyMs ? { latency: `${opts.latencyMs}ms` } : {}), vms }));
    inventories.push(path);
  }
  return { inventories, vmms };
}

export function hypervisorObject(opts: WorldOptions, h: number, inventory: string): unknown {
  return {
    apiVersion: 'vmmem.io/v1alpha1',
    kind: 'Hypervisor',
    metadata: { name: `host-${h}`, namespace: opts.ns },
    spec: { uri: `sim://${inventory}`, ...(opts.syncInterval ? { syncInterval: opts.syncInterval } : {}) },
  };
}

export function vmmManifest(opts: WorldOptions, v: VMMInfo, memory: string): unknown {
  return {
    apiVersion: 'vmmem.io/v1alpha1',
    kind: 'VirtualMachineMemory',
    metadata: { name: v.name, namespace: opts.ns },
    spec: { hypervisorRef: { name: `host-${v.host}` }, vm: { name: v.vm }, maxMemory: opts.maxMemory ?? '8Gi', memory },
  };
}

export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (t: T, i: number) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        out[i] = await fn(items[i] as T, i);
      }
    }),
  );
  return out;
}

/** Creates the namespace, the Hypervisors and the VMMs. */
export async function createWorld(kube: RawKube, opts: WorldOptions): Promise<World> {
  const { inventories, vmms } = writeInventories(opts);
  const ns = await kube.request('POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: opts.ns } });
  if (ns.status !== 201 && ns.status !== 409) throw new Error(`namespace ${opts.ns}: ${ns.status} ${ns.body}`);
  await mapLimit(inventories, 16, (inv, h) => kube.json('POST', `${GROUP_PATH}/namespaces/${opts.ns}/hypervisors`, hypervisorObject(opts, h, inv)));
  const initial = opts.initialMemory ?? '4Gi';
  await mapLimit(vmms, 32, (v) => kube.json('POST', `${GROUP_PATH}/namespaces/${opts.ns}/virtualmachinememories`, vmmManifest(opts, v, initial)));
  const allowed = new Map<string, Set<bigint>>();
  const desired = new Map<string, string>();
  const changes = new Map<string, number>();
  for (const v of vmms) {
    allowed.set(v.name, new Set([parseQuantity(initial, 'x'), parseQuantity(opts.maxMemory ?? '8Gi', 'x')]));
    desired.set(v.name, initial);
    changes.set(v.name, 0);
  }
  return { opts, inventories, vmms, allowed, desired, changes };
}

/** Changes spec.memory of the given VMMs (merge patch), recording what is allowed. */
export async function changeMemory(kube: RawKube, world: World, names: readonly string[], memory: (name: string) => string, concurrency = 32): Promise<void> {
  await mapLimit(names, concurrency, async (name) => {
    const m = memory(name);
    if (world.desired.get(name) === m) return;
    world.allowed.get(name)?.add(parseQuantity(m, 'x'));
    world.desired.set(name, m);
    world.changes.set(name, (world.changes.get(name) ?? 0) + 1);
    await kube.retrying('PATCH', `${GROUP_PATH}/namespaces/${world.opts.ns}/virtualmachinememories/${name}`, { spec: { memory: m } }, 'application/merge-patch+json');
  });
}

export async function listVMMs(kube: RawKube, ns: string): Promise<KObj[]> {
  const list = await kube.retrying<{ items: KObj[] }>('GET', `${GROUP_PATH}/namespaces/${ns}/virtualmachinememories`);
  return list.items;
}

export function isReady(o: KObj): boolean {
  const ready = o.status?.conditions?.find((c) => c.type === 'Ready');
  return ready?.status === 'True' && o.status?.observedGeneration === o.metadata.generation && ready.observedGeneration === o.metadata.generation;
}

/** Waits until every VMM is Ready for its current generation and every VM holds its spec memory. */
export async function waitConverged(kube: RawKube, world: World, hosts: SimHost[] | undefined, timeoutMs: number): Promise<number> {
  const started = Date.now();
  let last: string;
  for (;;) {
    const items = await listVMMs(kube, world.opts.ns);
    const notReady = items.filter((o) => !isReady(o) || o.spec?.memory !== world.desired.get(o.metadata.name));
    let drift: string[] = [];
    if (hosts) {
      drift = world.vmms
        .filter((v) => {
          const vm = hosts[v.host]?.vm(v.vm);
          const want = parseQuantity(world.desired.get(v.name) ?? '', 'x');
          return vm?.live?.memory !== want || vm?.config?.memory !== want;
        })
        .map((v) => v.name);
    }
    if (notReady.length === 0 && drift.length === 0 && items.length === world.vmms.length) return Date.now() - started;
    last = `${notReady.length} not Ready (e.g. ${notReady.slice(0, 3).map((o) => `${o.metadata.name}: ${JSON.stringify(o.status?.conditions?.find((c) => c.type === 'Ready'))}`).join('; ')}), ${drift.length} VMs not at spec`;
    if (Date.now() - started > timeoutMs) throw new Error(`not converged within ${timeoutMs} ms: ${last}`);
    await sleep(250);
  }
}

// ---------------------------------------------------------------------------------------------
// Invariants

export const SET_OPS = new Set(['virDomainSetMemoryFlags', 'virDomainSetMemoryParameters', 'ReconfigVM_Task']);

/**
 * Checks every call the sim hosts recorded (since their last resetCalls):
 *  - no step applied twice: for each VM, no two successive accepted memory calls are identical;
 *  - at most one live and one config call per spec change (changes since `base`);
 *  - every value sent is one a spec declared for that VM.
 * Returns a list of violations (empty = fine) and the number of memory calls.
 */
export function checkCalls(world: World, hosts: SimHost[], base: Map<string, number>): { violations: string[]; calls: number } {
  const violations: string[] = [];
  let calls = 0;
  const byVM = new Map<string, string[]>();
  for (const host of hosts) {
    for (const c of host.callLog) {
      if (!SET_OPS.has(c.op) || c.vm === undefined) continue;
      calls++;
      if (c.outcome !== 'ok') {
        violations.push(`${c.vm}: ${c.op} ${c.detail ?? ''} was ${c.outcome}: ${c.error ?? ''}`);
        continue;
      }
      const list = byVM.get(c.vm) ?? [];
      list.push(`${c.op} ${c.detail ?? ''}`);
      byVM.set(c.vm, list);
      const kib = /^(\d+)KiB/.exec(c.detail ?? '')?.[1];
      if (kib !== undefined) {
        const bytes = BigInt(kib) * 1024n;
        if (!world.allowed.get(c.vm)?.has(bytes)) violations.push(`${c.vm}: ${c.op} ${c.detail}: ${bytes} bytes is no value its spec declared (${[...(world.allowed.get(c.vm) ?? [])].join(', ')})`);
      }
    }
  }
  for (const [vm, list] of byVM) {
    for (let i = 1; i < list.length; i++) if (list[i] === list[i - 1]) violations.push(`${vm}: step applied twice: ${list[i]}`);
    const changes = (world.changes.get(vm) ?? 0) - (base.get(vm) ?? 0);
    if (list.length > 2 * changes) violations.push(`${vm}: ${list.length} memory calls for ${changes} spec change(s): ${list.join(' | ')}`);
  }
  return { violations, calls };
}

/** Watches the VMMs and records every status.observedGeneration regression (per uid). */
export function watchGenerations(kube: RawKube, ns: string): { regressions: string[]; events: () => number; stop: () => void } {
  const seen = new Map<string, number>();
  const regressions: string[] = [];
  let events = 0;
  const stop = kube.watch(`${GROUP_PATH}/namespaces/${ns}/virtualmachinememories`, (_type, obj) => {
    events++;
    const g = obj.status?.observedGeneration;
    if (g === undefined) return;
    const prev = seen.get(obj.metadata.uid);
    if (prev !== undefined && g < prev) regressions.push(`${obj.metadata.name}: observedGeneration ${prev} → ${g} (rv ${obj.metadata.resourceVersion})`);
    seen.set(obj.metadata.uid, Math.max(prev ?? 0, g));
    for (const c of obj.status?.conditions ?? []) {
      if (c.observedGeneration !== undefined && obj.metadata.generation !== undefined && c.observedGeneration > obj.metadata.generation) {
        regressions.push(`${obj.metadata.name}: condition ${c.type} observedGeneration ${c.observedGeneration} > generation ${obj.metadata.generation}`);
      }
    }
  });
  return { regressions, events: () => events, stop };
}

/** Collects unhandled rejections and uncaught exceptions while installed. */
export function trapUnhandled(): { errors: unknown[]; dispose: () => void } {
  const errors: unknown[] = [];
  const onRejection = (e: unknown) => errors.push(e);
  const onException = (e: unknown) => errors.push(e);
  process.on('unhandledRejection', onRejection);
  process.on('uncaughtException', onException);
  return {
    errors,
    dispose: () => {
      process.off('unhandledRejection', onRejection);
      process.off('uncaughtException', onException);
    },
  };
}

export function snapshotChanges(world: World): Map<string, number> {
  return new Map(world.changes);
}
