// The libvirt driver against real QEMU 7.2 (TCG) domains of a real, isolated
// libvirtd 9.0. (The conformance suite runs against the test driver in
// conformance-test-driver.test.ts; here are the QEMU specifics, including the
// balloon target that libvirt does not report for QEMU.)
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { DriverEvent, VMHandle } from '../../../src/drivers/driver.ts';
import { DriverError } from '../../../src/drivers/driver.ts';
import { LibvirtDriver } from '../../../src/drivers/libvirt/index.ts';
import { DomainMemFlags, LibvirtClient } from '../../../src/libvirt/index.ts';
import type { Step } from '../../../src/model/memory.ts';
import { startLibvirtd, tinyDomainXml } from '../../env/libvirtd.ts';
import type { Libvirtd } from '../../env/libvirtd.ts';
import { rejectsWith } from '../../env/rejects.ts';

const Mi = 1n << 20n;
let d: Libvirtd;
let admin: LibvirtClient;
let driver: LibvirtDriver;

before(async () => {
  d = await startLibvirtd();
  admin = await LibvirtClient.connect(d.uri('qemu'));
  driver = new LibvirtDriver({ uri: d.uri('qemu'), timeoutMs: 60_000 });
  await driver.connect();
});

after(async () => {
  await driver?.close();
  await admin?.close();
  await d?.stop();
});

const refused = (p: Promise<unknown>): Promise<DriverError> => rejectsWith(p, DriverError);

async function vm(name: string, opts: Parameters<typeof tinyDomainXml>[1] & { run?: boolean; transient?: boolean } = {}): Promise<VMHandle> {
  const xml = tinyDomainXml(name, opts);
  if (opts.transient) await admin.domainCreateXml(xml);
  else {
    const dom = await admin.domainDefineXml(xml);
    if (opts.run !== false) await admin.domainCreate(dom);
  }
  return driver.lookup({ name });
}

async function remove(name: string): Promise<void> {
  try {
    const dom = await admin.lookupDomainByName(name);
    if (await admin.domainIsActive(dom)) await admin.domainDestroy(dom);
    if (await admin.domainIsPersistent(dom)) await admin.domainUndefine(dom);
  } catch {
    /* gone */
  }
}

