// deploy/ on a real kube-apiserver + etcd (test/env/kube.ts):
//  - deploy/crds is byte-for-byte crds/ (kustomize cannot reach outside deploy/, so they are copies);
//  - every object `kubectl kustomize` renders for deploy/, deploy/base and each overlay is accepted
//    by `kubectl apply --server-side --dry-run=server` (the namespaces, and for
//    overlays/servicemonitor a minimal ServiceMonitor CRD, are created for real first: see below);
//  - the CRDs are accepted, install for real, and the examples validate against them;
//  - the operator's pod satisfies Pod Security "restricted" (admission, not a lint), and the
//    Deployment/Service/PDB/ServiceMonitor wiring is consistent (ports, labels, args);
//  - deploy/argocd/argocd-cm-patch.yaml merges into an existing argocd-cm with server-side apply.
//
// ServiceMonitor: the Prometheus Operator's CRD is not part of this cluster. The test installs a
// minimal monitoring.coreos.com/v1 ServiceMonitor CRD whose schema declares the fields vmmem's
// ServiceMonitor uses, typed as upstream (endpoints[].port/path string, scheme enum http|https,
// interval/scrapeTimeout duration pattern, selector, namespaceSelector) and nothing else, so the
// server-side dry-run (strict field validation) rejects a misspelt or mistyped field.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { parseArgs } from 'node:util';
import { parseAllDocuments } from 'yaml';
import { RUN_OPTIONS } from '../../../src/cli/run.ts';
import { LEADER_ELECTION_RULES, METRICS_AUTH_RULES, OPERATOR_RULES, SHARDING_RULES, SHARD_LABEL_RULES } from '../../../src/kube/rbac.ts';
import { MEMBER_LABEL, SHARDS_LABEL, SHARD_LABEL, shardOf } from '../../../src/kube/shards.ts';
import { startKube, type KubeEnv } from '../../env/kube.ts';
import {
  DEPLOY_DIR,
  KUBE_APISERVER_ARGS,
  REPO_ROOT,
  applyObjects,
  ensureNamespaces,
  kubectl,
  renderKustomization,
  toYaml,
  type KubeObject,
} from './rbac-helper.ts';

const KUSTOMIZATIONS = ['.', 'base', 'overlays/single-namespace', 'overlays/ha', 'overlays/servicemonitor', 'overlays/cluster-secrets', 'overlays/namespace-secrets', 'overlays/sharded'];
/** Components users combine in one kustomization (docs/getting-started.md); each set must build. */
const COMBINATIONS = [
  ['ha', 'servicemonitor', 'single-namespace'],
  ['ha', 'servicemonitor', 'monitoring', 'namespace-secrets'],
  ['single-namespace', 'monitoring'],
  ['ha', 'cluster-secrets'],
  ['sharded', 'servicemonitor', 'monitoring', 'namespace-secrets'],
];
const DURATION = '^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$';

const SERVICE_MONITOR_CRD = {
  apiVersion: 'apiextensions.k8s.io/v1',
  kind: 'CustomResourceDefinition',
  metadata: { name: 'servicemonitors.monitoring.coreos.com' },
  spec: {
    group: 'monitoring.coreos.com',
    scope: 'Namespaced',
    names: { kind: 'ServiceMonitor', listKind: 'ServiceMonitorList', plural: 'servicemonitors', singular: 'servicemonitor' },
    versions: [
      {
        name: 'v1',
        served: true,
        storage: true,
        schema: {
          openAPIV3Schema: {
            type: 'object',
            properties: {
              apiVersion: { type: 'string' },
              kind: { type: 'string' },
              metadata: { type: 'object' },
              spec: {
                type: 'object',
                required: ['selector'],
                properties: {
                  selector: {
                    type: 'object',
                    properties: {
                      matchLabels: { type: 'object', additionalProperties: { type: 'string' } },
                      matchExpressions: {
                        type: 'array',
                        items: { type: 'object', required: ['key', 'operator'], properties: { key: { type: 'string' }, operator: { type: 'string' }, values: { type: 'array', items: { type: 'string' } } } },
                      },
                    },
                  },
                  namespaceSelector: { type: 'object', properties: { any: { type: 'boolean' }, matchNames: { type: 'array', items: { type: 'string' } } } },
                  endpoints: {
                    type: 'array',
                    items: {
                      type: 'object',
                      properties: {
                        port: { type: 'string' },
                        path: { type: 'string' },
                        scheme: { type: 'string', enum: ['http', 'https'] },
                        bearerTokenFile: { type: 'string' },
                        tlsConfig: { type: 'object', properties: { insecureSkipVerify: { type: 'boolean' }, serverName: { type: 'string' } } },
                        interval: { type: 'string', pattern: DURATION },
                        scrapeTimeout: { type: 'string', pattern: DURATION },
                      },
                    },
                  },
                },
              },
            },
          },
        },
      },
    ],
  },
};

type Obj = KubeObject & { spec?: Record<string, unknown> };

