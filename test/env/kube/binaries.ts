// The kube-apiserver and etcd binaries of the Kubernetes test environment: built from Go modules by
// test/peer/kube/setup.sh into a cache keyed by the Go module's content (same key logic as the script).
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, accessSync, constants as fsConstants } from 'node:fs';
import { homedir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
/** The Go module that pins kube-apiserver and etcd (test/env/go). */
export const KUBE_GO_MODULE_DIR = join(REPO_ROOT, 'test', 'env', 'go');
/** The script that builds the binaries into the cache. */
export const KUBE_SETUP_SCRIPT = join(REPO_ROOT, 'test', 'peer', 'kube', 'setup.sh');

export interface KubeBinaries {
  /** kubernetes-<ver>_etcd-<ver>_<hash>: changes whenever the Go module changes. */
  key: string;
  kubernetesVersion: string;
  etcdVersion: string;
  binDir: string;
  kubeApiServer: string;
  etcd: string;
}

/** The cache root: $VMMEM_CACHE or ~/.cache/vmmem. */
export function vmmemCacheDir(): string {
  return process.env.VMMEM_CACHE || join(homedir(), '.cache', 'vmmem');
}

/** The versions and cache key for the binaries, computed exactly as setup.sh does. */
export function kubeBinaryKey(): { key: string; kubernetesVersion: string; etcdVersion: string } {
  const files = ['go.mod', 'go.sum', join('etcd', 'main.go'), join('kube-apiserver', 'main.go')].map((f) =>
    join(KUBE_GO_MODULE_DIR, f),
  );
  const goMod = readFileSync(files[0]!, 'utf8');
  const version = (mod: string): string => {
    for (const line of goMod.split('\n')) {
      const [m, v] = line.trim().split(/\s+/);
      if (m === mod && v?.startsWith('v')) return v;
    }
    throw new Error(`cannot find the version of ${mod} in ${files[0]}`);
  };
  const kubernetesVersion = version('k8s.io/kubernetes');
  const etcdVersion = version('go.etcd.io/etcd/server/v3');
  const h = createHash('sha256');
  for (const f of files) h.update(readFileSync(f));
  const key = `kubernetes-${kubernetesVersion}_etcd-${etcdVersion}_${h.digest('hex').slice(0, 12)}`;
  return { key, kubernetesVersion, etcdVersion };
}

/**
 * Paths of the cached kube-apiserver and etcd. Throws, telling to run test/peer/kube/setup.sh,
 * when they are missing. $VMMEM_KUBE_BIN_DIR overrides the directory (for prebuilt binaries).
 */
export function kubeBinaries(): KubeBinaries {
  const { key, kubernetesVersion, etcdVersion } = kubeBinaryKey();
  const override = process.env.VMMEM_KUBE_BIN_DIR;
  const binDir = override || join(vmmemCacheDir(), 'kube', key, 'bin');
  const kubeApiServer = join(binDir, 'kube-apiserver');
  const etcd = join(binDir, 'etcd');
  const complete = override ? true : existsSync(join(binDir, '..', '.complete'));
  for (const bin of [kubeApiServer, etcd]) {
    let ok = complete;
    try {
      accessSync(bin, fsConstants.X_OK);
    } catch {
      ok = false;
    }
    if (!ok) {
      throw new Error(
        `kube test environment: ${bin} is missing or its build is incomplete (binaries for ${key}). ` +
          `Build them first: bash test/peer/kube/setup.sh (a cold build takes several minutes).`,
      );
    }
  }
  return { key, kubernetesVersion, etcdVersion, binDir, kubeApiServer, etcd };
}
