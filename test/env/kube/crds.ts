// CRD installation, as envtest's crd.go: create-or-replace every CustomResourceDefinition found in
// the given files or directories, then wait until each is Established and served by discovery.
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as k8s from '@kubernetes/client-node';
import { sleep, type KubeResponse } from './process.ts';

async function collectFiles(p: string): Promise<string[]> {
  const entries = await readdir(p, { withFileTypes: true }).catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOTDIR') return null;
    throw e;
  });
  if (entries === null) return [p];
  const out: string[] = [];
  for (const e of entries.sort((a, b) => a.name.localeCompare(b.name))) {
    const full = join(p, e.name);
    if (e.isDirectory()) out.push(...(await collectFiles(full)));
    else if (/\.(ya?ml|json)$/.test(e.name)) out.push(full);
  }
  return out;
}

export async function installCrds(
  kubeConfig: k8s.KubeConfig,
  request: (method: string, path: string, body?: unknown) => Promise<KubeResponse>,
  paths: string[],
  timeoutMs: number,
): Promise<string[]> {
  const api = kubeConfig.makeApiClient(k8s.ApiextensionsV1Api);
  const crds: k8s.V1CustomResourceDefinition[] = [];
  for (const p of paths) {
    for (const file of await collectFiles(p)) {
      const text = await readFile(file, 'utf8');
      const docs: unknown[] = file.endsWith('.json') ? [JSON.parse(text)] : k8s.loadAllYaml(text);
      for (const doc of docs) {
        const d = doc as { kind?: string; apiVersion?: string } | null;
        if (d?.kind === 'CustomResourceDefinition' && d.apiVersion === 'apiextensions.k8s.io/v1') {
          crds.push(doc as k8s.V1CustomResourceDefinition);
        }
      }
    }
  }
  if (crds.length === 0) throw new Error(`installCrds: no apiextensions.k8s.io/v1 CustomResourceDefinition in ${paths.join(', ')}`);

  for (const crd of crds) {
    const name = crd.metadata?.name;
    if (!name) throw new Error('installCrds: a CRD without metadata.name');
    try {
      await api.createCustomResourceDefinition({ body: crd });
    } catch (e) {
      if (!(e instanceof k8s.ApiException) || e.code !== 409) throw new Error(`installCrds: create ${name}: ${describe(e)}`, { cause: e });
      const existing = await api.readCustomResourceDefinition({ name });
      const body = { ...crd, metadata: { ...crd.metadata, resourceVersion: existing.metadata?.resourceVersion } };
      await api.replaceCustomResourceDefinition({ name, body }).catch((e2: unknown) => {
        throw new Error(`installCrds: replace ${name}: ${describe(e2)}`, { cause: e2 });
      });
    }
  }

  const deadline = Date.now() + timeoutMs;
  for (const crd of crds) {
    const name = crd.metadata!.name!;
    let conds: k8s.V1CustomResourceDefinitionCondition[] = [];
    for (;;) {
      const cur = await api.readCustomResourceDefinition({ name });
      conds = cur.status?.conditions ?? [];
      const cond = (t: string) => conds.find((c) => c.type === t);
      if (cond('NamesAccepted')?.status === 'False') {
        throw new Error(`installCrds: ${name} names not accepted: ${cond('NamesAccepted')?.message}`);
      }
      if (cond('Established')?.status === 'True') break;
      if (Date.now() > deadline) throw new Error(`installCrds: ${name} not Established: ${JSON.stringify(conds)}`);
      await sleep(100);
    }
    // Established means the handler is installed; also wait until discovery serves every version.
    for (const v of crd.spec.versions.filter((v) => v.served)) {
      const path = `/apis/${crd.spec.group}/${v.name}`;
      for (;;) {
        const r = await request('GET', path);
        if (r.status === 200) {
          const list = JSON.parse(r.body) as { resources?: { name: string }[] };
          if (list.resources?.some((res) => res.name === crd.spec.names.plural)) break;
        }
        if (Date.now() > deadline) throw new Error(`installCrds: ${crd.spec.names.plural} not in discovery ${path}: ${r.status} ${r.body}`);
        await sleep(100);
      }
    }
  }
  return crds.map((c) => c.metadata!.name!);
}

/** Readable text for a client-node error (ApiException carries the Status body). */
export function describe(e: unknown): string {
  if (e instanceof k8s.ApiException) {
    const body = e.body as unknown;
    let msg: string;
    if (typeof body === 'string') {
      try {
        msg = (JSON.parse(body) as { message?: string }).message ?? body;
      } catch {
        msg = body;
      }
    } else msg = (body as { message?: string } | undefined)?.message ?? JSON.stringify(body);
    return `HTTP ${e.code}: ${msg}`;
  }
  return e instanceof Error ? e.message : String(e);
}
