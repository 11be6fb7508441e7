/**
 * Hypervisor: how vmmem reaches one libvirt host, ESX host / vCenter, or
 * simulator (DESIGN §4).
 */
import { z } from 'zod';
import { ConditionsSchema } from './conditions.ts';
import { localRef, quantityField } from './fields.ts';

import { DURATION_PATTERN } from './duration.ts';
import { redactUri, uriCelRules, uriProblems } from './uri-policy.ts';

/** spec.capacity.overcommitRatio: a decimal such as "1.5", up to 3 digits before and 3 after the point. */
export const OVERCOMMIT_RATIO_PATTERN = '^(0|[1-9][0-9]{0,2})(\\.[0-9]{1,3})?$';

export const HypervisorSpecSchema = z
  .strictObject({
    uri: z
      .string()
      .min(1)
      .max(2048)
      .superRefine((uri, ctx) => {
        // The same checks, with the same regular expressions, as the CRD's CEL rules (uri-policy.ts).
        for (const problem of uriProblems(uri)) ctx.addIssue({ code: 'custom', message: `${JSON.stringify(redactUri(uri))}: ${problem}` });
      })
      .meta({
        description:
          'Where the hypervisor is: a libvirt URI (qemu:///system, qemu+ssh://user@host/system, qemu+tls://host/system, qemu+tcp://host/system, xen:///system, test+unix:///default), https://<vcenter-or-esx>/sdk for vSphere, or sim:///path/inventory.yaml for the built-in simulator. Only the parameters socket= and mode= (local), socket= and proxy= (ssh) are accepted; keys, known_hosts, certificates and passwords come from spec.credentialsSecretRef, never from the URI.',
        'x-kubernetes-validations': uriCelRules(),
      }),
    credentialsSecretRef: localRef(
      'Secret (same namespace) with credentials: username/password (vSphere, libvirt SASL), tls.crt/tls.key/ca.crt (libvirt TLS client certificate), ssh-privatekey and optional known_hosts (libvirt over SSH).',
      'Name of a Secret in this namespace.',
    ).optional(),
    tls: z
      .strictObject({
        caSecretRef: localRef('Secret (same namespace) whose ca.crt verifies the server certificate.', 'Name of a Secret in this namespace.').optional(),
        insecureSkipVerify: z.boolean().optional().meta({ description: 'Skip server certificate verification. Default false; vmmem logs a warning when set.' }),
      })
      .optional()
      .meta({ description: 'TLS settings for qemu+tls:// and https:// URIs.' }),
    syncInterval: z
      .string()
      .regex(new RegExp(DURATION_PATTERN), 'must be a duration such as 30s, 5m or 1h')
      .optional()
      .meta({ description: 'How often vmmem re-observes each VM to correct drift (a duration such as 5m). Default 5m.', pattern: DURATION_PATTERN }),
    balloonTimeout: z
      .string()
      .regex(new RegExp(DURATION_PATTERN), 'must be a duration such as 30s, 2m')
      .optional()
      .meta({ description: 'How long a balloon may take to reach its target before vmmem reports BalloonUnresponsive. Default 2m.', pattern: DURATION_PATTERN }),
    guestHeadroom: quantityField(
      'Memory a running guest keeps above what it reports using: vmmem refuses (GuestMemoryInUse) to shrink a guest below use + headroom. Default 10% of the use, at least 256Mi.',
    ).optional(),
    capacity: z
      .strictObject({
        overcommitRatio: z
          .string()
          .regex(new RegExp(OVERCOMMIT_RATIO_PATTERN), 'must be a decimal such as "1.0" or "1.5" (at most 3 decimals)')
          .refine((r) => /[1-9]/.test(r), 'must be greater than 0')
          .optional()
          .meta({
            description: 'How much guest-visible memory the powered-on VMs may commit, as a multiple of host memory (a decimal string such as "1.0" or "1.5"). A change that would pass hostMemory × ratio − reserved is Unsafe with reason HostCapacityExceeded. Absent: no commitment check.',
            pattern: OVERCOMMIT_RATIO_PATTERN,
          }),
        reserved: quantityField('Host memory kept for the host itself (hypervisor, page cache, other services): taken off the budget and off what VMs can reserve. Default 0.').optional(),
      })
      .optional()
      .meta({ description: 'Host capacity checks. Reservations beyond host memory − reserved are always refused (HostCapacityExceeded).' }),
  })
  .meta({ description: 'How to reach the hypervisor.' });

export type HypervisorSpec = z.infer<typeof HypervisorSpecSchema>;

export const HypervisorStatusSchema = z
  .object({
    observedGeneration: z.number().int().min(0).optional().meta({ description: 'The .metadata.generation the status describes.', format: 'int64' }),
    conditions: ConditionsSchema.optional(),
    type: z.string().optional().meta({ description: 'Hypervisor type: qemu, xen, esx or test.' }),
    version: z.string().optional().meta({ description: 'The hypervisor\'s own version string.' }),
    hostname: z.string().optional().meta({ description: 'Host name reported by the hypervisor.' }),
    hostMemory: z.string().optional().meta({ description: 'Host memory capacity, as a quantity.' }),
    capacity: z
      .object({
        hostMemory: z.string().meta({ description: 'The host\'s memory.' }),
        reserved: z.string().optional().meta({ description: 'spec.capacity.reserved.' }),
        committed: z.string().meta({ description: 'Σ guest-visible memory (maxMemory; the next boot\'s when larger) of the powered-on VMs, managed by vmmem or not.' }),
        reservations: z.string().meta({ description: 'Σ reservations of the powered-on VMs.' }),
        overcommitRatio: z.string().optional().meta({ description: 'spec.capacity.overcommitRatio in effect.' }),
        budget: z.string().optional().meta({ description: 'hostMemory × overcommitRatio − reserved (with a ratio only).' }),
        free: z.string().optional().meta({ description: 'budget − committed; negative when the host is already over (with a ratio only).' }),
        vms: z.number().int().min(0).optional().meta({ description: 'VMs on the host.' }),
      })
      .optional()
      .meta({ description: 'What the host has and what its VMs commit, from the last observation of the whole host.' }),
    lastConnectTime: z.string().optional().meta({ description: 'When vmmem last connected.', format: 'date-time' }),
    shard: z.number().int().min(0).max(1023).optional().meta({ description: 'Sharded mode (--shards): the shard this Hypervisor and its VMMs belong to.' }),
    shardOwner: z.string().max(253).optional().meta({ description: 'Sharded mode: the identity of the operator replica that reconciles this Hypervisor now.' }),
  })
  .meta({ description: 'Connection state and what the hypervisor reported. Written only by vmmem.' });

export type HypervisorStatus = z.infer<typeof HypervisorStatusSchema>;
