// The secured metrics endpoint against a real kube-apiserver. Scrapers are real ServiceAccounts
// with real tokens (TokenRequest): one bound to deploy/'s ClusterRole vmmem-metrics-reader,
// another bound to nothing.
//  1. The authorizer (src/kube/metrics-auth.ts) behind the health server over HTTPS, asking the API
//     server with exactly the operator ServiceAccount's RBAC from deploy/ (ClusterRole
//     vmmem-metrics-auth): 200 for the reader, 403 for the other, 401 without or with a forged
//     token; verdicts cached (one TokenReview per token per TTL, concurrent scrapes share one).
//  2. bin/vmmem with deploy/base's Deployment args (--metrics-secure=true) as that ServiceAccount:
//     the same answers over TLS with the self-signed certificate it makes, probes plain HTTP and
//     unauthenticated, no token in its log; with --metrics-secure=false plain HTTP to anyone.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { TLSSocket } from 'node:tls';
import { join } from 'node:path';
import { Metrics } from '../../../src/controller/metrics.ts';
import { startHealthServer, type HealthServer } from '../../../src/controller/health.ts';
import { kubeMetricsAuthorizer } from '../../../src/kube/metrics-auth.ts';
import { selfSignedCertificate } from '../../../src/kube/self-signed.ts';
import type { StoredObject } from '../../../src/controller/ports.ts';
import { startKube, type KubeEnv, type KubeUser } from '../../env/kube.ts';
import { KUBE_APISERVER_ARGS, REPO_ROOT, applyObjects, applyOperatorRbac, ensureNamespaces, renderKustomization, waitFor, type KubeObject } from './rbac-helper.ts';

interface Scrape {
  status: number;
  body: string;
  /** The server certificate's subject CN (HTTPS only). */
  cn?: string;
}

/** GET url; HTTPS trusts `ca` when given, else accepts any certificate (a self-signed one we did not make). */
function get(url: string, opts: { ca?: string; token?: string; authorization?: string } = {}): Promise<Scrape> {
  const authorization = opts.authorization ?? (opts.token === undefined ? undefined : `Bearer ${opts.token}`);
  const headers = authorization === undefined ? {} : { authorization };
  return new Promise((resolve, reject) => {
    const onResponse = (res: IncomingMessage) => {
      let body = '';
      const socket = res.socket as TLSSocket;
      const cn = typeof socket.getPeerCertificate === 'function' ? (socket.getPeerCertificate().subject?.CN as string | undefined) : undefined;
      res.setEncoding('utf8').on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, ...(cn ? { cn } : {}) }));
    };
    const req = url.startsWith('https:')
      ? httpsRequest(url, { headers, timeout: 30_000, ...(opts.ca ? { ca: opts.ca, servername: 'localhost' } : { rejectUnauthorized: false }) }, onResponse)
      : httpRequest(url, { headers, timeout: 30_000 }, onResponse);
    req.on('timeout', () => req.destroy(new Error(`GET ${url} timed out`)));
    req.on('error', reject);
    req.end();
  });
}

