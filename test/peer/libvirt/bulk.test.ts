// Host-level observation against a real, isolated libvirtd 9.0: the bulk
// procedures (virConnectListAllDomains, virConnectGetAllDomainStats), the
// events the XML cache listens to, and the driver's observeAll()/apply()
// on QEMU domains and on the test driver — with the hypervisor calls each
// observation cost, as docs/libvirt.md reports them.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { DriverError } from '../../../src/drivers/driver.ts';
import type { DriverEvent } from '../../../src/drivers/driver.ts';
import { LibvirtDriver } from '../../../src/drivers/libvirt/index.ts';
import { DomainAffect, DomainMemFlags, DomainStatsFlags, DomainStatsGroup, LibvirtClient, LibvirtError, ListDomainsFlags, parseDomainXml, statNumber } from '../../../src/libvirt/index.ts';
import type { DeviceEvent, DomainRef } from '../../../src/libvirt/index.ts';
import type { ObservedVM } from '../../../src/model/memory.ts';
import { removeDomain, startLibvirtd, tinyDomainXml } from '../../env/libvirtd.ts';
import type { Libvirtd } from '../../env/libvirtd.ts';

const Mi = 1n << 20n;
let d: Libvirtd;
let qemu: LibvirtClient;
let test: LibvirtClient;

before(async () => {
  d = await startLibvirtd();
  qemu = await LibvirtClient.connect(d.uri('qemu'), { callTimeoutMs: 60_000 });
  test = await LibvirtClient.connect(d.uri('test'), { callTimeoutMs: 60_000 });
});

after(async () => {
  await test?.close();
  await qemu?.close();
  await d?.stop();
});

