/**
 * The conformance suite against the sim driver, once per simulated
 * hypervisor type. Each type gets its own in-memory host (sim:memory:<key>);
 * the fixture shapes VMs with the host's out-of-band handle.
 */
import type { Driver } from '../../src/drivers/driver.ts';
import { SimDriver, createSimHost } from '../../src/drivers/sim/index.ts';
import type { HypervisorType } from '../../src/model/memory.ts';
import type { ApplyCapability, ConformanceCapabilities, ConformanceFixture, RefusalKind, VMSpec } from './fixture.ts';
import { runConformance } from './suite.ts';

const KiB = 1024n;
const Mi = 1n << 20n;

const libvirtApplies: ApplyCapability[] = [
  { field: 'maxMemory', world: 'config', power: 'Running' },
  { field: 'maxMemory', world: 'config', power: 'ShutOff' },
  { field: 'memory', world: 'live', power: 'Running' },
  { field: 'memory', world: 'config', power: 'Running' },
  { field: 'memory', world: 'config', power: 'ShutOff' },
];
const memtuneApplies: ApplyCapability[] = [
  { field: 'limit', world: 'live', power: 'Running' },
  { field: 'limit', world: 'config', power: 'Running' },
  { field: 'limit', world: 'config', power: 'ShutOff' },
];
const libvirtRefusals: RefusalKind[] = ['memoryAboveMax', 'liveOnShutOff', 'configOnTransient', 'reservationUnsupported', 'offGranularity'];

const CAPABILITIES: Record<HypervisorType, ConformanceCapabilities> = {
  qemu: {
    type: 'qemu',
    granularity: KiB,
    singleConfig: false,
    create: { shutOff: true, transient: true, withoutBalloon: true, numa: true, hotAdd: false },
    applies: [...libvirtApplies, ...memtuneApplies],
    refusals: [...libvirtRefusals, 'liveMaxMemory', 'liveMemoryWithoutBalloon', 'numaMaxMemory'],
    balloonActual: 'follows',
    liveBalloonTarget: 'observable',
    lifecycleEvents: true,
  },
  test: {
    type: 'test',
    granularity: KiB,
    singleConfig: false,
    create: { shutOff: true, transient: true, withoutBalloon: true, numa: true, hotAdd: false },
    applies: [...libvirtApplies, ...memtuneApplies],
    refusals: [...libvirtRefusals, 'liveMaxMemory', 'numaMaxMemory'],
    balloonActual: 'follows',
    liveBalloonTarget: 'observable',
    lifecycleEvents: true,
  },
  xen: {
    type: 'xen',
    granularity: KiB,
    singleConfig: false,
    create: { shutOff: true, transient: true, withoutBalloon: true, numa: false, hotAdd: false },
    applies: [...libvirtApplies, { field: 'maxMemory', world: 'live', power: 'Running' }],
    refusals: [...libvirtRefusals, 'limitUnsupported'],
    balloonActual: 'follows',
    liveBalloonTarget: 'observable',
    lifecycleEvents: true,
  },
  esx: {
    type: 'esx',
    granularity: 4n * Mi,
    singleConfig: true,
    create: { shutOff: true, transient: false, withoutBalloon: false, numa: false, hotAdd: true },
    applies: [
      { field: 'maxMemory', world: 'config', power: 'ShutOff' },
      { field: 'maxMemory', world: 'config', power: 'Running', hotAdd: true },
      { field: 'reservation', world: 'config', power: 'Running' },
      { field: 'reservation', world: 'config', power: 'ShutOff' },
      { field: 'limit', world: 'config', power: 'Running' },
      { field: 'limit', world: 'config', power: 'ShutOff' },
    ],
    refusals: [
      'maxMemoryPoweredOnWithoutHotAdd', 'maxMemoryDecreasePoweredOn', 'maxMemoryBeyondHotAddLimit',
      'memoryKnobAbsent', 'reservationAboveLimit', 'offGranularity',
    ],
    balloonActual: 'unreported',
    lifecycleEvents: true,
  },
};

/**
 * guest: 'responsive' (a guest balloon driver follows the target) or
 * 'unresponsive' (a device but no guest driver: the target is accepted and
 * kept, actual stays put: balloonActual 'stays').
 */
function simFixture(type: HypervisorType, guest: 'responsive' | 'unresponsive' = 'responsive'): ConformanceFixture {
  const host = createSimHost({ type, hostMemory: '64Gi', vms: [] }, `conformance-${type}-${guest}`);
  const drivers: Driver[] = [];
  return {
    capabilities: guest === 'responsive' ? CAPABILITIES[type] : { ...CAPABILITIES[type], balloonActual: 'stays' },
    async connect() {
      const driver = new SimDriver({ uri: host.uri });
      await driver.connect();
      drivers.push(driver);
      return driver;
    },
    async createVM(spec: VMSpec) {
      const vm = host.add({
        name: spec.name,
        type,
        powerState: spec.powerState,
        maxMemory: String(spec.maxMemory),
        ...(type === 'esx' ? {} : { memory: String(spec.memory) }),
        ...(spec.persistent ? {} : { transient: true }),
        balloon: spec.balloon ? guest : 'none',
        ...(spec.numa ? { numa: true } : {}),
        ...(spec.limit !== undefined ? { limit: spec.limit === 'unlimited' ? 'Unlimited' : String(spec.limit) } : {}),
        ...(spec.hotAdd
          ? {
            memoryHotAddEnabled: spec.hotAdd.enabled,
            ...(spec.hotAdd.limit !== undefined ? { hotPlugMemoryLimit: String(spec.hotAdd.limit) } : {}),
            ...(spec.hotAdd.increment !== undefined ? { hotPlugMemoryIncrementSize: String(spec.hotAdd.increment) } : {}),
          }
          : {}),
      });
      return { name: vm.name, uuid: vm.uuid };
    },
    async removeVM(name) {
      if (host.vm(name)) host.remove(name);
    },
    async powerOff(name) {
      host.powerOff(name);
    },
    async powerOn(name) {
      host.powerOn(name);
    },
    async dropConnections() {
      host.dropConnections();
    },
    async teardown() {
      await Promise.all(drivers.map((d) => d.close()));
    },
  };
}

for (const type of ['qemu', 'test', 'xen', 'esx'] as const) runConformance(`sim (${type})`, simFixture(type));
runConformance('sim (qemu, balloon device without a guest driver)', simFixture('qemu', 'unresponsive'));
