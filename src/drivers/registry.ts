/**
 * Which driver serves a URI. The only place that knows the mapping
 * (DESIGN §5: the controller reaches drivers through this registry).
 * Drivers load lazily so a sim-only run never loads the SOAP client.
 * The admin's policy (policy.ts) is checked here, before a driver exists:
 * a refused Hypervisor opens no file and no socket.
 */
import type { ConnectOptions, Driver } from './driver.ts';
import { DriverError } from './driver.ts';
import { redactUri } from '../api/uri-policy.ts';
import { checkHypervisorAllowed, OPEN_POLICY } from './policy.ts';
import type { HypervisorPolicy } from './policy.ts';

export type DriverKind = 'sim' | 'libvirt' | 'vsphere';

export function driverKindFor(uri: string): DriverKind {
  if (uri.startsWith('sim:') || uri.startsWith('sim+unix:')) return 'sim';
  if (uri.startsWith('https://')) return 'vsphere';
  if (/^(qemu|xen|test)(\+[a-z0-9]+)?:/.test(uri)) return 'libvirt';
  throw new DriverError('InvalidURI', `unsupported hypervisor URI ${JSON.stringify(redactUri(uri))}: use a libvirt URI (qemu:///system, qemu+tls://host/system, xen:///system, test+unix:///default), https://host/sdk for vSphere, or sim:///path/inventory.yaml`, { op: 'connect' });
}

export async function createDriver(options: ConnectOptions, policy: HypervisorPolicy = OPEN_POLICY): Promise<Driver> {
  await checkHypervisorAllowed(options.uri, policy);
  switch (driverKindFor(options.uri)) {
    case 'sim': {
      // A sim host served over a unix socket (several operator processes sharing one host: the
      // sharding tests and `bench scale --replicas`).
      if (options.uri.startsWith('sim+unix:')) {
        const { RemoteSimDriver } = await import('./sim/remote.ts');
        return new RemoteSimDriver(options);
      }
      const { createSimDriver } = await import('./sim/index.ts');
      return createSimDriver(options);
    }
    case 'libvirt': {
      const { createLibvirtDriver } = await import('./libvirt/index.ts');
      return createLibvirtDriver(options);
    }
    case 'vsphere': {
      const { createVSphereDriver } = await import('./vsphere/index.ts');
      return createVSphereDriver(options);
    }
  }
}
