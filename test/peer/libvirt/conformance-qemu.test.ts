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
import type { Driver } from '../../../src/drivers/driver.ts';
import { LibvirtDriver } from '../../../src/drivers/libvirt/index.ts';
import { LibvirtClient } from '../../../src/libvirt/index.ts';
import { powerOffDomain, powerOnDomain, removeDomain, startLibvirtd } from '../../env/libvirtd.ts';
import type { Libvirtd } from '../../env/libvirtd.ts';
import type { ConformanceCapabilities, ConformanceFixture, VMSpec } from '../../conformance/fixture.ts';
import { runConformance } from '../../conformance/suite.ts';

const KiB = 1024n;

let d: Libvirtd | undefined;
let holder: LibvirtClient | undefined;

function peer(): { d: Libvirtd; c: LibvirtClient } {
  if (!d || !holder) throw new Error('libvirtd is not running (setup failed)');
  return { d, c: holder };
}

function domainXml(s: VMSpec): string {
  const kib = (b: bigint) => String(b / KiB);
  const limit = s.limit === undefined || s.limit === 'unlimited' ? '' : `<memtune><hard_limit unit='KiB'>${kib(s.limit)}</hard_limit></memtune>`;
  const numa = s.numa ? `<cpu><numa><cell id='0' cpus='0' memory='${kib(s.maxMemory)}' unit='KiB'/></numa></cpu>` : '';
  return [
    `<domain type='qemu'><name>${s.name}</name>`,
    `<memory unit='KiB'>${kib(s.maxMemory)}</memory><currentMemory unit='KiB'>${kib(s.memory)}</currentMemory>${limit}`,
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

const fixture: ConformanceFixture = {
  capabilities,
  async setup() {
    d = await startLibvirtd();
    holder = await LibvirtClient.connect(d.uri('qemu'));
  },
  async teardown() {
    await holder?.close();
    await d?.stop();
  },
  async connect(): Promise<Driver> {
    const driver = new LibvirtDriver({ uri: peer().d.uri('qemu'), timeoutMs: 30_000 });
    await driver.connect();
    return driver;
  },
  async createVM(s) {
    const { c } = peer();
    let dom;
    if (s.persistent) {
      dom = await c.domainDefineXml(domainXml(s));
      if (s.powerState === 'Running') dom = await c.domainCreate(dom);
    } else {
      dom = await c.domainCreateXml(domainXml(s));
    }
    return { name: dom.name, uuid: dom.uuid };
  },
  removeVM: (name) => removeDomain(peer().c, name),
  powerOff: (name) => powerOffDomain(peer().c, name),
  powerOn: (name) => powerOnDomain(peer().c, name),
  async dropConnections() {
    // Persistent and transient domains (their QEMU processes) survive a daemon restart.
    const { d: daemon } = peer();
    await holder?.close();
    holder = undefined;
    await daemon.restart();
    holder = await LibvirtClient.connect(daemon.uri('qemu'));
  },
};

runConformance('libvirt (QEMU via libvirtd)', fixture);
