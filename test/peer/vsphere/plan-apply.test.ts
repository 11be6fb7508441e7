// End to end below the controller: plan() with the ESX profile on what the vSphere driver observes
// in vcsim, apply the steps, observe again: the plan of the result is empty (converged), and
// the VM holds what was planned.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { VSphereDriver } from '../../../src/drivers/vsphere/index.ts';
import type { DesiredMemory } from '../../../src/model/memory.ts';
import { profileFor } from '../../../src/model/profiles.ts';
import { plan } from '../../../src/planner/plan.ts';
import type { Vcsim } from '../../env/vcsim.ts';
import { startVcsim } from '../../env/vcsim.ts';

const MiB = 1024n * 1024n;
const GiB = 1024n * MiB;
let sim: Vcsim;
let d: VSphereDriver;

before(async () => {
  sim = await startVcsim();
  d = new VSphereDriver({ uri: sim.url, credentials: { username: sim.username, password: sim.password, caCert: sim.caPem } });
  await d.connect();
});

after(async () => {
  await d?.close();
  await sim?.stop();
});

const esx = profileFor('esx');

async function converge(name: string, desired: DesiredMemory) {
  const h = await d.lookup({ name });
  const p = plan(desired, await d.observe(h), esx);
  const res = await d.apply(h, p.steps);
  assert.deepEqual(res.applied, p.steps);
  const after = await d.observe(h);
  const again = plan(desired, after, esx);
  return { p, after, again };
}

describe('plan → apply → observe on vcsim (ESX profile)', () => {
  it('a powered-off VM converges to maxMemory, memory (via limit), reservation', async () => {
    const h = await d.lookup({ name: 'DC0_H0_VM0' });
    const { VSphereClient } = await import('../../../src/vsphere/index.ts');
    const c = await VSphereClient.connect({ url: sim.url, username: sim.username, password: sim.password, caPem: sim.caPem });
    await c.powerOffVm(h.moref);
    await c.close();
    const desired: DesiredMemory = { maxMemory: 8n * GiB, memory: 6n * GiB, reservation: 2n * GiB };
    const { p, after, again } = await converge('DC0_H0_VM0', desired);
    assert.ok(p.steps.length > 0);
    assert.equal(after.config!.maxMemory, 8n * GiB);
    assert.equal(after.config!.memory, 6n * GiB);
    assert.equal(after.config!.limit, 6n * GiB);
    assert.equal(after.config!.reservation, 2n * GiB);
    assert.deepEqual(again.steps, [], 'converged: nothing more to do');
    assert.ok(again.verdicts.every((v) => v.kind === 'Applied'), JSON.stringify(again.verdicts, (_k, v: unknown) => (typeof v === 'bigint' ? String(v) : v)));
  });

  it('back to unlimited and a smaller reservation, in a safe order', async () => {
    const desired: DesiredMemory = { maxMemory: 8n * GiB, memory: 8n * GiB, reservation: 1n * GiB, limit: 'unlimited' };
    const { after, again } = await converge('DC0_H0_VM0', desired);
    assert.equal(after.config!.limit, 'unlimited');
    assert.equal(after.config!.reservation, 1n * GiB);
    assert.deepEqual(again.steps, []);
  });

  it('a running VM without hot-add: maxMemory waits for power-off, the allocation is applied', async () => {
    // vcsim's VMs have memoryMB 32: reservation and memory (limit) stay within it.
    const desired: DesiredMemory = { maxMemory: 4n * GiB, memory: 24n * MiB, reservation: 16n * MiB };
    const { p, after } = await converge('DC0_H0_VM1', desired);
    const max = p.verdicts.find((v) => v.field === 'maxMemory');
    assert.equal(max?.kind, 'AwaitingPowerOff');
    assert.ok(!p.steps.some((s) => s.field === 'maxMemory'), 'no memoryMB change sent to a running VM without hot-add');
    assert.equal(after.config!.reservation, 16n * MiB);
    assert.equal(after.config!.limit, 24n * MiB);
    assert.equal(after.config!.maxMemory, 32n * MiB);
  });
});
