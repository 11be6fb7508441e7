/** The vmmem.io API group, in one place. */
export const GROUP = 'vmmem.io';
export const VERSION = 'v1alpha1';
export const API_VERSION = `${GROUP}/${VERSION}`;

export const VMM_KIND = 'VirtualMachineMemory';
export const VMM_PLURAL = 'virtualmachinememories';
export const HYPERVISOR_KIND = 'Hypervisor';
export const HYPERVISOR_PLURAL = 'hypervisors';