async function waitFor<T>(what: string, f: () => T | undefined, ms = 15_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = f();
    if (v !== undefined) return v;
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function testDomainXml(name: string, maxMiB: number, curMiB = maxMiB): string {
  return `<domain type='test'><name>${name}</name><memory unit='MiB'>${maxMiB}</memory><currentMemory unit='MiB'>${curMiB}</currentMemory><vcpu>1</vcpu><os><type>hvm</type></os></domain>`;
}

/** A fleet on QEMU: running and shut-off persistent domains and one transient. */
async function qemuFleet(prefix: string, running: number, off: number, transient: number): Promise<string[]> {
  const names: string[] = [];
  for (let i = 0; i < running + off; i++) {
    const name = `${prefix}-${i}`;
    const dom = await qemu.domainDefineXml(tinyDomainXml(name, { maxMiB: 256 + 16 * i, currentMiB: 192 }));
    if (i < running) await qemu.domainCreate(dom);
    names.push(name);
  }
  for (let i = 0; i < transient; i++) {
    const name = `${prefix}-t${i}`;
    await qemu.domainCreateXml(tinyDomainXml(name, { maxMiB: 128 }));
    names.push(name);
  }
  return names;
}

function byUuid(vms: ObservedVM[]): Map<string, ObservedVM> {
  return new Map(vms.map((v) => [v.uuid, v]));
}

describe('virConnectGetAllDomainStats and virConnectListAllDomains', () => {
  it('QEMU: STATE and BALLOON for every domain in one call, running and shut off', async () => {
    const names = await qemuFleet('st', 1, 1, 0);
    try {
      const recs = await qemu.getAllDomainStats(DomainStatsGroup.STATE | DomainStatsGroup.BALLOON);
      const run = recs.find((r) => r.dom.name === 'st-0');
      const off = recs.find((r) => r.dom.name === 'st-1');
      assert.ok(run && off, `records for both: ${recs.map((r) => r.dom.name).join(', ')}`);
      assert.equal(statNumber(run, 'state.state'), 1); // RUNNING
      assert.ok(run.dom.id > 0);
      assert.equal(statNumber(run, 'balloon.maximum'), 256 * 1024);
      // Before the guest reports anything, balloon.current is the live <currentMemory>.
      const live = parseDomainXml(await qemu.domainGetXmlDesc(run.dom, 0));
      assert.equal(statNumber(run, 'balloon.current'), live.currentMemoryKiB);
      assert.equal(statNumber(off, 'state.state'), 5); // SHUTOFF
      assert.equal(off.dom.id, -1);
      assert.equal(statNumber(off, 'balloon.maximum'), 272 * 1024);
      assert.equal(statNumber(off, 'balloon.current'), 192 * 1024);
      // A filtered call and a given list of domains.
      const active = await qemu.getAllDomainStats(DomainStatsGroup.STATE, ListDomainsFlags.ACTIVE);
      assert.deepEqual(active.map((r) => r.dom.name).filter((n) => n.startsWith('st-')), ['st-0']);
      const one = await qemu.getAllDomainStats(DomainStatsGroup.BALLOON, 0, [off.dom]);
      assert.equal(one.length, 1);
      assert.equal(one[0]?.dom.uuid, off.dom.uuid);
      assert.equal(one[0]?.params.has('state.state'), false);
    } finally {
      for (const n of names) await removeDomain(qemu, n);
    }
  });

  it('ListAllDomains(PERSISTENT) leaves out transient domains', async () => {
    const names = await qemuFleet('ls', 1, 0, 1);
    try {
      const all = (await qemu.listAllDomains(0)).map((x) => x.name);
      const persistent = (await qemu.listAllDomains(ListDomainsFlags.PERSISTENT)).map((x) => x.name);
      assert.ok(all.includes('ls-0') && all.includes('ls-t0'));
      assert.ok(persistent.includes('ls-0'));
      assert.ok(!persistent.includes('ls-t0'));
    } finally {
      for (const n of names) await removeDomain(qemu, n);
    }
  });

  it('test driver: has the call but only the STATE group (no BALLOON); ENFORCE_STATS says so', async () => {
    await test.domainDefineXml(testDomainXml('bulk-t', 512, 384));
    try {
      const recs = await test.getAllDomainStats(DomainStatsGroup.STATE | DomainStatsGroup.BALLOON);
      assert.ok(recs.length >= 2, 'the default "test" domain and ours');
      for (const r of recs) {
        assert.equal(typeof statNumber(r, 'state.state'), 'number', `${r.dom.name} has state.state`);
        assert.equal(statNumber(r, 'balloon.current'), undefined, `${r.dom.name}: no balloon.* from the test driver`);
        assert.equal(statNumber(r, 'balloon.maximum'), undefined);
      }
      let err: unknown;
      try {
        await test.getAllDomainStats(DomainStatsGroup.STATE | DomainStatsGroup.BALLOON, DomainStatsFlags.ENFORCE_STATS);
      } catch (e) {
        err = e;
      }
      assert.ok(err instanceof LibvirtError, String(err));
      // libvirt 9.0: VIR_ERR_ARGUMENT_UNSUPPORTED "Stats types bits 0x4 are not supported by this daemon" (0x4 = BALLOON).
      assert.equal(err.codeName, 'VIR_ERR_ARGUMENT_UNSUPPORTED');
      assert.match(err.libvirtMessage, /Stats types bits 0x4 are not supported/);
    } finally {
      await removeDomain(test, 'bulk-t');
    }
  });
});

describe('events for the XML cache', () => {
  it('QEMU: DEVICE_ADDED and DEVICE_REMOVED for a hot-plugged USB tablet', async () => {
    await qemuFleet('dev', 1, 0, 0);
    const seen: DeviceEvent[] = [];
    const subs = [await qemu.onDeviceAdded((e) => seen.push(e)), await qemu.onDeviceRemoved((e) => seen.push(e))];
    try {
      const dom: DomainRef = await qemu.lookupDomainByName('dev-0');
      await qemu.domainAttachDeviceFlags(dom, "<input type='tablet' bus='usb'/>", DomainAffect.LIVE);
      const added = await waitFor('deviceAdded', () => seen.find((e) => e.kind === 'deviceAdded'));
      assert.equal(added.dom.uuid, dom.uuid);
      assert.match(added.devAlias, /^input\d+$/);
      await qemu.domainDetachDeviceAlias(dom, added.devAlias, DomainAffect.LIVE);
      const removed = await waitFor('deviceRemoved', () => seen.find((e) => e.kind === 'deviceRemoved'));
      assert.equal(removed.devAlias, added.devAlias);
    } finally {
      for (const s of subs) await s.close();
      await removeDomain(qemu, 'dev-0');
    }
  });

  it('MEMORY_DEVICE_SIZE_CHANGE registers on libvirt 9.0 (its delivery needs a virtio-mem guest: guest*.test.ts)', async () => {
    const sub = await qemu.onMemoryDeviceSizeChange(() => undefined);
    assert.ok(sub.callbackId >= 0);
    await sub.close();
  });
});

describe('LibvirtDriver.observeAll on QEMU', () => {
  it('observes a fleet in one bulk round; the second look costs 2 calls; it agrees with observe()', async () => {
    const names = await qemuFleet('fl', 3, 2, 1);
    const drv = new LibvirtDriver({ uri: d.uri('qemu'), timeoutMs: 60_000 });
    await drv.connect();
    try {
      const first = await drv.observeAll();
      const mine = first.vms.filter((v) => v.name.startsWith('fl-'));
      assert.equal(mine.length, 6);
      const others = first.vms.length - mine.length;
      // 5 event registrations, list + stats, XML: 2 per running persistent, 1 per shut-off or transient.
      assert.equal(first.calls, 5 + 2 + 3 * 2 + 2 + 1 + others * 2, `calls of the first look (${others} other domains)`);
      const second = await drv.observeAll();
      assert.equal(second.calls, 2, 'everything else from the cache');
      for (const v of mine) assert.deepEqual(byUuid(second.vms).get(v.uuid), await drv.observe(v), v.name);
      const t = mine.find((v) => v.name === 'fl-t0');
      assert.equal(t?.persistent, false);
      assert.equal(t?.config, undefined);
      assert.equal(mine.find((v) => v.name === 'fl-3')?.powerState, 'ShutOff');
    } finally {
      await drv.close();
      for (const n of names) await removeDomain(qemu, n);
    }
  });

  it('refetches only the domain whose events said it changed (redefine, stop), and sees the change', async () => {
    const names = await qemuFleet('ev', 2, 1, 0);
    const drv = new LibvirtDriver({ uri: d.uri('qemu'), timeoutMs: 60_000 });
    await drv.connect();
    try {
      await drv.observeAll();
      // Out of band: redefine the shut-off domain with more memory (DEFINED event).
      const off = await qemu.lookupDomainByName('ev-2');
      const xml = tinyDomainXml('ev-2', { maxMiB: 640, currentMiB: 512, uuid: off.uuid });
      await qemu.domainDefineXml(xml);
      await new Promise((r) => setTimeout(r, 300)); // the event travels on the driver's own connection
      const a = await drv.observeAll();
      assert.equal(a.calls, 2 + 1, 'list + stats + one inactive XML');
      const v = byUuid(a.vms).get(off.uuid);
      assert.equal(v?.config?.maxMemory, 640n * Mi);
      assert.equal(v?.config?.memory, 512n * Mi);
      // Out of band: stop a running domain (STOPPED event, and its id is gone from the stats).
      const run = await qemu.lookupDomainByName('ev-0');
      await qemu.domainDestroy(run);
      await new Promise((r) => setTimeout(r, 300));
      const b = await drv.observeAll();
      assert.equal(b.calls, 2 + 1);
      assert.equal(byUuid(b.vms).get(run.uuid)?.powerState, 'ShutOff');
      assert.equal(byUuid(b.vms).get(run.uuid)?.live, undefined);
      // Undefined out of band: gone from the next look.
      await removeDomain(qemu, 'ev-2');
      const c = await drv.observeAll();
      assert.equal(byUuid(c.vms).has(off.uuid), false);
    } finally {
      await drv.close();
      for (const n of names) await removeDomain(qemu, n);
    }
  });

  it('a change libvirt sends no event for (config memtune) is seen once the cached XML is older than xmlMaxAgeMs', async () => {
    const names = await qemuFleet('age', 1, 0, 0);
    const drv = new LibvirtDriver({ uri: d.uri('qemu'), timeoutMs: 60_000 }, { xmlMaxAgeMs: 500 });
    await drv.connect();
    try {
      const dom = await qemu.lookupDomainByName('age-0');
      await drv.observeAll();
      await qemu.domainSetMemoryFlags(dom, 200 * 1024, DomainMemFlags.CONFIG);
      const soon = byUuid((await drv.observeAll()).vms).get(dom.uuid);
      assert.equal(soon?.config?.memory, 192n * Mi, 'no event: the cache still holds the old config');
      await new Promise((r) => setTimeout(r, 600));
      const later = await drv.observeAll();
      assert.equal(byUuid(later.vms).get(dom.uuid)?.config?.memory, 200n * Mi);
    } finally {
      await drv.close();
      for (const n of names) await removeDomain(qemu, n);
    }
  });

  it('apply returns the observation patched from the cache, equal to a fresh observe()', async () => {
    const names = await qemuFleet('ap', 1, 1, 0);
    const drv = new LibvirtDriver({ uri: d.uri('qemu'), timeoutMs: 60_000 });
    await drv.connect();
    try {
      const all = await drv.observeAll();
      const run = all.vms.find((v) => v.name === 'ap-0')!;
      const off = all.vms.find((v) => v.name === 'ap-1')!;
      const r1 = await drv.apply(run, [
        { field: 'maxMemory', world: 'config', from: 256n * Mi, to: 320n * Mi },
        { field: 'memory', world: 'config', from: 192n * Mi, to: 160n * Mi },
        { field: 'memory', world: 'live', from: 192n * Mi, to: 176n * Mi },
      ]);
      assert.ok(r1.observed, 'an exact observation for QEMU');
      assert.deepEqual(r1.observed, await drv.observe(run));
      const r2 = await drv.apply(off, [{ field: 'maxMemory', world: 'config', from: 272n * Mi, to: 128n * Mi }]);
      assert.equal(r2.observed?.config?.memory, 128n * Mi, 'lowering <memory> lowers <currentMemory>');
      assert.deepEqual(r2.observed, await drv.observe(off));
      // The next host look reuses the patched cache and agrees too.
      const next = await drv.observeAll();
      assert.equal(next.calls, 2);
      assert.deepEqual(byUuid(next.vms).get(run.uuid), await drv.observe(run));
    } finally {
      await drv.close();
      for (const n of names) await removeDomain(qemu, n);
    }
  });

  it('events(): DEFINED is a config event, STARTED a lifecycle event', async () => {
    const drv = new LibvirtDriver({ uri: d.uri('qemu'), timeoutMs: 60_000 });
    await drv.connect();
    const seen: DriverEvent[] = [];
    const stop = await drv.events((e) => seen.push(e));
    try {
      const dom = await qemu.domainDefineXml(tinyDomainXml('evk-0'));
      await qemu.domainCreate(dom);
      await waitFor('config', () => seen.find((e) => e.kind === 'config' && e.vm.name === 'evk-0'));
      // QEMU also reports resumed(0) when the vCPUs start: look for the start itself.
      await waitFor('lifecycle started', () => seen.find((e) => e.kind === 'lifecycle' && e.vm.name === 'evk-0' && e.detail.startsWith('started')));
      assert.ok(!seen.some((e) => e.kind === 'lifecycle' && e.detail.startsWith('defined')), 'DEFINED is never a lifecycle event');
    } finally {
      await stop();
      await drv.close();
      await removeDomain(qemu, 'evk-0');
    }
  });

  it('an aborted observeAll stops waiting with a Timeout naming the call', async () => {
    const drv = new LibvirtDriver({ uri: d.uri('qemu'), timeoutMs: 60_000 });
    await drv.connect();
    try {
      const ac = new AbortController();
      ac.abort(new Error('reconcile deadline'));
      await assert.rejects(drv.observeAll({ signal: ac.signal }), (e: unknown) => e instanceof DriverError && e.code === 'Timeout' && /reconcile deadline/.test(e.message));
      // The driver still works afterwards.
      assert.ok((await drv.observeAll()).vms.length >= 0);
    } finally {
      await drv.close();
    }
  });
});

describe('LibvirtDriver.observeAll on the test driver', () => {
  it('bulk state, per-domain virDomainGetInfo for running domains (no BALLOON group); agrees with observe(); apply patches', async () => {
    for (let i = 0; i < 3; i++) {
      const dom = await test.domainDefineXml(testDomainXml(`tb-${i}`, 512 + 64 * i, 384));
      if (i < 2) await test.domainCreate(dom);
    }
    const drv = new LibvirtDriver({ uri: d.uri('test'), timeoutMs: 60_000 });
    await drv.connect();
    try {
      const first = await drv.observeAll();
      const running = first.vms.filter((v) => v.powerState !== 'ShutOff').length;
      const persistentRunning = first.vms.filter((v) => v.powerState !== 'ShutOff' && v.persistent).length;
      const xmlCalls = first.vms.length + persistentRunning;
      assert.equal(first.calls, 5 + 2 + xmlCalls + 2 * running);
      const second = await drv.observeAll();
      assert.equal(second.calls, 2 + 2 * running, 'list + stats + virDomainGetInfo and virDomainMemoryStats per running domain');
      for (const v of second.vms) assert.deepEqual(v, await drv.observe(v), v.name);
      const tb0 = second.vms.find((v) => v.name === 'tb-0')!;
      const r = await drv.apply(tb0, [
        { field: 'memory', world: 'live', from: 384n * Mi, to: 256n * Mi },
        { field: 'limit', world: 'live', from: 'unlimited', to: 1024n * Mi },
      ]);
      assert.ok(r.observed);
      assert.equal(r.observed.balloon.actual, 256n * Mi, 'the test driver balloons at once');
      assert.deepEqual(r.observed, await drv.observe(tb0));
    } finally {
      await drv.close();
      for (let i = 0; i < 3; i++) await removeDomain(test, `tb-${i}`);
    }
  });

  it('without the bulk call (noBulkStats): one list and seven calls per domain (virDomainMemoryStats included), same observations', async () => {
    await test.domainDefineXml(testDomainXml('nb-0', 256));
    const bulk = new LibvirtDriver({ uri: d.uri('test'), timeoutMs: 60_000 });
    const each = new LibvirtDriver({ uri: d.uri('test'), timeoutMs: 60_000 }, { noBulkStats: true });
    await bulk.connect();
    await each.connect();
    try {
      const a = await each.observeAll();
      assert.equal(a.calls, 5 + 1 + 7 * a.vms.length);
      const b = await bulk.observeAll();
      assert.deepEqual(byUuid(a.vms), byUuid(b.vms));
    } finally {
      await bulk.close();
      await each.close();
      await removeDomain(test, 'nb-0');
    }
  });
});
