// The operator's RBAC from deploy/ on a real API server (test/env/kube.ts), and the operator's
// identity: a client certificate for exactly the ServiceAccount vmmem-system/vmmem (the user name
// and groups the ServiceAccount token authenticator gives it; rbac.test.ts checks they match a real
// token's). Reuse it to run the controller under least privilege:
//
//   const env = await startKube({ crds: ['crds'] });
//   const sa = await applyOperatorRbac(env);                 // base RBAC + the example Secret Role: Secrets readable in `vms`
//   const sa = await applyOperatorRbac(env, { secretNamespaces: ['vms', 'team-a'] });
//   sa.kubeConfig.makeApiClient(...)                          // or sa.kubeconfigPath for kubectl/vmmem
import { execFile, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { parseAllDocuments, stringify as stringifyYaml } from 'yaml';
import type { KubeEnv, KubeResponse, KubeUser } from '../../env/kube.ts';

const execFileP = promisify(execFile);

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const DEPLOY_DIR = join(REPO_ROOT, 'deploy');
/** kubectl with kustomize built in (v1.32 / kustomize v5.5 here); $KUBECTL overrides. */
export const KUBECTL = process.env.KUBECTL || 'kubectl';

/** kube-apiserver v1.37 refuses --advertise-address=127.0.0.1 with its endpoint reconciler
 *  ("may not be in the loopback range"); test/env/kube.ts advertises 127.0.0.1, so turn it off. */
export const KUBE_APISERVER_ARGS = ['--endpoint-reconciler-type=none'];

export const OPERATOR_NAMESPACE = 'vmmem-system';
export const OPERATOR_SERVICE_ACCOUNT = 'vmmem';
/** What the API server's ServiceAccount authenticator calls vmmem-system/vmmem. */
export const OPERATOR_USER = `system:serviceaccount:${OPERATOR_NAMESPACE}:${OPERATOR_SERVICE_ACCOUNT}`;
export const OPERATOR_GROUPS = ['system:serviceaccounts', `system:serviceaccounts:${OPERATOR_NAMESPACE}`, 'system:authenticated'];
/** The example namespace deploy/components/namespace-secrets grants Secret `get` in (the base grants none). */
export const BASE_SECRET_NAMESPACE = 'vms';

export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; [k: string]: unknown };
  [k: string]: unknown;
}

const RBAC_KINDS = new Set(['ServiceAccount', 'Role', 'RoleBinding', 'ClusterRole', 'ClusterRoleBinding']);

export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Run kubectl (stdin optional); never throws on a non-zero exit. */
export function kubectl(args: string[], input?: string): Promise<CommandResult> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(KUBECTL, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', (e) => reject(new Error(`cannot run ${KUBECTL}: ${e.message}`, { cause: e })));
    child.on('close', (code) => resolvePromise({ code: code ?? -1, stdout, stderr }));
    child.stdin.end(input ?? '');
  });
}

/** `kubectl kustomize <dir>` as objects (dir relative to deploy/ or absolute). */
export async function renderKustomization(dir: string): Promise<{ yaml: string; objects: KubeObject[] }> {
  const path = resolve(DEPLOY_DIR, dir);
  let yaml: string;
  try {
    yaml = (await execFileP(KUBECTL, ['kustomize', path], { maxBuffer: 64 << 20 })).stdout;
  } catch (e) {
    const err = e as Error & { stderr?: string };
    throw new Error(`kubectl kustomize ${path} failed: ${err.stderr || err.message}`, { cause: e });
  }
  const objects: KubeObject[] = [];
  for (const doc of parseAllDocuments(yaml)) {
    if (doc.errors.length) throw new Error(`kubectl kustomize ${path}: ${doc.errors[0]!.message}`);
    const o = doc.toJS() as KubeObject | null;
    if (o) objects.push(o);
  }
  return { yaml, objects };
}

export function toYaml(objects: KubeObject[]): string {
  return objects.map((o) => stringifyYaml(o)).join('---\n');
}

