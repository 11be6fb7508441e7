/**
 * The smallest ObjectStore the reconciler unit tests need: objects in a Map,
 * copies out, status computed on the stored copy, Events kept for assertions.
 * Names are namespaced "default" and creation times follow insertion order.
 */
import type { ChangeHandlers, ObjectKey, ObjectStore, ResourceKind, StoredObject } from '../../src/controller/ports.ts';

export class Store implements ObjectStore {
  objects = new Map<string, StoredObject>();
  events: { object: string; reason: string; note: string }[] = [];
  synced = true;
  async start(_h: ChangeHandlers) {}
  async stop() {}
  put(kind: ResourceKind, name: string, spec: Record<string, unknown>) {
    const id = `${kind}/default/${name}`;
    const old = this.objects.get(id);
    const generation = (old?.metadata.generation ?? 0) + 1;
    this.objects.set(id, { apiVersion: 'vmmem.io/v1alpha1', kind, metadata: { namespace: 'default', name, generation, creationTimestamp: `2026-01-01T00:00:0${this.objects.size}Z` }, spec, ...(old?.status ? { status: old.status } : {}) } as StoredObject);
  }
  get(kind: ResourceKind, key: ObjectKey) {
    const o = this.objects.get(`${kind}/${key.namespace}/${key.name}`);
    return o ? structuredClone(o) : undefined;
  }
  list(kind: ResourceKind) {
    return [...this.objects.values()].filter((o) => o.kind === kind).map((o) => structuredClone(o));
  }
  async getSecret() {
    return undefined;
  }
  async updateStatus(kind: ResourceKind, key: ObjectKey, compute: (fresh: StoredObject) => Record<string, unknown> | undefined) {
    const o = this.objects.get(`${kind}/${key.namespace}/${key.name}`);
    if (!o) return;
    const next = compute(structuredClone(o));
    if (next !== undefined) o.status = structuredClone(next);
  }
  async recordEvent(obj: StoredObject, _type: string, reason: string, note: string) {
    this.events.push({ object: obj.metadata.name, reason, note });
  }
}
