// charts/vmmem with the real Helm (built by test/peer/helm/setup.sh) and a real kube-apiserver:
//  - `helm lint --strict` passes; values.schema.json refuses bad values with the key named;
//  - the chart's crds/ are the generated crds/; the RBAC equals src/kube/rbac.ts and deploy/'s;
//    `helm template` renders the same hardened Deployment, Service, ServiceMonitor, PrometheusRule
//    and dashboard as deploy/base and its components (labels aside: Helm adds instance/chart);
//  - every rendered object passes server-side dry-run, the pod passes Pod Security "restricted";
//  - `helm package` makes an OCI-ready .tgz that renders the same;
//  - installed (`helm template | kubectl apply --server-side`), the operator running as exactly the
//    chart's ServiceAccount, with the Deployment's own args, reconciles a VMM on the sim.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { parseAllDocuments, parse } from 'yaml';
import { RUN_OPTIONS } from '../../../src/cli/run.ts';
import { LEADER_ELECTION_RULES, METRICS_AUTH_RULES, METRICS_READER_RULE, OPERATOR_RULES, SHARDING_RULES, SHARD_LABEL_RULES } from '../../../src/kube/rbac.ts';
import { startKube, type KubeEnv, type KubeUser } from '../../env/kube.ts';
import { KUBE_APISERVER_ARGS, REPO_ROOT, applyObjects, ensureNamespaces, kubectl, renderKustomization, toYaml, type KubeObject } from '../kube/rbac-helper.ts';

const execFileP = promisify(execFile);
const HELM_VERSION = 'v4.3.2'; // test/peer/helm/setup.sh pins the same
const HELM = process.env.HELM ?? join(process.env.VMMEM_CACHE ?? join(process.env.HOME ?? '/root', '.cache', 'vmmem'), 'helm', HELM_VERSION, 'helm');
const CHART = join(REPO_ROOT, 'charts', 'vmmem');
const NS = 'vmmem-system';

type Obj = KubeObject & { spec?: Record<string, unknown>; rules?: unknown; data?: Record<string, string>; roleRef?: unknown; subjects?: unknown };

