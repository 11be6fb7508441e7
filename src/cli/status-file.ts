/**
 * Standalone status a user can read without the API server: `run
 * --status-file <path>` writes every object with its status as a v1 List
 * (what `kubectl get -o yaml` prints), replaced atomically (write + rename)
 * so a reader never sees half a file. It must never be one of the manifests:
 * overwriting a manifest would change what vmmem manages.
 */
import { renameSync, statSync, writeFileSync } from 'node:fs';
import { extname, isAbsolute, relative, resolve } from 'node:path';
import { stringify } from 'yaml';
import type { Logger, StoredObject } from '../controller/ports.ts';
import { expandPaths } from '../manifests/load.ts';
import type { ManifestStore } from '../standalone/store.ts';
import { UsageError } from './args.ts';

export function formatObjects(objects: readonly StoredObject[], output: 'yaml' | 'json'): string {
  const list = { apiVersion: 'v1', kind: 'List', metadata: {}, items: objects.map(publicView) };
  return output === 'json' ? JSON.stringify(list, null, 2) : stringify(list, { lineWidth: 0 }).trimEnd();
}

/** Objects as a user would see them from the API server (no standalone-internal uid). */
function publicView(obj: StoredObject): StoredObject {
  const { uid: _uid, ...metadata } = obj.metadata;
  return { apiVersion: obj.apiVersion, kind: obj.kind, metadata: metadata as StoredObject['metadata'], spec: obj.spec, ...(obj.status ? { status: obj.status } : {}) };
}

const MANIFEST_EXTENSIONS = new Set(['.yaml', '.yml', '.json']);

/** Refuses a status file that is a manifest, or that a manifests directory would read back as one. */
export function checkStatusFile(path: string, manifests: readonly string[]): void {
  const target = resolve(path);
  let files: string[];
  try {
    files = expandPaths(manifests.filter((m) => m !== '-'));
  } catch {
    return; // a missing manifests path is reported by the store, with its own message
  }
  if (files.some((f) => resolve(f) === target)) throw new UsageError(`--status-file ${path} is one of the manifests; vmmem never overwrites manifests`);
  for (const m of manifests) {
    if (m === '-' || !statSync(m).isDirectory()) continue;
    const rel = relative(resolve(m), target);
    const inside = rel !== '' && !rel.startsWith('..') && !isAbsolute(rel);
    if (inside && MANIFEST_EXTENSIONS.has(extname(target))) {
      throw new UsageError(`--status-file ${path} is inside the manifests directory ${m} and would be read back as a manifest; put it elsewhere or give it another extension (e.g. .status)`);
    }
  }
}

export function writeStatusFile(path: string, objects: readonly StoredObject[]): void {
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, formatObjects(objects, 'yaml') + '\n', { mode: 0o644 });
  renameSync(tmp, path);
}

/** Rewrites the status file when anything in it changed (checked every second: status changes are not evented). */
export class StatusFileWriter {
  private timer: NodeJS.Timeout | undefined;
  private last = '';
  private readonly store: ManifestStore;
  private readonly path: string;
  private readonly log: Logger;

  constructor(store: ManifestStore, path: string, log: Logger) {
    this.store = store;
    this.path = path;
    this.log = log;
  }

  start(): void {
    this.timer = setInterval(() => this.flush(), 1000);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.flush();
  }

  flush(): void {
    const objects = [...this.store.list('Hypervisor'), ...this.store.list('VirtualMachineMemory')];
    const text = JSON.stringify(objects);
    if (text === this.last) return;
    try {
      writeStatusFile(this.path, objects);
      this.last = text;
    } catch (err) {
      this.log.warn({ path: this.path, err: (err as Error).message }, 'cannot write the status file');
    }
  }
}
