// Sharding on a real kube-apiserver + etcd (test/env/kube.ts): the stores' server-side label
// selector (src/kube/store.ts labelSelector), then `bin/vmmem run --shards` as three separate
// processes sharing one simulated fleet over sim+unix (src/drivers/sim/server.ts), whose call log
// is the witness that no step was applied twice. Needs the binaries built by
// test/peer/kube/setup.sh; fails (never skips) without them.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as k8s from '@kubernetes/client-node';
import { startKube, type KubeEnv } from '../../env/kube.ts';
import { KubeStore } from '../../../src/kube/store.ts';
import type { Logger } from '../../../src/kube/http.ts';
import type { ChangeType, ResourceKind } from '../../../src/controller/ports.ts';
import { ownerOf } from '../../../src/kube/shards.ts';
import { startSimServer, type SimServer } from '../../../src/drivers/sim/server.ts';
import { simHost } from '../../../src/drivers/sim/index.ts';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const NS = 'shards';
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

const quiet: Logger = {
  info: (o, m) => void (process.env.VMMEM_TEST_LOG && console.error('info', m, JSON.stringify(o))),
  warn: (o, m) => void (process.env.VMMEM_TEST_LOG && console.error('warn', m, JSON.stringify(o))),
  error: (o, m) => void console.error('error', m, JSON.stringify(o)),
  debug: () => {},
  child: () => quiet,
};

