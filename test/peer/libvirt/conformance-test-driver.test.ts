// The driver conformance suite: the libvirt driver against the libvirt test
// driver served by a real, isolated libvirtd (test+unix:///default).
//
// The test driver keeps test:///default's state while at least one
// connection holds it: the fixture holds one for the whole suite, so VMs it
// creates "behind vmmem's back" are seen by the drivers' own connections.
// dropConnections() restarts the daemon (which loses that in-memory state), so
// the fixture defines its VMs again, same UUIDs and power states.
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
const created = new Map<string, { spec: VMSpec; uuid: string }>();

function peer(): { d: Libvirtd; c: LibvirtClient } {
  if (!d || !holder) throw new Error('libvirtd is not running (setup failed)');
  return { d, c: holder };
}

function domainXml(s: VMSpec, uuid?: string): string {
  const kib = (b: bigint) => String(b / KiB);
  const limit = s.limit === undefined || s.limit === 'unlimited' ? '' : `<memtune><hard_limit unit='KiB'>${kib(s.limit)}</hard_limit></memtune>`;
  const numa = s.numa ? `<cpu><numa><cell id='0' cpus='0' memory='${kib(s.maxMemory)}' unit='KiB'/></numa></cpu>` : '';
  return `<domain type='test'><name>${s.name}</name>${uuid ? `<uuid>${uuid}</uuid>` : ''}<memory unit='KiB'>${kib(s.maxMemory)}</memory><currentMemory unit='KiB'>${kib(s.memory)}</currentMemory>${limit}<vcpu>1</vcpu><os><type>hvm</type></os>${numa}</domain>`;
}

async function create(s: VMSpec, uuid?: string): Promise<{ name: string; uuid: string }> {
  const { c } = peer();
  let dom;
  if (s.persistent) {
    dom = await c.domainDefineXml(domainXml(s, uuid));
    if (s.powerState === 'Running') dom = await c.domainCreate(dom);
  } else {
    dom = await c.domainCreateXml(domainXml(s, uuid));
  }
  created.set(s.name, { spec: s, uuid: dom.uuid });
  return { name: dom.name, uuid: dom.uuid };
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

const fixture: ConformanceFixture = {
  capabilities,
  async setup() {
    d = await startLibvirtd();
    holder = await LibvirtClient.connect(d.uri('test'));
  },
  async teardown() {
    await holder?.close();
    await d?.stop();
  },
  async connect(): Promise<Driver> {
    const driver = new LibvirtDriver({ uri: peer().d.uri('test'), timeoutMs: 30_000 });
    await driver.connect();
    return driver;
  },
  createVM: (s) => create(s),
  async removeVM(name) {
    created.delete(name);
    await removeDomain(peer().c, name);
  },
  powerOff: (name) => powerOffDomain(peer().c, name),
  powerOn: (name) => powerOnDomain(peer().c, name),
  async dropConnections() {
    const { d: daemon } = peer();
    await holder?.close();
    holder = undefined;
    await daemon.restart();
    holder = await LibvirtClient.connect(daemon.uri('test'));
    for (const { spec, uuid } of [...created.values()]) await create(spec, uuid);
  },
};

runConformance('libvirt (test driver via libvirtd)', fixture);
