/**
 * The vSphere driver (ESXi and vCenter through the vim25 SOAP API): docs/vsphere.md.
 *
 *   createVSphereDriver({ uri: 'https://vcenter.example.com/sdk', credentials: { username, password, caCert } })
 */
export { VSphereDriver, VSphereVMHandle, createVSphereDriver, coalesce, eventsOf, observedOf, specFor, toDriverError } from './driver.ts';
export type { StepGroup, VSphereDriverExtras } from './driver.ts';
