// The control plane, as envtest's pkg/internal/testing/controlplane: etcd + kube-apiserver started
// on free loopback ports in one temp directory, with the flags envtest uses, and the KubeEnv handle
// (restart either peer for chaos tests, stop everything).
import { mkdtempSync, writeFileSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as k8s from '@kubernetes/client-node';
import { kubeBinaries, type KubeBinaries } from './binaries.ts';
import { issueClusterCerts, issueCert, kubeconfigYaml, type KubeCertPaths } from './certs.ts';
import { installCrds } from './crds.ts';
import { PeerProcess, freePorts, pickTmpRoot, rawRequest, startReaper, tailFile, waitReady, type KubeResponse } from './process.ts';

export interface StartKubeOptions {
  /** --authorization-mode; default ['Node', 'RBAC']. */
  authorizationModes?: string[];
  /** Extra kube-apiserver flags (`--name=value`), appended after the defaults (later wins). */
  apiServerArgs?: string[];
  /** Extra etcd flags, appended after the defaults. */
  etcdArgs?: string[];
  /** CRD files or directories to install (and wait for) before startKube resolves. */
  crds?: string[];
  /** How long each process may take to become ready; default 90 s (2-core CI machines). */
  startTimeoutMs?: number;
  /** Keep the temp directory (certs, logs, etcd data) after stop(); also $VMMEM_KUBE_KEEP=1. */
  keepDir?: boolean;
  /** Where to create the temp directory; default /dev/shm when writable, else os.tmpdir(). */
  tmpRoot?: string;
}

export interface KubeUser {
  kubeConfig: k8s.KubeConfig;
  kubeconfigPath: string;
  certPath: string;
  keyPath: string;
}

export interface KubeEnv {
  /** https://127.0.0.1:<port> */
  server: string;
  /** Self-contained kubeconfig (embedded CA and admin client cert). */
  kubeconfigPath: string;
  /** Loaded from kubeconfigPath; the admin identity. */
  kubeConfig: k8s.KubeConfig;
  /** Bearer token for the same admin identity (--token-auth-file; user vmmem-admin-token). */
  adminToken: string;
  certs: KubeCertPaths;
  /** http://127.0.0.1:<port> (plain HTTP, loopback only). */
  etcdUrl: string;
  /** The temp directory holding everything. */
  dir: string;
  logs: { apiServer: string; etcd: string };
  binaries: KubeBinaries;
  /** The full kube-apiserver command line (for debugging). */
  apiServerArgs: readonly string[];
  /** Apply every CustomResourceDefinition in these YAML/JSON files or directories (recursively),
   *  create-or-replace, and wait until each is Established and served by discovery. Returns names. */
  installCrds(...paths: string[]): Promise<string[]>;
  /** A client certificate identity signed by the cluster CA (for RBAC tests). */
  userKubeConfig(user: string, groups?: string[]): Promise<KubeUser>;
  /** A raw HTTPS request as admin; the body is sent as JSON when it is not a string. */
  request(method: string, path: string, body?: unknown): Promise<KubeResponse>;
  /** SIGTERM (graceful) or SIGKILL the kube-apiserver's process group and wait for it to exit. */
  stopApiServer(opts?: { signal?: 'SIGTERM' | 'SIGKILL' }): Promise<void>;
  /** Start kube-apiserver again (same port, certs and flags) and wait for /readyz. */
  startApiServer(): Promise<void>;
  restartApiServer(opts?: { signal?: 'SIGTERM' | 'SIGKILL' }): Promise<void>;
  stopEtcd(opts?: { signal?: 'SIGTERM' | 'SIGKILL' }): Promise<void>;
  /** Start etcd again on the same data dir and port; waits for /health. */
  startEtcd(): Promise<void>;
  restartEtcd(opts?: { signal?: 'SIGTERM' | 'SIGKILL' }): Promise<void>;
  /** The last `lines` lines of a process log. */
  logTail(which: 'apiServer' | 'etcd', lines?: number): string;
  /** Stop both processes (process groups), the reaper, and remove the temp directory. Idempotent. */
  stop(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * Start etcd + kube-apiserver; resolves when /readyz is ok (and the given CRDs are served).
 * Retries with new ports (up to 3 attempts) if another process grabbed a port between our probe
 * and the peer's bind.
 */
export async function startKube(opts: StartKubeOptions = {}): Promise<KubeEnv> {
  const binaries = kubeBinaries();
  for (let attempt = 1; ; attempt++) {
    try {
      return await startKubeOnce(opts, binaries);
    } catch (e) {
      if (attempt >= 3 || !/address already in use/.test((e as Error).message)) throw e;
    }
  }
}

async function startKubeOnce(opts: StartKubeOptions, binaries: KubeBinaries): Promise<KubeEnv> {
  const timeoutMs = opts.startTimeoutMs ?? 90_000;
  const keepDir = opts.keepDir ?? process.env.VMMEM_KUBE_KEEP === '1';
  const dir = mkdtempSync(join(opts.tmpRoot ?? pickTmpRoot(), 'vmmem-kube-'));
  const certDir = join(dir, 'certs');
  const etcdDataDir = join(dir, 'etcd-data');
  const logs = { apiServer: join(dir, 'kube-apiserver.log'), etcd: join(dir, 'etcd.log') };

  const procs: PeerProcess[] = [];
  const writePids = () => {
    const pids = procs.map((p) => p.pgid).filter((p): p is number => p !== undefined);
    try {
      writeFileSync(join(dir, 'pids'), pids.map((p) => `${p}\n`).join(''));
    } catch {
      // directory already removed
    }
  };
  const reaper = startReaper(dir, keepDir);

  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    // apiserver first (it holds etcd connections), then etcd.
    for (const p of [...procs].reverse()) await p.stop('SIGTERM', 10_000).catch(() => undefined);
    try {
      if (reaper.pid !== undefined) process.kill(reaper.pid, 'SIGKILL');
    } catch {
      // gone
    }
    if (!keepDir) await rm(dir, { recursive: true, force: true });
  };

  try {
    await mkdir(certDir, { recursive: true, mode: 0o700 });
    await mkdir(etcdDataDir, { recursive: true, mode: 0o700 });
    const [etcdPort, etcdPeerPort, apiPort] = (await freePorts(3)) as [number, number, number];
    const server = `https://127.0.0.1:${apiPort}`;
    const etcdUrl = `http://127.0.0.1:${etcdPort}`;
    const etcdPeerUrl = `http://127.0.0.1:${etcdPeerPort}`;

    const { certs, ca, adminToken, tokenFile } = await issueClusterCerts(certDir);

    const caPem = await readFile(certs.caCert, 'utf8');
    const adminCertPem = await readFile(certs.adminCert, 'utf8');
    const adminKeyPem = await readFile(certs.adminKey, 'utf8');
    const kubeconfigPath = join(dir, 'kubeconfig');
    await writeFile(kubeconfigPath, kubeconfigYaml(server, caPem, 'vmmem-admin', adminCertPem, adminKeyPem), { mode: 0o600 });
    const kubeConfig = new k8s.KubeConfig();
    kubeConfig.loadFromFile(kubeconfigPath);

    // Flags as controller-runtime's envtest (pkg/internal/testing/controlplane/{etcd,apiserver}.go).
    const etcdArgs = [
      `--name=default`,
      `--data-dir=${etcdDataDir}`,
      `--listen-client-urls=${etcdUrl}`,
      `--advertise-client-urls=${etcdUrl}`,
      `--listen-peer-urls=${etcdPeerUrl}`,
      `--initial-advertise-peer-urls=${etcdPeerUrl}`,
      `--initial-cluster=default=${etcdPeerUrl}`,
      `--unsafe-no-fsync=true`,
      ...(opts.etcdArgs ?? []),
    ];
    const apiServerArgs = [
      `--etcd-servers=${etcdUrl}`,
      `--cert-dir=${certDir}`,
      `--tls-cert-file=${certs.servingCert}`,
      `--tls-private-key-file=${certs.servingKey}`,
      `--client-ca-file=${certs.caCert}`,
      `--token-auth-file=${tokenFile}`,
      `--secure-port=${apiPort}`,
      `--bind-address=127.0.0.1`,
      `--advertise-address=127.0.0.1`,
      // Since 1.37 the lease endpoint reconciler rejects a loopback advertise address; nothing here
      // needs the default/kubernetes Service endpoints, so don't reconcile them.
      `--endpoint-reconciler-type=none`,
      `--service-cluster-ip-range=10.0.0.0/24`,
      `--allow-privileged=true`,
      // As envtest: no controller-manager creates the default ServiceAccount, so don't require it.
      `--disable-admission-plugins=ServiceAccount`,
      `--authorization-mode=${(opts.authorizationModes ?? ['Node', 'RBAC']).join(',')}`,
      `--service-account-issuer=${server}/`,
      `--service-account-key-file=${certs.serviceAccountPub}`,
      `--service-account-signing-key-file=${certs.serviceAccountKey}`,
      ...(opts.apiServerArgs ?? []),
    ];

    const etcd = new PeerProcess('etcd', binaries.etcd, etcdArgs, logs.etcd, writePids);
    const apiServer = new PeerProcess('kube-apiserver', binaries.kubeApiServer, apiServerArgs, logs.apiServer, writePids);
    procs.push(etcd, apiServer);

    const adminTls = { ca: caPem, cert: adminCertPem, key: adminKeyPem };
    const request = async (method: string, path: string, body?: unknown): Promise<KubeResponse> =>
      rawRequest(server + path, {
        method,
        ...adminTls,
        ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
        timeoutMs: 30_000,
      });

    const startEtcd = async () => {
      etcd.start();
      await waitReady(etcd, `${etcdUrl}/health`, timeoutMs, async () => {
        const r = await rawRequest(`${etcdUrl}/health`, { timeoutMs: 2000 });
        return r.status === 200 && /"health"\s*:\s*"true"/.test(r.body);
      });
    };
    let lastReadyz = '';
    const startApiServer = async () => {
      apiServer.start();
      try {
        await waitReady(apiServer, `${server}/readyz`, timeoutMs, async () => {
          const r = await rawRequest(`${server}/readyz?verbose`, { ...adminTls, timeoutMs: 5000 });
          lastReadyz = r.body;
          return r.status === 200;
        });
      } catch (e) {
        const readyz = lastReadyz ? `\nlast /readyz?verbose:\n${lastReadyz}` : '';
        throw new Error(`${(e as Error).message}${readyz}`, { cause: e });
      }
    };

    await startEtcd();
    await startApiServer();

    const env: KubeEnv = {
      server,
      kubeconfigPath,
      kubeConfig,
      adminToken,
      certs,
      etcdUrl,
      dir,
      logs,
      binaries,
      apiServerArgs: [binaries.kubeApiServer, ...apiServerArgs],
      request,
      installCrds: (...paths: string[]) => installCrds(kubeConfig, request, paths, timeoutMs),
      userKubeConfig: async (user: string, groups: string[] = []): Promise<KubeUser> => {
        const safe = user.replace(/[^A-Za-z0-9_.-]/g, '_');
        const c = await issueCert(certDir, `user-${safe}`, { cn: user, orgs: groups }, ca);
        const path = join(dir, `kubeconfig-${safe}`);
        await writeFile(
          path,
          kubeconfigYaml(server, caPem, user, await readFile(c.cert, 'utf8'), await readFile(c.key, 'utf8')),
          { mode: 0o600 },
        );
        const kc = new k8s.KubeConfig();
        kc.loadFromFile(path);
        return { kubeConfig: kc, kubeconfigPath: path, certPath: c.cert, keyPath: c.key };
      },
      stopApiServer: async (o) => apiServer.stop(o?.signal),
      startApiServer,
      restartApiServer: async (o) => {
        await apiServer.stop(o?.signal);
        await startApiServer();
      },
      stopEtcd: async (o) => etcd.stop(o?.signal),
      startEtcd,
      restartEtcd: async (o) => {
        await etcd.stop(o?.signal);
        await startEtcd();
      },
      logTail: (which, lines = 40) => tailFile(logs[which], lines),
      stop,
      [Symbol.asyncDispose]: stop,
    };
    if (opts.crds?.length) await env.installCrds(...opts.crds);
    return env;
  } catch (e) {
    const msg = (e as Error).message;
    await stop();
    throw new Error(
      `kube test environment failed to start (${binaries.key}): ${msg}` +
        (keepDir ? `\n(kept ${dir})` : '\n(set VMMEM_KUBE_KEEP=1 to keep certs, logs and etcd data)'),
      { cause: e },
    );
  }
}

