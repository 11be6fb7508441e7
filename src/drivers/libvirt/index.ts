/**
 * The libvirt driver (QEMU/KVM, Xen, test) over src/libvirt's client.
 *
 *   createLibvirtDriver({ uri: 'qemu+tls://host/system', credentials, timeoutMs })
 */
export { LibvirtDriver, createLibvirtDriver, toDriverError } from './driver.ts';
export type { LibvirtDriverExtras } from './driver.ts';
