/**
 * Standalone mode's ObjectStore: a directory of manifests (Hypervisors,
 * VirtualMachineMemories, Secrets) instead of the API server, for hosts
 * without Kubernetes and for trying vmmem out. Status lives in memory; the
 * directory is re-read when it changes. Same controller, same reconcilers.
 */
import { existsSync, statSync, watch } from 'node:fs';
import type { FSWatcher } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { GROUP, HYPERVISOR_KIND, VERSION, VMM_KIND } from '../api/group.ts';
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
  /** What the last read could not load (unreadable paths, YAML errors, unknown apiVersions, duplicates): `run --once` exits 1 on any. */
  problems: string[] = [];
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
    // Editors and `cp` write files in several steps: wait for the burst to end, then until every
    // file's size and mtime hold still between two looks, so a half-written file is never applied.
    if (this.reloadTimer) clearTimeout(this.reloadTimer);
    this.reloadTimer = setTimeout(() => {
      const before = this.fileStamps();
      this.reloadTimer = setTimeout(() => {
        if (this.fileStamps() !== before) this.scheduleReload();
        else this.reload({ keepOnError: true });
      }, STABLE_MS);
    }, 200);
  }

  private fileStamps(): string {
    try {
      return expandPaths(this.paths.filter((p) => p !== '-'))
        .map((f) => {
          const st = statSync(f);
          return `${f}:${st.size}:${st.mtimeMs}`;
        })
        .join('|');
    } catch {
      return 'unreadable';
    }
  }

  /**
   * Reads every manifest again and reports what changed. The first read loads what it can and
   * records the rest in `problems`; a later read (`keepOnError`, the watch) that finds any problem
   * changes nothing: a file caught mid-edit must not delete or half-apply objects.
   */
  reload(opts: { keepOnError?: boolean } = {}): void {
    const loaded = this.read();
    if (opts.keepOnError && this.problems.length > 0) {
      this.opts.log.error({ problems: this.problems }, 'manifests not reloaded: fix the problems above; the objects loaded before stay as they were');
      return;
    }
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
    const problems: string[] = [];
    this.problems = problems;
    const fail = (fields: Record<string, unknown>, message: string) => {
      problems.push(message);
      this.opts.log.error({ ...fields, err: message }, 'manifest not loaded');
    };
    let files: string[];
    try {
      files = expandPaths(this.paths);
    } catch (err) {
      fail({ paths: this.paths }, `cannot read manifests: ${(err as Error).message}`);
      return { objects: this.objects, secrets: this.secrets };
    }
    const seenAt = new Map<string, string>();
    const duplicates = new Set<string>();
    for (const file of files) {
      let parsed;
      try {
        parsed = loadManifestFile(file);
      } catch (err) {
        fail({ file }, `${file}: cannot read: ${(err as Error).message}`);
        continue;
      }
      for (const p of parsed.problems) fail({ file: p.file, line: p.line }, `${p.file}:${p.line}: ${p.message}`);
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
        if (typeof o.apiVersion !== 'string' || o.apiVersion.split('/')[0] !== GROUP) continue;
        if (o.apiVersion !== `${GROUP}/${VERSION}` || (o.kind !== VMM_KIND && o.kind !== HYPERVISOR_KIND)) {
          fail({ file, line: mo.line }, `${file}:${mo.line}: ${String(o.kind)}/${name}: ${o.apiVersion} ${String(o.kind)} is not served by this vmmem (it serves ${GROUP}/${VERSION} ${VMM_KIND} and ${HYPERVISOR_KIND}); not applied`);
          continue;
        }
        const id = `${o.kind}/${namespace}/${name}`;
        const here = `${file}:${mo.line}`;
        const first = seenAt.get(id);
        if (first !== undefined) {
          fail({ file, line: mo.line }, `${here}: ${o.kind} ${namespace}/${name}: duplicate of ${first}; neither is applied`);
          duplicates.add(id);
          continue;
        }
        seenAt.set(id, here);
        const spec = o.kind === HYPERVISOR_KIND ? withSimPathResolved(o.spec, file) : o.spec;
        const specText = JSON.stringify(spec ?? null);
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
          spec,
        });
      }
    }
    // Which copy of a duplicate is meant cannot be known: applying either could be the wrong VM size.
    for (const id of duplicates) objects.delete(id);
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

const STABLE_MS = 300;

/**
 * Standalone `sim:` inventory paths are found from the manifest file that names them, so a
 * manifest directory works from any working directory (docs/sim.md):
 * - a relative path (`sim:../sim/kvm.yaml`, `sim://rel/x.yaml`) is relative to the manifest's directory;
 * - an absolute path that does not exist (`sim:///examples/sim/kvm.yaml`, the examples' form) is
 *   looked up under the manifest's directory and each directory above it, first match wins
 *   (a repository-rooted path); if none has it, it is left to the driver's own rules.
 * `sim:memory:` and manifests from stdin (no file: the working directory applies) are left as they are.
 */
function withSimPathResolved(spec: unknown, file: string): unknown {
  const uri = (spec as { uri?: unknown } | undefined)?.uri;
  if (typeof uri !== 'string' || !uri.startsWith('sim:') || uri.startsWith('sim:memory:') || file === '-') return spec;
  const rest = uri.slice('sim:'.length).replace(/^\/\//, '');
  const [path = '', ...tail] = rest.split(/(?=[?#])/);
  let decoded: string;
  try {
    decoded = decodeURIComponent(path);
  } catch {
    return spec; // the driver reports the bad encoding with its own message
  }
  if (decoded === '' || decoded === '/') return spec;
  const base = dirname(resolve(file));
  let found: string | undefined;
  if (!isAbsolute(decoded)) found = resolve(base, decoded);
  else if (!existsSync(decoded)) {
    for (let dir = base; ; dir = dirname(dir)) {
      const candidate = join(dir, decoded);
      if (existsSync(candidate)) {
        found = candidate;
        break;
      }
      if (dirname(dir) === dir) break;
    }
  }
  return found ? { ...(spec as object), uri: `sim://${found}${tail.join('')}` } : spec;
}

function decodeSecret(o: Record<string, unknown>): Record<string, string> {
  const out: Record<string, string> = {};
  const data = o.data as Record<string, unknown> | undefined;
  if (data && typeof data === 'object') for (const [k, v] of Object.entries(data)) if (typeof v === 'string') out[k] = Buffer.from(v, 'base64').toString('utf8');
  const stringData = o.stringData as Record<string, unknown> | undefined;
  if (stringData && typeof stringData === 'object') for (const [k, v] of Object.entries(stringData)) if (typeof v === 'string') out[k] = v;
  return out;
}
