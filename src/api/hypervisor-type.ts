/**
 * The one list of hypervisor types (DESIGN §2): the CRD's
 * status.observed.hypervisorType enum, the model's HypervisorType and the
 * sim inventory's `type` all come from here.
 */

export const HYPERVISOR_TYPES = ['qemu', 'xen', 'esx', 'test'] as const;
export type HypervisorType = (typeof HYPERVISOR_TYPES)[number];
