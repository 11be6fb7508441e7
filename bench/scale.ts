// The operator at scale: N VirtualMachineMemory objects on the REAL kube-apiserver + etcd of the
// test environment (test/env/kube.ts) and the `sim` driver with per-call latency.
//
//   npm run bench -- scale [--n 1000] [--latency-ms 2] [--concurrency 16] [--idle-seconds 60] [--drift-samples 40]
//
// The operator runs as a child process (this file with --child: KubeStore + Operator + Metrics,
// exactly the objects `vmmem run` composes), so its CPU seconds (/proc/<pid>/stat) and peak RSS
// (/proc/<pid>/status VmHWM) are its own. Its sim hosts live in the child; the parent reaches them
// over the IPC channel (out-of-band drift, call counters).
//
// Phases: create N/100 Hypervisors (sim inventories of 100 VMs each, written to files) and N VMMs;
// start the operator; wait until all are Ready (initial sync); change every spec.memory at once and
// time until all are Ready at the new generation (the figure); count API requests
// (apiserver_request_total at /metrics, minus the benchmark's own) per reconcile
// (controller_runtime_reconcile_total); idle CPU over --idle-seconds with the default sync interval;
// out-of-band drift (sim setLive → balloon event) corrected, p50/p95 over --drift-samples.
// Then the physical limits on the same API server: a minimal client doing the same number of status
// merge patches with the same concurrency, and the driver-bound lower bound
// (hypervisor calls × latency / concurrency). Ends with one line:
//   bench scale: n=<N> seconds=<s> limit_seconds=<s> rss_mib=<m> ratio=<x>
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const here = dirname(fileURLToPath(import.meta.url));
const REPO = resolve(here, '..');
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

const { values: args } = parseArgs({
  options: {
    n: { type: 'string', default: '1000' },
    'latency-ms': { type: 'string', default: '2' },
    concurrency: { type: 'string', default: '16' },
    'idle-seconds': { type: 'string', default: '60' },
    'settle-seconds': { type: 'string', default: '30' },
    'drift-samples': { type: 'string', default: '20' },
    'vms-per-host': { type: 'string', default: '100' },
    child: { type: 'boolean', default: false },
    kubeconfig: { type: 'string' },
    ns: { type: 'string' },
    'cpu-prof': { type: 'boolean', default: false },
  },
  allowPositionals: false,
});

// =============================================================================================
// Child: the operator

interface ChildRequest {
  id: number;
  op: 'metrics' | 'calls' | 'drift';
  inventory?: string;
  vm?: string;
  memory?: string;
}

async function child(): Promise<void> {
  const k8s = await import('@kubernetes/client-node');
  const { KubeStore } = await import('../src/kube/store.ts');
  const { Operator } = await import('../src/controller/operator.ts');
  const { Metrics, setDefaultMetrics } = await import('../src/controller/metrics.ts');
  const { createLogger } = await import('../src/controller/log.ts');
  const { simHost } = await import('../src/drivers/sim/index.ts');
  const { parseQuantity } = await import('../src/api/quantity.ts');

  const kc = new k8s.KubeConfig();
  kc.loadFromFile(args.kubeconfig as string);
  const log = createLogger({ level: 'info', name: 'vmmem' });
  const metrics = new Metrics();
  setDefaultMetrics(metrics);
  const store = new KubeStore(kc, log, { namespace: args.ns as string, fieldManager: 'vmmem' });
  const operator = new Operator({ store, log, metrics, concurrency: Number(args.concurrency) });
  await operator.start();
  const inventories = new Set<string>();

  process.on('message', (raw) => {
    const req = raw as ChildRequest;
    const reply = (body: unknown) => process.send?.({ id: req.id, body });
    void (async () => {
      try {
        if (req.op === 'metrics') return reply(await metrics.text());
        if (req.op === 'calls') {
          const total: Record<string, number> = {};
          for (const inv of inventories) for (const [op, n] of Object.entries(simHost(inv).calls)) total[op] = (total[op] ?? 0) + n;
          return reply(total);
        }
        if (req.op === 'drift') {
          // Out-of-band drift (virsh setmem --live): the balloon moves, the host emits a balloon
          // event, vmmem must put the spec value back. Time from the drift to the correction.
          const host = simHost(req.inventory as string);
          inventories.add(req.inventory as string);
          const want = host.vm(req.vm as string)?.live?.memory;
          const started = performance.now();
          host.setLive(req.vm as string, { memory: parseQuantity(req.memory as string, 'memory') });
          while (host.vm(req.vm as string)?.live?.memory !== want) {
            if (performance.now() - started > DRIFT_TIMEOUT_MS) return reply({ ms: -1 });
            await sleep(1);
          }
          return reply({ ms: performance.now() - started });
        }
      } catch (e) {
        reply({ error: (e as Error).message });
      }
    })();
  });
  process.on('message', (raw) => {
    const req = raw as { op?: string; inventories?: string[] };
    if (req.op === 'inventories') for (const inv of req.inventories ?? []) inventories.add(inv);
  });
  process.once('SIGTERM', () => {
    void operator.stop().then(() => process.exit(0));
  });
  process.send?.({ id: 0, body: 'started' });
}

