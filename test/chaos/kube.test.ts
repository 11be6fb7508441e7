// The chaos suite (npm run test:chaos = node --test test/chaos/): longer and harsher than
// test/peer/kube/reliability.test.ts, same invariants (test/chaos/lib/world.ts):
//   - etcd killed (SIGKILL) for 5 s while the operator applies a change, then restarted;
//   - kube-apiserver killed three times during a stream of spec changes;
//   - 20% driver error rate; connections that die every 60 calls (faults.disconnectAfterCalls);
//   - two Operators with leader election (src/kube/leader.ts), each reaching the API server
//     through its own TCP proxy; the leader is "killed" mid-apply (its proxy cut and its workers
//     aborted, no lease release), the other takes over after the lease expires.
// After each: every VMM converges (Ready at its generation, VM at spec), no step applied twice, no
// value outside the specs, observedGeneration never regresses, no unhandled rejection.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import type * as k8s from '@kubernetes/client-node';
import { startKube, type KubeEnv } from '../env/kube.ts';
import { kubeConfigVia, startFaultProxy } from '../env/proxy.ts';
import { KubeStore } from '../../src/kube/store.ts';
import { LeaderElector } from '../../src/kube/leader.ts';
import { Operator } from '../../src/controller/operator.ts';
import { silentLogger } from '../../src/controller/log.ts';
import { resetSimHosts, simHost, type SimHost } from '../../src/drivers/sim/index.ts';
import { RawKube, changeMemory, checkCalls, createWorld, snapshotChanges, trapUnhandled, waitConverged, watchGenerations, type World } from './lib/world.ts';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const MEMORY = ['2Gi', '3Gi', '5Gi', '6Gi', '1536Mi', '7Gi', '2560Mi'];
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

let env: KubeEnv;
let kube: RawKube;
let dir: string;
const trap = trapUnhandled();

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'vmmem-chaos-'));
  env = await startKube({ crds: [resolve(REPO, 'crds')] });
  kube = new RawKube({ server: env.server, adminToken: env.adminToken, caPem: readFileSync(env.certs.caCert, 'utf8') });
});

