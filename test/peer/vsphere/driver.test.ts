// The vSphere driver (src/drivers/vsphere/) against vcsim: identify, lookup, observe, apply with
// coalescing and the whole-memoryAllocation rule, error mapping. vcsim does not enforce ESX's
// power-state/hot-add rules (docs/vsphere.md): the planner does, so they are not tested here.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { DriverEvent } from '../../../src/drivers/driver.ts';
import { DriverError } from '../../../src/drivers/driver.ts';
import { createDriver } from '../../../src/drivers/registry.ts';
import type { VSphereVMHandle } from '../../../src/drivers/vsphere/index.ts';
import { VSphereDriver } from '../../../src/drivers/vsphere/index.ts';
import type { Step } from '../../../src/model/memory.ts';
import { VSphereClient } from '../../../src/vsphere/index.ts';
import type { Vcsim } from '../../env/vcsim.ts';
import { startVcsim } from '../../env/vcsim.ts';

const MiB = 1024n * 1024n;
let sim: Vcsim;
let d: VSphereDriver;
let admin: VSphereClient;

function driver(over: object = {}) {
  return new VSphereDriver({ uri: sim.url, credentials: { username: sim.username, password: sim.password, caCert: sim.caPem }, timeoutMs: 10_000, ...over });
}

before(async () => {
  sim = await startVcsim();
  d = driver();
  await d.connect();
  admin = await VSphereClient.connect({ url: sim.url, username: sim.username, password: sim.password, caPem: sim.caPem });
});

after(async () => {
  await d?.close();
  await admin?.close();
  await sim?.stop();
});

const step = (field: Step['field'], from: Step['from'], to: Step['to']): Step => ({ field, world: 'config', from, to });

