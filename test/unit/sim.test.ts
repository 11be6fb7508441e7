/**
 * The sim driver's own behaviour beyond the conformance suite: inventory
 * parsing and errors, URIs and the shared-host registry, the hypervisor rules
 * at call level, balloon dynamics, faults, latency, events, counters.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { afterEach, describe, test } from 'node:test';
import type { DriverEvent } from '../../src/drivers/driver.ts';
import { DriverError } from '../../src/drivers/driver.ts';
import type { SimHost } from '../../src/drivers/sim/index.ts';
import {
  SimDriver, SimInventoryError, SimRefusal, createSimDriver, createSimHost, forgetSimHost, loadInventoryFile, parseInventory,
  resetSimHosts, resolveSimTarget, simHost,
} from '../../src/drivers/sim/index.ts';
import type { Step } from '../../src/model/memory.ts';

const Mi = 1n << 20n;
const Gi = 1n << 30n;

afterEach(() => resetSimHosts());

function tmpInventory(text: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'vmmem-sim-'));
  const path = join(dir, 'inventory.yaml');
  writeFileSync(path, text);
  return path;
}

async function connected(inventory: unknown, key = 'unit'): Promise<{ driver: SimDriver; host: SimHost }> {
  const host = createSimHost(inventory, key);
  const driver = new SimDriver({ uri: host.uri });
  await driver.connect();
  return { driver, host };
}

function refused(text: RegExp, op?: string) {
  return (err: unknown): boolean => {
    assert.ok(err instanceof DriverError, String(err));
    assert.equal(err.code, 'Refused', err.message);
    if (op) assert.equal(err.op, op);
    assert.match(err.hypervisorMessage ?? '', text);
    return true;
  };
}

const step = (field: Step['field'], world: Step['world'], to: Step['to']): Step => ({ field, world, from: undefined, to });

describe('sim inventory', () => {
  test('the example inventory loads with the VMs the examples use', () => {
    const host = simHost(resolve(import.meta.dirname, '../../examples/sim-inventory.yaml'));
    const names = host.list().map((v) => v.name);
    for (const n of ['web-01', 'db-01', 'batch-01', 'win-01', 'app-esx-02', 'xen-01', 'legacy-01', 'numa-01']) assert.ok(names.includes(n), n);
    const web = host.vm('web-01');
    assert.equal(web?.type, 'qemu');
    assert.equal(web?.live?.maxMemory, 4n * Gi);
    assert.equal(host.vm('batch-01')?.powerState, 'ShutOff');
    assert.equal(host.vm('batch-01')?.live, undefined);
    assert.deepEqual(host.vm('app-esx-02')?.hotAdd, { enabled: true, limit: 32n * Gi, increment: 128n * Mi });
    assert.equal(host.vm('win-01')?.hotAdd?.enabled, false);
    assert.equal(host.vm('legacy-01')?.balloon, 'none');
    assert.equal(host.vm('numa-01')?.numa, true);
    assert.equal(host.type, 'qemu');
  });

  test('mixed inventory: each VM follows its own type (ESX VM on a qemu-typed host)', async () => {
    const { driver, host } = await connected({ type: 'qemu', vms: [{ name: 'q', type: 'qemu', maxMemory: '2Gi' }, { name: 'e', type: 'esx', maxMemory: '2Gi', memoryHotAddEnabled: true }] });
    assert.equal((await driver.identify()).type, 'qemu');
    const e = await driver.lookup({ name: 'e' });
    assert.equal((await driver.observe(e)).type, 'esx');
    await driver.apply(e, [step('maxMemory', 'config', 3n * Gi)]);
    assert.equal(host.calls.ReconfigVM_Task, 1);
    await assert.rejects(driver.apply(e, [step('memory', 'config', Gi)]), refused(/balloon target/, 'ReconfigVM_Task'));
    const q = await driver.lookup({ name: 'q' });
    await assert.rejects(driver.apply(q, [step('maxMemory', 'live', 3n * Gi)]), refused(/active domain/, 'virDomainSetMemoryFlags'));
  });

  test('quantities are exact; configMaxMemory/configMemory set the config world', () => {
    const inv = parseInventory({
      vms: [{ name: 'a', type: 'qemu', maxMemory: '4G', memory: '1536Mi', configMaxMemory: '8Gi', balloon: 'unresponsive', balloonDelay: '50ms' }],
    });
    const vm = inv.vms[0];
    assert.ok(vm);
    assert.equal(vm.live?.maxMemory, 4_000_000_000n);
    assert.equal(vm.live?.memory, 1536n * Mi);
    assert.equal(vm.config?.maxMemory, 8n * Gi);
    assert.equal(vm.config?.memory, 1536n * Mi);
    assert.equal(vm.balloonDelayMs, 50);
    assert.equal(vm.actual, 1536n * Mi);
    assert.match(vm.uuid, /^[0-9a-f-]{36}$/);
    assert.equal(parseInventory({ vms: [{ name: 'a', type: 'qemu', maxMemory: '1Gi' }] }).vms[0]?.uuid, vm.uuid, 'uuid derives from the name');
  });

  test('latency and faults parse', () => {
    const inv = parseInventory({ latency: { mean: '5ms', jitter: '2ms' }, faults: { errorRate: 0.5, disconnectAfterCalls: 3, seed: 7 }, vms: [] });
    assert.deepEqual(inv.latency, { meanMs: 5, jitterMs: 2 });
    assert.deepEqual(inv.faults, { errorRate: 0.5, disconnectAfterCalls: 3, seed: 7 });
    assert.deepEqual(parseInventory({ latency: '10ms' }).latency, { meanMs: 10, jitterMs: 0 });
  });

  const invalid: [string, unknown, RegExp][] = [
    ['bad quantity', { vms: [{ name: 'web', type: 'qemu', maxMemory: '8Gx' }] }, /vms\[0\] \(web\).*maxMemory.*unknown suffix/],
    ['memory above max', { vms: [{ name: 'web', type: 'qemu', maxMemory: '1Gi', memory: '2Gi' }] }, /\(web\)\.memory: must be <= maxMemory/],
    ['unknown field', { vms: [{ name: 'web', type: 'qemu', maxMemory: '1Gi', maxmemory: '2Gi' }] }, /\(web\)\.maxmemory: unknown field/],
    ['unknown type', { vms: [{ name: 'web', type: 'kvm', maxMemory: '1Gi' }] }, /\(web\)\.type/],
    ['qemu reservation', { vms: [{ name: 'web', type: 'qemu', maxMemory: '1Gi', reservation: '1Gi' }] }, /\(web\)\.reservation: .*min_guarantee/],
    ['xen limit', { vms: [{ name: 'x', type: 'xen', maxMemory: '1Gi', limit: '2Gi' }] }, /\(x\)\.limit/],
    ['libvirt off KiB', { vms: [{ name: 'web', type: 'qemu', maxMemory: '1000' }] }, /\(web\)\.maxMemory: .*KiB/],
    ['esx off 4MiB', { vms: [{ name: 'w', type: 'esx', maxMemory: '1026Mi' }] }, /\(w\)\.maxMemory: .*4 MiB/],
    ['esx memory', { vms: [{ name: 'w', type: 'esx', maxMemory: '1Gi', memory: '512Mi' }] }, /\(w\)\.memory: ESX has no balloon target/],
    ['esx reservation above limit', { vms: [{ name: 'w', type: 'esx', maxMemory: '1Gi', limit: '256Mi', reservation: '512Mi' }] }, /\(w\)\.reservation: must be <= limit/],
    ['transient shut off', { vms: [{ name: 't', type: 'qemu', maxMemory: '1Gi', transient: true, powerState: 'ShutOff' }] }, /\(t\)\.transient/],
    ['duplicate', { vms: [{ name: 'a', type: 'qemu', maxMemory: '1Gi' }, { name: 'a', type: 'qemu', maxMemory: '1Gi' }] }, /vms\[1\] \(a\): duplicate name/],
    ['missing name', { vms: [{ type: 'qemu', maxMemory: '1Gi' }] }, /vms\[0\]: name: required/],
    ['top-level typo', { vm: [] }, /top level: unknown field "vm"/],
    ['errorRate', { faults: { errorRate: 2 } }, /faults.errorRate/],
  ];
  for (const [label, doc, re] of invalid) {
    test(`invalid inventory is refused with source, VM and field: ${label}`, () => {
      assert.throws(() => parseInventory(doc, 'inv.yaml'), (err: unknown) => {
        assert.ok(err instanceof SimInventoryError);
        assert.match(err.message, /^sim inventory inv\.yaml: /);
        assert.match(err.message, re);
        return true;
      });
    });
  }

  test('an invalid inventory file names the file and registers nothing; fixing it works', async () => {
    const path = tmpInventory('vms:\n  - {name: web, type: qemu, maxMemory: 8Gx}\n');
    const driver = createSimDriver({ uri: `sim://${path}` });
    await assert.rejects(driver.connect(), (err: unknown) => {
      assert.ok(err instanceof DriverError);
      assert.equal(err.code, 'InvalidURI');
      assert.ok(err.message.includes(path), err.message);
      assert.match(err.message, /vms\[0\] \(web\).*maxMemory/);
      return true;
    });
    writeFileSync(path, 'vms:\n  - {name: web, type: qemu, maxMemory: 8Gi}\n');
    await driver.connect();
    assert.equal((await driver.lookup({ name: 'web' })).name, 'web');
  });

  test('inventory file errors carry <file>:<line>, from the manifests\' YAML reader (syntax and validation alike)', () => {
    const cases: [string, number, RegExp][] = [
      ['type: qemu\nvms:\n  - name: web\n    type: qemu\n    maxMemory: 8Gx\n', 5, /vms\[0\] \(web\): maxMemory: .*unknown suffix/],
      ['vms:\n  - name: a\n    type: qemu\n    maxMemory: 1Gi\n  - name: b\n    type: qemu\n    maxMemory: 1Gi\n    memroy: 1Gi\n', 8, /vms\[1\] \(b\)\.memroy: unknown field/],
      ['vms: []\nfaults:\n  errorRate: 2\n', 3, /faults\.errorRate/],
      ['vms: []\nhostMemory: 1Gi\nvms: []\n', 3, /YAML: YAML syntax error: .*unique/],
      ['vms:\n  - name: web\n  name: again\n', 3, /YAML: YAML syntax error: /],
      ['vms: []\n---\nvms: []\n', 3, /one YAML document/],
    ];
    for (const [text, line, re] of cases) {
      const path = tmpInventory(text);
      assert.throws(() => loadInventoryFile(path), (err: unknown) => {
        assert.ok(err instanceof SimInventoryError, String(err));
        assert.ok(err.message.startsWith(`sim inventory ${path}:${line}: `), `${err.message} (want line ${line})`);
        assert.match(err.message, re);
        return true;
      }, text);
    }
  });

  test('a missing inventory file is Unreachable; a bad URI is InvalidURI', async () => {
    await assert.rejects(createSimDriver({ uri: 'sim:///nonexistent/vmmem/inventory.yaml' }).connect(), (e: unknown) => e instanceof DriverError && e.code === 'Unreachable');
    await assert.rejects(createSimDriver({ uri: 'sim:///' }).connect(), (e: unknown) => e instanceof DriverError && e.code === 'InvalidURI');
    await assert.rejects(createSimDriver({ uri: 'sim:memory:nope' }).connect(), (e: unknown) => e instanceof DriverError && e.code === 'InvalidURI');
  });
});

describe('sim URIs and the shared host', () => {
  test('URI forms resolve to files (absolute, cwd-relative) and memory keys', () => {
    const cwd = '/work/x';
    assert.deepEqual(resolveSimTarget('sim:///etc/inv.yaml', cwd), { kind: 'file', path: '/etc/inv.yaml' });
    assert.deepEqual(resolveSimTarget('sim://examples/inv.yaml', cwd), { kind: 'file', path: '/work/x/examples/inv.yaml' });
    assert.deepEqual(resolveSimTarget('sim:examples/inv.yaml', cwd), { kind: 'file', path: '/work/x/examples/inv.yaml' });
    assert.deepEqual(resolveSimTarget('sim:memory:abc', cwd), { kind: 'memory', key: 'abc' });
    assert.deepEqual(resolveSimTarget('examples/inv.yaml', cwd), { kind: 'file', path: '/work/x/examples/inv.yaml' });
  });

  test('sim:///relative/path falls back to the cwd when no such absolute file exists', () => {
    const target = resolveSimTarget('sim:///examples/sim-inventory.yaml', resolve(import.meta.dirname, '../..'));
    assert.deepEqual(target, { kind: 'file', path: resolve(import.meta.dirname, '../../examples/sim-inventory.yaml') });
  });

  test('drivers opening the same inventory (any spelling) share one host', async () => {
    const path = tmpInventory('vms:\n  - {name: web, type: qemu, maxMemory: 4Gi, memory: 4Gi}\n');
    const a = createSimDriver({ uri: `sim://${path}` });
    const b = createSimDriver({ uri: `sim:${relative(process.cwd(), path)}` });
    await a.connect();
    await b.connect();
    const vmA = await a.lookup({ name: 'web' });
    await a.apply(vmA, [step('memory', 'live', 3n * Gi)]);
    const vmB = await b.lookup({ name: 'web' });
    assert.equal((await b.observe(vmB)).live?.memory, 3n * Gi);
    assert.equal(simHost(path), simHost(`sim://${path}`));
    simHost(path).powerOff('web');
    assert.equal((await a.observe(vmA)).powerState, 'ShutOff');
    forgetSimHost(path);
    assert.notEqual(simHost(path), undefined);
  });

  test('identify: top-level type, else the first VM type; version sim-1; hostMemory', async () => {
    const { driver } = await connected({ hostMemory: '64Gi', vms: [{ name: 'w', type: 'esx', maxMemory: '1Gi' }, { name: 'q', type: 'qemu', maxMemory: '1Gi' }] });
    assert.deepEqual(await driver.identify(), { type: 'esx', version: 'sim-1', hostname: 'unit', hostMemory: 64n * Gi });
    const { driver: d2 } = await connected({ type: 'xen', vms: [{ name: 'q', type: 'qemu', maxMemory: '1Gi' }] }, 'unit2');
    assert.equal((await d2.identify()).type, 'xen');
  });
});

describe('sim qemu rules', () => {
  const inv = {
    vms: [
      { name: 'web', type: 'qemu', maxMemory: '4Gi', memory: '3Gi' },
      { name: 'stuck', type: 'qemu', maxMemory: '4Gi', memory: '4Gi', balloon: 'unresponsive' },
      { name: 'slow', type: 'qemu', maxMemory: '4Gi', memory: '4Gi', balloonDelay: '40ms' },
      { name: 'legacy', type: 'qemu', maxMemory: '2Gi', balloon: 'none' },
      { name: 'off', type: 'qemu', maxMemory: '2Gi', powerState: 'ShutOff' },
      { name: 'tmp', type: 'qemu', maxMemory: '2Gi', transient: true },
      { name: 'numa', type: 'qemu', maxMemory: '2Gi', numa: true },
    ],
  };

  test('config maxMemory below config memory lowers memory; live stays', async () => {
    const { driver } = await connected(inv);
    const vm = await driver.lookup({ name: 'web' });
    await driver.apply(vm, [step('maxMemory', 'config', 2n * Gi)]);
    const o = await driver.observe(vm);
    assert.deepEqual(o.config, { maxMemory: 2n * Gi, memory: 2n * Gi, limit: 'unlimited' });
    assert.deepEqual(o.live, { maxMemory: 4n * Gi, memory: 3n * Gi, limit: 'unlimited' });
  });

  test('the real libvirt texts and op names', async () => {
    const { driver } = await connected(inv);
    const web = await driver.lookup({ name: 'web' });
    await assert.rejects(driver.apply(web, [step('maxMemory', 'live', 8n * Gi)]), refused(/^Requested operation is not valid: cannot resize the maximum memory on an active domain$/, 'virDomainSetMemoryFlags'));
    await assert.rejects(driver.apply(web, [step('memory', 'config', 5n * Gi)]), refused(/^invalid argument: cannot set memory higher than max memory$/));
    await assert.rejects(driver.apply(web, [step('reservation', 'live', Gi)]), refused(/^argument unsupported: parameter 'min_guarantee' not supported$/, 'virDomainSetMemoryParameters'));
    await assert.rejects(driver.apply(await driver.lookup({ name: 'legacy' }), [step('memory', 'live', Gi)]),
      refused(/^Requested operation is not valid: Unable to change memory of active domain without the balloon device and guest OS balloon driver$/));
    await assert.rejects(driver.apply(await driver.lookup({ name: 'off' }), [step('limit', 'live', 'unlimited')]), refused(/^Requested operation is not valid: domain is not running$/));
    await assert.rejects(driver.apply(await driver.lookup({ name: 'tmp' }), [step('memory', 'config', Gi)]), refused(/^Requested operation is not valid: transient domains do not have any persistent config$/));
    await assert.rejects(driver.apply(await driver.lookup({ name: 'numa' }), [step('maxMemory', 'config', 4n * Gi)]), refused(/NUMA nodes cannot be modified with this API/));
    await assert.rejects(driver.apply(web, [step('memory', 'config', 3n * Gi + 1n)]), refused(/not a whole number of KiB/));
    await assert.rejects(driver.apply(web, [step('memory', 'config', 'unlimited')]), refused(/invalid argument/));
  });

  test('a refusal mid-plan reports the steps applied before it and stops', async () => {
    const { driver, host } = await connected(inv);
    const vm = await driver.lookup({ name: 'web' });
    const steps = [step('maxMemory', 'config', 8n * Gi), step('maxMemory', 'live', 8n * Gi), step('memory', 'config', 6n * Gi)];
    host.resetCalls();
    await assert.rejects(driver.apply(vm, steps), (err: unknown) => {
      assert.ok(err instanceof DriverError);
      assert.deepEqual(err.applied, [steps[0]]);
      return true;
    });
    assert.equal(host.calls.virDomainSetMemoryFlags, 2, 'the third step was never sent');
    assert.deepEqual(host.callLog.map((c) => c.outcome), ['ok', 'refused']);
    assert.equal((await driver.observe(vm)).config?.memory, 3n * Gi);
  });

  test('balloon: responsive follows after balloonDelay with a balloon event; unresponsive never moves', async () => {
    const { driver } = await connected(inv);
    const events: DriverEvent[] = [];
    await driver.events((e) => events.push(e));
    const slow = await driver.lookup({ name: 'slow' });
    await driver.apply(slow, [step('memory', 'live', 2n * Gi)]);
    let o = await driver.observe(slow);
    assert.equal(o.live?.memory, 2n * Gi);
    assert.equal(o.balloon.actual, 4n * Gi, 'not yet');
    await new Promise((r) => setTimeout(r, 80));
    o = await driver.observe(slow);
    assert.equal(o.balloon.actual, 2n * Gi);
    assert.ok(events.some((e) => e.kind === 'balloon' && e.vm.name === 'slow' && e.actual === 2n * Gi));

    const stuck = await driver.lookup({ name: 'stuck' });
    await driver.apply(stuck, [step('memory', 'live', 2n * Gi)]);
    await new Promise((r) => setTimeout(r, 20));
    o = await driver.observe(stuck);
    assert.equal(o.live?.memory, 2n * Gi, 'libvirt accepted the target');
    assert.equal(o.balloon.actual, 4n * Gi, 'but nothing happened');
  });

  test('power: off removes the live world, on makes config live, a transient domain vanishes', async () => {
    const { driver, host } = await connected(inv);
    const web = await driver.lookup({ name: 'web' });
    await driver.apply(web, [step('maxMemory', 'config', 8n * Gi), step('memory', 'config', 6n * Gi)]);
    host.restart('web');
    const o = await driver.observe(web);
    assert.equal(o.powerState, 'Running');
    assert.deepEqual(o.live, { maxMemory: 8n * Gi, memory: 6n * Gi, limit: 'unlimited' });
    assert.equal(o.balloon.actual, 6n * Gi);
    const tmp = await driver.lookup({ name: 'tmp' });
    host.powerOff('tmp');
    await assert.rejects(driver.observe(tmp), (e: unknown) => e instanceof DriverError && e.code === 'VMNotFound');
  });

  test('a live hard_limit below guest RAM + overhead gets the domain OOM-killed', async () => {
    const { driver, host } = await connected({ qemuOverhead: '300Mi', vms: inv.vms });
    const events: DriverEvent[] = [];
    await driver.events((e) => events.push(e));
    const web = await driver.lookup({ name: 'web' });
    await driver.apply(web, [step('limit', 'live', 4n * Gi + 512n * Mi)]);
    assert.equal((await driver.observe(web)).powerState, 'Running');
    await driver.apply(web, [step('limit', 'live', 4n * Gi + 100n * Mi)]);
    assert.equal((await driver.observe(web)).powerState, 'ShutOff');
    await new Promise((r) => setImmediate(r));
    assert.ok(events.some((e) => e.kind === 'lifecycle' && e.detail === 'Crashed'));
    assert.equal(host.vm('web')?.config?.limit, 'unlimited', 'only the live limit was set');
  });

  test('drift: setLive / setConfig change what observe reports', async () => {
    const { driver, host } = await connected(inv);
    const web = await driver.lookup({ name: 'web' });
    host.setLive('web', { memory: 2n * Gi });
    host.setConfig('web', { maxMemory: 6n * Gi });
    const o = await driver.observe(web);
    assert.equal(o.live?.memory, 2n * Gi);
    assert.equal(o.balloon.actual, 2n * Gi);
    assert.equal(o.config?.maxMemory, 6n * Gi);
    assert.throws(() => host.setLive('web', { memory: 8n * Gi }), /must be in/);
    assert.throws(() => host.add({ name: 'web', type: 'qemu', maxMemory: '1Gi' }), /exists/);
  });
});

describe('sim test-driver and xen rules', () => {
  test('test driver: LIVE and CONFIG together are rejected; qemu accepts them', () => {
    const host = createSimHost({ vms: [{ name: 't', type: 'test', maxMemory: '2Gi' }, { name: 'q', type: 'qemu', maxMemory: '2Gi' }] });
    const t = host.lookupByName('t');
    assert.throws(() => host.virDomainSetMemoryFlags(t, Mi, { live: true, config: true }), (err: unknown) =>
      err instanceof SimRefusal && /^invalid argument: Flags 'VIR_DOMAIN_AFFECT_LIVE' and 'VIR_DOMAIN_AFFECT_CONFIG' are mutually exclusive$/.test(err.hypervisorMessage));
    host.virDomainSetMemoryFlags(host.lookupByName('q'), Mi, { live: true, config: true });
    assert.equal(host.vm('q')?.live?.memory, Gi);
    assert.equal(host.vm('q')?.config?.memory, Gi);
  });

  test('test driver: live memory with no balloon device is accepted (it does not check)', async () => {
    const { driver } = await connected({ vms: [{ name: 't', type: 'test', maxMemory: '2Gi', balloon: 'none' }] });
    const vm = await driver.lookup({ name: 't' });
    await driver.apply(vm, [step('memory', 'live', Gi)]);
    assert.equal((await driver.observe(vm)).balloon.actual, Gi);
  });

  test('xen: live maxMemory not below the balloon target; memory synchronous; no memtune', async () => {
    const { driver } = await connected({ vms: [{ name: 'x', type: 'xen', maxMemory: '4Gi', memory: '3Gi' }] });
    const vm = await driver.lookup({ name: 'x' });
    await assert.rejects(driver.apply(vm, [step('maxMemory', 'live', 2n * Gi)]), refused(/^internal error: Failed to set maximum memory for domain '\d+' with libxenlight$/));
    await driver.apply(vm, [step('maxMemory', 'live', 8n * Gi), step('maxMemory', 'config', 8n * Gi), step('memory', 'live', 6n * Gi)]);
    const o = await driver.observe(vm);
    assert.deepEqual(o.live, { maxMemory: 8n * Gi, memory: 6n * Gi });
    assert.equal(o.balloon.actual, 6n * Gi);
    await assert.rejects(driver.apply(vm, [step('limit', 'live', 'unlimited')]),
      refused(/^this function is not supported by the connection driver: virDomainSetMemoryParameters$/));
  });
});

describe('sim esx rules', () => {
  const inv = {
    type: 'esx',
    hostMemory: '16Gi',
    vms: [
      { name: 'win', type: 'esx', maxMemory: '8Gi', reservation: '2Gi', limit: '6Gi' },
      { name: 'app', type: 'esx', maxMemory: '8Gi', memoryHotAddEnabled: true, hotPlugMemoryLimit: '12Gi', hotPlugMemoryIncrementSize: '128Mi' },
      { name: 'off', type: 'esx', maxMemory: '8Gi', powerState: 'ShutOff' },
    ],
  };

  test('observe: one configuration, memory = min(limit, maxMemory), hot-add settings', async () => {
    const { driver } = await connected(inv);
    const o = await driver.observe(await driver.lookup({ name: 'win' }));
    assert.deepEqual(o.config, { maxMemory: 8n * Gi, memory: 6n * Gi, reservation: 2n * Gi, limit: 6n * Gi });
    assert.deepEqual(o.live, o.config);
    assert.deepEqual(o.hotAdd, { enabled: false });
    assert.equal(o.balloon.actual, undefined);
  });

  test('memoryMB: powered off any multiple of 4 MiB; powered on only hot-add increases', async () => {
    const { driver } = await connected(inv);
    const off = await driver.lookup({ name: 'off' });
    await driver.apply(off, [step('maxMemory', 'config', 4n * Gi)]);
    await assert.rejects(driver.apply(off, [step('maxMemory', 'config', 4n * Gi + 2n * Mi)]), refused(/not a multiple of 4 MB/, 'ReconfigVM_Task'));
    const app = await driver.lookup({ name: 'app' });
    await driver.apply(app, [step('maxMemory', 'config', 8n * Gi + 256n * Mi)]);
    await assert.rejects(driver.apply(app, [step('maxMemory', 'config', 8n * Gi + 320n * Mi)]), refused(/hotPlugMemoryIncrementSize/));
    await assert.rejects(driver.apply(app, [step('maxMemory', 'config', 16n * Gi)]), refused(/hotPlugMemoryLimit/));
    await assert.rejects(driver.apply(app, [step('maxMemory', 'config', 4n * Gi)]), refused(/^NotSupported: /));
    await assert.rejects(driver.apply(await driver.lookup({ name: 'win' }), [step('maxMemory', 'config', 12n * Gi)]), refused(/^InvalidPowerState: .*\(Powered on\)/));
  });

  test('memoryAllocation: whole allocation sent; reservation <= limit; host capacity', async () => {
    const { driver, host } = await connected(inv);
    const win = await driver.lookup({ name: 'win' });
    await driver.apply(win, [step('limit', 'config', 'unlimited')]);
    assert.equal(host.vm('win')?.config?.reservation, 2n * Gi, 'changing the limit kept the reservation');
    await driver.apply(win, [step('limit', 'config', 4n * Gi)]);
    await assert.rejects(driver.apply(win, [step('reservation', 'config', 5n * Gi)]), refused(/^InvalidArgument: .*reservation/));
    await driver.apply(win, [step('limit', 'config', 'unlimited')]);
    await assert.rejects(driver.apply(win, [step('reservation', 'config', 9n * Gi)]), refused(/memory size/));
    host.add({ name: 'big', type: 'esx', maxMemory: '16Gi' });
    const big = await driver.lookup({ name: 'big' });
    await assert.rejects(driver.apply(big, [step('reservation', 'config', 15n * Gi)]), refused(/^InsufficientResourcesFault: /));
    await assert.rejects(driver.apply(win, [step('memory', 'config', 4n * Gi)]), refused(/^NotSupported: .*balloon target/, 'ReconfigVM_Task'));
    await assert.rejects(driver.apply(win, [step('limit', 'config', 4n * Gi + 1n)]), refused(/whole number of MB/));
  });

  test('like vcsim, a partial memoryAllocation resets the missing values', () => {
    const host = createSimHost(inv);
    const win = host.lookupByName('win');
    host.ReconfigVM_Task(win, { memoryAllocation: { limit: 7168 } });
    assert.equal(host.vm('win')?.config?.reservation, 0n);
    assert.equal(host.vm('win')?.config?.limit, 7n * Gi);
  });
});

describe('sim connections, faults, latency, counters', () => {
  const vms = [{ name: 'web', type: 'qemu', maxMemory: '2Gi' }];

  test('dropConnections: Disconnected, a disconnected event, and reconnect works', async () => {
    const { driver, host } = await connected({ vms });
    const events: DriverEvent[] = [];
    await driver.events((e) => events.push(e));
    host.dropConnections();
    await assert.rejects(driver.identify(), (e: unknown) => e instanceof DriverError && e.code === 'Disconnected');
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(events.map((e) => e.kind), ['disconnected']);
    await driver.connect();
    await driver.identify();
  });

  test('reachable=false: connect and calls fail with Unreachable', async () => {
    const { driver, host } = await connected({ vms });
    host.reachable = false;
    await assert.rejects(driver.identify(), (e: unknown) => e instanceof DriverError && e.code === 'Unreachable');
    await assert.rejects(driver.connect(), (e: unknown) => e instanceof DriverError && e.code === 'Unreachable');
    host.reachable = true;
    await driver.connect();
    await driver.identify();
  });

  test('faults.disconnectAfterCalls drops each connection after n calls', async () => {
    const { driver } = await connected({ faults: { disconnectAfterCalls: 2 }, vms });
    await driver.identify();
    await driver.lookup({ name: 'web' });
    await assert.rejects(driver.identify(), (e: unknown) => e instanceof DriverError && e.code === 'Disconnected');
  });

  test('faults.errorRate is seeded and reproducible, and a failed call has no effect', async () => {
    const outcomes = async (): Promise<string> => {
      const { driver, host } = await connected({ faults: { errorRate: 0.5, seed: 42 }, vms });
      let s = '';
      for (let i = 0; i < 40; i++) s += await driver.identify().then(() => '.', (e: DriverError) => (e.code === 'Unreachable' ? 'x' : '?'));
      assert.equal(host.calls.virConnectGetVersion, [...s].filter((c) => c === '.').length, 'failed calls never reached the host');
      return s;
    };
    const a = await outcomes();
    assert.equal(a, await outcomes());
    assert.match(a, /x/);
    assert.match(a, /\./);
  });

  test('latency delays calls; a call slower than timeoutMs fails with Timeout', async () => {
    const host = createSimHost({ latency: '30ms', vms });
    const driver = new SimDriver({ uri: host.uri });
    await driver.connect();
    const t0 = Date.now();
    await driver.identify();
    assert.ok(Date.now() - t0 >= 25);
    const hasty = new SimDriver({ uri: host.uri, timeoutMs: 5 });
    await hasty.connect();
    await assert.rejects(hasty.identify(), (e: unknown) => e instanceof DriverError && e.code === 'Timeout');
  });

  test('observeAll: every VM in one counted bulk call (libvirt and esx names)', async () => {
    const { driver, host } = await connected({ vms: [...vms, { name: 'db', type: 'qemu', maxMemory: '4Gi', powerState: 'ShutOff' }] });
    const all = await driver.observeAll();
    assert.equal(all.calls, 1);
    assert.deepEqual(all.vms.map((v) => v.name).sort(), ['db', 'web']);
    const web = await driver.observe(await driver.lookup({ name: 'web' }));
    assert.deepEqual(all.vms.find((v) => v.name === 'web'), web, 'observeAll sees a VM as observe() does');
    assert.equal(host.calls.virConnectGetAllDomainStats, 1);
    const esx = await connected({ type: 'esx', vms: [{ name: 'win', type: 'esx', maxMemory: '4Gi' }] }, 'unit-esx');
    assert.equal((await esx.driver.observeAll()).vms.length, 1);
    assert.deepEqual({ ...esx.host.calls }, { RetrievePropertiesEx: 1 });
  });

  test('apply reports the VM after its steps without another call', async () => {
    const { driver, host } = await connected({ vms });
    const vm = await driver.lookup({ name: 'web' });
    const result = await driver.apply(vm, [step('memory', 'config', Gi)]);
    assert.equal(result.observed?.config?.memory, Gi);
    assert.equal(host.calls.virDomainGetXMLDesc, undefined);
  });

  test('an aborted signal stops a call before it reaches the host', async () => {
    const host = createSimHost({ latency: '50ms', vms });
    const driver = new SimDriver({ uri: host.uri });
    await driver.connect();
    const vm = await driver.lookup({ name: 'web' });
    const ac = new AbortController();
    const pending = driver.apply(vm, [step('memory', 'config', Gi)], { signal: ac.signal });
    setTimeout(() => ac.abort(new Error('reconcile timed out')), 5);
    await assert.rejects(pending, (e: unknown) => e instanceof DriverError && e.code === 'Timeout' && /aborted.*reconcile timed out/.test(e.message));
    assert.equal(host.calls.virDomainSetMemoryFlags, undefined, 'the step never reached the host');
    assert.equal(host.vm('web')?.config?.memory, 2n * Gi);
  });

  test('calls counts each hypervisor call by op; close ends the session', async () => {
    const { driver, host } = await connected({ vms });
    const vm = await driver.lookup({ name: 'web' });
    await driver.observe(vm);
    await driver.apply(vm, [step('memory', 'live', Gi), step('limit', 'config', 'unlimited')]);
    await driver.apply(vm, []);
    assert.deepEqual({ ...host.calls }, { virDomainLookupByName: 1, virDomainGetXMLDesc: 1, virDomainSetMemoryFlags: 1, virDomainSetMemoryParameters: 1 });
    assert.equal(host.openConnections, 1);
    await driver.close();
    assert.equal(host.openConnections, 0);
    await assert.rejects(driver.observe(vm), (e: unknown) => e instanceof DriverError && e.code === 'Disconnected');
  });

  test('lifecycle events for out-of-band actions', async () => {
    const { driver, host } = await connected({ vms });
    const seen: string[] = [];
    const off = await driver.events((e) => {
      if (e.kind === 'lifecycle') seen.push(`${e.vm.name}:${e.detail}`);
    });
    host.powerOff('web');
    host.powerOn('web');
    host.add({ name: 'new', type: 'qemu', maxMemory: '1Gi' });
    host.remove('new');
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(seen, ['web:Stopped', 'web:Started', 'new:Defined', 'new:Started', 'new:Undefined']);
    await off();
    host.powerOff('web');
    await new Promise((r) => setImmediate(r));
    assert.equal(seen.length, 5);
  });
});