describe('libvirt driver on QEMU', () => {
  it('identify: qemu, versions, host memory', async () => {
    const id = await driver.identify();
    assert.equal(id.type, 'qemu');
    assert.match(id.version, /^QEMU 7\.\d+\.\d+ \(libvirt 9\.\d+\.\d+\)$/);
    assert.ok(id.hostname && id.hostname.length > 0);
    assert.ok(id.hostMemory && id.hostMemory > 1024n * Mi);
  });

  it('observe: running, shut-off, transient, no balloon, NUMA', async () => {
    try {
      const r = await vm('obs-run', { maxMiB: 512, currentMiB: 384 });
      const o = await driver.observe(r);
      assert.equal(o.type, 'qemu');
      assert.equal(o.powerState, 'Running');
      assert.equal(o.persistent, true);
      assert.equal(o.config?.maxMemory, 512n * Mi);
      assert.equal(o.config?.memory, 384n * Mi);
      assert.equal(o.config?.limit, 'unlimited');
      assert.equal(o.config?.reservation, undefined);
      assert.equal(o.live?.maxMemory, 512n * Mi);
      // QEMU reports the balloon's actual size as the live currentMemory; with no guest
      // driver the balloon never inflated, so it is the full 512 MiB (docs/libvirt.md).
      assert.equal(o.live?.memory, 512n * Mi);
      assert.equal(o.balloon.device, 'present');
      assert.equal(o.balloon.actual, 512n * Mi);
      assert.equal(o.numa, false);
      assert.deepEqual(await driver.observe(r), o, 'observe is stable');

      const off = await driver.observe(await vm('obs-off', { run: false }));
      assert.equal(off.powerState, 'ShutOff');
      assert.equal(off.live, undefined);
      assert.equal(off.balloon.actual, undefined);
      assert.equal(off.config?.maxMemory, 256n * Mi);

      const t = await driver.observe(await vm('obs-transient', { transient: true }));
      assert.equal(t.persistent, false);
      assert.equal(t.config, undefined);
      assert.equal(t.live?.maxMemory, 256n * Mi);

      const nb = await driver.observe(await vm('obs-noballoon', { balloon: 'none' }));
      assert.equal(nb.balloon.device, 'none');

      const numa = await driver.observe(await vm('obs-numa', { numa: true, run: false }));
      assert.equal(numa.numa, true);
    } finally {
      for (const n of ['obs-run', 'obs-off', 'obs-transient', 'obs-noballoon', 'obs-numa']) await remove(n);
    }
  });

  it('apply: each step is one libvirt call; live target is remembered for the running instance', async () => {
    try {
      const h = await vm('apply1', { maxMiB: 512 });
      const o = await driver.observe(h);
      const steps: Step[] = [
        { field: 'maxMemory', world: 'config', from: 512n * Mi, to: 768n * Mi },
        { field: 'memory', world: 'config', from: 512n * Mi, to: 640n * Mi },
        { field: 'memory', world: 'live', from: o.live?.memory, to: 384n * Mi },
        { field: 'limit', world: 'config', from: 'unlimited', to: 2048n * Mi },
      ];
      assert.deepEqual((await driver.apply(h, steps)).applied, steps);
      const after = await driver.observe(h);
      assert.equal(after.config?.maxMemory, 768n * Mi);
      assert.equal(after.config?.memory, 640n * Mi);
      assert.equal(after.config?.limit, 2048n * Mi);
      assert.equal(after.live?.maxMemory, 512n * Mi, 'live maximum unchanged until restart');
      assert.equal(after.live?.memory, 384n * Mi, 'the live target this driver set');
      assert.equal(after.balloon.actual, 512n * Mi, 'no guest driver: the balloon does not move');
      // a fresh driver does not know the target: it reports what libvirt says
      const other = new LibvirtDriver({ uri: d.uri('qemu'), timeoutMs: 60_000 });
      await other.connect();
      try {
        assert.equal((await other.observe(h)).live?.memory, 512n * Mi);
      } finally {
        await other.close();
      }
      // A config hard_limit makes libvirt set QEMU's RLIMIT_MEMLOCK to it at start, which this
      // container does not permit ("cannot limit locked memory ... Operation not permitted"):
      // clear it before the cold boot (docs/libvirt.md).
      await driver.apply(h, [{ field: 'limit', world: 'config', from: 2048n * Mi, to: 'unlimited' }]);
      assert.equal((await driver.observe(h)).config?.limit, 'unlimited');
      // after a cold boot the remembered target is forgotten; the config became live
      await admin.domainDestroy(await admin.lookupDomainByName('apply1'));
      await admin.domainCreate(await admin.lookupDomainByName('apply1'));
      const rebooted = await driver.observe(h);
      assert.equal(rebooted.live?.maxMemory, 768n * Mi);
      assert.equal(rebooted.live?.limit, 'unlimited');
      assert.equal(rebooted.live?.memory, 768n * Mi, 'libvirt reports the balloon actual (full size, no guest driver)');
    } finally {
      await remove('apply1');
    }
  });

  it('a live step and its config twin are one call with AFFECT_LIVE|AFFECT_CONFIG; libvirt checks both worlds first', async () => {
    // Count what the driver sends through our own client (the daemon is real).
    const sent: number[] = [];
    const original = LibvirtClient.prototype.domainSetMemoryFlags;
    LibvirtClient.prototype.domainSetMemoryFlags = function (this: LibvirtClient, dom, kib, flags) {
      sent.push(flags);
      return original.call(this, dom, kib, flags);
    };
    try {
      const h = await vm('pair1', { maxMiB: 512 });
      const o = await driver.observe(h);
      const pair = (to: bigint): Step[] => [
        { field: 'memory', world: 'live', from: o.live?.memory, to },
        { field: 'memory', world: 'config', from: o.config?.memory, to },
      ];
      const steps = pair(384n * Mi);
      assert.deepEqual((await driver.apply(h, steps)).applied, steps);
      assert.deepEqual(sent, [DomainMemFlags.LIVE | DomainMemFlags.CONFIG], 'one call, both flags');
      const after = await driver.observe(h);
      assert.equal(after.live?.memory, 384n * Mi);
      assert.equal(after.config?.memory, 384n * Mi);

      // Config maximum 768Mi, live maximum still 512Mi: 640Mi fits the config only. libvirt
      // refuses the pair before touching either world (qemuDomainSetMemoryFlags takes the
      // smaller maximum), so nothing is half-applied.
      await driver.apply(h, [{ field: 'maxMemory', world: 'config', from: 512n * Mi, to: 768n * Mi }]);
      const e = await refused(driver.apply(h, pair(640n * Mi)));
      assert.equal(e.op, 'virDomainSetMemoryFlags');
      assert.match(e.hypervisorMessage ?? '', /cannot set memory higher than max memory/);
      assert.deepEqual(e.applied, []);
      const unchanged = await driver.observe(h);
      assert.equal(unchanged.config?.memory, 384n * Mi, 'config untouched by the refused pair');
      assert.equal(unchanged.live?.memory, 384n * Mi, 'live untouched by the refused pair');
    } finally {
      LibvirtClient.prototype.domainSetMemoryFlags = original;
      await remove('pair1');
    }
  });

  it('refusals carry the op, libvirt\'s message and the steps applied before', async () => {
    try {
      const h = await vm('refuse1', { maxMiB: 512 });
      const ok: Step = { field: 'memory', world: 'config', from: 512n * Mi, to: 256n * Mi };
      const bad: Step = { field: 'maxMemory', world: 'live', from: 512n * Mi, to: 768n * Mi };
      const e = await refused(driver.apply(h, [ok, bad, ok]));
      assert.equal(e.code, 'Refused');
      assert.equal(e.op, 'virDomainSetMemoryFlags');
      assert.equal(e.vm, 'refuse1');
      assert.equal(e.hypervisorMessage, 'Requested operation is not valid: cannot resize the maximum memory on an active domain');
      assert.deepEqual(e.applied, [ok]);
      const live = await refused(driver.apply(h, [{ field: 'limit', world: 'live', from: 'unlimited', to: 2048n * Mi }]));
      assert.equal(live.op, 'virDomainSetMemoryParameters');
      assert.match(live.hypervisorMessage ?? '', /cgroup memory controller is not mounted/);
      const res = await refused(driver.apply(h, [{ field: 'reservation', world: 'config', from: undefined, to: 128n * Mi }]));
      assert.match(res.hypervisorMessage ?? '', /parameter 'min_guarantee' not supported/);
      const gran = await refused(driver.apply(h, [{ field: 'memory', world: 'config', from: 256n * Mi, to: 256n * Mi + 512n }]));
      assert.match(gran.hypervisorMessage ?? '', /not a whole number of KiB/);
      const nb = await vm('refuse-nb', { balloon: 'none' });
      const e2 = await refused(driver.apply(nb, [{ field: 'memory', world: 'live', from: 256n * Mi, to: 128n * Mi }]));
      assert.match(e2.hypervisorMessage ?? '', /without the balloon device/);
    } finally {
      await remove('refuse1');
      await remove('refuse-nb');
    }
  });

  it('unknown VMs and VMs that disappear are VMNotFound', async () => {
    await assert.rejects(driver.lookup({ name: 'nope' }), (e: DriverError) => e.code === 'VMNotFound' && e.op === 'virDomainLookupByName');
    await assert.rejects(driver.lookup({ uuid: '00000000-0000-4000-8000-00000000dead' }), (e: DriverError) => e.code === 'VMNotFound');
    await assert.rejects(driver.lookup({ uuid: 'not-a-uuid' }), (e: DriverError) => e.code === 'VMNotFound');
    const h = await vm('gone1');
    await remove('gone1');
    await assert.rejects(driver.observe(h), (e: DriverError) => e.code === 'VMNotFound');
    await assert.rejects(driver.apply(h, [{ field: 'memory', world: 'live', from: 1n, to: 128n * Mi }]), (e: DriverError) => e.code === 'VMNotFound' && e.applied.length === 0);
  });

  it('events: lifecycle on destroy/start, disconnected when the daemon goes away; connect() reconnects', async () => {
    const seen: DriverEvent[] = [];
    const unsubscribe = await driver.events((e) => seen.push(e));
    try {
      const h = await vm('ev1');
      await admin.domainDestroy(await admin.lookupDomainByName('ev1'));
      for (let i = 0; i < 200 && !seen.some((e) => e.kind === 'lifecycle' && e.vm.uuid === h.uuid && e.detail.startsWith('stopped')); i++) {
        await new Promise((r) => setTimeout(r, 25));
      }
      assert.ok(seen.some((e) => e.kind === 'lifecycle' && e.vm.uuid === h.uuid && e.detail === 'stopped(1)'), JSON.stringify(seen));
      await admin.close();
      await d.restart();
      for (let i = 0; i < 200 && !seen.some((e) => e.kind === 'disconnected'); i++) await new Promise((r) => setTimeout(r, 25));
      assert.ok(seen.some((e) => e.kind === 'disconnected'));
      await assert.rejects(driver.observe(h), (e: DriverError) => e.code === 'Disconnected');
      await driver.connect();
      assert.equal((await driver.observe(h)).powerState, 'ShutOff');
    } finally {
      await unsubscribe();
      admin = await LibvirtClient.connect(d.uri('qemu'));
      await remove('ev1');
    }
  });
});
