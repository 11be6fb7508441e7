// Where the operator finds its cluster, in the usual order:
//   1. --kubeconfig <path>          (explicit; must exist)
//   2. $KUBECONFIG                  (path list, ':'-separated; the existing files are merged)
//   3. in-cluster                   ($KUBERNETES_SERVICE_HOST/PORT + the service account token)
//   4. ~/.kube/config
// Errors say what was tried and why it failed.
import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { delimiter, join } from 'node:path';
import * as k8s from '@kubernetes/client-node';

export const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

export interface LoadKubeConfigOptions {
  /** --kubeconfig */
  kubeconfig?: string;
  /** Default process.env. */
  env?: NodeJS.ProcessEnv;
  /** Default the real service account directory (tests point it elsewhere). */
  serviceAccountDir?: string;
  /** Default os.homedir(). */
  home?: string;
}

export interface LoadedKubeConfig {
  kubeConfig: k8s.KubeConfig;
  /** 'flag', 'env', 'in-cluster' or 'home'. */
  source: 'flag' | 'env' | 'in-cluster' | 'home';
  /** The file(s) read, or the in-cluster server. */
  from: string;
  /** The namespace of the current context, or of the service account in-cluster; undefined if unset. */
  namespace: string | undefined;
}

export class KubeConfigError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'KubeConfigError';
  }
}

function check(kc: k8s.KubeConfig, what: string): void {
  const ctxName = kc.getCurrentContext();
  if (!ctxName) throw new KubeConfigError(`${what}: no current-context (set one with kubectl config use-context)`);
  if (!kc.getContextObject(ctxName)) throw new KubeConfigError(`${what}: current-context "${ctxName}" is not defined in contexts`);
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new KubeConfigError(`${what}: context "${ctxName}" names a cluster that is not defined`);
  if (!cluster.server) throw new KubeConfigError(`${what}: cluster "${cluster.name}" has no server`);
  try {
    new URL(cluster.server);
  } catch {
    throw new KubeConfigError(`${what}: cluster "${cluster.name}" server "${cluster.server}" is not a URL`);
  }
}

function loadFiles(files: string[], what: string): k8s.KubeConfig {
  const kc = new k8s.KubeConfig();
  try {
    kc.loadFromFile(files[0]!);
    for (const f of files.slice(1)) {
      const more = new k8s.KubeConfig();
      more.loadFromFile(f);
      kc.mergeConfig(more, true);
    }
  } catch (e) {
    throw new KubeConfigError(`${what}: cannot load: ${(e as Error).message}`, { cause: e });
  }
  check(kc, what);
  return kc;
}

function contextNamespace(kc: k8s.KubeConfig): string | undefined {
  return kc.getContextObject(kc.getCurrentContext())?.namespace || undefined;
}

/** Loads the KubeConfig the operator should use (see the order above). Throws KubeConfigError. */
export function loadKubeConfig(opts: LoadKubeConfigOptions = {}): LoadedKubeConfig {
  const env = opts.env ?? process.env;
  const saDir = opts.serviceAccountDir ?? SERVICE_ACCOUNT_DIR;

  if (opts.kubeconfig !== undefined) {
    const what = `--kubeconfig ${opts.kubeconfig}`;
    if (!opts.kubeconfig) throw new KubeConfigError('--kubeconfig: empty path');
    if (!existsSync(opts.kubeconfig)) throw new KubeConfigError(`${what}: no such file`);
    const kc = loadFiles([opts.kubeconfig], what);
    return { kubeConfig: kc, source: 'flag', from: opts.kubeconfig, namespace: contextNamespace(kc) };
  }

  if (env.KUBECONFIG) {
    const paths = env.KUBECONFIG.split(delimiter).filter(Boolean);
    const files = paths.filter((p) => existsSync(p));
    const what = `KUBECONFIG=${env.KUBECONFIG}`;
    if (files.length === 0) throw new KubeConfigError(`${what}: none of these files exists`);
    const kc = loadFiles(files, what);
    return { kubeConfig: kc, source: 'env', from: files.join(delimiter), namespace: contextNamespace(kc) };
  }

  if (env.KUBERNETES_SERVICE_HOST) {
    const what = 'in-cluster config';
    const token = join(saDir, 'token');
    if (!env.KUBERNETES_SERVICE_PORT) throw new KubeConfigError(`${what}: KUBERNETES_SERVICE_HOST is set but KUBERNETES_SERVICE_PORT is not`);
    if (!existsSync(token)) {
      throw new KubeConfigError(`${what}: KUBERNETES_SERVICE_HOST is set but ${token} is missing (is automountServiceAccountToken false?)`);
    }
    const kc = new k8s.KubeConfig();
    const host = env.KUBERNETES_SERVICE_HOST.includes(':') ? `[${env.KUBERNETES_SERVICE_HOST}]` : env.KUBERNETES_SERVICE_HOST;
    const server = `https://${host}:${env.KUBERNETES_SERVICE_PORT}`;
    const ca = join(saDir, 'ca.crt');
    // As KubeConfig.loadFromCluster, but with our service-account directory and the token re-read
    // from its file on every request (projected tokens rotate).
    kc.loadFromClusterAndUser(
      { name: 'inCluster', server, caFile: existsSync(ca) ? ca : undefined, skipTLSVerify: false },
      { name: 'inClusterUser', authProvider: { name: 'tokenFile', config: { tokenFile: token } } },
    );
    let namespace: string | undefined;
    try {
      namespace = readFileSync(join(saDir, 'namespace'), 'utf8').trim() || undefined;
    } catch {
      namespace = undefined;
    }
    return { kubeConfig: kc, source: 'in-cluster', from: server, namespace };
  }

  const home = join(opts.home ?? homedir(), '.kube', 'config');
  if (existsSync(home)) {
    const kc = loadFiles([home], home);
    return { kubeConfig: kc, source: 'home', from: home, namespace: contextNamespace(kc) };
  }
  throw new KubeConfigError(
    `no Kubernetes configuration: no --kubeconfig, KUBECONFIG is unset, not in a cluster ` +
      `(KUBERNETES_SERVICE_HOST unset) and ${home} does not exist`,
  );
}
