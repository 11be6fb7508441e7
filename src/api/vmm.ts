/**
 * VirtualMachineMemory: the memory a VM should have (DESIGN §1, §4).
 * The zod schemas here are the single source of truth for the TypeScript
 * types, the CRD (scripts/generate-crds.ts), `vmmem validate` and the
 * controller's runtime checks.
 */
import { z } from 'zod';
import { ConditionsSchema } from './conditions.ts';
import type { CelRule } from './fields.ts';
import { limitField, localRef, quantityField, UNLIMITED } from './fields.ts';
import { HYPERVISOR_TYPES } from './hypervisor-type.ts';
import { isQuantity, parseQuantity } from './quantity.ts';
import { UUID_RE } from './uuid.ts';


export const VMRefSchema = z
  .strictObject({
    name: z.string().min(1).max(255).optional().meta({ description: 'The VM\'s name on its hypervisor (libvirt domain name, vSphere VM name or inventory path). Exactly one of name and uuid.' }),
    uuid: z
      .string()
      .regex(UUID_RE, 'must be a UUID such as 4b6f0a4e-0b7f-4bd4-9b5d-2a0e8e1f6c3a')
      .optional()
      .meta({ description: 'The VM\'s UUID (libvirt domain UUID; vSphere BIOS or instance UUID). Exactly one of name and uuid.' }),
  })
  .superRefine((ref, ctx) => {
    if ((ref.name === undefined) === (ref.uuid === undefined)) ctx.addIssue({ code: 'custom', message: 'set exactly one of name or uuid' });
  })
  .meta({
    description: 'Which VM on the hypervisor: by name or by uuid, exactly one.',
    'x-kubernetes-validations': [{ rule: 'has(self.name) != has(self.uuid)', message: 'spec.vm: set exactly one of name or uuid' }],
  });

/** A rule between fields of the spec: one CEL expression for the API server, one check for us. */
interface SpecRule {
  cel: CelRule;
  /** Returns the problem (field path relative to spec, message) or undefined. Runs only on parseable fields. */
  check(spec: RawSpec): { path: string; message: string } | undefined;
}

interface RawSpec {
  maxMemory: string | number;
  memory?: string | number | undefined;
  reservation?: string | number | undefined;
  limit?: string | number | undefined;
}

const q = (v: string | number | undefined) => (v !== undefined && isQuantity(v) ? parseQuantity(v, 'v') : undefined);

// Quantity fields are int or string (x-kubernetes-int-or-string): CEL's quantity() takes a
// string, so an integer goes through string() first; each rule guards against values the
// field's own rules already refuse, so one bad field yields one message.
const isQ = (x: string) => `(type(${x}) == int || isQuantity(${x}))`;
const Q = (x: string) => `(type(${x}) == int ? quantity(string(${x})) : quantity(${x}))`;
const text = (x: string) => `string(${x})`;
const MEMORY_OR_MAX = '(has(self.memory) ? self.memory : self.maxMemory)';

export const SPEC_RULES: SpecRule[] = [
  {
    cel: {
      rule: `!has(self.memory) || !${isQ('self.memory')} || !${isQ('self.maxMemory')} || ${Q('self.memory')}.compareTo(${Q('self.maxMemory')}) <= 0`,
      messageExpression: `'spec.memory (' + ${text('self.memory')} + ') must not exceed spec.maxMemory (' + ${text('self.maxMemory')} + ')'`,
      fieldPath: '.memory',
      reason: 'FieldValueInvalid',
    },
    check(s) {
      const mem = q(s.memory), max = q(s.maxMemory);
      if (mem !== undefined && max !== undefined && mem > max) return { path: 'memory', message: `spec.memory (${s.memory}) must not exceed spec.maxMemory (${s.maxMemory})` };
      return undefined;
    },
  },
  {
    cel: {
      rule: `!has(self.reservation) || !${isQ('self.reservation')} || !${isQ(MEMORY_OR_MAX)} || ${Q('self.reservation')}.compareTo(${Q(MEMORY_OR_MAX)}) <= 0`,
      messageExpression: `'spec.reservation (' + ${text('self.reservation')} + ') must not exceed spec.memory (' + (has(self.memory) ? ${text('self.memory')} : ${text('self.maxMemory')} + ', from spec.maxMemory') + ')'`,
      fieldPath: '.reservation',
      reason: 'FieldValueInvalid',
    },
    check(s) {
      const res = q(s.reservation), mem = q(s.memory ?? s.maxMemory);
      if (res !== undefined && mem !== undefined && res > mem) {
        const memText = s.memory ?? `${s.maxMemory}, from spec.maxMemory`;
        return { path: 'reservation', message: `spec.reservation (${s.reservation}) must not exceed spec.memory (${memText})` };
      }
      return undefined;
    },
  },
  {
    cel: {
      rule: `!has(self.limit) || (type(self.limit) == string && self.limit == '${UNLIMITED}') || !has(self.reservation) || !${isQ('self.limit')} || !${isQ('self.reservation')} || ${Q('self.limit')}.compareTo(${Q('self.reservation')}) >= 0`,
      messageExpression: `'spec.limit (' + ${text('self.limit')} + ') must not be below spec.reservation (' + ${text('self.reservation')} + ')'`,
      fieldPath: '.limit',
      reason: 'FieldValueInvalid',
    },
    check(s) {
      if (s.limit === UNLIMITED) return undefined;
      const lim = q(s.limit), res = q(s.reservation);
      if (lim !== undefined && res !== undefined && lim < res) return { path: 'limit', message: `spec.limit (${s.limit}) must not be below spec.reservation (${s.reservation})` };
      return undefined;
    },
  },
];