async function waitFor(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for: ${what}`);
    await sleep(50);
  }
}

const hypervisor = (name: string, labels: Record<string, string>) => ({
  apiVersion: 'vmmem.io/v1alpha1',
  kind: 'Hypervisor',
  metadata: { name, namespace: NS, labels },
  spec: { uri: 'sim:///selector-test' },
});

describe('sharding on a real kube-apiserver', { timeout: 110_000 }, () => {
  let env: KubeEnv;
  let custom: k8s.CustomObjectsApi;

  before(async () => {
    env = await startKube({ crds: [resolve(REPO, 'crds')] });
    await env.kubeConfig.makeApiClient(k8s.CoreV1Api).createNamespace({ body: { metadata: { name: NS } } });
    custom = env.kubeConfig.makeApiClient(k8s.CustomObjectsApi);
  });
  after(async () => {
    await env?.stop();
  });

  it('a store with a labelSelector lists and watches only matching objects; relabelled objects leave and join', async () => {
    const create = (body: object) => custom.createNamespacedCustomObject({ group: 'vmmem.io', version: 'v1alpha1', namespace: NS, plural: 'hypervisors', body });
    await create(hypervisor('in-0', { 'vmmem.io/shard': '0' }));
    await create(hypervisor('in-2', { 'vmmem.io/shard': '2' }));
    await create(hypervisor('out-1', { 'vmmem.io/shard': '1' }));
    await create(hypervisor('unlabelled', {}));
    const seen: Array<[ResourceKind, string, ChangeType]> = [];
    const store = new KubeStore(env.kubeConfig, quiet, { namespace: NS, labelSelector: 'vmmem.io/shard in (0,2)' });
    await store.start({ onChange: (kind, key, change) => void seen.push([kind, key.name, change]) });
    try {
      assert.deepEqual(store.list('Hypervisor').map((h) => h.metadata.name).sort(), ['in-0', 'in-2']);
      const relabel = (name: string, shard: string) =>
        custom.patchNamespacedCustomObject(
          { group: 'vmmem.io', version: 'v1alpha1', namespace: NS, plural: 'hypervisors', name, body: { metadata: { labels: { 'vmmem.io/shard': shard } } } },
          k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
        );
      await relabel('out-1', '2'); // now matches: arrives by watch
      await relabel('in-0', '1'); // no longer matches: the watch reports it deleted
      await waitFor('out-1 in, in-0 out', () => {
        const names = store.list('Hypervisor').map((h) => h.metadata.name).sort();
        return names.join() === 'in-2,out-1';
      });
      assert.ok(seen.some(([k, n, c]) => k === 'Hypervisor' && n === 'out-1' && c === 'add'));
      assert.ok(seen.some(([k, n, c]) => k === 'Hypervisor' && n === 'in-0' && c === 'delete'));
      assert.ok(!seen.some(([, n]) => n === 'unlabelled'), 'an object outside the selector never reaches the handlers');
    } finally {
      await store.stop();
    }
  });

  describe('three `vmmem run --shards` processes on one simulated fleet', () => {
    const FLEET = 'fleet';
    const HOSTS = 6;
    const VMS_PER_HOST = 2;
    const SHARDS = 6;
    const LEASE_NS = 'vmmem-system';
    let dir: string;
    let sim: SimServer;
    const replicas = new Map<string, ChildProcess>();
    const logs = new Map<string, string[]>();
    const hostName = (i: number) => `host-${i}`;
    const vmName = (h: number, v: number) => `vm-${h}-${v}`;

    const startReplica = (identity: string): void => {
      const child = spawn(
        resolve(REPO, 'bin', 'vmmem'),
        [
          'run', '--kubeconfig', env.kubeconfigPath, '--namespace', FLEET,
          '--shards', String(SHARDS), '--identity', identity, '--leader-election-namespace', LEASE_NS,
          '--leader-election-lease-duration', '3s', '--leader-election-renew-deadline', '2s', '--leader-election-retry-period', '250ms',
          '--allow-sim-hypervisors', '--metrics-bind-address', '0', '--health-probe-bind-address', '0', '--log-level', 'info',
        ],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      const lines: string[] = [];
      const keep = (chunk: Buffer) => {
        lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
        if (lines.length > 2000) lines.splice(0, lines.length - 2000);
      };
      child.stdout?.on('data', keep);
      child.stderr?.on('data', keep);
      replicas.set(identity, child);
      logs.set(identity, lines);
    };
    const stopReplica = async (identity: string, signal: NodeJS.Signals): Promise<void> => {
      const child = replicas.get(identity);
      if (!child || child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise<void>((r) => child.once('exit', () => r()));
      child.kill(signal);
      await exited;
      replicas.delete(identity);
    };
    const dumpLogs = () => {
      for (const [id, lines] of logs) console.error(`--- ${id} (last 40 lines)\n${lines.slice(-40).join('\n')}`);
    };

    const api = (plural: 'hypervisors' | 'virtualmachinememories') => ({ group: 'vmmem.io', version: 'v1alpha1', namespace: FLEET, plural });
    type Obj = { metadata: { name: string; generation?: number; labels?: Record<string, string> }; status?: { shardOwner?: string; shard?: number; observedGeneration?: number; conditions?: { type: string; status: string }[] } };
    const listAll = async (plural: 'hypervisors' | 'virtualmachinememories'): Promise<Obj[]> => ((await custom.listNamespacedCustomObject(api(plural))) as { items: Obj[] }).items;
    const ready = (o: Obj) => o.status?.observedGeneration === o.metadata.generation && o.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') === true;
    const holders = async (): Promise<Map<number, string>> => {
      const coord = env.kubeConfig.makeApiClient(k8s.CoordinationV1Api);
      const out = new Map<number, string>();
      for (const l of (await coord.listNamespacedLease({ namespace: LEASE_NS })).items) {
        const m = /^vmmem-shard-(\d+)$/.exec(l.metadata?.name ?? '');
        if (m && l.spec?.holderIdentity) out.set(Number(m[1]), l.spec.holderIdentity);
      }
      return out;
    };
    const heldAsHashed = async (members: string[]): Promise<boolean> => {
      const h = await holders();
      return Array.from({ length: SHARDS }, (_, k) => k).every((k) => h.get(k) === ownerOf(k, [...members].sort()));
    };
    const setMemory = async (gib: number) => {
      for (let h = 0; h < HOSTS; h++) {
        for (let v = 0; v < VMS_PER_HOST; v++) {
          await custom.patchNamespacedCustomObject(
            { ...api('virtualmachinememories'), name: vmName(h, v), body: { spec: { memory: `${gib}Gi` } } },
            k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
          );
        }
      }
    };
    /** Every memory-changing call that reached the fleet, as "host vm op detail". */
    const applied = (): string[] => {
      const out: string[] = [];
      for (let h = 0; h < HOSTS; h++) {
        for (const c of simHost(sim.inventoryPath(hostName(h))).callLog) {
          if (c.outcome === 'ok' && /SetMemory|SetMaxMemory|Reconfig/i.test(c.op)) out.push(`${hostName(h)} ${c.vm ?? ''} ${c.op} ${c.detail ?? ''}`);
        }
      }
      return out;
    };
    const assertNoDoubleApply = () => {
      const calls = applied();
      const twice = calls.filter((c, i) => calls.indexOf(c) !== i);
      assert.deepEqual(twice, [], `a step applied twice:\n${calls.join('\n')}`);
    };
    /** observedGeneration of every VMM, sampled all along: it may never go back. */
    const regressions: string[] = [];
    let sampler: NodeJS.Timeout | undefined;
    const lastSeen = new Map<string, number>();
    let survivors: string[] = [];

    before(async () => {
      dir = mkdtempSync(join(tmpdir(), 'vmmem-shards-'));
      for (let h = 0; h < HOSTS; h++) {
        const vms = Array.from({ length: VMS_PER_HOST }, (_, v) => `  - {name: ${vmName(h, v)}, type: qemu, maxMemory: 8Gi, memory: 4Gi}`).join('\n');
        // Each call takes ~150 ms: a kill lands while applies are in flight.
        writeFileSync(join(dir, `${hostName(h)}.yaml`), `type: qemu\nhostMemory: 64Gi\nlatency: {mean: 150ms, jitter: 50ms}\nvms:\n${vms}\n`);
      }
      sim = await startSimServer({ socketPath: join(dir, 'sim.sock'), inventoryDir: dir });
      const core = env.kubeConfig.makeApiClient(k8s.CoreV1Api);
      await core.createNamespace({ body: { metadata: { name: FLEET } } });
      await core.createNamespace({ body: { metadata: { name: LEASE_NS } } });
      for (let h = 0; h < HOSTS; h++) {
        await custom.createNamespacedCustomObject({
          ...api('hypervisors'),
          body: { apiVersion: 'vmmem.io/v1alpha1', kind: 'Hypervisor', metadata: { name: hostName(h), namespace: FLEET }, spec: { uri: `sim+unix://${sim.socketPath}?inventory=${hostName(h)}`, syncInterval: '3s' } },
        });
        for (let v = 0; v < VMS_PER_HOST; v++) {
          await custom.createNamespacedCustomObject({
            ...api('virtualmachinememories'),
            body: { apiVersion: 'vmmem.io/v1alpha1', kind: 'VirtualMachineMemory', metadata: { name: vmName(h, v), namespace: FLEET }, spec: { hypervisorRef: { name: hostName(h) }, vm: { name: vmName(h, v) }, maxMemory: '8Gi', memory: '6Gi' } },
          });
        }
      }
      sampler = setInterval(() => {
        void listAll('virtualmachinememories')
          .then((items) => {
            for (const o of items) {
              const g = o.status?.observedGeneration;
              if (g === undefined) continue;
              const prev = lastSeen.get(o.metadata.name) ?? 0;
              if (g < prev) regressions.push(`${o.metadata.name}: observedGeneration ${prev} → ${g}`);
              lastSeen.set(o.metadata.name, Math.max(prev, g));
            }
          })
          .catch(() => undefined);
      }, 250);
    });
    after(async () => {
      clearInterval(sampler);
      await Promise.all([...replicas.keys()].map((id) => stopReplica(id, 'SIGKILL')));
      await sim?.close();
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    it('every Hypervisor is owned by exactly one replica and every VMM converges', async () => {
      for (const id of ['r-a', 'r-b', 'r-c']) startReplica(id);
      try {
        // Rendezvous hashing is deterministic: each shard's holder is the one ownerOf names.
        await waitFor('each shard held by its rendezvous owner', () => heldAsHashed(['r-a', 'r-b', 'r-c']), 60_000);
        await waitFor('every VMM Ready', async () => (await listAll('virtualmachinememories')).every(ready), 60_000);
        await waitFor('every Hypervisor shows its owner', async () => {
          const h = await holders();
          return (await listAll('hypervisors')).every((hv) => hv.status?.shardOwner !== undefined && hv.status.shardOwner === h.get(hv.status.shard ?? -1));
        }, 30_000);
        for (const hv of await listAll('hypervisors')) {
          assert.equal(hv.metadata.labels?.['vmmem.io/shard'], String(hv.status?.shard), `${hv.metadata.name}: label and status agree`);
        }
        assertNoDoubleApply();
        for (let h = 0; h < HOSTS; h++) {
          for (let v = 0; v < VMS_PER_HOST; v++) assert.equal(simHost(sim.inventoryPath(hostName(h))).vm(vmName(h, v))?.live?.memory, 6n << 30n, vmName(h, v));
        }
      } catch (e) {
        dumpLogs();
        throw e;
      }
    });

    it('SIGKILL of one replica mid-apply: its Hypervisors move, every VMM converges, no step applied twice, no status regression', async () => {
      try {
        const before = await holders();
        // The replica holding the most shards (any would do; one holding none would prove nothing).
        const counts = new Map<string, number>();
        for (const id of before.values()) counts.set(id, (counts.get(id) ?? 0) + 1);
        const victim = [...counts].sort((a, b) => b[1] - a[1])[0]?.[0] ?? '';
        const victimShards = [...before].filter(([, id]) => id === victim).map(([k]) => k);
        assert.ok(victimShards.length > 0, 'the victim holds shards');
        const callsBefore = applied().length;
        await setMemory(5);
        await waitFor('applies under way', () => applied().length > callsBefore, 20_000);
        await stopReplica(victim, 'SIGKILL');
        survivors = ['r-a', 'r-b', 'r-c'].filter((id) => id !== victim);
        await waitFor('the victim\'s shards held by the survivors\' rendezvous owners', () => heldAsHashed(survivors), 30_000);
        await waitFor('every VMM Ready at its new generation', async () => (await listAll('virtualmachinememories')).every(ready), 60_000);
        for (const hv of await listAll('hypervisors')) assert.notEqual(hv.status?.shardOwner, victim, `${hv.metadata.name} still shows the dead replica`);
        for (let h = 0; h < HOSTS; h++) {
          for (let v = 0; v < VMS_PER_HOST; v++) assert.equal(simHost(sim.inventoryPath(hostName(h))).vm(vmName(h, v))?.live?.memory, 5n << 30n, vmName(h, v));
        }
        assertNoDoubleApply();
        assert.deepEqual(regressions, []);
      } catch (e) {
        dumpLogs();
        throw e;
      }
    });

    it('a replica that joins takes shards over without a double apply', async () => {
      try {
        // A name to which rendezvous hashing gives at least one shard among these members.
        const joiner = ['r-d', 'r-e', 'r-f', 'r-g', 'r-h'].find((id) => Array.from({ length: SHARDS }, (_, k) => ownerOf(k, [...survivors, id].sort())).includes(id)) ?? 'r-d';
        startReplica(joiner);
        await waitFor(`${joiner} joins and the shards follow the hash`, () => heldAsHashed([...survivors, joiner]), 45_000);
        await setMemory(7);
        await waitFor('every VMM Ready at its new generation', async () => (await listAll('virtualmachinememories')).every(ready), 60_000);
        await waitFor(`Hypervisors show ${joiner}`, async () => (await listAll('hypervisors')).some((hv) => hv.status?.shardOwner === joiner), 30_000);
        assertNoDoubleApply();
        assert.deepEqual(regressions, []);
      } catch (e) {
        dumpLogs();
        throw e;
      }
    });
  });
});
