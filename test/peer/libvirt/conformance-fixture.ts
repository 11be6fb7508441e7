/**
 * The skeleton both libvirt conformance files share: an isolated libvirtd,
 * one admin connection held for the whole suite (the test driver's state
 * lives while a connection holds it), the driver under test connected to
 * the same URI, VMs defined or created from a domain XML, and
 * dropConnections() as a daemon restart. What differs per hypervisor is the
 * domain XML, the capabilities, and whether the VMs survive the restart.
 */
import type { Driver } from '../../../src/drivers/driver.ts';
import { LibvirtDriver } from '../../../src/drivers/libvirt/index.ts';
import { LibvirtClient } from '../../../src/libvirt/index.ts';
import { powerOffDomain, powerOnDomain, removeDomain, startLibvirtd } from '../../env/libvirtd.ts';
import type { Libvirtd } from '../../env/libvirtd.ts';
import type { ConformanceCapabilities, ConformanceFixture, VMSpec } from '../../conformance/fixture.ts';

export interface LibvirtFixtureOptions {
  /** The libvirt driver the daemon serves: qemu:///system or test:///default (via its socket). */
  hypervisor: 'qemu' | 'test';
  capabilities: ConformanceCapabilities;
  /** The domain XML for a spec; `uuid` is set when a VM is defined again after a restart. */
  domainXml(spec: VMSpec, uuid?: string): string;
  /** The daemon's restart loses the VMs (the test driver's in-memory state): define them again, same UUIDs. */
  recreateAfterRestart: boolean;
}

export function libvirtConformanceFixture(o: LibvirtFixtureOptions): ConformanceFixture {
  let d: Libvirtd | undefined;
  let holder: LibvirtClient | undefined;
  const created = new Map<string, { spec: VMSpec; uuid: string }>();

  const peer = (): { d: Libvirtd; c: LibvirtClient } => {
    if (!d || !holder) throw new Error('libvirtd is not running (setup failed)');
    return { d, c: holder };
  };

  const create = async (s: VMSpec, uuid?: string): Promise<{ name: string; uuid: string }> => {
    const { c } = peer();
    let dom;
    if (s.persistent) {
      dom = await c.domainDefineXml(o.domainXml(s, uuid));
      if (s.powerState === 'Running') dom = await c.domainCreate(dom);
    } else {
      dom = await c.domainCreateXml(o.domainXml(s, uuid));
    }
    created.set(s.name, { spec: s, uuid: dom.uuid });
    return { name: dom.name, uuid: dom.uuid };
  };

  return {
    capabilities: o.capabilities,
    async setup() {
      d = await startLibvirtd();
      holder = await LibvirtClient.connect(d.uri(o.hypervisor));
    },
    async teardown() {
      await holder?.close();
      await d?.stop();
    },
    async connect(): Promise<Driver> {
      const driver = new LibvirtDriver({ uri: peer().d.uri(o.hypervisor), timeoutMs: 30_000 });
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
      holder = await LibvirtClient.connect(daemon.uri(o.hypervisor));
      if (o.recreateAfterRestart) for (const { spec, uuid } of [...created.values()]) await create(spec, uuid);
    },
  };
}

/** `<memory>`, `<currentMemory>` and an optional memtune hard_limit / NUMA cell, in KiB. */
export function memoryXml(s: VMSpec): { memory: string; numa: string } {
  const kib = (b: bigint) => String(b / 1024n);
  const limit = s.limit === undefined || s.limit === 'unlimited' ? '' : `<memtune><hard_limit unit='KiB'>${kib(s.limit)}</hard_limit></memtune>`;
  return {
    memory: `<memory unit='KiB'>${kib(s.maxMemory)}</memory><currentMemory unit='KiB'>${kib(s.memory)}</currentMemory>${limit}`,
    numa: s.numa ? `<cpu><numa><cell id='0' cpus='0' memory='${kib(s.maxMemory)}' unit='KiB'/></numa></cpu>` : '',
  };
}
