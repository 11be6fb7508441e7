/**
 * What the controller needs from the world that stores its objects. Two
 * implementations: the Kubernetes API server (src/kube) and a directory of
 * manifests (src/standalone). The reconciler sees only this.
 */

/**
 * The one logger shape every layer above the protocol clients takes: pino's
 * calls (fields object first, message second, or a message alone) and
 * `child` for loggers bound to a controller or a reconcile. Declared here
 * because the store implementations (kube, standalone) take it as the
 * controller does; pino itself stays behind createLogger in log.ts.
 */
export interface Logger {
  info(obj: object | string, msg?: string): void;
  warn(obj: object | string, msg?: string): void;
  error(obj: object | string, msg?: string): void;
  debug(obj: object | string, msg?: string): void;
  child(bindings: Record<string, unknown>): Logger;
}

export interface ObjectKey {
  namespace: string;
  name: string;
}

export function keyString(key: ObjectKey): string {
  return `${key.namespace}/${key.name}`;
}

export function parseKey(text: string): ObjectKey {
  const i = text.indexOf('/');
  return i < 0 ? { namespace: 'default', name: text } : { namespace: text.slice(0, i), name: text.slice(i + 1) };
}

export interface ObjectMeta {
  name: string;
  namespace: string;
  uid?: string;
  generation?: number;
  resourceVersion?: string;
  creationTimestamp?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

/** An object of one of our kinds as stored: spec unvalidated (the controller validates it). */
export interface StoredObject {
  apiVersion: string;
  kind: string;
  metadata: ObjectMeta;
  spec: unknown;
  status?: Record<string, unknown>;
}

export type ResourceKind = 'VirtualMachineMemory' | 'Hypervisor';

export type ChangeType = 'add' | 'update' | 'delete';

export interface ChangeHandlers {
  onChange(kind: ResourceKind, key: ObjectKey, change: ChangeType): void;
  /** A Secret changed (credentials rotated): the Hypervisors that use it need a reconnect. */
  onSecretChange?(key: ObjectKey): void;
}

export type EventType = 'Normal' | 'Warning';

export interface ObjectStore {
  /** Starts caches/watches; resolves once the first list of every kind is in the cache. */
  start(handlers: ChangeHandlers): Promise<void>;
  stop(): Promise<void>;
  /** True once start() resolved and the caches are current (drives /readyz). */
  readonly synced: boolean;

  /** Objects from the cache: shared, read-only (never mutate them; updateStatus gets its own copy). */
  get(kind: ResourceKind, key: ObjectKey): StoredObject | undefined;
  list(kind: ResourceKind): StoredObject[];

  /** Secret data decoded to strings; undefined when the Secret does not exist. Never logged. */
  getSecret(key: ObjectKey): Promise<Record<string, string> | undefined>;

  /**
   * Writes status through the status subresource. `compute` gets the freshest
   * object and returns the status to write (or undefined to write nothing);
   * on a conflict the store re-reads and calls it again.
   */
  updateStatus(kind: ResourceKind, key: ObjectKey, compute: (fresh: StoredObject) => Record<string, unknown> | undefined): Promise<void>;

  /** Records an Event about an object (events.k8s.io/v1 in a cluster). */
  recordEvent(obj: StoredObject, type: EventType, reason: string, note: string, action: string): Promise<void>;
}
