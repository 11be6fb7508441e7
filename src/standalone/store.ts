/**
 * Standalone mode's ObjectStore: a directory of manifests (Hypervisors,
 * VirtualMachineMemories, Secrets) instead of the API server, for hosts
 * without Kubernetes and for trying vmmem out. Status lives in memory; the
 * directory is re-read when it changes. Same controller, same reconcilers.
 */
import { watch } from 'node:fs';
import type { FSWatcher } from 'node:fs';
import { HYPERVISOR_KIND, VMM_KIND } from '../api/group.ts';
import { expandPaths, loadManifestFile } from '../manifests/load.ts';
import { withoutNulls } from '../api/objects.ts';
import type { ChangeHandlers, EventType, Logger, ObjectKey, ObjectStore, ResourceKind, StoredObject } from '../controller/ports.ts';
import { keyString } from '../controller/ports.ts';

export interface RecordedEvent {
  time: string;
  object: string;
  type: EventType;
  reason: string;
  note: string;
  action: string;
}

export interface ManifestStoreOptions {
  log: Logger;
  /** Re-read the directory when it changes (default true). */
  watch?: boolean;
  onEvent?: (event: RecordedEvent) => void;
  now?: () => Date;
}

interface Loaded {
  objects: Map<string, StoredObject>; // "Kind/ns/name"
  secrets: Map<string, Record<string, string>>; // "ns/name"
}

export class ManifestStore implements ObjectStore {
  private readonly paths: string[];
  private readonly opts: ManifestStoreOptions;
  private objects = new Map<string, StoredObject>();
  private secrets = new Map<string, Record<string, string>>();
  private readonly statuses = new Map<string, Record<string, unknown>>();
  private readonly generations = new Map<string, { spec: string; generation: number; created: string; uid: string }>();
  private handlers: ChangeHandlers | undefined;
  private watchers: FSWatcher[] = [];
  private reloadTimer: NodeJS.Timeout | undefined;
  private uidCounter = 0;
  readonly events: RecordedEvent[] = [];
  synced = false;

  constructor(paths: string | string[], opts: ManifestStoreOptions) {
    this.paths = Array.isArray(paths) ? paths : [paths];
    this.opts = opts;
  }

  async start(handlers: ChangeHandlers): Promise<void> {
    this.handlers = handlers;
    this.reload();
    if (this.opts.watch !== false) {
      for (const path of this.paths) {
        if (path === '-') continue;
        const w = watch(path, { recursive: true }, () => this.scheduleReload());
        w.on('error', (err) => this.opts.log.warn({ path, err: err.message }, 'cannot watch manifests; changes need a restart'));
        this.watchers.push(w);
      }
    }
    this.synced = true;
  }

  async stop(): Promise<void> {
    for (const w of this.watchers) w.close();
    this.watchers = [];
    if (this.reloadTimer) clearTimeout(this.reloadTimer);
  }

  private scheduleReload(): void {
    // Editors write files in several steps: wait for the burst to end.
    if (this.reloadTimer) clearTimeout(this.reloadTimer);
    this.reloadTimer = setTimeout(() => this.reload(), 200);
  }

  /** Reads every manifest again and reports what changed. Files that fail to parse keep nothing: the error is logged. */
  reload(): void {
    const loaded = this.read();
    const before = this.objects;
    this.objects = loaded.objects;
    const secretsChanged = [...new Set([...this.secrets.keys(), ...loaded.secrets.keys()])].filter(
      (k) => JSON.stringify(this.secrets.get(k)) !== JSON.stringify(loaded.secrets.get(k)),
    );
    this.secrets = loaded.secrets;
    for (const [id, obj] of loaded.objects) {
      const old = before.get(id);
      if (!old) this.notify(obj.kind as ResourceKind, obj.metadata, 'add');
      else if (old.metadata.generation !== obj.metadata.generation) this.notify(obj.kind as ResourceKind, obj.metadata, 'update');
    }
    for (const [id, obj] of before) {
      if (!loaded.objects.has(id)) {
        this.statuses.delete(id);
        this.generations.delete(id);
        this.notify(obj.kind as ResourceKind, obj.metadata, 'delete');
      }
    }
    for (const k of secretsChanged) {
      const [namespace = 'default', name = ''] = k.split('/');
      this.handlers?.onSecretChange?.({ namespace, name });
    }
  }

  private notify(kind: ResourceKind, meta: ObjectKey, change: 'add' | 'update' | 'delete'): void {
    this.handlers?.onChange(kind, { namespace: meta.namespace, name: meta.name }, change);
  }

