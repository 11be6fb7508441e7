// The driver conformance suite: the libvirt driver against real QEMU 7.2 (TCG)
// domains of a real, isolated libvirtd 9.0 (qemu:///system?socket=…):
// running and shut off, persistent and transient, with and without a virtio
// memballoon, with NUMA cells.
//
// The domains are diskless and run no guest OS, so a live balloon target is
// accepted and nothing moves (balloonActual 'stays'), and libvirt reports the
// balloon's actual size, never the target (liveBalloonTarget 'remembered':
// the driver reports the target it set on the running instance). Live memtune
// is refused here (no cgroup memory controller for libvirt, docs/libvirt.md),
// so only config memtune is declared.
import type { ConformanceCapabilities, VMSpec } from '../../conformance/fixture.ts';
import { runConformance } from '../../conformance/suite.ts';
import { libvirtConformanceFixture, memoryXml } from './conformance-fixture.ts';

const KiB = 1024n;

function domainXml(s: VMSpec): string {
  const { memory, numa } = memoryXml(s);
  return [
    `<domain type='qemu'><name>${s.name}</name>`,
    memory,
    `<vcpu>1</vcpu><os><type arch='x86_64' machine='pc'>hvm</type></os>${numa}`,
    `<on_poweroff>destroy</on_poweroff><on_reboot>destroy</on_reboot><on_crash>destroy</on_crash>`,
    `<devices><emulator>/usr/bin/qemu-system-x86_64</emulator><memballoon model='${s.balloon ? 'virtio' : 'none'}'/></devices></domain>`,
  ].join('');
}

const capabilities: ConformanceCapabilities = {
  type: 'qemu',
  granularity: KiB,
  singleConfig: false,
  create: { shutOff: true, transient: true, withoutBalloon: true, numa: true, hotAdd: false },
  applies: [
    { field: 'maxMemory', world: 'config', power: 'Running' },
    { field: 'maxMemory', world: 'config', power: 'ShutOff' },
    { field: 'memory', world: 'live', power: 'Running' },
    { field: 'memory', world: 'config', power: 'Running' },
    { field: 'memory', world: 'config', power: 'ShutOff' },
    { field: 'limit', world: 'config', power: 'Running' },
    { field: 'limit', world: 'config', power: 'ShutOff' },
  ],
  refusals: ['liveMaxMemory', 'memoryAboveMax', 'liveOnShutOff', 'configOnTransient', 'reservationUnsupported', 'liveMemoryWithoutBalloon', 'numaMaxMemory', 'offGranularity'],
  balloonActual: 'stays',
  liveBalloonTarget: 'remembered',
  lifecycleEvents: true,
};

// Persistent and transient domains (their QEMU processes) survive a daemon restart.
const fixture = libvirtConformanceFixture({ hypervisor: 'qemu', capabilities, domainXml, recreateAfterRestart: false });

runConformance('libvirt (QEMU via libvirtd)', fixture);
