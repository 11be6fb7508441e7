/**
 * Hypervisor: how vmmem reaches one libvirt host, ESX host / vCenter, or
 * simulator (DESIGN §4).
 */
import { z } from 'zod';
import { ConditionsSchema } from './conditions.ts';
import { localRef } from './fields.ts';
import { DURATION_PATTERN } from './duration.ts';
import { redactUri, uriCelRules, uriProblems } from './uri-policy.ts';

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
    lastConnectTime: z.string().optional().meta({ description: 'When vmmem last connected.', format: 'date-time' }),
    shard: z.number().int().min(0).max(1023).optional().meta({ description: 'Sharded mode (--shards): the shard this Hypervisor and its VMMs belong to.' }),
    shardOwner: z.string().max(253).optional().meta({ description: 'Sharded mode: the identity of the operator replica that reconciles this Hypervisor now.' }),
  })
  .meta({ description: 'Connection state and what the hypervisor reported. Written only by vmmem.' });

export type HypervisorStatus = z.infer<typeof HypervisorStatusSchema>;