  private read(): Loaded {
    const objects = new Map<string, StoredObject>();
    const secrets = new Map<string, Record<string, string>>();
    let files: string[];
    try {
      files = expandPaths(this.paths);
    } catch (err) {
      this.opts.log.error({ paths: this.paths, err: (err as Error).message }, 'cannot read manifests');
      return { objects: this.objects, secrets: this.secrets };
    }
    for (const file of files) {
      let parsed;
      try {
        parsed = loadManifestFile(file);
      } catch (err) {
        this.opts.log.error({ file, err: (err as Error).message }, 'cannot read manifest file');
        continue;
      }
      for (const p of parsed.problems) this.opts.log.error({ file: p.file, line: p.line, err: p.message }, 'manifest not loaded');
      for (const mo of parsed.objects) {
        const o = withoutNulls(mo.object);
        const meta = (o.metadata ?? {}) as Record<string, unknown>;
        const name = typeof meta.name === 'string' ? meta.name : undefined;
        const namespace = typeof meta.namespace === 'string' ? meta.namespace : 'default';
        if (!name) continue;
        if (o.apiVersion === 'v1' && o.kind === 'Secret') {
          secrets.set(`${namespace}/${name}`, decodeSecret(o));
          continue;
        }
        if (typeof o.apiVersion !== 'string' || !o.apiVersion.startsWith('vmmem.io/')) continue;
        if (o.kind !== VMM_KIND && o.kind !== HYPERVISOR_KIND) continue;
        const id = `${o.kind}/${namespace}/${name}`;
        const specText = JSON.stringify(o.spec ?? null);
        let gen = this.generations.get(id);
        if (!gen) {
          gen = { spec: specText, generation: 1, created: (this.opts.now?.() ?? new Date()).toISOString(), uid: `standalone-${++this.uidCounter}` };
          this.generations.set(id, gen);
        } else if (gen.spec !== specText) {
          gen.spec = specText;
          gen.generation++;
        }
        objects.set(id, {
          apiVersion: o.apiVersion,
          kind: o.kind,
          metadata: { ...(meta as object), name, namespace, generation: gen.generation, creationTimestamp: gen.created, uid: gen.uid },
          spec: o.spec,
        });
      }
    }
    return { objects, secrets };
  }

  get(kind: ResourceKind, key: ObjectKey): StoredObject | undefined {
    const id = `${kind}/${key.namespace}/${key.name}`;
    const obj = this.objects.get(id);
    if (!obj) return undefined;
    const status = this.statuses.get(id);
    return status ? { ...obj, status } : { ...obj };
  }

  list(kind: ResourceKind): StoredObject[] {
    const out: StoredObject[] = [];
    for (const obj of this.objects.values()) if (obj.kind === kind) out.push(this.get(kind, obj.metadata) as StoredObject);
    return out;
  }

  async getSecret(key: ObjectKey): Promise<Record<string, string> | undefined> {
    return this.secrets.get(keyString(key));
  }

  async updateStatus(kind: ResourceKind, key: ObjectKey, compute: (fresh: StoredObject) => Record<string, unknown> | undefined): Promise<void> {
    const fresh = this.get(kind, key);
    if (!fresh) return;
    const status = compute(fresh);
    if (status !== undefined) this.statuses.set(`${kind}/${key.namespace}/${key.name}`, structuredClone(status));
  }

  async recordEvent(obj: StoredObject, type: EventType, reason: string, note: string, action: string): Promise<void> {
    const event: RecordedEvent = {
      time: (this.opts.now?.() ?? new Date()).toISOString(),
      object: `${obj.kind}/${obj.metadata.namespace}/${obj.metadata.name}`,
      type,
      reason,
      note,
      action,
    };
    this.events.push(event);
    if (this.events.length > 1000) this.events.shift();
    this.opts.onEvent?.(event);
  }
}

function decodeSecret(o: Record<string, unknown>): Record<string, string> {
  const out: Record<string, string> = {};
  const data = o.data as Record<string, unknown> | undefined;
  if (data && typeof data === 'object') for (const [k, v] of Object.entries(data)) if (typeof v === 'string') out[k] = Buffer.from(v, 'base64').toString('utf8');
  const stringData = o.stringData as Record<string, unknown> | undefined;
  if (stringData && typeof stringData === 'object') for (const [k, v] of Object.entries(stringData)) if (typeof v === 'string') out[k] = v;
  return out;
}