after(async () => {
  kube?.close();
  await env?.stop();
  resetSimHosts();
  trap.dispose();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function makeOperator(kc: k8s.KubeConfig, ns: string): Operator {
  const store = new KubeStore(kc, silentLogger(), { namespace: ns, informer: { maxBackoffMs: 2000 }, requestTimeoutMs: 10_000 });
  return new Operator({ store, log: silentLogger(), concurrency: 8, driverTimeoutMs: 5000 });
}

function check(world: World, hosts: SimHost[], base: Map<string, number>, gens: ReturnType<typeof watchGenerations>): void {
  const { violations } = checkCalls(world, hosts, base);
  assert.deepEqual(violations, [], 'hypervisor call invariants');
  assert.deepEqual(gens.regressions, [], 'status.observedGeneration regressed');
  assert.deepEqual(trap.errors.map(String), [], 'unhandled rejections / uncaught exceptions');
}

describe('single operator under faults', () => {
  let world: World;
  let hosts: SimHost[];
  let operator: Operator;
  let gens: ReturnType<typeof watchGenerations>;
  let round = 0;
  const NS = 'vmmem-chaos';

  before(async () => {
    world = await createWorld(kube, { ns: NS, dir: join(dir, 'single'), hosts: 5, vmsPerHost: 20, latencyMs: 2, vmType: 'test' });
    hosts = world.inventories.map((p) => simHost(p));
    gens = watchGenerations(kube, NS);
    operator = makeOperator(env.kubeConfig, NS);
    await operator.start();
    await waitConverged(kube, world, hosts, 120_000);
  });
  after(async () => {
    gens?.stop();
    await operator?.stop();
  });

  const names = () => world.vmms.map((v) => v.name);
  const next = (name: string) => MEMORY[(round + Number(name.split('-').pop())) % MEMORY.length] as string;

  async function run(label: string, fault: () => Promise<void>, timeoutMs = 180_000): Promise<void> {
    round++;
    for (const h of hosts) h.resetCalls();
    const base = snapshotChanges(world);
    const started = Date.now();
    await fault();
    const ms = await waitConverged(kube, world, hosts, timeoutMs);
    console.log(`# ${label}: converged ${ms} ms after the fault (${Date.now() - started} ms in all)`);
    check(world, hosts, base, gens);
  }

  it('etcd killed for 5 s mid-apply', async () => {
    await run('etcd outage', async () => {
      await changeMemory(kube, world, names(), next);
      const until = Date.now() + 10_000;
      while (hosts.reduce((n, h) => n + (h.calls.virDomainSetMemoryFlags ?? 0), 0) < 10 && Date.now() < until) await sleep(2);
      await env.stopEtcd({ signal: 'SIGKILL' });
      await sleep(5000);
      await env.startEtcd();
    });
  });

  it('kube-apiserver killed three times during a stream of spec changes', async () => {
    await run('apiserver kills', async () => {
      for (let k = 0; k < 3; k++) {
        round++;
        await changeMemory(kube, world, names().filter((_, i) => i % 3 === k), next);
        await sleep(150);
        await env.restartApiServer({ signal: 'SIGKILL' });
      }
    });
  });

  // Guards f5ae90a: HypervisorPool.noteError used to drop the shared connection on any failed call,
  // so at 20% errors every reconcile on a host reconnected and 25 of 100 VMMs were not Ready after
  // 300 s. Now only Disconnected/Protocol errors drop it (docs/reliability.md).
  it('20% driver error rate converges within 300 s (a transient error no longer drops the shared connection)', async () => {
    for (const h of hosts) h.faults.errorRate = 0.2;
    try {
      await run('20% errors', () => changeMemory(kube, world, names(), next), 300_000);
    } finally {
      for (const h of hosts) h.faults.errorRate = 0;
    }
  });

  it('connections die every 60 calls', async () => {
    // One connection per host is shared by every reconcile on it (~5 calls each): 60 calls is about
    // a dozen reconciles. (At 7 the VMs reached their spec but their status could not be written
    // Ready: almost every reconcile meets a dead connection.)
    for (const h of hosts) h.faults.disconnectAfterCalls = 60;
    try {
      await run('disconnect every 60 calls', () => changeMemory(kube, world, names(), next));
    } finally {
      for (const h of hosts) delete h.faults.disconnectAfterCalls;
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Leader election

describe('leader election: the leader dies mid-apply', () => {
  it('the standby takes over, converges, nothing applied twice', async () => {
    const NS = 'vmmem-chaos-leader';
    const world = await createWorld(kube, { ns: NS, dir: join(dir, 'leader'), hosts: 3, vmsPerHost: 20, latencyMs: 3, vmType: 'test' });
    const hosts = world.inventories.map((p) => simHost(p));
    const gens = watchGenerations(kube, NS);
    const target = new URL(env.server);
    const replicas = await Promise.all(
      ['a', 'b'].map(async (id) => {
        const p = await startFaultProxy({ port: Number(target.port), host: target.hostname });
        const kc = kubeConfigVia(env.kubeConfig, p.port);
        const operator = makeOperator(kc, NS);
        const elector = new LeaderElector(kc, { namespace: NS, name: 'vmmem-leader', identity: `replica-${id}`, logger: silentLogger(), leaseDurationMs: 4000, renewDeadlineMs: 3000, retryPeriodMs: 1000 });
        const state = { id, proxy: p, operator, elector, leading: false, everLed: false };
        await operator.start({ workers: false });
        void elector.run({
          onStartedLeading: () => {
            state.leading = true;
            state.everLed = true;
            operator.startWorkers();
          },
          onStoppedLeading: () => {
            state.leading = false;
            // Like `vmmem run`: a replica that lost the lease stops working (and would exit).
            void operator.vmms.stop({ drain: false });
            void operator.hypervisors.stop({ drain: false });
          },
        });
        return state;
      }),
    );
    try {
      const deadline = Date.now() + 30_000;
      while (!replicas.some((r) => r.leading) && Date.now() < deadline) await sleep(50);
      const leader = replicas.find((r) => r.leading);
      assert.ok(leader, 'nobody became leader within 30 s');
      const standby = replicas.find((r) => r !== leader) as (typeof replicas)[number];
      await waitConverged(kube, world, hosts, 120_000);

      for (const h of hosts) h.resetCalls();
      const base = snapshotChanges(world);
      await changeMemory(kube, world, world.vmms.map((v) => v.name), (name) => MEMORY[Number(name.split('-').pop()) % MEMORY.length] as string);
      // Kill the leader once it is applying: its API connection goes, its workers abort mid-call.
      const until = Date.now() + 10_000;
      while (hosts.reduce((n, h) => n + (h.calls.virDomainSetMemoryFlags ?? 0), 0) < 10 && Date.now() < until) await sleep(2);
      const killedAt = Date.now();
      leader.proxy.setMode('refuse');
      await Promise.all([leader.operator.vmms.stop({ drain: false }), leader.operator.hypervisors.stop({ drain: false })]);
      const appliedByLeader = hosts.reduce((n, h) => n + (h.calls.virDomainSetMemoryFlags ?? 0), 0);

      const ms = await waitConverged(kube, world, hosts, 120_000);
      console.log(`# leader killed after ${appliedByLeader} memory calls; standby ${standby.id} led: ${standby.everLed}; converged ${ms} ms later (${Date.now() - killedAt} ms after the kill)`);
      assert.ok(standby.everLed, 'the standby never became leader');
      check(world, hosts, base, gens);
    } finally {
      gens.stop();
      for (const r of replicas) {
        await r.elector.release().catch(() => {});
        await r.operator.stop().catch(() => {});
        await r.proxy.close();
      }
    }
  });
});
