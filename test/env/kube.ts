// The real Kubernetes test environment (DESIGN §7), envtest-style: a real etcd and a real
// kube-apiserver, built from Go modules by test/peer/kube/setup.sh, started on free loopback ports
// with freshly generated certificates, RBAC authorization and an admin identity in system:masters.
//
//   const env = await startKube();            // in before()
//   env.kubeConfig.makeApiClient(k8s.CoreV1Api) ...
//   await env.installCrds('crds');            // apply CRDs, wait until Established and served
//   await env.restartApiServer();             // chaos: same port, same certs, same etcd data
//   await env.stop();                         // in after(): kills process groups, removes temp dir
//
// Everything lives in one temp directory (on tmpfs, /dev/shm, when available): certificates, the
// kubeconfig, etcd's data and both processes' logs. A detached reaper process kills the peers and
// removes that directory if this Node process dies without calling stop().
//
// The pieces are split the way envtest splits them (sigs.k8s.io/controller-runtime/pkg/envtest and
// pkg/internal/testing/{process,certs,controlplane}):
//   kube/binaries.ts      the cached kube-apiserver and etcd builds (test/peer/kube/setup.sh)
//   kube/process.ts       peer processes, readiness polling, free ports, the reaper
//   kube/certs.ts         CA, serving and client certificates, kubeconfigs
//   kube/controlplane.ts  etcd + kube-apiserver flags, startKube(), the KubeEnv handle
//   kube/crds.ts          installCrds(): create-or-replace, wait for Established and discovery
// This file is the entry point the tests and the benchmark import.
export { KUBE_GO_MODULE_DIR, KUBE_SETUP_SCRIPT, kubeBinaries, kubeBinaryKey, vmmemCacheDir, type KubeBinaries } from './kube/binaries.ts';
export type { KubeCertPaths } from './kube/certs.ts';
export type { KubeResponse } from './kube/process.ts';
export { describe } from './kube/crds.ts';
export { startKube, type KubeEnv, type KubeUser, type StartKubeOptions } from './kube/controlplane.ts';
