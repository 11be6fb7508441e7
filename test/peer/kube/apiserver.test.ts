// Smoke test of the real Kubernetes test environment (test/env/kube.ts): a real kube-apiserver on a
// real etcd. Needs the binaries built by test/peer/kube/setup.sh; fails (never skips) without them.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as k8s from '@kubernetes/client-node';
import { startKube, describe as describeError, type KubeEnv } from '../../env/kube.ts';

const GROUP = 'smoke.vmmem.dev';

const CRD_YAML = `
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: ranges.${GROUP}
spec:
  group: ${GROUP}
  scope: Namespaced
  names: { plural: ranges, singular: range, kind: Range, listKind: RangeList }
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              required: [min, max]
              properties:
                min: { type: integer }
                max: { type: integer }
              x-kubernetes-validations:
                - rule: self.min <= self.max
                  message: spec.min must not exceed spec.max
---
# Not a CRD: installCrds ignores other kinds.
apiVersion: v1
kind: ConfigMap
metadata: { name: ignored }
`;

/** The ApiException a promise rejects with (fails if it resolves). */
async function apiError(p: Promise<unknown>): Promise<k8s.ApiException<unknown>> {
  try {
    await p;
  } catch (e) {
    if (e instanceof k8s.ApiException) return e;
    throw e;
  }
  assert.fail('expected the API server to reject the request');
}

void describe('kube test environment (real kube-apiserver + etcd)', () => {
  let env: KubeEnv;
  let core: k8s.CoreV1Api;
  const ns = 'smoke';

  before(async () => {
    const t0 = Date.now();
    env = await startKube();
    console.log(`# kube-apiserver ${env.binaries.kubernetesVersion} + etcd ${env.binaries.etcdVersion} ready at ${env.server} in ${Date.now() - t0} ms`);
    core = env.kubeConfig.makeApiClient(k8s.CoreV1Api);
  });

  after(async () => {
    await env?.stop();
  });

  void it('serves the API to the admin identity, client cert and token alike', async () => {
    const version = JSON.parse((await env.request('GET', '/version')).body) as { gitVersion: string };
    assert.equal(version.gitVersion, env.binaries.kubernetesVersion);
    const nss = await core.listNamespace();
    assert.ok(nss.items.some((n) => n.metadata?.name === 'default'), 'the default namespace exists');

    const kc = new k8s.KubeConfig();
    kc.loadFromOptions({
      clusters: [{ name: 'c', server: env.server, caFile: env.certs.caCert }],
      users: [{ name: 'u', token: env.adminToken }],
      contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
      currentContext: 'x',
    });
    const review = await kc.makeApiClient(k8s.AuthenticationV1Api).createSelfSubjectReview({ body: {} });
    assert.equal(review.status?.userInfo?.username, 'vmmem-admin-token');
    assert.ok(review.status?.userInfo?.groups?.includes('system:masters'));
  });

  void it('creates a namespace and a ConfigMap that survive a kube-apiserver restart (data in etcd)', async () => {
    await core.createNamespace({ body: { metadata: { name: ns } } });
    await core.createNamespacedConfigMap({
      namespace: ns,
      body: { metadata: { name: 'before-restart' }, data: { answer: '42' } },
    });

    await env.restartApiServer();

    // The same client (same kubeconfig, same port) works after the restart, and the data is there.
    const cm = await core.readNamespacedConfigMap({ name: 'before-restart', namespace: ns });
    assert.deepEqual(cm.data, { answer: '42' });
    await core.createNamespacedConfigMap({
      namespace: ns,
      body: { metadata: { name: 'after-restart' }, data: { ok: 'yes' } },
    });
    const list = await core.listNamespacedConfigMap({ namespace: ns });
    const names = list.items.map((c) => c.metadata?.name);
    assert.ok(names.includes('before-restart') && names.includes('after-restart'), `got ${names.join(',')}`);
  });

  void it('keeps serving after etcd is killed and restarted', async () => {
    await env.restartEtcd({ signal: 'SIGKILL' }); // a crash: etcd's data dir survives
    // The API server's etcd client reconnects; allow it a few seconds.
    const deadline = Date.now() + 30_000;
    for (;;) {
      try {
        const cm = await core.readNamespacedConfigMap({ name: 'before-restart', namespace: ns });
        assert.deepEqual(cm.data, { answer: '42' });
        break;
      } catch (e) {
        if (Date.now() > deadline) throw e;
        await new Promise((r) => setTimeout(r, 200));
      }
    }
  });

  void it('enforces RBAC for non-admin identities', async () => {
    const alice = await env.userKubeConfig('alice', ['vmmem:testers']);
    const aliceCore = alice.kubeConfig.makeApiClient(k8s.CoreV1Api);
    const denied = await apiError(aliceCore.listNamespacedConfigMap({ namespace: ns }));
    assert.equal(denied.code, 403, describeError(denied));

    // (The built-in `view` ClusterRole is aggregated by kube-controller-manager, which does not run
    // here, so it has no rules: grant with a Role of our own.)
    const rbac = env.kubeConfig.makeApiClient(k8s.RbacAuthorizationV1Api);
    await rbac.createNamespacedRole({
      namespace: ns,
      body: {
        metadata: { name: 'configmap-reader' },
        rules: [{ apiGroups: [''], resources: ['configmaps'], verbs: ['get', 'list', 'watch'] }],
      },
    });
    await rbac.createNamespacedRoleBinding({
      namespace: ns,
      body: {
        metadata: { name: 'testers-read-configmaps' },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'configmap-reader' },
        subjects: [{ kind: 'Group', name: 'vmmem:testers', apiGroup: 'rbac.authorization.k8s.io' }],
      },
    });
    const deadline = Date.now() + 10_000; // the RBAC authorizer's informer catches up quickly
    for (;;) {
      try {
        const list = await aliceCore.listNamespacedConfigMap({ namespace: ns });
        assert.ok(list.items.length >= 2);
        break;
      } catch (e) {
        if (Date.now() > deadline) throw e;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    const stillDenied = await apiError(aliceCore.deleteNamespacedConfigMap({ name: 'before-restart', namespace: ns }));
    assert.equal(stillDenied.code, 403);
  });

  void it('installs a CRD and enforces its CEL validation rule', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'vmmem-crd-'));
    try {
      await writeFile(join(dir, 'range.yaml'), CRD_YAML);
      assert.deepEqual(await env.installCrds(dir), [`ranges.${GROUP}`]);
      // Idempotent: installing again replaces the existing CRD.
      assert.deepEqual(await env.installCrds(join(dir, 'range.yaml')), [`ranges.${GROUP}`]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }

    const custom = env.kubeConfig.makeApiClient(k8s.CustomObjectsApi);
    const range = (name: string, min: number, max: number) => ({
      apiVersion: `${GROUP}/v1`,
      kind: 'Range',
      metadata: { name },
      spec: { min, max },
    });
    const target = { group: GROUP, version: 'v1', namespace: ns, plural: 'ranges' };
    await custom.createNamespacedCustomObject({ ...target, body: range('good', 1, 2) });

    const rejected = await apiError(custom.createNamespacedCustomObject({ ...target, body: range('bad', 3, 2) }));
    assert.equal(rejected.code, 422, describeError(rejected));
    assert.match(describeError(rejected), /spec\.min must not exceed spec\.max/);

    const got = (await custom.getNamespacedCustomObject({ ...target, name: 'good' })) as { spec: unknown };
    assert.deepEqual(got.spec, { min: 1, max: 2 });
  });
});
