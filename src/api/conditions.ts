/** metav1.Condition, the kstatus-compatible condition shape. */
import { z } from 'zod';

export const CONDITION_TYPES = ['Ready', 'Reconciling', 'Stalled', 'RestartRequired', 'Connected'] as const;

export const ConditionSchema = z
  .object({
    type: z.string().min(1).max(316).meta({ description: 'Condition type: Ready, Reconciling, Stalled, RestartRequired (VirtualMachineMemory); Connected, Ready (Hypervisor).' }),
    status: z.enum(['True', 'False', 'Unknown']).meta({ description: 'True, False or Unknown.' }),
    observedGeneration: z.number().int().min(0).optional().meta({ description: 'The .metadata.generation this condition was computed from.', format: 'int64' }),
    lastTransitionTime: z.string().meta({ description: 'When the condition last changed status.', format: 'date-time' }),
    reason: z.string().min(1).max(1024).meta({ description: 'CamelCase reason, e.g. BalloonInflating, AwaitingPowerOff, UnsafeLimit, Unsupported, VMNotFound, HypervisorUnreachable, Conflict.' }),
    message: z.string().max(32768).meta({ description: 'Human-readable detail: which field, which values, what the hypervisor said.' }),
  })
  .meta({ description: 'A condition (metav1.Condition).' });

export type Condition = z.infer<typeof ConditionSchema>;

export const ConditionsSchema = z.array(ConditionSchema).meta({
  description: 'Conditions, one per type (kstatus-compatible: Ready, Reconciling, Stalled, RestartRequired).',
  'x-kubernetes-list-type': 'map',
  'x-kubernetes-list-map-keys': ['type'],
});
