/**
 * CustomResourceDefinitions generated from the zod schemas, so the API
 * server validates exactly what `vmmem validate` does (structural schema +
 * CEL x-kubernetes-validations). `npm run generate` writes them to crds/.
 */
import { z } from 'zod';
import { GROUP, HYPERVISOR_KIND, HYPERVISOR_PLURAL, VERSION, VMM_KIND, VMM_PLURAL } from './group.ts';
import { HypervisorSpecSchema, HypervisorStatusSchema } from './hypervisor.ts';
import { VMMSpecSchema, VMMStatusSchema } from './vmm.ts';

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type JsonObject = { [key: string]: Json };

/**
 * Turns zod's OpenAPI 3.0 output into a Kubernetes structural schema:
 * no `additionalProperties: false` (the API server prunes and kubectl's
 * strict field validation reports unknown fields), no JSON-safe-integer
 * bounds on int64 fields.
 */
function structural(node: Json): Json {
  if (Array.isArray(node)) return node.map(structural);
  if (node === null || typeof node !== 'object') return node;
  const out: JsonObject = {};
  for (const [key, value] of Object.entries(node)) {
    if (key === '$schema') continue;
    if (key === 'additionalProperties' && value === false) continue;
    if ((key === 'minimum' || key === 'maximum') && node.type === 'integer' && Math.abs(value as number) === Number.MAX_SAFE_INTEGER) continue;
    out[key] = structural(value);
  }
  return out;
}

function openApi(schema: z.ZodType): JsonObject {
  return structural(z.toJSONSchema(schema, { target: 'openapi-3.0', io: 'input', unrepresentable: 'throw' }) as Json) as JsonObject;
}

interface PrinterColumn {
  name: string;
  type: string;
  jsonPath: string;
  description: string;
  priority?: number;
}

function crd(opts: {
  kind: string;
  plural: string;
  shortNames: string[];
  description: string;
  spec: z.ZodType;
  status: z.ZodType;
  columns: PrinterColumn[];
}): JsonObject {
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: `${opts.plural}.${GROUP}` },
    spec: {
      group: GROUP,
      names: {
        kind: opts.kind,
        listKind: `${opts.kind}List`,
        plural: opts.plural,
        singular: opts.kind.toLowerCase(),
        shortNames: opts.shortNames,
        categories: ['vmmem'],
      },
      scope: 'Namespaced',
      versions: [
        {
          name: VERSION,
          served: true,
          storage: true,
          subresources: { status: {} },
          additionalPrinterColumns: opts.columns as unknown as Json,
          schema: {
            openAPIV3Schema: {
              type: 'object',
              description: opts.description,
              required: ['spec'],
              properties: {
                apiVersion: { type: 'string', description: 'APIVersion defines the versioned schema of this representation of an object.' },
                kind: { type: 'string', description: 'Kind is a string value representing the REST resource this object represents.' },
                metadata: { type: 'object' },
                spec: openApi(opts.spec),
                status: openApi(opts.status),
              },
            },
          },
        },
      ],
    },
  };
}

const readyColumn: PrinterColumn = { name: 'Ready', type: 'string', jsonPath: '.status.conditions[?(@.type=="Ready")].status', description: 'Ready condition status.' };
const ageColumn: PrinterColumn = { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp', description: 'Age of the object.' };

export function virtualMachineMemoryCrd(): JsonObject {
  return crd({
    kind: VMM_KIND,
    plural: VMM_PLURAL,
    shortNames: ['vmm', 'vmmem'],
    description:
      'VirtualMachineMemory declares the memory of one virtual machine (maxMemory, memory, reservation, limit). vmmem observes the VM on its Hypervisor, applies the smallest safe sequence of changes and reports in status what took effect, what waits for a restart or power-off, and what the hypervisor cannot do.',
    spec: VMMSpecSchema,
    status: VMMStatusSchema,
    columns: [
      readyColumn,
      { name: 'VM', type: 'string', jsonPath: '.spec.vm.name', description: 'VM name on the hypervisor.' },
      { name: 'Max', type: 'string', jsonPath: '.status.observed.maxMemory', description: 'maxMemory in effect.' },
      { name: 'Memory', type: 'string', jsonPath: '.status.observed.memory', description: 'Balloon target in effect.' },
      { name: 'Actual', type: 'string', jsonPath: '.status.observed.actualMemory', description: 'Memory the guest actually holds.' },
      { name: 'Pending', type: 'string', jsonPath: '.status.pending[*].field', description: 'Fields waiting for a restart or power-off.' },
      { name: 'Guest', type: 'string', jsonPath: '.status.observed.guest.used', description: 'Memory the guest reports using (guards shrinks: GuestMemoryInUse).', priority: 1 },
      { name: 'Reason', type: 'string', jsonPath: '.status.conditions[?(@.type=="Ready")].reason', description: 'Ready condition reason.', priority: 1 },
      ageColumn,
    ],
  });
}

export function hypervisorCrd(): JsonObject {
  return crd({
    kind: HYPERVISOR_KIND,
    plural: HYPERVISOR_PLURAL,
    shortNames: ['hv'],
    description: 'Hypervisor tells vmmem how to reach one libvirt host, ESX host or vCenter (or the built-in simulator) and reports whether it is connected.',
    spec: HypervisorSpecSchema,
    status: HypervisorStatusSchema,
    columns: [
      readyColumn,
      { name: 'Type', type: 'string', jsonPath: '.status.type', description: 'Hypervisor type.' },
      { name: 'Version', type: 'string', jsonPath: '.status.version', description: 'Hypervisor version.' },
      { name: 'Host-Mem', type: 'string', jsonPath: '.status.capacity.hostMemory', description: 'Host memory.' },
      { name: 'Committed', type: 'string', jsonPath: '.status.capacity.committed', description: 'Σ maxMemory of the powered-on VMs on the host.', priority: 1 },
      { name: 'Free', type: 'string', jsonPath: '.status.capacity.free', description: 'Budget (host memory × overcommitRatio − reserved) minus committed; empty without spec.capacity.overcommitRatio.' },
      { name: 'URI', type: 'string', jsonPath: '.spec.uri', description: 'Connection URI.', priority: 1 },
      { name: 'Owner', type: 'string', jsonPath: '.status.shardOwner', description: 'Sharded mode: the replica reconciling this Hypervisor.', priority: 1 },
      ageColumn,
    ],
  });
}

/** File name → CRD, as checked into crds/. */
export function allCrds(): Record<string, JsonObject> {
  return {
    [`${GROUP}_${VMM_PLURAL}.yaml`]: virtualMachineMemoryCrd(),
    [`${GROUP}_${HYPERVISOR_PLURAL}.yaml`]: hypervisorCrd(),
  };
}
