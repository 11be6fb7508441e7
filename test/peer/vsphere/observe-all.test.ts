// observeAll() on vcsim: one PropertyCollector filter over all VMs. It sees every VM with the
// values observe() gives, costs the same few calls at 1 VM per host as at 30, one call per resync
// after that, and changes made out of band (govc, another session) show up through the watch.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { DriverEvent } from '../../../src/drivers/driver.ts';
import { VSphereDriver } from '../../../src/drivers/vsphere/index.ts';
import type { Vcsim } from '../../env/vcsim.ts';
import { startVcsim } from '../../env/vcsim.ts';

const MiB = 1024n * 1024n;
let small: Vcsim;
let big: Vcsim;

function driverFor(sim: Vcsim): VSphereDriver {
  return new VSphereDriver({ uri: sim.url, credentials: { username: sim.username, password: sim.password, caCert: sim.caPem }, timeoutMs: 20_000 });
}

before(async () => {
  [small, big] = await Promise.all([startVcsim({ args: ['-vm', '1'] }), startVcsim({ args: ['-vm', '30'] })]);
});

after(async () => {
  await Promise.all([small?.stop(), big?.stop()]);
});

describe('vSphere observeAll on vcsim', () => {
  it('costs the same calls at any VM count: a few to set up, then one per resync', async () => {
    const ds = driverFor(small);
    const db = driverFor(big);
    await ds.connect();
    await db.connect();
    try {
      const s1 = await ds.observeAll();
      const b1 = await db.observeAll();
      assert.ok(b1.vms.length >= 10 * s1.vms.length, `big has ${b1.vms.length} VMs, small ${s1.vms.length}`);
      assert.equal(b1.calls, s1.calls, 'the first full look costs the same at any size');
      assert.ok(b1.calls <= 5, `first look: ${b1.calls} calls`);
      const b2 = await db.observeAll();
      assert.equal(b2.calls, 1, 'an idle resync is one WaitForUpdatesEx');
      assert.equal(b2.vms.length, b1.vms.length);
    } finally {
      await ds.close();
      await db.close();
    }
  });

  it('gives every VM exactly what observe() gives', async () => {
    const d = driverFor(big);
    await d.connect();
    try {
      const { vms } = await d.observeAll();
      const names = new Set(vms.map((v) => v.name));
      assert.equal(names.size, vms.length, 'vcsim VM names are unique');
      for (const v of vms) {
        const h = await d.lookup({ uuid: v.uuid });
        assert.deepEqual(v, await d.observe(h), v.name);
      }
    } finally {
      await d.close();
    }
  });

  it('sees out-of-band changes (govc) in one call each and tells events() subscribers', async () => {
    const d = driverFor(small);
    await d.connect();
    const got: DriverEvent[] = [];
    const unsubscribe = await d.events((e) => got.push(e));
    try {
      const first = await d.observeAll();
      const vm = first.vms.find((v) => v.powerState === 'Running');
      assert.ok(vm, 'vcsim powers its VMs on');
      const byName = async (name: string) => {
        const r = await d.observeAll();
        // One WaitForUpdatesEx, plus one RetrievePropertiesEx when a config changed without naming
        // its paths (vcsim does that; fleet.ts).
        assert.ok(r.calls <= 2, `a resync with changes costs ${r.calls} calls`);
        return r.vms.find((v) => v.name === name);
      };

      await small.govc('vm.change', '-vm', vm.name, '-m', '256');
      await small.govc('vm.change', '-vm', vm.name, '-mem.limit', '200', '-mem.reservation', '64');
      const changed = await byName(vm.name);
      assert.equal(changed?.config?.maxMemory, 256n * MiB);
      assert.equal(changed?.config?.limit, 200n * MiB);
      assert.equal(changed?.config?.reservation, 64n * MiB);
      assert.deepEqual(changed, await d.observe(await d.lookup({ uuid: vm.uuid })));
      assert.ok(got.some((e) => e.kind === 'config' && e.vm.uuid === vm.uuid), `config event; got ${JSON.stringify(got)}`);

      await small.govc('vm.power', '-off', vm.name);
      assert.equal((await byName(vm.name))?.powerState, 'ShutOff');

      await small.govc('vm.create', '-host', 'DC0_H0', '-net', 'VM Network', '-m', '128', '-on=false', 'fleet-new');
      const created = await byName('fleet-new');
      assert.equal(created?.config?.maxMemory, 128n * MiB);

      await small.govc('vm.destroy', 'fleet-new');
      assert.equal(await byName('fleet-new'), undefined);
      assert.ok(got.some((e) => e.kind === 'lifecycle' && e.detail === 'Undefined' && e.vm.name === 'fleet-new'), 'Undefined event');
    } finally {
      await unsubscribe();
      await d.close();
    }
  });

  it('starts over with a full set when its session is killed', async () => {
    const d = driverFor(small);
    await d.connect();
    try {
      const before = await d.observeAll();
      // Another session terminates all others (as an administrator might): the collector is gone.
      const sessions = (await small.govc('session.ls', '-json')) as string;
      const keys = [...sessions.matchAll(/"key":\s*"([^"]+)"/gi)].map((m) => m[1]!);
      assert.ok(keys.length > 0, sessions);
      for (const k of keys) await small.govc('session.rm', k).catch(() => undefined); // govc's own session too
      const again = await d.observeAll();
      // Login again, the old collector refused, a new one built and read whole: more than one call.
      assert.ok(again.calls >= 4, `restart cost ${again.calls} calls`);
      assert.deepEqual(new Set(again.vms.map((v) => v.uuid)), new Set(before.vms.map((v) => v.uuid)));
    } finally {
      await d.close();
    }
  });
});
