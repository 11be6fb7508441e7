/**
 * Conditions for virtio-mem domains (issue #14): while the guest plugs, Reconciling says how far
 * it got; a guest that does not plug within the bound is Stalled/HotplugUnresponsive; the hot-plug
 * state is in status.observed. (Against a real guest: test/peer/libvirt/guest-*.test.ts.)
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ObservedVM } from '../../src/model/memory.ts';
import { conditionsFor, observedBlock } from '../../src/controller/status.ts';

const Mi = 1n << 20n;
const vm = (current: bigint): ObservedVM => ({
  name: 'v', uuid: 'u', type: 'qemu', powerState: 'Running', persistent: true, numa: true,
  live: { maxMemory: 384n * Mi, memory: 384n * Mi, limit: 'unlimited', hotplug: { model: 'virtio-mem', boot: 256n * Mi, devices: [{ alias: 'virtiomem0', node: 0, block: 2n * Mi, size: 512n * Mi, requested: 128n * Mi, current }] } },
  config: { maxMemory: 384n * Mi, memory: 384n * Mi, limit: 'unlimited' },
  balloon: { device: 'present', actual: 256n * Mi + current },
});
const plan = { steps: [], roundings: [], verdicts: [] };

test('plugging: Reconciling/HotplugPlugging with how far the guest got', () => {
  const c = conditionsFor({ observed: vm(64n * Mi), plan, balloon: { state: 'settling', target: 384n * Mi, actual: 320n * Mi, sinceMs: 0 } });
  const rec = c.conditions.find((x) => x.type === 'Reconciling')!;
  assert.equal(rec.reason, 'HotplugPlugging');
  assert.equal(rec.message, 'maxMemory: the guest has plugged 64Mi of 128Mi requested (it holds 320Mi, target 384Mi)');
  assert.equal(c.conditions.find((x) => x.type === 'Ready')?.status, 'False');
});

test('not plugging within the bound: Stalled/HotplugUnresponsive', () => {
  const c = conditionsFor({ observed: vm(0n), plan, balloon: { state: 'unresponsive', target: 384n * Mi, actual: 256n * Mi, waitedMs: 120_000 } });
  const st = c.conditions.find((x) => x.type === 'Stalled')!;
  assert.equal(st.reason, 'HotplugUnresponsive');
  assert.match(st.message, /plugged 0 of the 128Mi its virtio-mem devices request within 120s/);
});

test('status.observed carries the hot-plug state', () => {
  assert.deepEqual(observedBlock(vm(64n * Mi)).hotplug, {
    model: 'virtio-mem', bootMemory: '256Mi', ceiling: '768Mi',
    devices: [{ alias: 'virtiomem0', node: 0, blockSize: '2Mi', size: '512Mi', requested: '128Mi', current: '64Mi' }],
  });
});