describe('vSphere driver on vcsim', () => {
  it('is what the registry creates for https:// URIs', async () => {
    const r = await createDriver({ uri: sim.url, credentials: { username: sim.username, password: sim.password, caCert: sim.caPem } });
    assert.equal(r.kind, 'vsphere');
    await r.connect();
    assert.equal((await r.identify()).type, 'esx');
    await r.close();
  });

  it('identify: esx, vSphere version, host memory', async () => {
    const id = await d.identify();
    assert.equal(id.type, 'esx');
    assert.match(id.version, /VMware vCenter Server \d/);
    assert.equal(id.hostname, '127.0.0.1');
    assert.ok(id.hostMemory! > 0n);
  });

  it('lookup by name, BIOS uuid and instance uuid; unknown → VMNotFound', async () => {
    const h = await d.lookup({ name: 'DC0_H0_VM0' });
    assert.equal(h.name, 'DC0_H0_VM0');
    const byUuid = await d.lookup({ uuid: h.uuid });
    assert.deepEqual(byUuid.moref, h.moref);
    const byInstance = await d.lookup({ uuid: h.instanceUuid! });
    assert.deepEqual(byInstance.moref, h.moref);
    for (const ref of [{ name: 'nope' }, { uuid: '00000000-0000-0000-0000-00000000abcd' }]) {
      await assert.rejects(d.lookup(ref), (e: unknown) => e instanceof DriverError && e.code === 'VMNotFound' && /no VM with/.test(e.message));
    }
  });

  it('observe: bytes, single configuration (live = config while running), hot-add settings', async () => {
    const h = await d.lookup({ name: 'DC0_H0_VM0' });
    const o = await d.observe(h);
    assert.equal(o.type, 'esx');
    assert.equal(o.powerState, 'Running');
    assert.equal(o.persistent, true);
    assert.ok(o.config && o.live);
    assert.deepEqual(o.live, o.config);
    assert.equal(o.config.limit, 'unlimited');
    assert.equal(o.config.memory, o.config.maxMemory);
    assert.equal(o.config.reservation, 0n);
    assert.equal(o.hotAdd?.enabled, false);
  });

  it('apply: one ReconfigVM_Task for a coalescible plan; values read back; shares kept', async () => {
    const h = await d.lookup({ name: 'DC0_H0_VM1' });
    // Custom shares set out of band must survive our whole-allocation reconfigures.
    await admin.reconfigureVm(h.moref, { memoryAllocation: { reservation: 0, limit: -1, shares: { level: 'custom', shares: 3333 } } });
    const before = d.reconfigureCalls;
    const steps = [step('maxMemory', 32n * MiB, 2048n * MiB), step('limit', 'unlimited', 1536n * MiB), step('reservation', 0n, 512n * MiB)];
    const res = await d.apply(h, steps);
    assert.deepEqual(res.applied, steps);
    assert.equal(d.reconfigureCalls - before, 1, 'coalesced into one ReconfigVM_Task');
    const o = await d.observe(h);
    assert.equal(o.config!.maxMemory, 2048n * MiB);
    assert.equal(o.config!.limit, 1536n * MiB);
    assert.equal(o.config!.memory, 1536n * MiB, 'ESX memory = min(memoryMB, limit)');
    assert.equal(o.config!.reservation, 512n * MiB);
    const raw = await admin.getVmMemory(h.moref);
    assert.deepEqual(raw.memoryAllocation.shares, { level: 'custom', shares: 3333 });
    // Changing only the limit keeps the reservation (whole allocation sent).
    await d.apply(h, [step('limit', 1536n * MiB, 'unlimited')]);
    const raw2 = await admin.getVmMemory(h.moref);
    assert.equal(raw2.memoryAllocation.limit, -1);
    assert.equal(raw2.memoryAllocation.reservation, 512);
    assert.deepEqual(raw2.memoryAllocation.shares, { level: 'custom', shares: 3333 });
  });

  it('apply: a field that comes back with another value starts a new task (order kept)', async () => {
    const h = await d.lookup({ name: 'DC0_H0_VM1' });
    const before = d.reconfigureCalls;
    await d.apply(h, [step('limit', 'unlimited', 4096n * MiB), step('reservation', 512n * MiB, 1024n * MiB), step('limit', 4096n * MiB, 2048n * MiB)]);
    assert.equal(d.reconfigureCalls - before, 2);
    const o = await d.observe(h);
    assert.equal(o.config!.limit, 2048n * MiB);
    assert.equal(o.config!.reservation, 1024n * MiB);
  });

  it('apply: a memory step is refused (no knob), with the steps before it in applied', async () => {
    const h = await d.lookup({ name: 'DC0_H0_VM1' });
    const first = step('maxMemory', 2048n * MiB, 4096n * MiB);
    await assert.rejects(d.apply(h, [first, step('memory', 4096n * MiB, 1024n * MiB)]), (e: unknown) => {
      assert.ok(e instanceof DriverError);
      assert.equal(e.code, 'Refused');
      assert.equal(e.op, 'ReconfigVM_Task');
      assert.match(e.hypervisorMessage ?? '', /balloon target/);
      assert.deepEqual(e.applied, [first]);
      return true;
    });
    assert.equal((await d.observe(h)).config!.maxMemory, 4096n * MiB);
  });

  it('apply: values off the MiB granularity are refused, not rounded', async () => {
    const h = await d.lookup({ name: 'DC0_H0_VM1' });
    await assert.rejects(d.apply(h, [step('reservation', 0n, MiB + 1n)]), (e: unknown) => e instanceof DriverError && e.code === 'Refused' && e.applied.length === 0);
  });

  it('powered off: observe has no live world; a VM gone behind our back → VMNotFound', async () => {
    const h: VSphereVMHandle = await d.lookup({ name: 'DC0_C0_RP0_VM0' });
    await admin.powerOffVm(h.moref);
    const o = await d.observe(h);
    assert.equal(o.powerState, 'ShutOff');
    assert.equal(o.live, undefined);
    assert.ok(o.config);
    await sim.govc('vm.destroy', 'DC0_C0_RP0_VM0');
    await assert.rejects(d.observe(h), (e: unknown) => e instanceof DriverError && e.code === 'VMNotFound');
    await assert.rejects(d.apply(h, [step('reservation', 0n, MiB)]), (e: unknown) => e instanceof DriverError && e.code === 'VMNotFound');
  });

  it('events: power changes and reconfigures arrive as lifecycle events; a killed session → disconnected, then it recovers', async () => {
    const ev = new VSphereDriver(
      { uri: sim.url, credentials: { username: sim.username, password: sim.password, caCert: sim.caPem } },
      { watch: { maxWaitSeconds: 1, retryMinMs: 50, retryMaxMs: 200 } },
    );
    await ev.connect();
    const got: DriverEvent[] = [];
    const waitFor = async (pred: (e: DriverEvent) => boolean, what: string) => {
      const t0 = Date.now();
      while (!got.some(pred)) {
        if (Date.now() - t0 > 10_000) assert.fail(`no ${what} event within 10 s; got ${JSON.stringify(got)}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    };
    const unsubscribe = await ev.events((e) => got.push(e));
    try {
      const h = await d.lookup({ name: 'DC0_H0_VM0' });
      const running = (await d.observe(h)).powerState === 'Running';
      if (running) await admin.powerOffVm(h.moref);
      else await admin.powerOnVm(h.moref);
      const detail = running ? 'Stopped' : 'Started';
      await waitFor((e) => e.kind === 'lifecycle' && e.vm.name === 'DC0_H0_VM0' && e.detail === detail, detail);
      assert.ok(got.every((e) => e.kind !== 'lifecycle' || e.vm.uuid !== ''), 'events carry the uuid');
      await admin.reconfigureVm(h.moref, { memoryMB: 64 });
      await waitFor((e) => e.kind === 'lifecycle' && e.vm.uuid === h.uuid && e.detail === 'Reconfigured', 'Reconfigured');
      // Kill every session but the admin's: the watch breaks, says so, and comes back.
      const sm = (await admin.serviceContent()).sessionManager;
      const [o] = await admin.retrieveProperties([sm], ['sessionList']);
      const keys = (o?.props.get('sessionList')?.children ?? []).map((u) => u.children.find((c) => c.name === 'key')?.text ?? '');
      await admin.terminateSessions(keys.filter((k) => k !== '' && k !== admin.session!.key));
      await waitFor((e) => e.kind === 'disconnected', 'disconnected');
      got.length = 0;
      await new Promise((r) => setTimeout(r, 500)); // let the watch re-establish
      await admin.reconfigureVm(h.moref, { memoryMB: 128 });
      await waitFor((e) => e.kind === 'lifecycle' && e.detail === 'Reconfigured', 'Reconfigured after recovery');
    } finally {
      const t0 = Date.now();
      await unsubscribe();
      assert.ok(Date.now() - t0 < 3000, 'unsubscribe is prompt');
      await ev.close();
    }
  });

  it('errors: wrong password → AuthFailed, untrusted certificate → TLS, insecureSkipVerify works, no password in messages', async () => {
    const bad = new VSphereDriver({ uri: sim.url, credentials: { username: sim.username, password: 'not-it', caCert: sim.caPem } });
    await assert.rejects(bad.connect(), (e: unknown) => e instanceof DriverError && e.code === 'AuthFailed' && !e.message.includes('not-it'));
    const noCa = new VSphereDriver({ uri: sim.url, credentials: { username: sim.username, password: sim.password } });
    await assert.rejects(noCa.connect(), (e: unknown) => e instanceof DriverError && e.code === 'TLS');
    const insecure = new VSphereDriver({ uri: sim.url, credentials: { username: sim.username, password: sim.password }, insecureSkipVerify: true });
    await insecure.connect();
    await insecure.close();
    const notConnected = new VSphereDriver({ uri: sim.url });
    await assert.rejects(notConnected.observe({ name: 'x', uuid: 'y' }), (e: unknown) => e instanceof DriverError && e.code === 'Disconnected');
    await assert.rejects(notConnected.connect(), (e: unknown) => e instanceof DriverError && e.code === 'AuthFailed');
    await assert.rejects(new VSphereDriver({ uri: 'http://127.0.0.1/sdk', credentials: { username: 'a', password: 'b' } }).connect(), (e: unknown) => e instanceof DriverError && e.code === 'InvalidURI');
  });
});
