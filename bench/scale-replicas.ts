// `npm run bench -- scale --replicas R`: the operator in sharded mode (`vmmem run --shards`) as R
// separate processes on the REAL kube-apiserver + etcd of the test environment and the sim driver,
// so the doc can say what each replica costs as replicas are added (docs/operations.md "Sharding").
//
//   npm run bench -- scale --replicas 2 [--n 1000] [--shards 12] [--concurrency 4]
//                          [--vms-per-host 20] [--latency-ms 2] [--idle-seconds 60]
//
// Each replica is a child process (this file with --child: ShardedOperator + Metrics, what
// `vmmem run --shards` composes) under the Deployment's Node flags, so its CPU seconds and peak RSS
// are its own; the sim hosts of its shards live in it. The shard count and the workers per shard
// (--concurrency, as `vmmem run`'s) stay the same whatever R, so the total parallelism is the same
// (shards × concurrency) and only its spread over processes changes; the physical limit and the
// driver bound are computed at that total, as bench/scale.ts does for one process.
//
// Phases: create the world; start R replicas at once; all VMMs Ready (initial sync, including the
// shards moving while the replicas find each other); wait until every shard is held by its
// rendezvous owner; change every spec.memory at once and time until all are Ready at the new
// value (the figure); idle CPU per replica over --idle-seconds. Ends with one line:
//   bench scale: replicas=<R> n=<N> seconds=<s> limit_seconds=<s> rss_mib=<max per replica> ratio=<x>
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { sleep } from '../src/util/sleep.ts';
import { ChildHandle, cpuSeconds, deploymentNodeOptions, statusKiB } from './child.ts';
import { ownerOf, shardOf } from '../src/kube/shards.ts';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const fmt = (x: number, d = 2) => x.toFixed(d);

const { values: args } = parseArgs({
  options: {
    replicas: { type: 'string', default: '2' },
    n: { type: 'string', default: '1000' },
    shards: { type: 'string', default: '12' },
    concurrency: { type: 'string', default: '4' },
    'vms-per-host': { type: 'string', default: '20' },
    'latency-ms': { type: 'string', default: '2' },
    'idle-seconds': { type: 'string', default: '60' },
    'node-options': { type: 'string' },
    child: { type: 'boolean', default: false },
    kubeconfig: { type: 'string' },
    ns: { type: 'string' },
    identity: { type: 'string' },
  },
  allowPositionals: false,
});

// =============================================================================================
// Child: one replica

interface Request {
  id: number;
  op: 'metrics' | 'calls' | 'held';
  /** calls: every host's inventory, by Hypervisor name; the replica sums those of its shards. */
  hosts?: [string, string][];
}

async function child(): Promise<void> {
  const k8s = await import('@kubernetes/client-node');
  const { ShardedOperator } = await import('../src/cli/sharded.ts');
  const { Metrics, setDefaultMetrics } = await import('../src/controller/metrics.ts');
  const { createLogger } = await import('../src/controller/log.ts');
  const { simHost } = await import('../src/drivers/sim/index.ts');
  const kubeConfig = new k8s.KubeConfig();
  kubeConfig.loadFromFile(args.kubeconfig as string);
  const ns = args.ns as string;
  const shards = Number(args.shards);
  const log = createLogger({ level: 'info', name: 'vmmem' });
  const metrics = new Metrics();
  setDefaultMetrics(metrics);
  const op = new ShardedOperator({ kubeConfig, log, metrics, shards, identity: args.identity as string, leaseNamespace: ns, namespace: ns, concurrency: Number(args.concurrency) });
  const mine = (hv: string) => op.coordinator.held().includes(shardOf(ns, hv, shards));
  const known = new Map<string, string>();
  process.on('message', (raw) => {
    const req = raw as Request;
    void (async () => {
      let body: unknown;
      if (req.op === 'metrics') body = await metrics.text();
      else if (req.op === 'held') body = op.coordinator.held();
      else {
        const total: Record<string, number> = {};
        for (const [hv, inv] of req.hosts ?? []) known.set(hv, inv);
        for (const [hv, inv] of req.hosts ?? []) if (mine(hv)) for (const [k, v] of Object.entries(simHost(inv).calls)) total[k] = (total[k] ?? 0) + v;
        body = total;
      }
      process.send?.({ id: req.id, body });
    })();
  });
  // As in bench/scale.ts: the sim's call log is for tests; emptied so it is not the replica's memory.
  setInterval(() => {
    for (const [hv, inv] of known) if (mine(hv)) simHost(inv).callLog.length = 0;
  }, 1000).unref();
  process.once('SIGTERM', () => void op.stop().then(() => process.exit(0)));
  await op.start();
  process.send?.({ id: 0, body: 'started' });
}

// =============================================================================================
// Parent

