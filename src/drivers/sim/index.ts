/**
 * The `sim` driver: an in-process hypervisor simulator (docs/sim.md).
 *
 *   createSimDriver({ uri: 'sim:///path/inventory.yaml' })   the DriverFactory
 *   simHost('path/inventory.yaml')                           the shared host = out-of-band handle
 *   createSimHost(inventoryObject, key)                      in-memory host at sim:memory:<key>
 */
export { SimDriver, createSimDriver } from './driver.ts';
export type { SimDriverExtras } from './driver.ts';
export { SimHost } from './host.ts';
export { SimConnection, SimRefusal } from './calls.ts';
export type { SimAffectFlags, SimCallRecord, SimReconfigSpec } from './calls.ts';
export { observed } from './observed.ts';
export { SimInventoryError, parseInventory, parseVM, loadInventoryFile, uuidFromName } from './inventory.ts';
export type { BalloonMode, SimFaults, SimInventory, SimLatency, SimVMState, SimWorld } from './inventory.ts';
export { createSimHost, forgetSimHost, resetSimHosts, resolveSimTarget, simHost, SimURIError } from './registry.ts';
export type { SimTarget } from './registry.ts';
