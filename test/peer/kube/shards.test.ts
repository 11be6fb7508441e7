// Sharding on a real kube-apiserver + etcd (test/env/kube.ts): the stores' server-side label
// selector (src/kube/store.ts labelSelector). Needs the binaries built by test/peer/kube/setup.sh;
// fails (never skips) without them.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as k8s from '@kubernetes/client-node';
import { startKube, type KubeEnv } from '../../env/kube.ts';
import { KubeStore } from '../../../src/kube/store.ts';
import type { Logger } from '../../../src/kube/http.ts';
import type { ChangeType, ResourceKind } from '../../../src/controller/ports.ts';

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
});