/** One replica process: the shared IPC handle plus its shard-member identity. */
class Replica extends ChildHandle<Request> {
  readonly identity: string;
  constructor(identity: string, proc: ChildProcess) {
    super(proc);
    this.identity = identity;
  }
  cpu(): number {
    return cpuSeconds(this.pid);
  }
  kib(key: 'VmHWM' | 'VmRSS'): number {
    return statusKiB(this.pid, key);
  }
}

/** Sums a counter over the series whose labels contain `labelPrefix` (one controller per shard: `virtualmachinememory-shard-<k>`). */
function sumCounter(text: string, name: string, labelPrefix: string): number {
  let total = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`)) continue;
    if ((/\{([^}]*)\}/.exec(line)?.[1] ?? '').includes(labelPrefix)) total += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return total;
}

async function parent(): Promise<void> {
  const { startKube } = await import('../test/env/kube.ts');
  const world = await import('../test/chaos/lib/world.ts');
  const R = Number(args.replicas);
  const n = Number(args.n);
  const shards = Number(args.shards);
  const perShard = Number(args.concurrency);
  const total = shards * perShard;
  const latencyMs = Number(args['latency-ms']);
  const perHost = Math.min(Number(args['vms-per-host']), n);
  const hostsCount = Math.ceil(n / perHost);
  const ns = 'vmmem-scale';
  const dir = mkdtempSync(join(tmpdir(), 'vmmem-scale-r-'));
  const cpuInfo = readFileSync('/proc/cpuinfo', 'utf8');
  const nodeOptions = args['node-options'] !== undefined ? args['node-options'].split(/\s+/).filter(Boolean) : await deploymentNodeOptions(REPO);
  console.log(`machine: ${(cpuInfo.match(/^processor\s*:/gm) ?? []).length} cores, load average at start ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}; node ${process.version}`);
  console.log(`replicas=${R}, n=${n} VMMs on ${hostsCount} sim hypervisors (${perHost} VMs each), ${latencyMs} ms per call, --shards ${shards} × --concurrency ${perShard} = ${total} workers in all; node ${nodeOptions.join(' ')}`);

  const env = await startKube({ crds: [resolve(REPO, 'crds')] });
  const caPem = readFileSync(env.certs.caCert, 'utf8');
  const kube = new world.RawKube({ server: env.server, adminToken: env.adminToken, caPem }, 64);
  const replicas: Replica[] = [];
  try {
    let t = Date.now();
    const w = await world.createWorld(kube, { ns, dir, hosts: hostsCount, vmsPerHost: perHost, latencyMs, vmType: 'qemu', initialMemory: '4Gi', maxMemory: '8Gi' });
    const hosts = w.inventories.map((inv, h) => [`host-${h}`, inv] as [string, string]);
    console.log(`created ${hostsCount} Hypervisors and ${n} VMMs in ${fmt((Date.now() - t) / 1000, 1)} s`);
    const state = new Map<string, { ready: boolean; memory: unknown }>();
    const stopWatch = kube.watch(`${world.GROUP_PATH}/namespaces/${ns}/virtualmachinememories`, (_type, o) => {
      state.set(o.metadata.name, { ready: world.isReady(o), memory: o.spec?.memory });
    });
    const allReady = async (memory: string, timeoutMs: number): Promise<void> => {
      const started = Date.now();
      for (;;) {
        let ready = 0;
        for (const s of state.values()) if (s.ready && s.memory === memory) ready++;
        if (ready === n) return;
        if (Date.now() - started > timeoutMs) throw new Error(`only ${ready}/${n} Ready with memory ${memory} after ${timeoutMs / 1000} s`);
        await sleep(20);
      }
    };

    t = Date.now();
    for (let i = 0; i < R; i++) {
      const identity = `replica-${i}`;
      const out = openSync(join(dir, `${identity}.log`), 'w');
      const proc = spawn(process.execPath, [...nodeOptions, fileURLToPath(import.meta.url), '--child', '--kubeconfig', env.kubeconfigPath, '--ns', ns, '--shards', String(shards), '--concurrency', String(perShard), '--identity', identity], { stdio: ['ignore', out, out, 'ipc'], cwd: REPO });
      replicas.push(new Replica(identity, proc));
    }
    await Promise.all(replicas.map((r) => r.started));
    await allReady('4Gi', 30 * 60_000);
    console.log(`initial sync (${R} replicas started → all ${n} Ready): ${fmt((Date.now() - t) / 1000, 1)} s`);

    // Steady ownership first: every shard held by its rendezvous owner, so the change measures
    // work, not shards moving.
    const ids = replicas.map((r) => r.identity);
    const want = (r: Replica) => [...Array(shards).keys()].filter((k) => ownerOf(k, ids) === r.identity).sort((a, b) => a - b);
    const settleStart = Date.now();
    for (;;) {
      const held = await Promise.all(replicas.map((r) => r.ask<number[]>({ op: 'held' })));
      if (replicas.every((r, i) => JSON.stringify([...(held[i] ?? [])].sort((a, b) => a - b)) === JSON.stringify(want(r)))) break;
      if (Date.now() - settleStart > 120_000) throw new Error(`shards not at their owners after 120 s: ${JSON.stringify(held)}`);
      await sleep(200);
    }
    await allReady('4Gi', 120_000);
    const hvPerReplica = replicas.map((r) => hosts.filter(([hv]) => want(r).includes(shardOf(ns, hv, shards))).length);
    console.log(`shards at their owners after ${fmt((Date.now() - settleStart) / 1000, 1)} s more: ${replicas.map((r, i) => `${r.identity} ${want(r).length} shards / ${hvPerReplica[i]} Hypervisors`).join(', ')}`);

    const reconciles = async () => (await Promise.all(replicas.map((r) => r.ask<string>({ op: 'metrics' })))).reduce((s, m) => s + sumCounter(m, 'controller_runtime_reconcile_total', 'controller="virtualmachinememory'), 0);
    const calls = async () => (await Promise.all(replicas.map((r) => r.ask<Record<string, number>>({ op: 'calls', hosts })))).reduce((s, c) => s + Object.values(c).reduce((a, b) => a + b, 0), 0);
    const cpu0 = replicas.map((r) => r.cpu());
    const rec0 = await reconciles();
    const calls0 = await calls();
    t = Date.now();
    await world.changeMemory(kube, w, w.vmms.map((v) => v.name), () => '3Gi', 16);
    await allReady('3Gi', 30 * 60_000);
    const seconds = (Date.now() - t) / 1000;
    const cpu = replicas.map((r, i) => r.cpu() - (cpu0[i] ?? 0));
    const hvCalls = (await calls()) - calls0;
    console.log(`spec change: all ${n} Ready at the new value after ${fmt(seconds)} s; ${(await reconciles()) - rec0} reconciles, ${hvCalls} hypervisor calls (${fmt(hvCalls / n)} per VMM)`);
    for (const [i, r] of replicas.entries()) console.log(`  ${r.identity}: CPU ${fmt(cpu[i] ?? 0)} s during the change, RSS ${fmt(r.kib('VmRSS') / 1024, 0)} MiB (peak ${fmt(r.kib('VmHWM') / 1024, 0)} MiB)`);

    const idleSeconds = Number(args['idle-seconds']);
    await sleep(10_000);
    const idle0 = replicas.map((r) => r.cpu());
    await sleep(idleSeconds * 1000);
    const idle = replicas.map((r, i) => ((r.cpu() - (idle0[i] ?? 0)) / idleSeconds) * 100);
    console.log(`idle over ${idleSeconds} s: ${replicas.map((r, i) => `${r.identity} ${fmt(idle[i] ?? 0)}% of a core`).join(', ')}`);

    // The physical limit at the same total parallelism, as bench/scale.ts: one status merge patch
    // per VMM by a minimal client.
    const sample = await kube.json<{ status: Record<string, unknown> }>('GET', `${world.GROUP_PATH}/namespaces/${ns}/virtualmachinememories/${w.vmms[0]?.name}`);
    const limitAgent = new world.RawKube({ server: env.server, adminToken: env.adminToken, caPem }, total);
    const ls = Date.now();
    await world.mapLimit(w.vmms, total, async (v, i) => {
      const r = await limitAgent.request('PATCH', `${world.GROUP_PATH}/namespaces/${ns}/virtualmachinememories/${v.name}/status`, { status: { ...sample.status, lastSyncTime: new Date(ls + i * 1000).toISOString() } }, 'application/merge-patch+json');
      if (r.status >= 300) throw new Error(`limit client: ${r.status} ${r.body.slice(0, 200)}`);
    });
    const limitSeconds = (Date.now() - ls) / 1000;
    limitAgent.close();
    const bound = Math.max(limitSeconds, (hvCalls * latencyMs) / 1000 / total);
    const peak = Math.max(...replicas.map((r) => r.kib('VmHWM') / 1024));
    const sumRss = replicas.reduce((s, r) => s + r.kib('VmHWM') / 1024, 0);
    console.log(`physical limit: ${n} status patches at concurrency ${total}: ${fmt(limitSeconds)} s; ratio ${fmt(seconds)} / ${fmt(bound)} = ${fmt(seconds / bound)}`);
    console.log(`peak RSS per replica: max ${fmt(peak, 0)} MiB, sum over replicas ${fmt(sumRss, 0)} MiB; CPU during the change: max ${fmt(Math.max(...cpu))} s, sum ${fmt(cpu.reduce((a, b) => a + b, 0))} s`);
    stopWatch();
    kube.close();
    console.log(`bench scale: replicas=${R} n=${n} seconds=${fmt(seconds)} limit_seconds=${fmt(bound)} rss_mib=${fmt(peak, 0)} ratio=${fmt(seconds / bound)}`);
  } finally {
    for (const r of replicas) r.proc.kill('SIGKILL');
    await env.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (args.child) await child();
else await parent();