/** Create the namespaces (for real) if they do not exist. */
export async function ensureNamespaces(env: KubeEnv, names: Iterable<string>): Promise<void> {
  for (const name of new Set(names)) {
    const r = await env.request('POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name } });
    if (r.status !== 201 && r.status !== 409) throw new Error(`create namespace ${name}: HTTP ${r.status} ${r.body}`);
  }
}

/** `kubectl apply --server-side` as admin; throws with kubectl's output on failure. */
export async function applyObjects(env: KubeEnv, objects: KubeObject[], extraArgs: string[] = []): Promise<string> {
  const r = await kubectl(
    ['apply', '--kubeconfig', env.kubeconfigPath, '--server-side', '--force-conflicts', '--field-manager=vmmem-test', ...extraArgs, '-f', '-'],
    toYaml(objects),
  );
  if (r.code !== 0) throw new Error(`kubectl apply ${extraArgs.join(' ')} failed (exit ${r.code}):\n${r.stderr}\n${r.stdout}`);
  return r.stdout;
}

/** The example Role + RoleBinding for Secrets in `vms` (components/namespace-secrets), as they would be copied for `namespace`. */
export function secretAccessFor(baseRbac: KubeObject[], namespace: string): KubeObject[] {
  return baseRbac
    .filter((o) => (o.kind === 'Role' || o.kind === 'RoleBinding') && o.metadata.namespace === BASE_SECRET_NAMESPACE && o.metadata.name === 'vmmem-secrets')
    .map((o) => ({ ...structuredClone(o), metadata: { ...structuredClone(o.metadata), namespace } }));
}

const DEFAULT_RBAC_KUSTOMIZATION = 'overlays/namespace-secrets';

export interface ApplyRbacOptions {
  /** Kustomization to take the RBAC from (relative to deploy/); default 'overlays/namespace-secrets'
   *  (the base plus the Secret Role for `vms`, as docs/getting-started.md installs it). */
  kustomization?: string;
  /** Namespaces whose Secrets the operator may get (a copy of the example `vms` Role in each, as
   *  docs/security.md tells users to do); default ['vms']. */
  secretNamespaces?: string[];
}

/** Raw HTTPS request with a user's client certificate. */
export function userRequest(
  env: KubeEnv,
  user: KubeUser,
  method: string,
  path: string,
  body?: unknown,
  contentType = 'application/json',
): Promise<KubeResponse> {
  return new Promise((resolvePromise, reject) => {
    const url = new URL(env.server + path);
    const data = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
    const req = httpsRequest(
      {
        method,
        hostname: url.hostname,
        port: url.port,
        path: url.pathname + url.search,
        ca: readFileSync(env.certs.caCert),
        cert: readFileSync(user.certPath),
        key: readFileSync(user.keyPath),
        headers: { Accept: 'application/json', ...(data === undefined ? {} : { 'Content-Type': contentType, 'Content-Length': Buffer.byteLength(data) }) },
        timeout: 30_000,
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (text += d));
        res.on('end', () => resolvePromise({ status: res.statusCode ?? 0, body: text }));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${method} ${path}: timed out`)));
    req.on('error', reject);
    req.end(data);
  });
}

/** Does `user` get `allowed` for this SelfSubjectAccessReview (asked as that user)? */
export async function selfCan(
  env: KubeEnv,
  user: KubeUser,
  attrs: { verb: string; group?: string; resource: string; subresource?: string; namespace?: string; name?: string },
): Promise<boolean> {
  const r = await userRequest(env, user, 'POST', '/apis/authorization.k8s.io/v1/selfsubjectaccessreviews', {
    apiVersion: 'authorization.k8s.io/v1',
    kind: 'SelfSubjectAccessReview',
    spec: { resourceAttributes: { group: attrs.group ?? '', ...attrs } },
  });
  if (r.status !== 201) throw new Error(`SelfSubjectAccessReview: HTTP ${r.status} ${r.body}`);
  return (JSON.parse(r.body) as { status: { allowed: boolean } }).status.allowed;
}

/** RBAC changes reach the authorizer through its informer: wait until `check` holds. */
export async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * Apply the operator's ServiceAccount and RBAC from deploy/ (overlays/namespace-secrets by default) for real, creating
 * the namespaces they live in, and return a kubeconfig for exactly the ServiceAccount's identity,
 * once the authorizer grants it (list VirtualMachineMemories, get Secrets in each secret namespace).
 */
export async function applyOperatorRbac(env: KubeEnv, opts: ApplyRbacOptions = {}): Promise<KubeUser> {
  const kustomization = opts.kustomization ?? DEFAULT_RBAC_KUSTOMIZATION;
  const { objects } = await renderKustomization(kustomization);
  const rbac = objects.filter((o) => RBAC_KINDS.has(o.kind));
  if (!rbac.some((o) => o.kind === 'ServiceAccount' && o.metadata.name === OPERATOR_SERVICE_ACCOUNT)) {
    throw new Error(`deploy/${kustomization} has no ServiceAccount ${OPERATOR_SERVICE_ACCOUNT}`);
  }
  const secretNamespaces = opts.secretNamespaces ?? [BASE_SECRET_NAMESPACE];
  const extra = secretNamespaces.filter((ns) => ns !== BASE_SECRET_NAMESPACE).flatMap((ns) => secretAccessFor(rbac, ns));
  const all = [...rbac, ...extra];
  await ensureNamespaces(env, [OPERATOR_NAMESPACE, ...all.map((o) => o.metadata.namespace).filter((n): n is string => !!n)]);
  await applyObjects(env, all);
  const user = await env.userKubeConfig(OPERATOR_USER, OPERATOR_GROUPS);
  const hasSecretRole = all.some((o) => o.kind === 'Role' && o.metadata.name === 'vmmem-secrets');
  await waitFor('the operator RBAC to take effect', async () => {
    for (const ns of hasSecretRole ? secretNamespaces : []) {
      if (!(await selfCan(env, user, { verb: 'get', resource: 'secrets', namespace: ns }))) return false;
    }
    return selfCan(env, user, { verb: 'list', group: 'vmmem.io', resource: 'virtualmachinememories', namespace: secretNamespaces[0] ?? BASE_SECRET_NAMESPACE });
  });
  return user;
}