async function helm(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await execFileP(HELM, args, { maxBuffer: 64 << 20 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const err = e as { code?: number; stdout?: string; stderr?: string; message: string };
    return { code: typeof err.code === 'number' ? err.code : 1, stdout: err.stdout ?? '', stderr: err.stderr ?? err.message };
  }
}

async function template(set: string[] = [], chart = CHART, release = 'vmmem', namespace = NS): Promise<Obj[]> {
  const r = await helm(['template', release, chart, '--namespace', namespace, ...set.flatMap((s) => ['--set', s])]);
  assert.equal(r.code, 0, `helm template ${set.join(' ')}: ${r.stderr}`);
  return parseAllDocuments(r.stdout).map((d) => d.toJS() as Obj | null).filter((o): o is Obj => o !== null);
}

const find = (objs: Obj[], kind: string, name?: string) => objs.find((o) => o.kind === kind && (name === undefined || o.metadata.name === name));
const must = (objs: Obj[], kind: string, name?: string): Obj => {
  const o = find(objs, kind, name);
  assert.ok(o, `${kind} ${name ?? ''} is rendered`);
  return o;
};
/** An object without the labels Helm and kustomize put on differently, and without comments' effects. */
function comparable(o: Obj): Obj {
  const c = structuredClone(o);
  delete c.metadata.labels;
  delete (c.metadata as { annotations?: unknown }).annotations;
  const spec = c.spec as { selector?: unknown; template?: { metadata?: { labels?: unknown } }; [k: string]: unknown } | undefined;
  if (c.kind === 'Deployment' && spec) {
    delete spec.selector;
    delete spec.template?.metadata?.labels;
    const pod = (spec.template as { spec: { containers: { image?: string }[]; affinity?: unknown } }).spec;
    for (const ctr of pod.containers) delete ctr.image;
    delete pod.affinity;
  }
  if ((c.kind === 'Service' || c.kind === 'PodDisruptionBudget') && spec) delete spec.selector;
  if (c.kind === 'ServiceMonitor' && spec) delete spec.selector;
  return c;
}
const sortRules = (rules: unknown) =>
  (rules as { apiGroups: string[]; resources: string[]; verbs: string[]; resourceNames?: string[] }[]).map((r) =>
    JSON.stringify({ apiGroups: r.apiGroups, resources: r.resources, ...(r.resourceNames ? { resourceNames: r.resourceNames } : {}), verbs: [...r.verbs].sort() }),
  ).sort();

void describe('charts/vmmem (Helm) against deploy/ and a real API server', () => {
  let env: KubeEnv;
  let base: Obj[];
  let chart: Obj[];

  before(async () => {
    assert.ok(existsSync(HELM), `helm ${HELM_VERSION} missing at ${HELM}: run bash test/peer/helm/setup.sh`);
    env = await startKube({ apiServerArgs: KUBE_APISERVER_ARGS });
    base = (await renderKustomization('base')).objects as Obj[];
    chart = await template();
  });
  after(async () => {
    await env?.stop();
  });

  it(`helm ${HELM_VERSION} lint --strict passes, with every toggle on too`, async () => {
    const v = await helm(['version', '--short']);
    assert.match(v.stdout, new RegExp(`^${HELM_VERSION.replace(/\./g, '\\.')}`), v.stdout + v.stderr);
    for (const set of [[], ['replicas=2', 'watchNamespace=vms', 'metrics.serviceMonitor.enabled=true', 'metrics.prometheusRule.enabled=true', 'metrics.dashboard.enabled=true', 'clusterSecrets=true'], ['replicas=3', 'sharding.enabled=true', 'watchNamespace=vms']]) {
      const r = await helm(['lint', '--strict', CHART, ...set.flatMap((s) => ['--set', s])]);
      assert.equal(r.code, 0, `helm lint --strict ${set.join(' ')}:\n${r.stdout}\n${r.stderr}`);
      assert.match(r.stdout, /1 chart\(s\) linted, 0 chart\(s\) failed/);
    }
  });

  it('values.schema.json refuses bad values, naming the key', async () => {
    for (const [set, want] of [
      ['replicas=0', /\/replicas/],
      ['logLevel=loud', /\/logLevel/],
      ['watchNamespace=Not_A_Namespace', /\/watchNamespace/],
      ['image.digest=latest', /\/image\/digest/],
      ['metrics.serviceMonitor.interval=often', /\/metrics\/serviceMonitor\/interval/],
      ['sharding.shards=0', /\/sharding\/shards/],
      ['metrics.secure=maybe', /\/metrics\/secure/],
      ['metrics.certSecret=Not/A/Name', /\/metrics\/certSecret/],
      ['typo=1', /additional properties 'typo' not allowed|typo/],
    ] as const) {
      const r = await helm(['template', 'vmmem', CHART, '--set', set]);
      assert.notEqual(r.code, 0, `${set} accepted`);
      assert.match(r.stderr, want, `${set}: ${r.stderr}`);
    }
  });

  it("the chart's crds/ are the generated crds/, byte for byte (npm run generate writes both)", () => {
    for (const f of ['vmmem.io_virtualmachinememories.yaml', 'vmmem.io_hypervisors.yaml']) {
      assert.equal(readFileSync(join(CHART, 'crds', f), 'utf8'), readFileSync(join(REPO_ROOT, 'crds', f), 'utf8'), `charts/vmmem/crds/${f}: run npm run generate`);
    }
  });

  it('RBAC: the rules are exactly src/kube/rbac.ts and deploy/base', () => {
    const operatorRules = OPERATOR_RULES.filter((r) => !r.resources.includes('secrets'));
    assert.deepEqual(sortRules(must(chart, 'ClusterRole', 'vmmem').rules), sortRules(operatorRules));
    assert.deepEqual(sortRules(must(chart, 'ClusterRole', 'vmmem').rules), sortRules(must(base, 'ClusterRole', 'vmmem').rules));
    assert.deepEqual(must(chart, 'ClusterRoleBinding', 'vmmem').subjects, [{ kind: 'ServiceAccount', name: 'vmmem', namespace: NS }]);
    const le = must(chart, 'Role', 'vmmem-leader-election');
    assert.equal(le.metadata.namespace, NS);
    assert.deepEqual(sortRules(le.rules), sortRules(must(base, 'Role', 'vmmem-leader-election').rules));
    // The Lease rules grant what LEADER_ELECTION_RULES lists, get/update by name only.
    const verbs = (le.rules as { verbs: string[] }[]).flatMap((r) => r.verbs).sort();
    assert.deepEqual(verbs, [...LEADER_ELECTION_RULES[0]!.verbs].sort());
    // No Secret access by default; one Role per listed namespace; a ClusterRole only on request.
    assert.equal(chart.filter((o) => JSON.stringify(o.rules ?? '').includes('secrets')).length, 0);
    return Promise.all([
      template(['secretNamespaces={vms,team-a}']).then((objs) => {
        const roles = objs.filter((o) => o.kind === 'Role' && o.metadata.name === 'vmmem-secrets');
        assert.deepEqual(roles.map((r) => r.metadata.namespace).sort(), ['team-a', 'vms']);
        for (const r of roles) assert.deepEqual(r.rules, [{ apiGroups: [''], resources: ['secrets'], verbs: ['get'] }]);
      }),
      template(['watchNamespace=vms']).then(async (objs) => {
        // Single namespace: cluster-wide only the metrics auth (cluster-scoped review APIs) and the unbound reader role.
        const cluster = objs.filter((o) => o.kind === 'ClusterRole' || o.kind === 'ClusterRoleBinding').map((o) => `${o.kind} ${o.metadata.name}`);
        assert.deepEqual(cluster.sort(), ['ClusterRole vmmem-metrics-auth', 'ClusterRole vmmem-metrics-reader', 'ClusterRoleBinding vmmem-metrics-auth']);
        const single = (await renderKustomization('overlays/single-namespace')).objects as Obj[];
        const role = objs.find((o) => o.kind === 'Role' && o.metadata.name === 'vmmem');
        assert.equal(role?.metadata.namespace, 'vms');
        assert.deepEqual(sortRules(role?.rules), sortRules(must(single, 'Role', 'vmmem').rules));
        assert.ok(objs.some((o) => o.kind === 'Role' && o.metadata.name === 'vmmem-secrets' && o.metadata.namespace === 'vms'));
        const args = (must(objs, 'Deployment').spec as { template: { spec: { containers: { args: string[] }[] } } }).template.spec.containers[0]!.args;
        assert.ok(args.includes('--namespace=vms'), args.join(' '));
      }),
    ]).then(() => undefined);
  });

  it('metrics.secure (default): --metrics-secure=true and the metrics RBAC of src/kube/rbac.ts and deploy/base; off: none of it', async () => {
    const args = (d: Obj) => (d.spec as { template: { spec: { containers: { args: string[] }[] } } }).template.spec.containers[0]!.args;
    assert.ok(args(must(chart, 'Deployment')).includes('--metrics-secure=true'));
    assert.deepEqual(sortRules(must(chart, 'ClusterRole', 'vmmem-metrics-auth').rules), sortRules(METRICS_AUTH_RULES));
    assert.deepEqual(sortRules(must(chart, 'ClusterRole', 'vmmem-metrics-auth').rules), sortRules(must(base, 'ClusterRole', 'vmmem-metrics-auth').rules));
    const binding = must(chart, 'ClusterRoleBinding', 'vmmem-metrics-auth');
    assert.deepEqual(binding.subjects, [{ kind: 'ServiceAccount', name: 'vmmem', namespace: NS }]);
    assert.deepEqual(binding.roleRef, must(base, 'ClusterRoleBinding', 'vmmem-metrics-auth').roleRef);
    assert.deepEqual(must(chart, 'ClusterRole', 'vmmem-metrics-reader').rules, [METRICS_READER_RULE]);
    assert.deepEqual(must(chart, 'ClusterRole', 'vmmem-metrics-reader').rules, must(base, 'ClusterRole', 'vmmem-metrics-reader').rules);
    assert.equal(find(chart, 'ClusterRoleBinding', 'vmmem-metrics-reader'), undefined, 'nobody may scrape until the admin says who');
    const [bound, off, cert] = await Promise.all([
      template(['metrics.readerSubjects[0].kind=ServiceAccount', 'metrics.readerSubjects[0].name=prometheus-k8s', 'metrics.readerSubjects[0].namespace=monitoring']),
      template(['metrics.secure=false', 'metrics.serviceMonitor.enabled=true']),
      template(['metrics.certSecret=vmmem-metrics-tls']),
    ]);
    assert.deepEqual(must(bound, 'ClusterRoleBinding', 'vmmem-metrics-reader').subjects, [{ kind: 'ServiceAccount', name: 'prometheus-k8s', namespace: 'monitoring' }]);
    assert.ok(args(must(off, 'Deployment')).includes('--metrics-secure=false'));
    assert.equal(off.filter((o) => o.metadata.name.startsWith('vmmem-metrics-') && o.kind.startsWith('ClusterRole')).length, 0);
    assert.equal((must(off, 'ServiceMonitor').spec as { endpoints: { scheme: string }[] }).endpoints[0]!.scheme, 'http');
    const pod = (must(cert, 'Deployment').spec as { template: { spec: { containers: { args: string[]; volumeMounts: { name: string; mountPath: string }[] }[]; volumes: { name: string; secret?: { secretName: string } }[] } } }).template.spec;
    assert.ok(pod.containers[0]!.args.includes('--metrics-cert-dir=/etc/vmmem/metrics-tls'), pod.containers[0]!.args.join(' '));
    assert.ok(pod.containers[0]!.volumeMounts.some((m) => m.name === 'metrics-tls' && m.mountPath === '/etc/vmmem/metrics-tls'));
    assert.equal(pod.volumes.find((v) => v.name === 'metrics-tls')?.secret?.secretName, 'vmmem-metrics-tls');
  });

  it('the Deployment, Service and ServiceAccount equal deploy/base (hardened), labels aside', () => {
    for (const [kind, name] of [['Deployment', 'vmmem'], ['Service', 'vmmem-metrics'], ['ServiceAccount', 'vmmem']] as const) {
      assert.deepEqual(comparable(must(chart, kind, name)), comparable(must(base, kind, name)), `${kind} ${name}`);
    }
    const pod = (must(chart, 'Deployment').spec as { template: { spec: { containers: { image: string; securityContext: Record<string, unknown> }[] } } }).template.spec;
    assert.equal(pod.containers[0]!.image, 'vmmem:v0.1.0');
    assert.equal(pod.containers[0]!.securityContext.readOnlyRootFilesystem, true);
    // The selectors select the pod.
    const d = must(chart, 'Deployment').spec as { selector: { matchLabels: Record<string, string> }; template: { metadata: { labels: Record<string, string> } } };
    for (const [k, v] of Object.entries(d.selector.matchLabels)) assert.equal(d.template.metadata.labels[k], v);
    const svc = must(chart, 'Service').spec as { selector: Record<string, string> };
    for (const [k, v] of Object.entries(svc.selector)) assert.equal(d.template.metadata.labels[k], v);
  });

  it('replicas=2 renders what overlays/ha does: leader election, rolling updates, a PDB, anti-affinity', async () => {
    const objs = await template(['replicas=2']);
    const ha = (await renderKustomization('overlays/ha')).objects as Obj[];
    assert.deepEqual(comparable(must(objs, 'Deployment')), comparable(must(ha, 'Deployment')));
    assert.deepEqual(comparable(must(objs, 'PodDisruptionBudget')), comparable(must(ha, 'PodDisruptionBudget')));
    assert.ok((must(objs, 'Deployment').spec as { template: { spec: { affinity?: unknown } } }).template.spec.affinity);
  });

  it('sharding.enabled with replicas=3 renders what overlays/sharded does: --shards, no leader election, its RBAC and PDB', async () => {
    const objs = await template(['replicas=3', 'sharding.enabled=true']);
    const sharded = (await renderKustomization('overlays/sharded')).objects as Obj[];
    assert.deepEqual(comparable(must(objs, 'Deployment')), comparable(must(sharded, 'Deployment')));
    assert.deepEqual(comparable(must(objs, 'PodDisruptionBudget')), comparable(must(sharded, 'PodDisruptionBudget')));
    const args = (must(objs, 'Deployment').spec as { template: { spec: { containers: { args: string[] }[] } } }).template.spec.containers[0]!.args;
    assert.ok(!args.includes('--leader-elect'), '--shards and --leader-elect exclude each other');
    const shards = must(objs, 'Role', 'vmmem-shards');
    assert.equal(shards.metadata.namespace, NS, 'Leases in the release namespace only');
    assert.deepEqual(sortRules(shards.rules), sortRules(SHARDING_RULES));
    assert.deepEqual(sortRules(shards.rules), sortRules(must(sharded, 'Role', 'vmmem-shards').rules));
    assert.deepEqual(sortRules(must(objs, 'ClusterRole', 'vmmem-shard-labels').rules), sortRules(SHARD_LABEL_RULES));
    assert.deepEqual(sortRules(must(objs, 'ClusterRole', 'vmmem-shard-labels').rules), sortRules(must(sharded, 'ClusterRole', 'vmmem-shard-labels').rules));
    for (const b of ['RoleBinding', 'ClusterRoleBinding']) assert.deepEqual(must(objs, b, b === 'RoleBinding' ? 'vmmem-shards' : 'vmmem-shard-labels').subjects, [{ kind: 'ServiceAccount', name: 'vmmem', namespace: NS }]);
    // One watched namespace: the label rule is a Role there; cluster-wide only the metrics auth.
    const single = await template(['sharding.enabled=true', 'watchNamespace=vms']);
    const cluster = single.filter((o) => o.kind === 'ClusterRole' || o.kind === 'ClusterRoleBinding').map((o) => o.metadata.name);
    assert.deepEqual([...new Set(cluster)].sort(), ['vmmem-metrics-auth', 'vmmem-metrics-reader']);
    const labels = single.find((o) => o.kind === 'Role' && o.metadata.name === 'vmmem-shard-labels');
    assert.equal(labels?.metadata.namespace, 'vms');
    assert.deepEqual(sortRules(labels?.rules), sortRules(SHARD_LABEL_RULES));
    // Off by default.
    assert.equal(find(chart, 'Role', 'vmmem-shards'), undefined);
  });

  it('monitoring toggles render the ServiceMonitor, PrometheusRule and dashboard of deploy/', async () => {
    const objs = await template(['metrics.serviceMonitor.enabled=true', 'metrics.prometheusRule.enabled=true', 'metrics.dashboard.enabled=true']);
    const sm = (await renderKustomization('overlays/servicemonitor')).objects as Obj[];
    assert.deepEqual(comparable(must(objs, 'ServiceMonitor')), comparable(must(sm, 'ServiceMonitor')));
    const rule = parse(readFileSync(join(REPO_ROOT, 'deploy', 'components', 'monitoring', 'prometheusrule.yaml'), 'utf8')) as Obj;
    assert.deepEqual(must(objs, 'PrometheusRule').spec, rule.spec);
    const dash = readFileSync(join(REPO_ROOT, 'deploy', 'components', 'monitoring', 'vmmem-dashboard.json'), 'utf8');
    assert.deepEqual(JSON.parse(must(objs, 'ConfigMap', 'vmmem-dashboard').data!['vmmem-dashboard.json']!), JSON.parse(dash));
    // Off by default: the chart installs on clusters without the Prometheus Operator.
    for (const kind of ['ServiceMonitor', 'PrometheusRule', 'ConfigMap']) assert.equal(find(chart, kind), undefined, kind);
  });

  it('every rendered object passes server-side dry-run; the pod passes Pod Security "restricted"', async () => {
    await ensureNamespaces(env, [NS, 'vms', 'team-a']);
    await env.request('PATCH', `/api/v1/namespaces/${NS}`, { metadata: { labels: { 'pod-security.kubernetes.io/enforce': 'restricted' } } });
    await env.installCrds(join(CHART, 'crds'));
    for (const set of [[], ['replicas=2', 'secretNamespaces={vms,team-a}'], ['watchNamespace=vms'], ['replicas=3', 'sharding.enabled=true'], ['sharding.enabled=true', 'watchNamespace=vms']]) {
      const objs = await template(set);
      const r = await kubectl(['apply', '--kubeconfig', env.kubeconfigPath, '--server-side', '--dry-run=server', '--field-manager=vmmem-helm-test', '-f', '-'], toYaml(objs));
      assert.equal(r.code, 0, `${set.join(' ')}: ${r.stderr}\n${r.stdout}`);
      const d = must(objs, 'Deployment').spec as { template: { metadata: { labels: Record<string, string> }; spec: unknown } };
      const pod = { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'vmmem-psa', namespace: NS, labels: d.template.metadata.labels }, spec: d.template.spec };
      const ok = await env.request('POST', `/api/v1/namespaces/${NS}/pods?dryRun=All`, pod);
      assert.equal(ok.status, 201, `${set.join(' ')}: ${ok.body}`);
    }
  });

  it('helm package makes a chart archive that renders the same (OCI-ready: helm push oci://...)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vmmem-helm-'));
    try {
      const r = await helm(['package', CHART, '--destination', dir]);
      assert.equal(r.code, 0, r.stderr);
      const tgz = join(dir, 'vmmem-0.1.0.tgz');
      assert.ok(existsSync(tgz), r.stdout);
      assert.deepEqual(await template([], tgz), chart);
      const show = await helm(['show', 'chart', tgz]);
      assert.match(show.stdout, /^apiVersion: v2/m, 'apiVersion v2 charts are what OCI registries store');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  void describe('installed: the operator as the chart ServiceAccount reconciles a VMM on the sim', () => {
    const release = 'vmmem';
    const ns = 'vmmem-helm';
    let child: ChildProcess | undefined;
    let logs = '';
    let sa: KubeUser;
    after(() => {
      child?.kill('SIGKILL');
    });

    it('reconciles web-01 to Ready with only the chart RBAC', async () => {
      // extraArgs: flags the admin sets. sim:// is for test clusters; once the operator has a flag
      // allowing it in cluster mode (docs/security.md), this passes it the way a user would.
      const extra = 'allow-sim-hypervisors' in RUN_OPTIONS ? ['extraArgs={--allow-sim-hypervisors}'] : [];
      const objs = await template(['secretNamespaces={vms}', 'logLevel=debug', ...extra], CHART, release, ns);
      await ensureNamespaces(env, [ns, 'vms']);
      await applyObjects(env, objs.filter((o) => o.kind !== 'Deployment'));
      // The Deployment itself cannot run here (no kubelet): its container's args run as a process,
      // plus --allow-sim-hypervisors (the Hypervisor here is the simulator, which cluster mode refuses without it).
      const ctr = (must(objs, 'Deployment').spec as { template: { spec: { serviceAccountName: string; containers: { args: string[] }[] } } }).template.spec;
      sa = await env.userKubeConfig(`system:serviceaccount:${ns}:${ctr.serviceAccountName}`, ['system:serviceaccounts', `system:serviceaccounts:${ns}`, 'system:authenticated']);
      const args = ctr.containers[0]!.args.map((a) =>
        a.startsWith('--metrics-bind-address=') ? '--metrics-bind-address=127.0.0.1:0' : a.startsWith('--health-probe-bind-address=') ? '--health-probe-bind-address=127.0.0.1:0' : a.replace('$(POD_NAMESPACE)', ns),
      );
      assert.equal(args[0], 'run');

      await env.request('POST', '/api/v1/namespaces/vms/secrets', { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'sim-creds' }, stringData: { username: 'vmmem', password: 'helm-secret-value' } });
      const hv = await env.request('POST', '/apis/vmmem.io/v1alpha1/namespaces/vms/hypervisors', {
        apiVersion: 'vmmem.io/v1alpha1', kind: 'Hypervisor', metadata: { name: 'kvm' },
        spec: { uri: 'sim:///examples/sim/kvm.yaml', credentialsSecretRef: { name: 'sim-creds' } },
      });
      assert.equal(hv.status, 201, hv.body);
      // An integer quantity (4Gi) next to a string one: the API server stores it, the operator reads it.
      const vmm = await env.request('POST', '/apis/vmmem.io/v1alpha1/namespaces/vms/virtualmachinememories', {
        apiVersion: 'vmmem.io/v1alpha1', kind: 'VirtualMachineMemory', metadata: { name: 'web-01' },
        spec: { hypervisorRef: { name: 'kvm' }, vm: { name: 'web-01' }, maxMemory: 4294967296, memory: '3Gi' },
      });
      assert.equal(vmm.status, 201, vmm.body);

      child = spawn(join(REPO_ROOT, 'bin', 'vmmem'), [...args.slice(0, 1), '--kubeconfig', sa.kubeconfigPath, ...args.slice(1), '--allow-sim-hypervisors'], {
        cwd: REPO_ROOT,
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...process.env, POD_NAMESPACE: ns, POD_NAME: 'vmmem-helm-0' },
      });
      child.stdout?.on('data', (d: Buffer) => (logs += d.toString()));
      child.stderr?.on('data', (d: Buffer) => (logs += d.toString()));

      const deadline = Date.now() + 45_000;
      for (;;) {
        const r = await env.request('GET', '/apis/vmmem.io/v1alpha1/namespaces/vms/virtualmachinememories/web-01');
        const o = JSON.parse(r.body) as { status?: { conditions?: { type: string; status: string }[]; observed?: Record<string, string> } };
        if (o.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True')) {
          assert.equal(o.status.observed?.maxMemory, '4Gi', 'status keeps canonical strings');
          assert.equal(o.status.observed?.memory, '3Gi');
          break;
        }
        if (Date.now() > deadline) assert.fail(`web-01 not Ready in 45 s: ${r.body}\n--- operator log ---\n${logs.slice(-4000)}`);
        await new Promise((r2) => setTimeout(r2, 250));
      }
      assert.doesNotMatch(logs, /forbidden/i, 'no permission was missing');
      assert.doesNotMatch(logs, /helm-secret-value/, 'the Secret value never reaches the logs');
      const exited = new Promise<number | null>((r) => child?.once('exit', (code) => r(code)));
      child.kill('SIGTERM');
      assert.equal(await exited, 0, logs.slice(-2000));
      child = undefined;
    });
  });
});