void describe('metrics endpoint: HTTPS + TokenReview/SubjectAccessReview on a real API server', () => {
  let env: KubeEnv;
  let operator: KubeUser;
  let base: KubeObject[];
  const tokens: Record<'prometheus' | 'other', string> = { prometheus: '', other: '' };

  const tokenFor = async (namespace: string, name: string): Promise<string> => {
    const sa = await env.request('POST', `/api/v1/namespaces/${namespace}/serviceaccounts`, { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name } });
    assert.ok(sa.status === 201 || sa.status === 409, sa.body);
    const r = await env.request('POST', `/api/v1/namespaces/${namespace}/serviceaccounts/${name}/token`, {
      apiVersion: 'authentication.k8s.io/v1',
      kind: 'TokenRequest',
      spec: { expirationSeconds: 3600 },
    });
    assert.equal(r.status, 201, r.body);
    return (JSON.parse(r.body) as { status: { token: string } }).status.token;
  };

  before(async () => {
    env = await startKube({ apiServerArgs: KUBE_APISERVER_ARGS });
    // The operator: deploy/'s ServiceAccount and RBAC (vmmem-metrics-auth among it), its identity only.
    operator = await applyOperatorRbac(env);
    base = (await renderKustomization('base')).objects;
    await applyObjects(env, base.filter((o) => o.kind === 'CustomResourceDefinition'));
    // Scrapers: prometheus bound to deploy/'s vmmem-metrics-reader, other to nothing.
    await ensureNamespaces(env, ['monitoring']);
    tokens.prometheus = await tokenFor('monitoring', 'prometheus');
    tokens.other = await tokenFor('monitoring', 'other');
    const reader = base.find((o) => o.kind === 'ClusterRole' && o.metadata.name === 'vmmem-metrics-reader');
    assert.ok(reader, 'deploy/base has ClusterRole vmmem-metrics-reader');
    await applyObjects(env, [
      reader,
      {
        apiVersion: 'rbac.authorization.k8s.io/v1',
        kind: 'ClusterRoleBinding',
        metadata: { name: 'prometheus-vmmem-metrics' },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'vmmem-metrics-reader' },
        subjects: [{ kind: 'ServiceAccount', name: 'prometheus', namespace: 'monitoring' }],
      } as unknown as KubeObject,
    ]);
  });

  after(async () => {
    await env?.stop();
  });

  void describe('the authorizer behind the health server', () => {
    let server: HealthServer;
    let ca: string;
    const vmms: StoredObject[] = [];

    before(async () => {
      const metrics = new Metrics();
      metrics.setInventory({ vmms: () => vmms, hypervisors: () => [] });
      const tls = selfSignedCertificate('vmmem-metrics', ['localhost']);
      ca = tls.cert;
      server = await startHealthServer({
        metricsAddress: '127.0.0.1:0',
        probeAddress: '0',
        metrics: { text: () => metrics.text(), contentType: 'text/plain; version=0.0.4' },
        metricsTls: tls,
        // No cache: each request below is decided by the API server, not by an earlier verdict.
        authorizeMetrics: kubeMetricsAuthorizer(operator.kubeConfig, { allowTtlMs: 0, denyTtlMs: 0 }),
      });
      // RBAC reaches the authorizer through its informer: wait until the binding is in effect.
      await waitFor('the metrics reader binding', async () => (await get(`${server.metricsUrl!}/metrics`, { ca, token: tokens.prometheus })).status === 200);
    });
    after(async () => {
      await server?.close();
    });

    void it('serves HTTPS with the certificate given (the client trusts only it)', async () => {
      assert.match(server.metricsUrl!, /^https:\/\/127\.0\.0\.1:\d+$/);
      const r = await get(`${server.metricsUrl!}/metrics`, { ca, token: tokens.prometheus });
      assert.equal(r.cn, 'vmmem-metrics');
    });

    void it('a ServiceAccount bound to vmmem-metrics-reader gets 200 and the metrics', async () => {
      const r = await get(`${server.metricsUrl!}/metrics`, { ca, token: tokens.prometheus });
      assert.equal(r.status, 200, r.body);
      assert.match(r.body, /^vmmem_vms_managed\{state="Ready"\} 0$/m);
    });

    void it('an authenticated ServiceAccount without the binding gets 403', async () => {
      const r = await get(`${server.metricsUrl!}/metrics`, { ca, token: tokens.other });
      assert.equal(r.status, 403, r.body);
      assert.match(r.body, /system:serviceaccount:monitoring:other/);
      assert.doesNotMatch(r.body, /vmmem_/);
    });

    void it('no token, another scheme, or a token the API server does not accept: 401', async () => {
      const none = await get(`${server.metricsUrl!}/metrics`, { ca });
      assert.equal(none.status, 401, none.body);
      const basic = await get(`${server.metricsUrl!}/metrics`, { ca, authorization: `Basic ${Buffer.from(`prometheus:${tokens.prometheus}`).toString('base64')}` });
      assert.equal(basic.status, 401, basic.body);
      const forged = await get(`${server.metricsUrl!}/metrics`, { ca, token: `${tokens.prometheus.slice(0, -8)}AAAAAAAA` });
      assert.equal(forged.status, 401, forged.body);
      assert.doesNotMatch(forged.body, /vmmem_/);
    });

    void it('vmmem_vms_managed is computed at scrape time: the next scrape after a status change shows it', async () => {
      vmms.push({ apiVersion: 'vmmem.io/v1alpha1', kind: 'VirtualMachineMemory', metadata: { name: 'a', namespace: 'vms' }, spec: {}, status: { conditions: [{ type: 'Ready', status: 'True' }] } } as unknown as StoredObject);
      const r = await get(`${server.metricsUrl!}/metrics`, { ca, token: tokens.prometheus });
      assert.equal(r.status, 200, r.body);
      assert.match(r.body, /^vmmem_vms_managed\{state="Ready"\} 1$/m);
    });

    void it('verdicts are cached per token: repeated and concurrent scrapes cost one TokenReview; a deny is cached too', async () => {
      let reviews = 0;
      const cached = await startHealthServer({
        metricsAddress: '127.0.0.1:0',
        probeAddress: '0',
        metrics: { text: () => Promise.resolve('up 1\n'), contentType: 'text/plain; version=0.0.4' },
        metricsTls: selfSignedCertificate('vmmem-metrics', ['localhost']),
        authorizeMetrics: kubeMetricsAuthorizer(operator.kubeConfig, { onReview: () => reviews++ }),
      });
      try {
        const url = `${cached.metricsUrl!}/metrics`;
        const first = await Promise.all(Array.from({ length: 5 }, () => get(url, { token: tokens.prometheus })));
        assert.deepEqual(first.map((r) => r.status), [200, 200, 200, 200, 200]);
        assert.equal(reviews, 1, 'five concurrent scrapes, one review');
        for (let i = 0; i < 3; i++) assert.equal((await get(url, { token: tokens.prometheus })).status, 200);
        assert.equal(reviews, 1, 'later scrapes within the TTL: no review');
        assert.equal((await get(url, { token: tokens.other })).status, 403);
        assert.equal((await get(url, { token: tokens.other })).status, 403);
        assert.equal(reviews, 2, 'a deny is cached as well (one review for two scrapes)');
      } finally {
        await cached.close();
      }
    });
  });

  void describe("bin/vmmem with deploy/base's Deployment args", () => {
    const children: ChildProcess[] = [];
    after(() => {
      for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
    });

    /** Runs the Deployment's container args (addresses on loopback, ephemeral ports) and waits for its listeners. */
    async function runOperator(edit: (args: string[]) => string[] = (a) => a): Promise<{ metricsUrl: string; probeUrl: string; logs: () => string; stop: () => Promise<number | null> }> {
      const d = base.find((o) => o.kind === 'Deployment') as unknown as { spec: { template: { spec: { containers: { args: string[] }[] } } } };
      const args = edit(
        d.spec.template.spec.containers[0]!.args.map((a) =>
          a.startsWith('--metrics-bind-address=') ? '--metrics-bind-address=127.0.0.1:0' : a.startsWith('--health-probe-bind-address=') ? '--health-probe-bind-address=127.0.0.1:0' : a,
        ),
      );
      const child = spawn(join(REPO_ROOT, 'bin', 'vmmem'), [args[0]!, '--kubeconfig', operator.kubeconfigPath, ...args.slice(1), '--log-format=json'], {
        cwd: REPO_ROOT,
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...process.env, POD_NAMESPACE: 'vmmem-system', POD_NAME: 'vmmem-0' },
      });
      children.push(child);
      let logs = '';
      child.stdout!.on('data', (d: Buffer) => (logs += d.toString()));
      child.stderr!.on('data', (d: Buffer) => (logs += d.toString()));
      const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
      let urls: { metrics: string; probes: string } | undefined;
      await waitFor(
        'the operator to serve metrics',
        () => {
          if (child.exitCode !== null) throw new Error(`vmmem exited ${child.exitCode}:\n${logs}`);
          const line = logs.split('\n').find((l) => l.includes('serving metrics and health probes'));
          if (line) urls = JSON.parse(line) as { metrics: string; probes: string };
          return Promise.resolve(urls !== undefined);
        },
        60_000,
      );
      return {
        metricsUrl: urls!.metrics,
        probeUrl: urls!.probes,
        logs: () => logs,
        stop: async () => {
          child.kill('SIGTERM');
          return exited;
        },
      };
    }

    void it('--metrics-secure=true (the base): 200 for the reader over TLS, 403, 401; probes unauthenticated; no token logged', async () => {
      const op = await runOperator();
      assert.match(op.metricsUrl, /^https:\/\//);
      assert.match(op.probeUrl, /^http:\/\//);
      const ok = await get(`${op.metricsUrl}/metrics`, { token: tokens.prometheus });
      assert.equal(ok.status, 200, `${ok.body}\n${op.logs()}`);
      assert.equal(ok.cn, 'vmmem-metrics', 'the self-signed certificate made at start');
      assert.match(ok.body, /^# TYPE vmmem_vms_managed gauge$/m);
      const denied = await get(`${op.metricsUrl}/metrics`, { token: tokens.other });
      assert.equal(denied.status, 403, denied.body);
      assert.equal((await get(`${op.metricsUrl}/metrics`)).status, 401);
      // Plain HTTP to the TLS port is no way around it.
      await assert.rejects(get(`${op.metricsUrl.replace('https:', 'http:')}/metrics`), /socket hang up|ECONNRESET|parse|HPE_/i);
      for (const probe of ['/healthz', '/readyz']) {
        await waitFor(`${probe} 200`, async () => (await get(`${op.probeUrl}${probe}`)).status === 200, 30_000);
      }
      assert.equal(await op.stop(), 0, op.logs().slice(-2000));
      for (const t of Object.values(tokens)) assert.ok(!op.logs().includes(t.slice(-40)), 'a token reached the log');
      assert.doesNotMatch(op.logs(), /forbidden/i, 'the operator ServiceAccount may create the reviews');
    });

    void it('--metrics-secure=false: plain HTTP, no token needed', async () => {
      const op = await runOperator((args) => args.map((a) => (a === '--metrics-secure=true' ? '--metrics-secure=false' : a)));
      assert.match(op.metricsUrl, /^http:\/\//);
      const r = await get(`${op.metricsUrl}/metrics`);
      assert.equal(r.status, 200, r.body);
      assert.match(r.body, /^# TYPE vmmem_vms_managed gauge$/m);
      // Stopped only once synced: a SIGTERM before the first list ends the run with exit 1.
      await waitFor('/readyz 200', async () => (await get(`${op.probeUrl}/readyz`)).status === 200, 30_000);
      assert.equal(await op.stop(), 0, op.logs().slice(-2000));
    });
  });
});
