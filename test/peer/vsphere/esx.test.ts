// The client against vcsim simulating a standalone ESXi host (apiType HostAgent).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { VSphereClient, VSphereNotFoundError } from '../../../src/vsphere/index.ts';
import type { Vcsim } from '../../env/vcsim.ts';
import { startVcsim } from '../../env/vcsim.ts';

let sim: Vcsim;
let c: VSphereClient;

before(async () => {
  sim = await startVcsim({ esx: true });
  c = await VSphereClient.connect({ url: sim.url, username: sim.username, password: sim.password, caPem: sim.caPem });
});

after(async () => {
  await c?.close();
  await sim?.stop();
});

describe('ESXi (vcsim -esx)', () => {
  it('About says HostAgent', async () => {
    const about = await c.about();
    assert.equal(about.apiType, 'HostAgent');
    assert.match(about.version, /^\d+\.\d+/);
  });

  it('one host with its memory capacity', async () => {
    const hosts = await c.hostMemory();
    assert.equal(hosts.length, 1);
    assert.ok(hosts[0]!.memorySizeBytes > 0n);
  });

  it('finds VMs by name and by inventory path (ha-datacenter), reconfigures memory', async () => {
    const all = await c.listObjects('VirtualMachine', ['name']);
    assert.ok(all.length >= 1);
    const name = all[0]!.props.get('name')!.text;
    const vm = await c.lookupVm({ name });
    assert.deepEqual(await c.lookupVm({ inventoryPath: `ha-datacenter/vm/${name}` }), vm);
    await c.reconfigureVm(vm, { memoryMB: 512, memoryAllocation: { reservation: 64, limit: 256, shares: { level: 'low', shares: 0 } } });
    const m = await c.getVmMemory(vm);
    assert.equal(m.memoryMB, 512);
    assert.equal(m.memoryAllocation.limit, 256);
    await assert.rejects(c.lookupVm({ name: 'absent' }), VSphereNotFoundError);
  });
});
