/**
 * The planner on QEMU domains with virtio-mem devices (issue #14, src/planner/hotplug.ts): growth
 * within the devices is live + config by `requested`, beyond them RestartRequired with the config's
 * last device enlarged, below boot memory Unsupported, the balloon on top with its offset, device
 * blocks round the maximum up; NUMA domains without virtio-mem keep balloon and memtune (per field).
 * The real-daemon side is test/peer/libvirt/guest-virtio-mem.test.ts.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { spreadRequested } from '../../src/model/hotplug.ts';
import type { DesiredMemory, HotplugState, ObservedVM, Step } from '../../src/model/memory.ts';
import { profileFor } from '../../src/model/profiles.ts';
import { plan } from '../../src/planner/plan.ts';

const Mi = 1n << 20n;
const qemu = profileFor('qemu');

function hot(requested: bigint[], sizes: bigint[] = requested.map(() => 512n * Mi), live = true): HotplugState {
  return {
    model: 'virtio-mem',
    boot: 256n * Mi,
    devices: sizes.map((size, i) => ({ ...(live ? { alias: `virtiomem${i}`, current: requested[i]! } : {}), node: 0, block: 2n * Mi, size, requested: requested[i]! })),
  };
}

function vm(requested: bigint[], sizes?: bigint[], memory?: bigint): ObservedVM {
  const r = requested.reduce((a, v) => a + v, 0n);
  const world = (live: boolean) => ({ maxMemory: 256n * Mi + r, memory: memory ?? 256n * Mi + r, limit: 'unlimited' as const, hotplug: hot(requested, sizes, live) });
  return {
    name: 'v',
    uuid: 'u',
    type: 'qemu',
    powerState: 'Running',
    persistent: true,
    live: world(true),
    config: world(false),
    balloon: { device: 'present', actual: memory ?? 256n * Mi + r },
    numa: true,
  };
}

const want = (maxMemory: bigint, memory = maxMemory): DesiredMemory => ({ maxMemory, memory });
const brief = (s: readonly Step[]) => s.map((x) => `${x.field} ${x.world} ${x.to}${x.requested ? ` req=${x.requested.join(',')}` : ''}${x.sizes ? ` sizes=${x.sizes.join(',')}` : ''}${x.balloonOffset !== undefined ? ` off=${x.balloonOffset}` : ''}`);

test('growth within the device: requested live and config, the memory follows with its balloon offset, Applied', () => {
  const p = plan(want(384n * Mi), vm([0n]), qemu);
  assert.deepEqual(brief(p.steps), [
    `maxMemory live ${384n * Mi} req=${128n * Mi}`,
    `maxMemory config ${384n * Mi} req=${128n * Mi}`,
    `memory live ${384n * Mi} off=${128n * Mi}`,
    `memory config ${384n * Mi} off=${128n * Mi}`,
  ]);
  assert.deepEqual(p.verdicts.map((v) => [v.field, v.kind]), [['maxMemory', 'Applied'], ['memory', 'Applied']]);
});

test('maxMemory grows, memory stays: the balloon takes the plugged amount back (one balloon step per world)', () => {
  const p = plan(want(384n * Mi, 256n * Mi), vm([0n]), qemu);
  assert.deepEqual(brief(p.steps), [
    `maxMemory live ${384n * Mi} req=${128n * Mi}`,
    `memory live ${256n * Mi} off=${128n * Mi}`,
    `maxMemory config ${384n * Mi} req=${128n * Mi}`,
    `memory config ${256n * Mi} off=${128n * Mi}`,
  ]);
});

test('beyond the devices: live RestartRequired naming the ceiling; the config\'s last device grows', () => {
  const p = plan(want(1024n * Mi), vm([128n * Mi]), qemu);
  const max = p.verdicts.find((v) => v.field === 'maxMemory')!;
  assert.equal(max.kind, 'RestartRequired');
  assert.match(max.message, /boot memory 256Mi \+ virtio-mem size 512Mi = 768Mi/);
  assert.match(max.message, /size cannot change while QEMU runs/);
  assert.deepEqual(brief(p.steps.filter((s) => s.field === 'maxMemory')), [`maxMemory config ${1024n * Mi} req=${768n * Mi} sizes=${768n * Mi}`]);
  assert.ok(!p.steps.some((s) => s.world === 'live' && s.field === 'maxMemory'));
});

test('two devices fill in document order and empty from the last', () => {
  const h = hot([0n, 0n], [256n * Mi, 256n * Mi]);
  assert.deepEqual(spreadRequested(h, 256n * Mi + 300n * Mi), [256n * Mi, 44n * Mi]);
  assert.deepEqual(spreadRequested(h, 256n * Mi + 100n * Mi), [100n * Mi, 0n]);
  assert.equal(spreadRequested(h, 255n * Mi), undefined, 'below boot');
  assert.equal(spreadRequested(h, 769n * Mi), undefined, 'above the ceiling');
  const p = plan(want(256n * Mi + 300n * Mi), vm([0n, 0n], [256n * Mi, 256n * Mi]), qemu);
  assert.deepEqual(p.steps[0]?.requested, [256n * Mi, 44n * Mi]);
});

test('a maximum between blocks rounds up to the device block', () => {
  const p = plan(want(256n * Mi + 3n * Mi), vm([0n]), qemu);
  assert.deepEqual(p.roundings, [{ field: 'maxMemory', requested: 259n * Mi, effective: 260n * Mi }]);
  assert.deepEqual(p.steps[0]?.requested, [4n * Mi]);
});

test('shrinking lowers requested (the balloon first, then the devices)', () => {
  const p = plan(want(288n * Mi), vm([128n * Mi]), qemu);
  assert.deepEqual(brief(p.steps), [
    `memory live ${288n * Mi} off=${32n * Mi}`,
    `memory config ${288n * Mi} off=${32n * Mi}`,
    `maxMemory live ${288n * Mi} req=${32n * Mi}`,
    `maxMemory config ${288n * Mi} req=${32n * Mi}`,
  ]);
});

test('below boot memory: Unsupported (only the NUMA cells could lower it)', () => {
  const p = plan(want(128n * Mi), vm([0n]), qemu);
  const max = p.verdicts.find((v) => v.field === 'maxMemory')!;
  assert.equal(max.kind, 'Unsupported');
  assert.match(max.message, /below the boot memory 256Mi/);
  assert.ok(!p.steps.some((s) => s.field === 'maxMemory'));
});

test('memory below what the devices hold: Invalid (the balloon covers boot memory only)', () => {
  const p = plan(want(768n * Mi, 256n * Mi), vm([512n * Mi]), qemu);
  const mem = p.verdicts.find((v) => v.field === 'memory')!;
  assert.equal(mem.kind, 'Invalid');
  assert.equal(mem.reason, 'MemoryBelowHotplug');
});

test('NUMA without virtio-mem: maxMemory Unsupported, but the balloon and memtune still apply', () => {
  const o: ObservedVM = {
    name: 'n', uuid: 'n', type: 'qemu', powerState: 'Running', persistent: true, numa: true,
    live: { maxMemory: 512n * Mi, memory: 512n * Mi, limit: 'unlimited' },
    config: { maxMemory: 512n * Mi, memory: 512n * Mi, limit: 'unlimited' },
    balloon: { device: 'present', actual: 512n * Mi },
  };
  const p = plan({ maxMemory: 512n * Mi, memory: 384n * Mi, limit: 2048n * Mi }, o, qemu);
  assert.deepEqual(p.verdicts.map((v) => [v.field, v.kind]), [['maxMemory', 'Applied'], ['memory', 'Applied'], ['limit', 'Applied']]);
  const grow = plan({ maxMemory: 768n * Mi, memory: 384n * Mi }, o, qemu);
  assert.deepEqual(grow.verdicts.map((v) => [v.field, v.kind]), [['maxMemory', 'Unsupported'], ['memory', 'Applied']]);
  assert.ok(grow.steps.every((s) => s.field === 'memory'));
});

test('profiles without hot-plug ignore virtio-mem state (Xen, ESX, test rows unchanged)', () => {
  const p = plan(want(384n * Mi), { ...vm([0n]), type: 'test' }, profileFor('test'));
  assert.equal(p.verdicts.find((v) => v.field === 'maxMemory')?.kind, 'Unsupported', 'the test driver refuses maxMemory on NUMA domains');
});