// =============================================================================================
// Parent: the benchmark

class ChildHandle {
  private next = 1;
  private readonly waiters = new Map<number, (v: unknown) => void>();
  readonly proc: ChildProcess;
  readonly started: Promise<void>;
  constructor(proc: ChildProcess) {
    this.proc = proc;
    let ok: () => void = () => {};
    this.started = new Promise<void>((r) => (ok = r));
    proc.on('message', (m) => {
      const { id, body } = m as { id: number; body: unknown };
      if (id === 0) return ok();
      this.waiters.get(id)?.(body);
      this.waiters.delete(id);
    });
  }
  ask<T>(req: Omit<ChildRequest, 'id'>): Promise<T> {
    const id = this.next++;
    return new Promise<T>((resolve) => {
      this.waiters.set(id, resolve as (v: unknown) => void);
      this.proc.send({ ...req, id });
    });
  }
  send(msg: unknown): void {
    this.proc.send(msg as object);
  }
}

const TICKS = 100; // USER_HZ on Linux

function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / TICKS; // utime, stime (fields 14, 15)
}

function statusKiB(pid: number, key: 'VmHWM' | 'VmRSS'): number {
  const m = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m?.[1] ?? 0);
}

/** Sums a Prometheus counter over the series whose labels match every `where` pair. */
function sumCounter(text: string, name: string, where: Record<string, string> = {}): number {
  let total = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    const labels = /\{([^}]*)\}/.exec(line)?.[1] ?? '';
    if (Object.entries(where).every(([k, v]) => labels.includes(`${k}="${v}"`))) total += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return total;
}

/** The largest increases of apiserver_request_total between two scrapes, by verb/resource/subresource/code. */
function requestBreakdown(before: string, after: string, top = 6): string {
  const series = (text: string) => {
    const m = new Map<string, number>();
    for (const line of text.split('\n')) {
      if (!line.startsWith('apiserver_request_total{')) continue;
      const labels = /\{([^}]*)\}/.exec(line)?.[1] ?? '';
      const get = (k: string) => new RegExp(`${k}="([^"]*)"`).exec(labels)?.[1] ?? '';
      const key = `${get('verb')} ${get('resource')}${get('subresource') ? `/${get('subresource')}` : ''} ${get('code')}`;
      m.set(key, (m.get(key) ?? 0) + Number(line.slice(line.lastIndexOf(' ') + 1)));
    }
    return m;
  };
  const a = series(before);
  const b = series(after);
  return [...b]
    .map(([k, v]) => [k, v - (a.get(k) ?? 0)] as const)
    .filter(([, d]) => d > 0)
    .sort((x, y) => y[1] - x[1])
    .slice(0, top)
    .map(([k, d]) => `${d}× ${k}`)
    .join(', ');
}

function percentile(values: number[], p: number): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)] ?? NaN;
}

const fmt = (x: number, d = 2) => x.toFixed(d);
/** A drift not corrected within this long counts as this long (censored) and as a miss. */
const DRIFT_TIMEOUT_MS = 15_000;