interface Container {
  name: string;
  image: string;
  args: string[];
  ports: { name: string; containerPort: number }[];
  livenessProbe: { httpGet: { path: string; port: string | number } };
  readinessProbe: { httpGet: { path: string; port: string | number } };
  resources: { requests?: Record<string, string>; limits?: Record<string, string> };
  securityContext: Record<string, unknown> & { capabilities?: { drop?: string[]; add?: string[] }; seccompProfile?: { type: string } };
  volumeMounts: { name: string; mountPath: string }[];
}
interface PodSpec {
  serviceAccountName: string;
  securityContext: Record<string, unknown> & { seccompProfile?: { type: string } };
  containers: Container[];
  volumes: { name: string; emptyDir?: Record<string, unknown> }[];
  affinity?: { podAntiAffinity?: { preferredDuringSchedulingIgnoredDuringExecution?: { podAffinityTerm: { topologyKey: string; labelSelector: { matchLabels: Record<string, string> } } }[] } };
}
interface DeploymentSpec {
  replicas: number;
  strategy: { type: string; rollingUpdate?: { maxUnavailable?: number | string } };
  selector: { matchLabels: Record<string, string> };
  template: { metadata: { labels: Record<string, string> }; spec: PodSpec };
}

const find = (objs: Obj[], kind: string, name: string, namespace?: string) =>
  objs.find((o) => o.kind === kind && o.metadata.name === name && (namespace === undefined || o.metadata.namespace === namespace));
const must = (objs: Obj[], kind: string, name: string, namespace?: string): Obj => {
  const o = find(objs, kind, name, namespace);
  assert.ok(o, `${kind} ${namespace ? namespace + '/' : ''}${name} is rendered`);
  return o;
};
const deploymentOf = (objs: Obj[]) => must(objs, 'Deployment', 'vmmem', 'vmmem-system').spec as unknown as DeploymentSpec;
const selects = (selector: Record<string, string>, labels: Record<string, string>) => Object.entries(selector).every(([k, v]) => labels[k] === v);

