// The driver conformance suite: the libvirt driver against the libvirt test
// driver served by a real, isolated libvirtd (test+unix:///default).
//
// The test driver keeps test:///default's state while at least one
// connection holds it: the fixture holds one for the whole suite, so VMs it
// creates "behind vmmem's back" are seen by the drivers' own connections.
// dropConnections() restarts the daemon (which loses that in-memory state), so
// the fixture defines its VMs again, same UUIDs and power states.
import type { ConformanceCapabilities, VMSpec } from '../../conformance/fixture.ts';
import { runConformance } from '../../conformance/suite.ts';
import { libvirtConformanceFixture, memoryXml } from './conformance-fixture.ts';

const KiB = 1024n;

function domainXml(s: VMSpec, uuid?: string): string {
  const { memory, numa } = memoryXml(s);
  return `<domain type='test'><name>${s.name}</name>${uuid ? `<uuid>${uuid}</uuid>` : ''}${memory}<vcpu>1</vcpu><os><type>hvm</type></os>${numa}</domain>`;
}

const capabilities: ConformanceCapabilities = {
  type: 'test',
  granularity: KiB,
  singleConfig: false,
  create: { shutOff: true, transient: true, withoutBalloon: false, numa: false, hotAdd: false },
  applies: [
    { field: 'maxMemory', world: 'config', power: 'Running' },
    { field: 'maxMemory', world: 'config', power: 'ShutOff' },
    { field: 'memory', world: 'live', power: 'Running' },
    { field: 'memory', world: 'config', power: 'Running' },
    { field: 'memory', world: 'config', power: 'ShutOff' },
    { field: 'limit', world: 'live', power: 'Running' },
    { field: 'limit', world: 'config', power: 'Running' },
    { field: 'limit', world: 'config', power: 'ShutOff' },
  ],
  refusals: ['liveMaxMemory', 'memoryAboveMax', 'liveOnShutOff', 'configOnTransient', 'reservationUnsupported', 'offGranularity'],
  balloonActual: 'follows',
  // The test driver keeps the live target and reports it (target = actual).
  liveBalloonTarget: 'observable',
  lifecycleEvents: true,
};

const fixture = libvirtConformanceFixture({ hypervisor: 'test', capabilities, domainXml, recreateAfterRestart: true });

runConformance('libvirt (test driver via libvirtd)', fixture);
