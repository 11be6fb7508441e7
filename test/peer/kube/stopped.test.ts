// Issue #12.6 on the real kube-apiserver + etcd (test/env/kube.ts): the whole operator (Operator +
// KubeStore + the sim driver). A VMM opts in to a QEMU hard_limit below guest memory + overhead
// (spec.allowUnsafeLimit); the sim OOM-kills the VM as the kernel kills QEMU; what a user reads
// through the API (status conditions, Events) must say the VM stopped after vmmem's change — not
// Ready/Converged. Raising the limit (a new generation) clears it.
import { after, before, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { startKube, type KubeEnv } from '../../env/kube.ts';
import { KubeStore } from '../../../src/kube/store.ts';
import { Operator } from '../../../src/controller/operator.ts';
import { silentLogger } from '../../../src/controller/log.ts';
import { resetSimHosts, simHost } from '../../../src/drivers/sim/index.ts';
import { GROUP_PATH, RawKube, type KObj } from '../../chaos/lib/world.ts';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const NS = 'vmmem-stopped';
const GiB = 1024n * 1024n * 1024n;
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

let env: KubeEnv;
let kube: RawKube;
let operator: Operator;
let dir: string;
let inventory: string;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'vmmem-stopped-'));
  inventory = join(dir, 'host.yaml');
  writeFileSync(inventory, stringify({ type: 'qemu', vms: [{ name: 'web', type: 'qemu', powerState: 'Running', maxMemory: '4Gi', memory: '4Gi' }] }));
  env = await startKube({ crds: [resolve(REPO, 'crds')] });
  kube = new RawKube({ server: env.server, adminToken: env.adminToken, caPem: readFileSync(env.certs.caCert, 'utf8') });
  await kube.json('POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: NS } });
  await kube.json('POST', `${GROUP_PATH}/namespaces/${NS}/hypervisors`, { apiVersion: 'vmmem.io/v1alpha1', kind: 'Hypervisor', metadata: { name: 'sim-a', namespace: NS }, spec: { uri: `sim://${inventory}` } });
  const log = silentLogger();
  const store = new KubeStore(env.kubeConfig, log, { namespace: NS, requestTimeoutMs: 10_000 });
  // The admin's flag --allow-sim-hypervisors, as the benchmarks and tests set it.
  operator = new Operator({ store, log, concurrency: 4, driverTimeoutMs: 5000, policy: { allowSim: true } });
  await operator.start();
});

after(async () => {
  await operator?.stop();
  kube?.close();
  await env?.stop();
  resetSimHosts();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

type Cond = { type: string; status: string; reason: string; message: string; observedGeneration?: number };
/** status.observed.powerState as the API server stores it. */
const powerOf = (o: KObj) => (o.status as { observed?: { powerState?: string } } | undefined)?.observed?.powerState;
const vmmPath = `${GROUP_PATH}/namespaces/${NS}/virtualmachinememories`;

/** Polls the VMM through the API server until `ok` holds for its current generation. */
async function waitFor(ok: (ready: Cond | undefined, o: KObj) => boolean, what: string): Promise<KObj> {
  const deadline = Date.now() + 60_000;
  let last: KObj | undefined;
  while (Date.now() < deadline) {
    last = await kube.json<KObj>('GET', `${vmmPath}/web`);
    const ready = (last.status?.conditions as Cond[] | undefined)?.find((c) => c.type === 'Ready');
    if (last.status?.observedGeneration === last.metadata.generation && ok(ready, last)) return last;
    await sleep(200);
  }
  assert.fail(`${what}: not seen within 60 s; last status ${JSON.stringify(last?.status)}`);
}

it('the VM OOM-killed after an unsafe limit reads StoppedAfterChange through the API, with a Warning Event; raising the limit clears it', async () => {
  await kube.json('POST', vmmPath, {
    apiVersion: 'vmmem.io/v1alpha1',
    kind: 'VirtualMachineMemory',
    metadata: { name: 'web', namespace: NS },
    spec: { hypervisorRef: { name: 'sim-a' }, vm: { name: 'web' }, maxMemory: '4Gi', memory: '4Gi', limit: '2Gi', allowUnsafeLimit: true },
  });
  const o = await waitFor((r) => r?.reason === 'StoppedAfterChange', 'Ready reason StoppedAfterChange');
  const conds = o.status?.conditions as Cond[];
  const ready = conds.find((c) => c.type === 'Ready');
  assert.equal(ready?.status, 'False');
  assert.match(ready?.message ?? '', /^web crashed .* after vmmem applied limit live Unlimited → 2Gi.*spec\.limit 2Gi is below guest memory 4Gi \+ QEMU overhead margin 512Mi, allowed by spec\.allowUnsafeLimit/);
  assert.equal(conds.find((c) => c.type === 'Stalled')?.status, 'True');
  assert.equal(powerOf(o), 'ShutOff');
  const vm = simHost(inventory).vm('web');
  assert.equal(vm?.powerState, 'ShutOff');
  assert.equal(vm?.stopReason, 'Crashed');

  // The Warning a user sees in `kubectl events` (events.k8s.io/v1, as KubeStore records them).
  const deadline = Date.now() + 30_000;
  let events: { reason?: string; type?: string; note?: string; regarding?: { name?: string } }[] = [];
  while (Date.now() < deadline) {
    events = (await kube.json<{ items: typeof events }>('GET', `/apis/events.k8s.io/v1/namespaces/${NS}/events`)).items.filter((e) => e.regarding?.name === 'web' && e.reason === 'StoppedAfterChange');
    if (events.length > 0) break;
    await sleep(200);
  }
  assert.equal(events.length, 1, 'one StoppedAfterChange Event');
  assert.equal(events[0]?.type, 'Warning');

  // The user fixes the spec: a new generation, the change is no longer blamed; the VM stays off (vmmem never starts it).
  await kube.json('PATCH', `${vmmPath}/web`, { spec: { limit: '6Gi', allowUnsafeLimit: false } }, 'application/merge-patch+json');
  const fixed = await waitFor((r) => r?.status === 'True' && r.reason === 'Converged', 'Ready=True Converged after the fix');
  assert.equal(powerOf(fixed), 'ShutOff');
  assert.equal(simHost(inventory).vm('web')?.config?.limit, 6n * GiB);
});