void describe('deploy/ (kustomize) on a real API server', () => {
  let env: KubeEnv;
  const rendered = new Map<string, Obj[]>();

  const dryRun = async (objects: Obj[]) => {
    const r = await kubectl(
      ['apply', '--kubeconfig', env.kubeconfigPath, '--server-side', '--dry-run=server', '--field-manager=vmmem-deploy-test', '-f', '-'],
      toYaml(objects),
    );
    return r;
  };

  before(async () => {
    const t0 = Date.now();
    env = await startKube({ apiServerArgs: KUBE_APISERVER_ARGS });
    for (const k of KUSTOMIZATIONS) rendered.set(k, (await renderKustomization(k)).objects);
    // Namespaced objects need their namespace to exist, also for a dry-run: create the base's
    // Namespace for real (with its Pod Security labels), the example namespace `vms` and, for the
    // ServiceMonitor overlay, the minimal ServiceMonitor CRD.
    await applyObjects(env, rendered.get('base')!.filter((o) => o.kind === 'Namespace'));
    await ensureNamespaces(env, ['vms']);
    const dir = join(env.dir, 'servicemonitor-crd');
    mkdirSync(dir);
    writeFileSync(join(dir, 'crd.json'), JSON.stringify(SERVICE_MONITOR_CRD));
    await env.installCrds(dir);
    console.log(`# kube-apiserver ${env.binaries.kubernetesVersion} up, ${KUSTOMIZATIONS.length} kustomizations rendered in ${Date.now() - t0} ms`);
  });

  after(async () => {
    await env?.stop();
  });

  void it('deploy/crds holds exactly the generated crds/ (bash deploy/sync-crds.sh refreshes it)', async () => {
    const generated = readdirSync(join(REPO_ROOT, 'crds')).filter((f) => f.endsWith('.yaml')).sort();
    const copied = readdirSync(join(DEPLOY_DIR, 'crds')).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml').sort();
    assert.deepEqual(copied, generated, 'same files');
    for (const f of generated) {
      assert.equal(readFileSync(join(DEPLOY_DIR, 'crds', f), 'utf8'), readFileSync(join(REPO_ROOT, 'crds', f), 'utf8'), `deploy/crds/${f} differs from crds/${f}: run bash deploy/sync-crds.sh`);
    }
    const kz = (await renderKustomization('crds')).objects;
    assert.deepEqual(kz.map((o) => o.metadata.name).sort(), generated.map((f) => {
      const doc = parseAllDocuments(readFileSync(join(REPO_ROOT, 'crds', f), 'utf8'))[0]!.toJS() as Obj;
      return doc.metadata.name;
    }).sort(), 'deploy/crds/kustomization.yaml lists every CRD');
    // What the base renders is the generated CRD plus the base's labels, nothing else.
    for (const f of generated) {
      const want = parseAllDocuments(readFileSync(join(REPO_ROOT, 'crds', f), 'utf8'))[0]!.toJS() as Obj;
      const got = structuredClone(must(rendered.get('base')!, 'CustomResourceDefinition', want.metadata.name));
      delete got.metadata.labels;
      assert.deepEqual(got, want, `rendered ${want.metadata.name}`);
    }
  });

  void it('deploy/install.yaml is the current rendering of deploy/ (bash scripts/render-install.sh)', async () => {
    const { yaml } = await renderKustomization('.');
    const file = readFileSync(join(DEPLOY_DIR, 'install.yaml'), 'utf8');
    const body = file.split('\n').filter((l, i) => !(i < 2 && l.startsWith('#'))).join('\n');
    assert.equal(body, yaml, 'deploy/install.yaml is stale: run bash scripts/render-install.sh');
  });

  for (const k of KUSTOMIZATIONS) {
    void it(`${k === '.' ? 'deploy/' : `deploy/${k}`}: every object but the CRDs passes server-side dry-run`, async () => {
      const objs = rendered.get(k)!.filter((o) => o.kind !== 'CustomResourceDefinition');
      const r = await dryRun(objs);
      assert.equal(r.code, 0, `kubectl apply --dry-run=server failed:\n${r.stderr}\n${r.stdout}`);
      const lines = r.stdout.trim().split('\n');
      assert.equal(lines.length, objs.length, r.stdout);
      assert.ok(lines.every((l) => l.endsWith('(server dry run)')), r.stdout);
    });
  }

  void it('the CRDs pass server-side dry-run, install for real, and the examples validate against them', async () => {
    const crds = rendered.get('base')!.filter((o) => o.kind === 'CustomResourceDefinition');
    assert.equal(crds.length, 2);
    const r = await dryRun(crds);
    assert.equal(r.code, 0, `the API server refuses the CRDs:\n${r.stderr}\n${r.stdout}`);
    await applyObjects(env, crds);
    await env.installCrds(join(DEPLOY_DIR, 'crds')); // waits until Established and served
    const examples = readdirSync(join(REPO_ROOT, 'examples', 'hypervisors')).map((f) => join(REPO_ROOT, 'examples', 'hypervisors', f));
    const ex = await kubectl(['apply', '--kubeconfig', env.kubeconfigPath, '--server-side', '--dry-run=server', ...examples.flatMap((f) => ['-f', f])]);
    assert.equal(ex.code, 0, `examples/hypervisors against the deployed CRDs:\n${ex.stderr}\n${ex.stdout}`);
    // And the CEL rules are live: memory above maxMemory is refused at apply time.
    const bad = await kubectl(
      ['apply', '--kubeconfig', env.kubeconfigPath, '--server-side', '--dry-run=server', '-f', '-'],
      'apiVersion: vmmem.io/v1alpha1\nkind: VirtualMachineMemory\nmetadata: {name: bad, namespace: vms}\nspec:\n  hypervisorRef: {name: h}\n  vm: {name: bad}\n  maxMemory: 4Gi\n  memory: 8Gi\n',
    );
    assert.notEqual(bad.code, 0, 'memory > maxMemory accepted');
  });

  void it('the operator pod passes Pod Security "restricted" admission in vmmem-system (and a sloppy one does not)', async () => {
    const ns = (rendered.get('base')!.find((o) => o.kind === 'Namespace')!.metadata.labels ?? {}) as Record<string, string>;
    assert.equal(ns['pod-security.kubernetes.io/enforce'], 'restricted');
    for (const k of ['base', 'overlays/ha', 'overlays/single-namespace', 'overlays/sharded']) {
      const d = deploymentOf(rendered.get(k)!);
      const pod = { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'vmmem-psa', namespace: 'vmmem-system', labels: d.template.metadata.labels }, spec: d.template.spec };
      const ok = await env.request('POST', '/api/v1/namespaces/vmmem-system/pods?dryRun=All', pod);
      assert.equal(ok.status, 201, `${k}: ${ok.body}`);
    }
    // Control: the admission plugin is really enforcing.
    const sloppy = { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'sloppy', namespace: 'vmmem-system' }, spec: { containers: [{ name: 'c', image: 'busybox' }] } };
    const no = await env.request('POST', '/api/v1/namespaces/vmmem-system/pods?dryRun=All', sloppy);
    assert.equal(no.status, 403, no.body);
    assert.match((JSON.parse(no.body) as { message: string }).message, /violates PodSecurity "restricted/);
  });

  void it('base: one hardened replica with probes, resources, a writable /tmp, and a metrics Service', () => {
    const objs = rendered.get('base')!;
    const d = deploymentOf(objs);
    assert.equal(d.replicas, 1);
    assert.equal(d.strategy.type, 'Recreate', 'never two unelected operators at once');
    assert.ok(selects(d.selector.matchLabels, d.template.metadata.labels));
    const pod = d.template.spec;
    assert.equal(pod.serviceAccountName, 'vmmem');
    must(objs, 'ServiceAccount', 'vmmem', 'vmmem-system');
    assert.equal(pod.securityContext.runAsNonRoot, true);
    assert.equal(pod.securityContext.seccompProfile?.type, 'RuntimeDefault');
    assert.equal(pod.containers.length, 1);
    const c = pod.containers[0]!;
    // The tag docs/getting-started.md builds (`docker build -t vmmem:v0.1.0 .`), the chart's appVersion.
    assert.equal(c.image, 'vmmem:v0.1.0');
    assert.equal(c.args[0], 'run');
    assert.ok(c.args.includes('--metrics-bind-address=:8080') && c.args.includes('--health-probe-bind-address=:8081'), c.args.join(' '));
    assert.equal(c.securityContext.allowPrivilegeEscalation, false);
    assert.equal(c.securityContext.readOnlyRootFilesystem, true);
    assert.equal(c.securityContext.runAsNonRoot, true);
    assert.deepEqual(c.securityContext.capabilities, { drop: ['ALL'] });
    assert.equal(c.securityContext.seccompProfile?.type, 'RuntimeDefault');
    const port = (p: string | number) => (typeof p === 'number' ? p : c.ports.find((x) => x.name === p)?.containerPort);
    assert.equal(c.livenessProbe.httpGet.path, '/healthz');
    assert.equal(port(c.livenessProbe.httpGet.port), 8081);
    assert.equal(c.readinessProbe.httpGet.path, '/readyz');
    assert.equal(port(c.readinessProbe.httpGet.port), 8081);
    for (const r of ['cpu', 'memory']) {
      assert.ok(c.resources.requests?.[r], `requests.${r}`);
      assert.ok(c.resources.limits?.[r], `limits.${r}`);
    }
    const tmp = c.volumeMounts.find((m) => m.mountPath === '/tmp');
    assert.ok(tmp, '/tmp is mounted');
    assert.ok(pod.volumes.find((v) => v.name === tmp.name)?.emptyDir, '/tmp is an emptyDir');
    const svc = must(objs, 'Service', 'vmmem-metrics', 'vmmem-system').spec as { selector: Record<string, string>; ports: { name: string; port: number; targetPort: string | number }[] };
    assert.ok(selects(svc.selector, d.template.metadata.labels), 'the Service selects the operator pod');
    assert.equal(port(svc.ports[0]!.targetPort), 8080);
    assert.equal(svc.ports[0]!.name, 'metrics');
  });

  void it('base RBAC: no wildcard, no write on the main resources, no Secret access, no example namespace', () => {
    const objs = rendered.get('base')!;
    type Rule = { apiGroups: string[]; resources: string[]; verbs: string[]; resourceNames?: string[] };
    const roles = objs.filter((o) => o.kind === 'Role' || o.kind === 'ClusterRole') as (Obj & { rules: Rule[] })[];
    const reader = must(objs, 'ClusterRole', 'vmmem-metrics-reader') as Obj & { rules: unknown };
    assert.deepEqual(reader.rules, [{ nonResourceURLs: ['/metrics'], verbs: ['get'] }], 'scrapers: get /metrics, nothing else');
    const metricsAuth = must(objs, 'ClusterRole', 'vmmem-metrics-auth') as Obj & { rules: Rule[] };
    assert.deepEqual(metricsAuth.rules, METRICS_AUTH_RULES, 'ClusterRole vmmem-metrics-auth = METRICS_AUTH_RULES');
    for (const r of roles.filter((x) => x !== reader)) {
      for (const rule of r.rules) {
        for (const f of [...rule.apiGroups, ...rule.resources, ...rule.verbs]) assert.notEqual(f, '*', `${r.kind} ${r.metadata.name}: wildcard`);
        if (rule.resources.some((x) => x === 'virtualmachinememories' || x === 'hypervisors')) assert.deepEqual([...rule.verbs].sort(), ['get', 'list', 'watch']);
        assert.ok(!rule.resources.includes('secrets'), `${r.kind} ${r.metadata.name}: the base grants no Secret access (components/namespace-secrets does)`);
      }
    }
    const namespaces = new Set(objs.map((o) => o.metadata.namespace).filter((n) => n !== undefined));
    assert.deepEqual([...namespaces], ['vmmem-system'], 'the base names no namespace but its own');
    const leases = must(objs, 'Role', 'vmmem-leader-election', 'vmmem-system') as Obj & { rules: Rule[] };
    assert.ok(leases.rules.every((r) => r.resources.join() === 'leases' && r.apiGroups.join() === 'coordination.k8s.io'));
    const withSecrets = rendered.get('overlays/namespace-secrets')!;
    const secretRole = must(withSecrets, 'Role', 'vmmem-secrets', 'vms') as Obj & { rules: Rule[] };
    assert.deepEqual(secretRole.rules, [{ apiGroups: [''], resources: ['secrets'], verbs: ['get'] }]);
    const bindings = objs.filter((o) => o.kind.endsWith('Binding')) as (Obj & { subjects: { kind: string; name: string; namespace: string }[] })[];
    for (const b of bindings) assert.deepEqual(b.subjects, [{ kind: 'ServiceAccount', name: 'vmmem', namespace: 'vmmem-system' }], `${b.kind} ${b.metadata.name}`);
  });

  void it('every Deployment args list (base and overlays) parses with the real `vmmem run` options', () => {
    for (const k of KUSTOMIZATIONS) {
      const [command, ...args] = deploymentOf(rendered.get(k)!).template.spec.containers[0]!.args;
      assert.equal(command, 'run', k);
      // strict: an unknown or misspelt flag throws, as `vmmem run` would exit 2 on it.
      assert.doesNotThrow(() => parseArgs({ args, options: RUN_OPTIONS, allowPositionals: false, strict: true }), `deploy/${k}: ${args.join(' ')}`);
    }
  });

  void it('deploy RBAC grants exactly the rules the Kubernetes adapter declares (src/kube/rbac.ts)', () => {
    type Rule = { apiGroups: string[]; resources: string[]; verbs: string[]; resourceNames?: string[] };
    // Flatten to "verb group/resource" so rule grouping does not matter.
    const flat = (rules: readonly Rule[]) => [...new Set(rules.flatMap((r) => r.apiGroups.flatMap((g) => r.resources.flatMap((res) => r.verbs.map((v) => `${v} ${g}/${res}`)))))].sort();
    const rulesOf = (objs: Obj[], kind: string, name: string, ns?: string) => (must(objs, kind, name, ns) as Obj & { rules: Rule[] }).rules;
    const secrets = OPERATOR_RULES.filter((r) => r.resources.includes('secrets'));
    const others = OPERATOR_RULES.filter((r) => !r.resources.includes('secrets'));
    const base = rendered.get('base')!;
    assert.deepEqual(flat(rulesOf(base, 'ClusterRole', 'vmmem')), flat(others), 'ClusterRole vmmem = OPERATOR_RULES without Secrets');
    assert.deepEqual(flat(rulesOf(rendered.get('overlays/namespace-secrets')!, 'Role', 'vmmem-secrets', 'vms')), flat(secrets), 'Secrets: the same rule, per namespace');
    // Leases: the same verbs; get/update narrowed to the Lease vmmem uses.
    const lease = rulesOf(base, 'Role', 'vmmem-leader-election', 'vmmem-system');
    assert.deepEqual(flat(lease), flat(LEADER_ELECTION_RULES));
    assert.ok(lease.filter((r) => r.verbs.some((v) => v !== 'create')).every((r) => r.resourceNames?.join() === 'vmmem-leader'));
    const single = rendered.get('overlays/single-namespace')!;
    assert.deepEqual(flat(rulesOf(single, 'Role', 'vmmem', 'vms')), flat(others), 'single-namespace Role = the ClusterRole rules');
    assert.deepEqual(flat(rulesOf(rendered.get('overlays/cluster-secrets')!, 'ClusterRole', 'vmmem-secrets')), flat(secrets));
    const sharded = rendered.get('overlays/sharded')!;
    assert.deepEqual(flat(rulesOf(sharded, 'Role', 'vmmem-shards', 'vmmem-system')), flat(SHARDING_RULES), 'sharded: Leases in vmmem-system only');
    assert.deepEqual(flat(rulesOf(sharded, 'ClusterRole', 'vmmem-shard-labels')), flat(SHARD_LABEL_RULES), 'sharded: patch (the shard labels), nothing else');
  });

  void it('overlays/single-namespace: Role-only, --namespace=vms, Secrets readable in vms only', () => {
    const objs = rendered.get('overlays/single-namespace')!;
    // Cluster-wide only what the secured metrics endpoint needs (TokenReview/SubjectAccessReview
    // create, cluster-scoped APIs) and the unbound reader role for scrapers.
    assert.deepEqual(objs.filter((o) => o.kind === 'ClusterRole' || o.kind === 'ClusterRoleBinding').map((o) => o.metadata.name).sort(), ['vmmem-metrics-auth', 'vmmem-metrics-auth', 'vmmem-metrics-reader']);
    must(objs, 'Role', 'vmmem', 'vms');
    must(objs, 'Role', 'vmmem-secrets', 'vms');
    must(objs, 'RoleBinding', 'vmmem-secrets', 'vms');
    must(objs, 'RoleBinding', 'vmmem', 'vms');
    assert.ok(deploymentOf(objs).template.spec.containers[0]!.args.includes('--namespace=vms'));
  });

  void it('overlays/ha: 2 replicas, leader election, PDB minAvailable 1, anti-affinity, rolling updates', () => {
    const objs = rendered.get('overlays/ha')!;
    const d = deploymentOf(objs);
    assert.equal(d.replicas, 2);
    assert.equal(d.strategy.type, 'RollingUpdate');
    assert.equal(d.strategy.rollingUpdate?.maxUnavailable, 0);
    const args = d.template.spec.containers[0]!.args;
    assert.ok(args.includes('--leader-elect'), args.join(' '));
    assert.ok(args.includes('--leader-election-namespace=$(POD_NAMESPACE)'), args.join(' '));
    const pdb = must(objs, 'PodDisruptionBudget', 'vmmem', 'vmmem-system').spec as { minAvailable: number; selector: { matchLabels: Record<string, string> } };
    assert.equal(pdb.minAvailable, 1);
    assert.ok(selects(pdb.selector.matchLabels, d.template.metadata.labels), 'the PDB selects the operator pods');
    const term = d.template.spec.affinity?.podAntiAffinity?.preferredDuringSchedulingIgnoredDuringExecution?.[0]?.podAffinityTerm;
    assert.equal(term?.topologyKey, 'kubernetes.io/hostname');
    assert.ok(selects(term.labelSelector.matchLabels, d.template.metadata.labels));
  });

  void it('overlays/servicemonitor: scrapes the metrics Service by its labels and port name', () => {
    const objs = rendered.get('overlays/servicemonitor')!;
    const sm = must(objs, 'ServiceMonitor', 'vmmem', 'vmmem-system').spec as { selector: { matchLabels: Record<string, string> }; namespaceSelector: { matchNames: string[] }; endpoints: { port: string; path: string }[] };
    const svc = must(objs, 'Service', 'vmmem-metrics', 'vmmem-system') as Obj & { spec: { ports: { name: string }[] } };
    assert.ok(selects(sm.selector.matchLabels, svc.metadata.labels ?? {}), 'the ServiceMonitor selects vmmem-metrics');
    assert.deepEqual(sm.namespaceSelector.matchNames, ['vmmem-system']);
    assert.ok(svc.spec.ports.some((p) => p.name === sm.endpoints[0]!.port));
    assert.equal(sm.endpoints[0]!.path, '/metrics');
    // The operator serves HTTPS and authorizes the token (--metrics-secure): scrape with both.
    const ep = sm.endpoints[0] as unknown as { scheme: string; bearerTokenFile: string; tlsConfig: { insecureSkipVerify: boolean } };
    assert.equal(ep.scheme, 'https');
    assert.equal(ep.bearerTokenFile, '/var/run/secrets/kubernetes.io/serviceaccount/token');
    assert.equal(ep.tlsConfig.insecureSkipVerify, true, 'the default certificate is self-signed');
    assert.ok(deploymentOf(objs).template.spec.containers[0]!.args.includes('--metrics-secure=true'));
  });

  void it('overlays/sharded: 3 replicas with --shards=12, rolling updates, PDB maxUnavailable 1; refused next to components/ha', async () => {
    const objs = rendered.get('overlays/sharded')!;
    const d = deploymentOf(objs);
    assert.equal(d.replicas, 3);
    assert.equal(d.strategy.type, 'RollingUpdate');
    assert.equal(d.strategy.rollingUpdate?.maxUnavailable, 0, 'a new replica joins before an old one hands its shards over');
    const args = d.template.spec.containers[0]!.args;
    assert.ok(args.includes('--shards=12') && args.includes('--leader-election-namespace=$(POD_NAMESPACE)'), args.join(' '));
    assert.ok(!args.includes('--leader-elect'), '--shards and --leader-elect exclude each other');
    const pdb = must(objs, 'PodDisruptionBudget', 'vmmem', 'vmmem-system').spec as { maxUnavailable: number; selector: { matchLabels: Record<string, string> } };
    assert.equal(pdb.maxUnavailable, 1);
    assert.ok(selects(pdb.selector.matchLabels, d.template.metadata.labels), 'the PDB selects the operator pods');
    const bindings = objs.filter((o) => o.metadata.name.startsWith('vmmem-shard')) as (Obj & { subjects?: unknown })[];
    assert.deepEqual(bindings.map((o) => o.kind).sort(), ['ClusterRole', 'ClusterRoleBinding', 'Role', 'RoleBinding']);
    for (const b of bindings.filter((o) => o.kind.endsWith('Binding'))) assert.deepEqual(b.subjects, [{ kind: 'ServiceAccount', name: 'vmmem', namespace: 'vmmem-system' }]);
    // ha + sharded would run --leader-elect with --shards (vmmem exits 2): kustomize refuses the pair.
    const dir = join(env.dir, 'combo-ha-sharded');
    mkdirSync(dir);
    writeFileSync(join(dir, 'kustomization.yaml'), `resources:\n  - ${relative(dir, join(DEPLOY_DIR, 'base'))}\ncomponents:\n  - ${relative(dir, join(DEPLOY_DIR, 'components', 'ha'))}\n  - ${relative(dir, join(DEPLOY_DIR, 'components', 'sharded'))}\n`);
    const r = await kubectl(['kustomize', dir]);
    assert.notEqual(r.code, 0, 'ha + sharded rendered');
    assert.match(r.stderr, /PodDisruptionBudget.*vmmem/, r.stderr);
  });

  void it('overlays/cluster-secrets: a ClusterRole with get on Secrets replaces the per-namespace Role', () => {
    const objs = rendered.get('overlays/cluster-secrets')!;
    const cr = must(objs, 'ClusterRole', 'vmmem-secrets') as Obj & { rules: unknown };
    assert.deepEqual(cr.rules, [{ apiGroups: [''], resources: ['secrets'], verbs: ['get'] }]);
    must(objs, 'ClusterRoleBinding', 'vmmem-secrets');
    assert.equal(find(objs, 'Role', 'vmmem-secrets', 'vms'), undefined);
    // The base itself grants nothing on Secrets.
    assert.equal(find(rendered.get('base')!, 'ClusterRole', 'vmmem-secrets'), undefined);
  });

  void it('components combine in one kustomization (HA + ServiceMonitor + single-namespace, ...) and pass server-side dry-run', async () => {
    for (const set of COMBINATIONS) {
      const dir = join(env.dir, `combo-${set.join('-')}`);
      mkdirSync(dir);
      // What a user writes next to a checkout: the base plus components (kustomize wants relative paths).
      const components = set.map((c) => `  - ${relative(dir, join(DEPLOY_DIR, 'components', c))}`).join('\n');
      writeFileSync(join(dir, 'kustomization.yaml'), `resources:\n  - ${relative(dir, join(DEPLOY_DIR, 'base'))}\ncomponents:\n${components}\n`);
      const objs = (await renderKustomization(dir)).objects as Obj[];
      const ids = objs.map((o) => `${o.kind} ${o.metadata.namespace ?? ''}/${o.metadata.name}`);
      assert.equal(new Set(ids).size, ids.length, `${set.join(' + ')}: duplicate objects ${ids.join(', ')}`);
      const d = deploymentOf(objs);
      const args = d.template.spec.containers[0]!.args;
      if (set.includes('ha')) assert.ok(d.replicas === 2 && args.includes('--leader-elect'), `${set.join(' + ')}: ${args.join(' ')}`);
      if (set.includes('single-namespace')) {
        assert.ok(args.includes('--namespace=vms'), args.join(' '));
        assert.equal(find(objs, 'ClusterRole', 'vmmem'), undefined);
      }
      if (set.includes('servicemonitor')) must(objs, 'ServiceMonitor', 'vmmem', 'vmmem-system');
      if (set.includes('monitoring')) must(objs, 'PrometheusRule', 'vmmem', 'vmmem-system');
      if (set.includes('ha')) must(objs, 'PodDisruptionBudget', 'vmmem', 'vmmem-system');
      if (set.includes('sharded')) assert.ok(d.replicas === 3 && args.includes('--shards=12') && !args.includes('--leader-elect'), `${set.join(' + ')}: ${args.join(' ')}`);
      // PrometheusRule needs the Prometheus Operator's CRD, which this cluster lacks (the minimal
      // ServiceMonitor one above is installed): dry-run the rest.
      const rest = objs.filter((o) => o.kind !== 'CustomResourceDefinition' && o.kind !== 'PrometheusRule');
      const r = await dryRun(rest);
      assert.equal(r.code, 0, `${set.join(' + ')}: kubectl apply --dry-run=server failed:\n${r.stderr}\n${r.stdout}`);
    }
  });

  void it('deploy/argocd/argocd-cm-patch.yaml works as a kustomize patch on an Argo CD install (argocd-cm without namespace)', async () => {
    const dir = join(env.dir, 'argocd-kustomize');
    mkdirSync(dir);
    // argocd-cm as upstream install.yaml ships it: no namespace (the user's kustomization sets one).
    writeFileSync(join(dir, 'install.yaml'), 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: argocd-cm\ndata:\n  url: https://argocd.example.com\n');
    writeFileSync(join(dir, 'argocd-cm-patch.yaml'), readFileSync(join(DEPLOY_DIR, 'argocd', 'argocd-cm-patch.yaml')));
    writeFileSync(join(dir, 'kustomization.yaml'), 'namespace: argocd\nresources: [install.yaml]\npatches:\n  - path: argocd-cm-patch.yaml\n    target: {kind: ConfigMap, name: argocd-cm}\n');
    const [cm] = (await renderKustomization(dir)).objects as (Obj & { data: Record<string, string> })[];
    const script = readFileSync(join(DEPLOY_DIR, 'argocd', 'health.lua'), 'utf8');
    assert.equal(cm!.metadata.namespace, 'argocd');
    assert.equal(cm!.data.url, 'https://argocd.example.com');
    assert.equal(cm!.data['resource.customizations.health.vmmem.io_VirtualMachineMemory'], script);
    assert.equal(cm!.data['resource.customizations.health.vmmem.io_Hypervisor'], script);
  });

  void it('deploy/argocd/argocd-cm-patch.yaml merges into an existing argocd-cm by server-side apply', async () => {
    await ensureNamespaces(env, ['argocd']);
    // argocd-cm as an Argo CD install leaves it (another field manager, other keys).
    const existing = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'argocd-cm', namespace: 'argocd' }, data: { url: 'https://argocd.example.com', 'resource.customizations.health.apps_Deployment': 'hs = {}\nreturn hs\n' } };
    const created = await env.request('POST', '/api/v1/namespaces/argocd/configmaps?fieldManager=argocd-install', existing);
    assert.equal(created.status, 201, created.body);
    const r = await kubectl(['apply', '--kubeconfig', env.kubeconfigPath, '--server-side', '--field-manager=vmmem-health', '-f', join(DEPLOY_DIR, 'argocd', 'argocd-cm-patch.yaml')]);
    assert.equal(r.code, 0, r.stderr);
    const cm = JSON.parse((await env.request('GET', '/api/v1/namespaces/argocd/configmaps/argocd-cm')).body) as { data: Record<string, string> };
    const script = readFileSync(join(DEPLOY_DIR, 'argocd', 'health.lua'), 'utf8');
    assert.equal(cm.data.url, existing.data.url, 'existing keys stay');
    assert.equal(cm.data['resource.customizations.health.apps_Deployment'], existing.data['resource.customizations.health.apps_Deployment']);
    assert.equal(cm.data['resource.customizations.health.vmmem.io_VirtualMachineMemory'], script);
    assert.equal(cm.data['resource.customizations.health.vmmem.io_Hypervisor'], script);
  });

  void it('overlays/sharded installed: the operator as the vmmem ServiceAccount, bound to exactly this RBAC, runs the Deployment\'s args and reconciles', async () => {
    // The CRDs are installed by the CRD test above. Everything else but the Deployment (no kubelet
    // here) is applied for real; its container's args run as a process with the ServiceAccount's identity.
    const objs = rendered.get('overlays/sharded')!;
    await applyObjects(env, objs.filter((o) => !['CustomResourceDefinition', 'Namespace', 'Deployment'].includes(o.kind)));
    const sa = await env.userKubeConfig('system:serviceaccount:vmmem-system:vmmem', ['system:serviceaccounts', 'system:serviceaccounts:vmmem-system', 'system:authenticated']);
    const args = deploymentOf(objs).template.spec.containers[0]!.args.map((a) =>
      a.startsWith('--metrics-bind-address=') ? '--metrics-bind-address=127.0.0.1:0' : a.startsWith('--health-probe-bind-address=') ? '--health-probe-bind-address=127.0.0.1:0' : a.replace('$(POD_NAMESPACE)', 'vmmem-system'),
    );
    const hv = await env.request('POST', '/apis/vmmem.io/v1alpha1/namespaces/vms/hypervisors', { apiVersion: 'vmmem.io/v1alpha1', kind: 'Hypervisor', metadata: { name: 'kvm' }, spec: { uri: 'sim:///examples/sim/kvm.yaml' } });
    assert.equal(hv.status, 201, hv.body);
    const vmm = await env.request('POST', '/apis/vmmem.io/v1alpha1/namespaces/vms/virtualmachinememories', {
      apiVersion: 'vmmem.io/v1alpha1', kind: 'VirtualMachineMemory', metadata: { name: 'web-01' },
      spec: { hypervisorRef: { name: 'kvm' }, vm: { name: 'web-01' }, maxMemory: '4Gi', memory: '3Gi' },
    });
    assert.equal(vmm.status, 201, vmm.body);
    // sim:// Hypervisors need the admin's opt-in in cluster mode (docs/security.md).
    const child = spawn(join(REPO_ROOT, 'bin', 'vmmem'), [args[0]!, '--kubeconfig', sa.kubeconfigPath, ...args.slice(1), '--allow-sim-hypervisors'], {
      cwd: REPO_ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, POD_NAMESPACE: 'vmmem-system', POD_NAME: 'vmmem-sharded-0' },
    });
    let logs = '';
    child.stdout.on('data', (d: Buffer) => (logs += d.toString()));
    child.stderr.on('data', (d: Buffer) => (logs += d.toString()));
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    type Labelled = { metadata: { labels?: Record<string, string> }; status?: { shard?: number; shardOwner?: string; conditions?: { type: string; status: string }[] } };
    const get = async (path: string) => JSON.parse((await env.request('GET', path)).body) as Labelled;
    const shard = String(shardOf('vms', 'kvm', 12));
    try {
      const deadline = Date.now() + 60_000;
      for (;;) {
        const v = await get('/apis/vmmem.io/v1alpha1/namespaces/vms/virtualmachinememories/web-01');
        const h = await get('/apis/vmmem.io/v1alpha1/namespaces/vms/hypervisors/kvm');
        if (v.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') && h.status?.shardOwner) {
          assert.deepEqual([v.metadata.labels?.[SHARD_LABEL], v.metadata.labels?.[SHARDS_LABEL]], [shard, '12'], 'the VMM carries its Hypervisor\'s shard');
          assert.deepEqual([h.metadata.labels?.[SHARD_LABEL], h.metadata.labels?.[SHARDS_LABEL]], [shard, '12']);
          assert.equal(h.status.shard, Number(shard));
          assert.match(h.status.shardOwner, /^vmmem-sharded-0-/, 'the identity is the pod name plus a random suffix');
          const lease = JSON.parse((await env.request('GET', `/apis/coordination.k8s.io/v1/namespaces/vmmem-system/leases/vmmem-shard-${shard}`)).body) as { spec: { holderIdentity?: string } };
          assert.equal(lease.spec.holderIdentity, h.status.shardOwner);
          break;
        }
        if (Date.now() > deadline) assert.fail(`web-01 not Ready with its shard in 60 s:\n${JSON.stringify({ v, h })}\n--- operator log ---\n${logs.slice(-4000)}`);
        await new Promise((r) => setTimeout(r, 250));
      }
      assert.doesNotMatch(logs, /forbidden/i, 'no permission was missing');
      // SIGTERM: hand every shard over (Lease cleared) and delete our member Lease: update and delete allowed.
      child.kill('SIGTERM');
      assert.equal(await exited, 0, logs.slice(-2000));
      const leases = JSON.parse((await env.request('GET', '/apis/coordination.k8s.io/v1/namespaces/vmmem-system/leases')).body) as { items: { metadata: { name: string; labels?: Record<string, string> }; spec: { holderIdentity?: string } }[] };
      assert.deepEqual(leases.items.filter((l) => l.metadata.labels?.[MEMBER_LABEL]).map((l) => l.metadata.name), [], 'member Lease deleted');
      assert.deepEqual(leases.items.filter((l) => l.metadata.name.startsWith('vmmem-shard-') && l.spec.holderIdentity).map((l) => l.metadata.name), [], 'every shard Lease released');
      assert.doesNotMatch(logs, /forbidden/i, 'no permission was missing on shutdown');
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });
});