export const VMMSpecSchema = z
  .strictObject({
    hypervisorRef: localRef('The Hypervisor (same namespace) that runs the VM.', 'Name of a Hypervisor in this namespace.'),
    vm: VMRefSchema,
    maxMemory: quantityField(
      'Guest-visible physical memory: the end of the guest\'s RAM map at boot (libvirt <memory>, Xen maxmem, ESX memoryMB). Required, > 0. QEMU applies a change at the next cold boot; ESX only while powered off unless memory hot-add allows the increase.',
      { positive: true },
    ),
    memory: quantityField(
      'Current allocation target: the balloon target (libvirt <currentMemory>, Xen memory; ESX enforces it as memoryAllocation.limit). Defaults to maxMemory; 0 < memory <= maxMemory.',
      { positive: true },
    ).optional(),
    reservation: quantityField(
      'Host RAM guaranteed to the VM (ESX memoryAllocation.reservation). Absent = not managed. Must be <= memory. Not supported by QEMU/KVM or Xen.',
    ).optional(),
    limit: limitField(
      'Cap on host RAM the VM may use (ESX memoryAllocation.limit, QEMU memtune hard_limit). Absent = not managed; "Unlimited" clears it. Must be >= reservation. On QEMU a limit below maxMemory + 512Mi is refused as unsafe unless allowUnsafeLimit is true.',
    ).optional(),
    allowUnsafeLimit: z
      .boolean()
      .optional()
      .meta({ description: 'Explicit opt-in to a QEMU hard_limit below maxMemory + overhead margin (512Mi), which risks the QEMU process being OOM-killed. Default false.' }),
    allowUnsafeShrink: z
      .boolean()
      .optional()
      .meta({ description: 'Explicit opt-in to shrinking a running guest below what it reports using plus headroom (Hypervisor spec.guestHeadroom; default 10% of use, at least 256Mi). Without it such a shrink is Unsafe with reason GuestMemoryInUse and nothing is sent. Default false.' }),
    suspend: z
      .boolean()
      .optional()
      .meta({ description: 'true: vmmem makes no hypervisor call for this VM (neither observes nor changes it) and reports Ready=False reason Suspended, until set back to false. Default false.' }),
  })
  .superRefine((spec, ctx) => {
    for (const rule of SPEC_RULES) {
      const problem = rule.check(spec);
      if (problem) ctx.addIssue({ code: 'custom', path: [problem.path], message: problem.message });
    }
  })
  .meta({
    description: 'The memory the VM should have. Fields left out are not managed: vmmem never touches them.',
    'x-kubernetes-validations': SPEC_RULES.map((r) => r.cel),
  });

export type VMMSpec = z.infer<typeof VMMSpecSchema>;

const observedQuantity = (description: string) => z.string().optional().meta({ description });

/** virtio-mem state of one world, exact enough to plan from (vmmem plan --observed). */
const HotplugStatusSchema = z.object({
  model: z.enum(['virtio-mem']).meta({ description: 'The hot-plug device model (QEMU virtio-mem).' }),
  bootMemory: observedQuantity('Boot memory (the NUMA cells): what no live change can move.'),
  ceiling: observedQuantity('boot + the devices\' sizes: the most maxMemory can reach without a restart.'),
  devices: z
    .array(
      z.object({
        alias: z.string().optional().meta({ description: 'libvirt device alias, e.g. virtiomem0.' }),
        node: z.number().int().min(0).optional().meta({ description: 'Guest NUMA node.' }),
        blockSize: observedQuantity('Plug granularity.'),
        size: observedQuantity('The most this device can give the guest.'),
        requested: observedQuantity('What the host asks the guest to plug.'),
        current: observedQuantity('What the guest has plugged.'),
      }).meta({ description: 'One virtio-mem device.' }),
    )
    .meta({ description: 'The virtio-mem devices, in the order growth fills them.' }),
});

