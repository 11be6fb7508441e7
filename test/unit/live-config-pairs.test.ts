/**
 * A live step and its config twin are one hypervisor call on QEMU
 * (src/drivers/live-config-pairs.ts), and only there; the sim sends them the
 * way the libvirt driver does (the real-daemon side is in
 * test/peer/libvirt/driver-qemu.test.ts).
 */
import assert from 'node:assert/strict';
import { afterEach, describe, test } from 'node:test';
import { callGroups } from '../../src/drivers/live-config-pairs.ts';
import { DriverError } from '../../src/drivers/driver.ts';
import { SimDriver, createSimHost, resetSimHosts } from '../../src/drivers/sim/index.ts';
import type { Step } from '../../src/model/memory.ts';

const Gi = 1n << 30n;
const step = (field: Step['field'], world: Step['world'], to: Step['to']): Step => ({ field, world, from: undefined, to });

afterEach(() => resetSimHosts());

describe('callGroups', () => {
  test('adjacent live/config steps of one field and value pair up on QEMU and Xen, not on the test driver or ESX', () => {
    const steps = [step('limit', 'live', 12n * Gi), step('limit', 'config', 12n * Gi), step('memory', 'live', 6n * Gi), step('memory', 'config', 6n * Gi)];
    assert.deepEqual(callGroups(steps, 'qemu').map((g) => g.length), [2, 2]);
    assert.deepEqual(callGroups(steps, 'xen').map((g) => g.length), [2, 2]);
    for (const type of ['test', 'esx'] as const) assert.deepEqual(callGroups(steps, type).map((g) => g.length), [1, 1, 1, 1], type);
  });

  test('not paired: different values, maxMemory, virtio-mem, non-adjacent twins; order is kept', () => {
    const differ = [step('memory', 'live', 6n * Gi), step('memory', 'config', 5n * Gi)];
    assert.deepEqual(callGroups(differ, 'qemu').map((g) => g.length), [1, 1]);
    const max = [step('maxMemory', 'live', 8n * Gi), step('maxMemory', 'config', 8n * Gi)];
    assert.deepEqual(callGroups(max, 'qemu').map((g) => g.length), [1, 1]);
    const offset = [{ ...step('memory', 'live', 6n * Gi), balloonOffset: Gi }, { ...step('memory', 'config', 6n * Gi), balloonOffset: Gi }];
    assert.deepEqual(callGroups(offset, 'qemu').map((g) => g.length), [1, 1]);
    const apart = [step('memory', 'live', 6n * Gi), step('limit', 'config', 12n * Gi), step('memory', 'config', 6n * Gi)];
    const groups = callGroups(apart, 'qemu');
    assert.deepEqual(groups.map((g) => g.length), [1, 1, 1]);
    assert.deepEqual(groups.flat(), apart, 'plan order');
  });
});

describe('sim: the pair is one virDomainSetMemoryFlags with both flags', () => {
  const inventory = (type: 'qemu' | 'test') =>
    ({ type, vms: [{ name: 'web', type, maxMemory: '4Gi', memory: '2Gi', configMaxMemory: '8Gi' }] });

  test('QEMU: one call, both worlds set', async () => {
    const host = createSimHost(inventory('qemu'), 'pairs-qemu');
    const driver = new SimDriver({ uri: host.uri });
    await driver.connect();
    const vm = await driver.lookup({ name: 'web' });
    host.resetCalls();
    const steps = [step('memory', 'live', 3n * Gi), step('memory', 'config', 3n * Gi)];
    assert.deepEqual((await driver.apply(vm, steps)).applied, steps);
    assert.equal(host.calls.virDomainSetMemoryFlags, 1);
    assert.match(host.callLog[0]?.detail ?? '', /AFFECT_LIVE\|AFFECT_CONFIG/);
    const o = await driver.observe(vm);
    assert.equal(o.live?.memory, 3n * Gi);
    assert.equal(o.config?.memory, 3n * Gi);

    // Above the live maximum (4Gi), within the config one (8Gi): refused, neither world moves.
    host.resetCalls();
    await assert.rejects(driver.apply(vm, [step('memory', 'live', 6n * Gi), step('memory', 'config', 6n * Gi)]), (err: unknown) => {
      assert.ok(err instanceof DriverError);
      assert.match(err.hypervisorMessage ?? '', /cannot set memory higher than max memory/);
      assert.deepEqual(err.applied, []);
      return true;
    });
    const after = await driver.observe(vm);
    assert.equal(after.config?.memory, 3n * Gi);
    assert.equal(after.live?.memory, 3n * Gi);
  });

  test('test driver: two calls (it refuses LIVE and CONFIG together)', async () => {
    const host = createSimHost(inventory('test'), 'pairs-test');
    const driver = new SimDriver({ uri: host.uri });
    await driver.connect();
    const vm = await driver.lookup({ name: 'web' });
    host.resetCalls();
    await driver.apply(vm, [step('memory', 'live', 3n * Gi), step('memory', 'config', 3n * Gi)]);
    assert.equal(host.calls.virDomainSetMemoryFlags, 2);
  });
});