async function parent(): Promise<void> {
  const { startKube } = await import('../test/env/kube.ts');
  const world = await import('../test/chaos/lib/world.ts');
  const n = Number(args.n);
  const latencyMs = Number(args['latency-ms']);
  const concurrency = Number(args.concurrency);
  const perHost = Math.min(Number(args['vms-per-host']), n);
  const hostsCount = Math.ceil(n / perHost);
  const ns = 'vmmem-scale';
  const dir = mkdtempSync(join(tmpdir(), 'vmmem-scale-'));
  const cpuInfo = readFileSync('/proc/cpuinfo', 'utf8');
  const cores = (cpuInfo.match(/^processor\s*:/gm) ?? []).length;
  const model = /^model name\s*:\s*(.*)$/m.exec(cpuInfo)?.[1] ?? 'unknown CPU';
  const memGiB = Number(/^MemTotal:\s+(\d+)/m.exec(readFileSync('/proc/meminfo', 'utf8'))?.[1] ?? 0) / 1024 / 1024;
  console.log(`machine: ${cores} cores (${model}), ${fmt(memGiB, 1)} GiB; node ${process.version}`);
  console.log(`n=${n} VMMs on ${hostsCount} sim hypervisors (${perHost} VMs each), ${latencyMs} ms per hypervisor call, operator concurrency ${concurrency}`);

  const env = await startKube({ crds: [resolve(REPO, 'crds')] });
  const kube = new world.RawKube({ server: env.server, adminToken: env.adminToken, caPem: readFileSync(env.certs.caCert, 'utf8') }, Math.max(64, concurrency));
  let op: ChildProcess | undefined;
  try {
    let t = Date.now();
    const w = await world.createWorld(kube, { ns, dir, hosts: hostsCount, vmsPerHost: perHost, latencyMs, vmType: 'qemu', initialMemory: '4Gi', maxMemory: '8Gi' });
    console.log(`created ${hostsCount} Hypervisors and ${n} VMMs in ${fmt((Date.now() - t) / 1000, 1)} s`);

    // Readiness from one watch (one request, not N polls).
    const state = new Map<string, { gen: number; ready: boolean; memory: unknown }>();
    let watchRequests = 1;
    const stopWatch = kube.watch(`${world.GROUP_PATH}/namespaces/${ns}/virtualmachinememories`, (_type, o) => {
      state.set(o.metadata.name, { gen: o.metadata.generation ?? 0, ready: world.isReady(o), memory: o.spec?.memory });
    });
    const allReady = async (memory: string, timeoutMs: number): Promise<number> => {
      const started = Date.now();
      for (;;) {
        let ready = 0;
        for (const s of state.values()) if (s.ready && s.memory === memory) ready++;
        if (ready === n) return (Date.now() - started) / 1000;
        if (Date.now() - started > timeoutMs) throw new Error(`only ${ready}/${n} Ready with memory ${memory} after ${timeoutMs / 1000} s`);
        await sleep(20);
      }
    };

    // ---- operator
    const logFile = join(dir, 'operator.log');
    const out = openSync(logFile, 'w');
    const nodeArgs = [...(args['cpu-prof'] ? ['--cpu-prof', `--cpu-prof-dir=${join(REPO, 'bench', 'profiles')}`] : []), fileURLToPath(import.meta.url), '--child', '--kubeconfig', env.kubeconfigPath, '--ns', ns, '--concurrency', String(concurrency)];
    op = spawn(process.execPath, nodeArgs, { stdio: ['ignore', out, out, 'ipc'], cwd: REPO });
    const handle = new ChildHandle(op);
    op.on('exit', (code, signal) => {
      if (code !== 0 && signal !== 'SIGTERM') console.error(`operator exited: ${code ?? signal} (log: ${logFile})`);
    });
    t = Date.now();
    await handle.started;
    handle.send({ op: 'inventories', inventories: w.inventories });
    const initialSync = await allReady('4Gi', 30 * 60_000);
    console.log(`initial sync (operator start → all ${n} Ready): ${fmt((Date.now() - t) / 1000, 1)} s (${fmt(initialSync, 1)} s after the caches synced)`);

    // ---- change every spec at once
    const apiBefore = await kube.request('GET', '/metrics');
    const reconcilesBefore = sumCounter(await handle.ask<string>({ op: 'metrics' }), 'controller_runtime_reconcile_total', { controller: 'virtualmachinememory' });
    const callsBefore = await handle.ask<Record<string, number>>({ op: 'calls' });
    const cpuBefore = cpuSeconds(op.pid as number);
    const ownBefore = kube.requests;
    t = Date.now();
    await world.changeMemory(kube, w, w.vmms.map((v) => v.name), () => '3Gi', concurrency);
    const patchSeconds = (Date.now() - t) / 1000;
    await allReady('3Gi', 30 * 60_000);
    const seconds = (Date.now() - t) / 1000;
    const cpuChange = cpuSeconds(op.pid as number) - cpuBefore;
    const callsAfter = await handle.ask<Record<string, number>>({ op: 'calls' });
    const reconciles = sumCounter(await handle.ask<string>({ op: 'metrics' }), 'controller_runtime_reconcile_total', { controller: 'virtualmachinememory' }) - reconcilesBefore;
    const ownRequests = kube.requests - ownBefore + 1; // + this /metrics GET
    const apiAfter = await kube.request('GET', '/metrics');
    const req = (text: string, where: Record<string, string> = {}) => sumCounter(text, 'apiserver_request_total', where);
    const apiTotal = req(apiAfter.body) - req(apiBefore.body) - ownRequests;
    const statusWrites = req(apiAfter.body, { resource: 'virtualmachinememories', subresource: 'status', verb: 'PATCH' }) - req(apiBefore.body, { resource: 'virtualmachinememories', subresource: 'status', verb: 'PATCH' });
    const eventWrites = req(apiAfter.body, { resource: 'events' }) - req(apiBefore.body, { resource: 'events' });
    const hvCalls = Object.entries(callsAfter).reduce((s, [k, v]) => s + v - (callsBefore[k] ?? 0), 0);
    console.log(`spec change: ${n} patches sent in ${fmt(patchSeconds)} s; all Ready at the new generation after ${fmt(seconds)} s`);
    console.log(`  operator CPU ${fmt(cpuChange)} s (${fmt((cpuChange / seconds) * 100, 0)}% of a core), ${reconciles} reconciles (${fmt(reconciles / n)} per VMM)`);
    console.log(`  API requests by the operator: ${apiTotal} (${fmt(apiTotal / Math.max(1, reconciles))} per reconcile): ${statusWrites} status patches, ${eventWrites} event writes`);
    console.log(`  by kind (incl. the benchmark's own ${ownRequests}): ${requestBreakdown(apiBefore.body, apiAfter.body)}`);
    console.log(`  hypervisor calls: ${hvCalls} (${fmt(hvCalls / n)} per VMM): ${Object.entries(callsAfter).map(([k, v]) => `${k} ${v - (callsBefore[k] ?? 0)}`).join(', ')}`);

    // ---- idle, after the work queue had time to drain what the change left behind (balloon
    // events, status-update events): a healthy operator is quiet by then.
    await sleep(Number(args['settle-seconds']) * 1000);
    const idleSeconds = Number(args['idle-seconds']);
    const idleCpuBefore = cpuSeconds(op.pid as number);
    const idleScrape = (await kube.request('GET', '/metrics')).body;
    const idleApiBefore = req(idleScrape);
    const idleOwnBefore = kube.requests;
    const idleCallsBefore = await handle.ask<Record<string, number>>({ op: 'calls' });
    const idleReconcilesBefore = sumCounter(await handle.ask<string>({ op: 'metrics' }), 'controller_runtime_reconcile_total', { controller: 'virtualmachinememory' });
    await sleep(idleSeconds * 1000);
    const idleCallsAfter = await handle.ask<Record<string, number>>({ op: 'calls' });
    const idleReconciles = sumCounter(await handle.ask<string>({ op: 'metrics' }), 'controller_runtime_reconcile_total', { controller: 'virtualmachinememory' }) - idleReconcilesBefore;
    const idleCalls = Object.entries(idleCallsAfter).reduce((sum, [k, v]) => sum + v - (idleCallsBefore[k] ?? 0), 0);
    const idleCpu = cpuSeconds(op.pid as number) - idleCpuBefore;
    const idleScrapeAfter = (await kube.request('GET', '/metrics')).body;
    const idleApi = req(idleScrapeAfter) - idleApiBefore - (kube.requests - idleOwnBefore);
    console.log(`idle (default syncInterval 5m) over ${idleSeconds} s, starting ${args['settle-seconds']} s after convergence: CPU ${fmt(idleCpu)} s = ${fmt((idleCpu / idleSeconds) * 100)}% of a core; ${idleApi} API requests; RSS ${fmt(statusKiB(op.pid as number, 'VmRSS') / 1024, 0)} MiB`);
    console.log(`  idle requests by kind: ${requestBreakdown(idleScrape, idleScrapeAfter) || 'none'}; ${idleReconciles} reconciles, ${idleCalls} hypervisor calls`);

    // ---- out-of-band drift, event-driven correction
    const samples: number[] = [];
    let misses = 0;
    const driftN = Number(args['drift-samples']);
    for (let i = 0; i < driftN; i++) {
      const v = w.vmms[Math.floor((i * 7919) % n)] as { vm: string; host: number };
      const r = await handle.ask<{ ms?: number; error?: string }>({ op: 'drift', inventory: w.inventories[v.host], vm: v.vm, memory: i % 2 ? '2Gi' : '5Gi' });
      if (r.error || r.ms === undefined) throw new Error(`drift on ${v.vm}: ${r.error ?? 'no answer'}`);
      if (r.ms < 0) misses++;
      samples.push(r.ms < 0 ? DRIFT_TIMEOUT_MS : r.ms);
      await sleep(50);
    }
    console.log(`out-of-band drift corrected (event-driven): p50 ${fmt(percentile(samples, 50), 1)} ms, p95 ${fmt(percentile(samples, 95), 1)} ms, max ${fmt(Math.max(...samples), 1)} ms over ${samples.length} samples${misses ? ` (${misses} not corrected within ${DRIFT_TIMEOUT_MS / 1000} s, counted as ${DRIFT_TIMEOUT_MS / 1000} s)` : ''}`);
    const rssMiB = statusKiB(op.pid as number, 'VmHWM') / 1024;

    // ---- stop the operator (its profile is written on exit)
    op.kill('SIGTERM');
    await new Promise((r) => op?.once('exit', r));
    op = undefined;
    stopWatch();
    // What the operator logged, by message (a busy idle operator shows here).
    const counts = new Map<string, number>();
    for (const line of readFileSync(logFile, 'utf8').split('\n')) {
      if (!line) continue;
      let key = line.slice(0, 80);
      try {
        const j = JSON.parse(line) as { level?: number; msg?: string; reason?: string };
        key = `${j.level ?? ''} ${j.msg ?? ''}${j.reason ? ` (${j.reason})` : ''}`;
      } catch {
        /* not JSON */
      }
      counts.set(key, (counts.get(key) ?? 0) + 1);
    }
    console.log(`operator log lines by message: ${[...counts].sort((a, b) => b[1] - a[1]).slice(0, 8).map(([k, v]) => `${v}× ${k}`).join('; ')}`);
    watchRequests++;

    // ---- physical limit: the same number of status writes, same concurrency, minimal client
    const sample = await kube.json<{ status: Record<string, unknown> }>('GET', `${world.GROUP_PATH}/namespaces/${ns}/virtualmachinememories/${w.vmms[0]?.name}`);
    const writes = Math.max(statusWrites, n);
    const limitAgent = new world.RawKube({ server: env.server, adminToken: env.adminToken, caPem: readFileSync(env.certs.caCert, 'utf8') }, concurrency);
    t = Date.now();
    await world.mapLimit(Array.from({ length: writes }, (_, i) => i), concurrency, async (i) => {
      const name = w.vmms[i % n]?.name;
      const status = { ...sample.status, lastSyncTime: new Date(Date.now() + i).toISOString() };
      const r = await limitAgent.request('PATCH', `${world.GROUP_PATH}/namespaces/${ns}/virtualmachinememories/${name}/status`, { status }, 'application/merge-patch+json');
      if (r.status >= 300) throw new Error(`status patch: ${r.status} ${r.body.slice(0, 200)}`);
    });
    const limitSeconds = (Date.now() - t) / 1000;
    limitAgent.close();
    const driverBound = (hvCalls * latencyMs) / 1000 / concurrency;
    const bound = Math.max(limitSeconds, driverBound);
    const ratio = seconds / bound;
    console.log(`physical limit: ${writes} status merge patches at concurrency ${concurrency} by a minimal client: ${fmt(limitSeconds)} s`);
    console.log(`driver-bound lower bound: ${hvCalls} calls × ${latencyMs} ms / ${concurrency} = ${fmt(driverBound)} s`);
    console.log(`ratio vmmem / max(limit, lower bound) = ${fmt(seconds)} / ${fmt(bound)} = ${fmt(ratio)}  (goal ≤ 1.3)`);
    console.log(`peak RSS (VmHWM) ${fmt(rssMiB, 0)} MiB (goal ≤ 250); idle CPU ${fmt((idleCpu / idleSeconds) * 100)}% (goal < 2%); drift p95 ${fmt(percentile(samples, 95), 0)} ms (goal < 1000)`);
    void watchRequests;
    kube.close();
    console.log(`bench scale: n=${n} seconds=${fmt(seconds)} limit_seconds=${fmt(bound)} rss_mib=${fmt(rssMiB, 0)} ratio=${fmt(ratio)}`);
  } finally {
    if (op) op.kill('SIGKILL');
    await env.stop();
    if (process.env.VMMEM_BENCH_KEEP) console.log(`kept ${dir}`);
    else rmSync(dir, { recursive: true, force: true });
  }
}

if (args.child) await child();
else await parent();