export const ObservedSchema = z
  .object({
    powerState: z.enum(['Running', 'Paused', 'ShutOff']).optional().meta({ description: 'Running, Paused or ShutOff.' }),
    hypervisorType: z.enum(HYPERVISOR_TYPES).optional().meta({ description: 'qemu, xen, esx or test (libvirt test driver).' }),
    persistent: z.boolean().optional().meta({ description: 'false for a transient libvirt domain (no config to stage changes in).' }),
    maxMemory: observedQuantity('maxMemory in effect now (live when running, else config).'),
    memory: observedQuantity('Balloon target in effect now.'),
    actualMemory: observedQuantity('What the guest actually holds (balloon actual), when reported.'),
    reservation: observedQuantity('Reservation in effect now.'),
    limit: observedQuantity('Limit in effect now, or Unlimited.'),
    configMaxMemory: observedQuantity('maxMemory the next cold boot will use.'),
    configMemory: observedQuantity('memory the next cold boot will use.'),
    guest: z
      .object({
        used: z.string().meta({ description: 'Memory the guest reports using, excluding caches it can drop (libvirt memory stats available - usable; vSphere quickStats.guestMemoryUsage; sim guestUsed).' }),
        sampledAt: z.string().optional().meta({ description: 'When the hypervisor sampled it.', format: 'date-time' }),
        source: z.string().meta({ description: 'Where the number comes from.' }),
      })
      .optional()
      .meta({ description: 'The guest\'s own memory use, when the hypervisor reports it. Absent: no statistics, and a shrink is not guarded (the Ready message says so).' }),
    hotplug: HotplugStatusSchema.optional().meta({ description: 'Memory hot-plug state in effect now (live when running), for domains with virtio-mem devices.' }),
    configReservation: observedQuantity('reservation the next cold boot will use.'),
    configLimit: observedQuantity('limit the next cold boot will use, or Unlimited.'),
    configHotplug: HotplugStatusSchema.optional().meta({ description: 'Memory hot-plug state the next cold boot will use, when the VM is running and its configuration has virtio-mem devices.' }),
    vm: z
      .object({
        name: z.string().max(255).meta({ description: 'The VM\'s name on the hypervisor.' }),
        uuid: z.string().max(64).meta({ description: 'The VM\'s UUID.' }),
      })
      .optional()
      .meta({ description: 'Which VM was observed (vmmem plan --observed checks the spec still names it).' }),
    balloonDevice: z.enum(['present', 'none']).optional().meta({ description: 'none: the VM has no balloon device (memory cannot change while it runs).' }),
    numa: z.boolean().optional().meta({ description: 'true: a QEMU domain with NUMA cells (libvirt refuses maxMemory changes through its memory API).' }),
    hotAdd: z
      .object({
        enabled: z.boolean().meta({ description: 'ESX memory hot-add is enabled.' }),
        limit: observedQuantity('The most memory hot-add can reach.'),
        increment: observedQuantity('Hot-add grows in multiples of this.'),
      })
      .optional()
      .meta({ description: 'ESX memory hot-add settings.' }),
  })
  .meta({ description: 'What vmmem last observed on the hypervisor, as exact quantities.' });

export const PendingSchema = z
  .object({
    field: z.enum(['maxMemory', 'memory', 'reservation', 'limit']).meta({ description: 'The spec field that is not in effect yet.' }),
    value: z.string().meta({ description: 'The value it waits to take (after rounding).' }),
    reason: z.string().meta({ description: 'RestartRequired or AwaitingPowerOff.' }),
    message: z.string().meta({ description: 'What has to happen for it to take effect.' }),
  })
  .meta({ description: 'A declared value that waits for a restart or a power-off.' });

export const VMMStatusSchema = z
  .object({
    observedGeneration: z.number().int().min(0).optional().meta({ description: 'The .metadata.generation the status describes.', format: 'int64' }),
    conditions: ConditionsSchema.optional(),
    observed: ObservedSchema.optional(),
    pending: z.array(PendingSchema).optional().meta({ description: 'Every declared value waiting for a restart or power-off.' }),
    lastSyncTime: z.string().optional().meta({ description: 'When vmmem last observed the VM.', format: 'date-time' }),
    lastHandledReconcileAt: z
      .string()
      .optional()
      .meta({ description: 'The value of the vmmem.io/reconcile-requested-at annotation the last reconcile handled (Flux\'s lastHandledReconcileAt).' }),
  })
  .meta({ description: 'What vmmem observed and did. Written only by vmmem.' });

export type VMMStatus = z.infer<typeof VMMStatusSchema>;
