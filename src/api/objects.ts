/** Whole objects (apiVersion, kind, metadata, spec, status) for validation and the controller. */
import { z } from 'zod';
import { API_VERSION, HYPERVISOR_KIND, VMM_KIND } from './group.ts';
import { DNS1123_SUBDOMAIN } from './fields.ts';
import { HypervisorSpecSchema, HypervisorStatusSchema } from './hypervisor.ts';
import { VMMSpecSchema, VMMStatusSchema } from './vmm.ts';

export const ObjectMetaSchema = z.looseObject({
  name: z.string().min(1).max(253).regex(new RegExp(DNS1123_SUBDOMAIN), 'must be a lowercase DNS-1123 name (a-z, 0-9, "-", ".")'),
  namespace: z.string().min(1).max(63).regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, 'must be a DNS-1123 label').optional(),
  generation: z.number().int().optional(),
  resourceVersion: z.string().optional(),
  uid: z.string().optional(),
  creationTimestamp: z.string().optional(),
  labels: z.record(z.string(), z.string()).optional(),
  annotations: z.record(z.string(), z.string()).optional(),
});

export const VirtualMachineMemorySchema = z.strictObject({
  apiVersion: z.literal(API_VERSION),
  kind: z.literal(VMM_KIND),
  metadata: ObjectMetaSchema,
  spec: VMMSpecSchema,
  status: VMMStatusSchema.optional(),
});
export type VirtualMachineMemory = z.infer<typeof VirtualMachineMemorySchema>;

export const HypervisorSchema = z.strictObject({
  apiVersion: z.literal(API_VERSION),
  kind: z.literal(HYPERVISOR_KIND),
  metadata: ObjectMetaSchema,
  spec: HypervisorSpecSchema,
  status: HypervisorStatusSchema.optional(),
});
export type Hypervisor = z.infer<typeof HypervisorSchema>;

/** The schema for a kind vmmem owns, or undefined for kinds it ignores. */
export function schemaFor(apiVersion: unknown, kind: unknown) {
  if (typeof apiVersion !== 'string' || !apiVersion.startsWith('vmmem.io/')) return undefined;
  if (kind === VMM_KIND) return VirtualMachineMemorySchema;
  if (kind === HYPERVISOR_KIND) return HypervisorSchema;
  return undefined;
}

/**
 * `field: null` means "absent" to the Kubernetes API server (it drops nulls
 * from custom resources before validating). vmmem reads manifests the same
 * way so `vmmem validate`, standalone mode and `kubectl apply` agree.
 */
export function withoutNulls<T>(value: T): T {
  if (Array.isArray(value)) return value.map((v) => withoutNulls(v)) as T;
  if (value === null || typeof value !== 'object') return value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) if (v !== null) out[k] = withoutNulls(v);
  return out as T;
}
