// The vSphere client against VMware's simulator (vcsim, vCenter mode): sessions, lookups, memory
// properties, reconfigure, power, task faults, XML escaping. Also records what vcsim does NOT
// enforce (docs/vsphere.md lists the same), so a change in vcsim shows up here.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { MoRef } from '../../../src/vsphere/index.ts';
import { VSphereClient, VSphereFault, VSphereNotFoundError, isFault } from '../../../src/vsphere/index.ts';
import { el } from '../../../src/vsphere/xml.ts';
import type { Vcsim } from '../../env/vcsim.ts';
import { startVcsim } from '../../env/vcsim.ts';

let sim: Vcsim;
let c: VSphereClient;

function connect(over: Partial<Parameters<typeof VSphereClient.connect>[0]> = {}): Promise<VSphereClient> {
  return VSphereClient.connect({ url: sim.url, username: sim.username, password: sim.password, caPem: sim.caPem, ...over });
}

const WHOLE = { reservation: 0, limit: -1, shares: { level: 'normal' as const, shares: 0 } };

before(async () => {
  sim = await startVcsim(); // throws (and so fails every test) with the reason if vcsim cannot start
  c = await connect();
});

after(async () => {
  await c?.close();
  await sim?.stop();
});

describe('sessions', () => {
  it('logs in, reports About, logs out', async () => {
    const k = await connect();
    assert.ok(k.session?.key);
    assert.equal(k.session?.userName, sim.username);
    const about = await k.about();
    assert.equal(about.apiType, 'VirtualCenter');
    assert.match(about.version, /^\d+\.\d+/);
    assert.match(about.apiVersion, /^\d+\.\d+/);
    await k.logout();
    assert.equal(k.session, undefined);
    // After logout there is no session and no automatic re-login.
    await assert.rejects(k.findVmsByName('DC0_H0_VM0'), (e) => isFault(e, 'NotAuthenticated'));
    await k.close();
  });

  it('a wrong password gives InvalidLogin, without the password in the error', async () => {
    const bad = 'wrong-<secret>&"pw"';
    await assert.rejects(connect({ password: bad }), (e: unknown) => {
      assert.ok(e instanceof VSphereFault);
      assert.equal(e.faultName, 'InvalidLogin');
      assert.equal(e.faultString, 'Login failure'); // vSphere's own words, intact
      const all = `${e.message}\n${e.stack}\n${JSON.stringify(e)}\n${JSON.stringify(e.details)}`;
      assert.ok(!all.includes('secret') && !all.includes(sim.password), 'password leaked into the error');
      return true;
    });
  });

  it('the right password with special characters (<&>) works: it is escaped', () => {
    assert.match(sim.password, /<&>/);
    assert.ok(c.session?.key);
  });

  it('a terminated session is replaced by a transparent re-login', async () => {
    const victim = await connect();
    const before = victim.session!.key;
    await c.terminateSessions([before]);
    const vm = await victim.lookupVm({ name: 'DC0_H0_VM0' }); // would be NotAuthenticated without re-login
    assert.equal(vm.type, 'VirtualMachine');
    assert.notEqual(victim.session!.key, before);
    // Concurrent calls after another expiry share one re-login.
    const second = victim.session!.key;
    await c.terminateSessions([second]);
    const results = await Promise.all([1, 2, 3, 4].map(() => victim.getVmMemory(vm)));
    assert.equal(results.length, 4);
    assert.notEqual(victim.session!.key, second);
    await victim.close();
  });

  it('terminating the own session is refused by the server (InvalidArgument)', async () => {
    await assert.rejects(c.terminateSessions([c.session!.key]), (e) => isFault(e, 'InvalidArgument'));
  });

  it('vcsim refuses Login on a request that still carries a live session cookie (InvalidLogin)', async () => {
    const sc = await c.serviceContent();
    await assert.rejects(
      c.invoke('Login', sc.sessionManager, [el('userName', null, sim.username), el('password', null, sim.password)]),
      (e) => isFault(e, 'InvalidLogin'),
    );
    assert.ok((await c.lookupVm({ name: 'DC0_H0_VM0' })).value); // the session is still fine
  });

  it('credentials stay out of inspect/JSON', async () => {
    const { inspect } = await import('node:util');
    assert.ok(!inspect(c, { depth: 5 }).includes(sim.password));
    assert.ok(!JSON.stringify(c).includes(sim.password));
  });
});

describe('lookup', () => {
  it('finds a VM by name, BIOS uuid, instance uuid, inventory path and moref, all the same', async () => {
    const byName = await c.lookupVm({ name: 'DC0_H0_VM0' });
    const info = await c.getVmMemory(byName);
    assert.ok(info.uuid && info.instanceUuid);
    assert.notEqual(info.uuid, info.instanceUuid);
    assert.deepEqual(await c.lookupVm({ uuid: info.uuid }), byName);
    assert.deepEqual(await c.lookupVm({ instanceUuid: info.instanceUuid }), byName);
    assert.deepEqual(await c.lookupVm({ inventoryPath: 'DC0/vm/DC0_H0_VM0' }), byName);
    assert.deepEqual(await c.lookupVm({ moref: byName.value }), byName);
    // A BIOS uuid is not found as an instance uuid and vice versa.
    assert.equal(await c.findVmByUuid(info.uuid, { instanceUuid: true }), undefined);
    assert.equal(await c.findVmByUuid(info.instanceUuid, { instanceUuid: false }), undefined);
  });

  it('listing follows RetrievePropertiesEx continuation tokens (page size 1)', async () => {
    const paged = await connect({ pageSize: 1 });
    const all = await c.listObjects('VirtualMachine', ['name']);
    const pages = await paged.listObjects('VirtualMachine', ['name']);
    assert.ok(all.length >= 4);
    assert.deepEqual(pages.map((o) => o.obj.value).sort(), all.map((o) => o.obj.value).sort());
    assert.deepEqual(await paged.findVmsByName('DC0_H0_VM0'), await c.findVmsByName('DC0_H0_VM0'));
    await paged.close();
  });

  it('an unknown VM is a clear VSphereNotFoundError naming what was looked for', async () => {
    const cases = [
      [{ name: 'no-such-vm' }, /no VM with name "no-such-vm"/],
      [{ uuid: '00000000-0000-0000-0000-000000000001' }, /BIOS uuid 00000000-0000-0000-0000-000000000001/],
      [{ instanceUuid: '00000000-0000-0000-0000-000000000002' }, /instance uuid/],
      [{ inventoryPath: 'DC0/vm/nope' }, /inventory path "DC0\/vm\/nope"/],
      [{ moref: 'vm-999999' }, /managed object vm-999999/],
    ] as const;
    for (const [sel, re] of cases) {
      await assert.rejects(c.lookupVm(sel), (e: unknown) => {
        assert.ok(e instanceof VSphereNotFoundError, String(e));
        assert.match(e.message, re);
        assert.equal(e.ambiguous, false);
        return true;
      });
    }
    // An inventory path that names something else is not a VM.
    await assert.rejects(c.lookupVm({ inventoryPath: 'DC0/host/DC0_H0' }), /not a VirtualMachine/);
  });

  it('properties of an object that does not exist: ManagedObjectNotFound with vSphere\'s message', async () => {
    await assert.rejects(c.getVmMemory({ type: 'VirtualMachine', value: 'vm-424242' }), (e: unknown) => {
      assert.ok(isFault(e, 'ManagedObjectNotFound'));
      assert.ok(e.faultString.length > 0);
      assert.equal(e.details.obj, 'vm-424242');
      return true;
    });
  });

  it('names with XML special characters <&>"\' round-trip (rename, find by name, read back)', async () => {
    const vm = await c.lookupVm({ name: 'DC0_C0_RP0_VM1' });
    const nasty = `web <&> "q" 'a' ]]> &amp; \u00e9\u4e2d`;
    await c.renameEntity(vm, nasty);
    assert.equal((await c.getVmMemory(vm)).name, nasty);
    assert.deepEqual(await c.lookupVm({ name: nasty }), vm);
    assert.deepEqual(await c.findVmsByName('web <&> "q"'), []); // exact match only
    await c.renameEntity(vm, 'DC0_C0_RP0_VM1');
  });

  it('several VMs with one name (in different folders) are reported as ambiguous', async () => {
    const a = await c.lookupVm({ name: 'DC0_C0_RP0_VM0' });
    const b = await c.lookupVm({ name: 'DC0_C0_RP0_VM1' });
    // In one folder a duplicate name is refused (vcsim: InvalidArgument name; vCenter: DuplicateName).
    await assert.rejects(c.renameEntity(b, 'DC0_C0_RP0_VM0'), (e) => isFault(e, 'InvalidArgument') || isFault(e, 'DuplicateName'));
    // In another folder it is allowed, so names are not unique across the inventory.
    await sim.govc('folder.create', '/DC0/vm/other');
    await sim.govc('object.mv', '/DC0/vm/DC0_C0_RP0_VM1', '/DC0/vm/other');
    await c.renameEntity(b, 'DC0_C0_RP0_VM0');
    await assert.rejects(c.lookupVm({ name: 'DC0_C0_RP0_VM0' }), (e: unknown) => {
      assert.ok(e instanceof VSphereNotFoundError);
      assert.equal(e.ambiguous, true);
      assert.match(e.message, /2 VMs are named "DC0_C0_RP0_VM0"/);
      return true;
    });
    assert.deepEqual(await c.lookupVm({ inventoryPath: 'DC0/vm/other/DC0_C0_RP0_VM0' }), b);
    assert.deepEqual(await c.lookupVm({ inventoryPath: 'DC0/vm/DC0_C0_RP0_VM0' }), a);
    await c.renameEntity(b, 'DC0_C0_RP0_VM1');
  });
});

describe('memory', () => {
  let vm: MoRef;
  before(async () => {
    vm = await c.lookupVm({ name: 'DC0_H0_VM1' });
  });

  it('reads memory properties', async () => {
    const m = await c.getVmMemory(vm);
    assert.equal(m.name, 'DC0_H0_VM1');
    assert.equal(typeof m.memoryMB, 'number');
    assert.ok(m.memoryMB > 0);
    assert.equal(m.powerState, 'poweredOn');
    assert.equal(m.memoryHotAddEnabled, false);
    // vcsim's defaults: reservation 0, unlimited, normal shares.
    assert.equal(m.memoryAllocation.reservation, 0);
    assert.equal(m.memoryAllocation.limit, -1);
    assert.equal(m.memoryAllocation.shares?.level, 'normal');
    assert.equal(m.host?.type, 'HostSystem');
    for (const k of ['guestMemoryUsage', 'hostMemoryUsage', 'balloonedMemory'] as const) {
      assert.equal(typeof m.quickStats[k], 'number');
    }
  });

  it('reconfigures memoryMB and a whole memoryAllocation in one task, and reads them back (MiB)', async () => {
    await c.reconfigureVm(vm, {
      memoryMB: 2048,
      memoryAllocation: { reservation: 512, limit: 1536, shares: { level: 'custom', shares: 4242 } },
    });
    const m = await c.getVmMemory(vm);
    assert.equal(m.memoryMB, 2048);
    assert.equal(m.memoryAllocation.reservation, 512);
    assert.equal(m.memoryAllocation.limit, 1536);
    assert.deepEqual(m.memoryAllocation.shares, { level: 'custom', shares: 4242 });
    // limit -1 = unlimited
    await c.reconfigureVm(vm, { memoryAllocation: { reservation: 256, limit: -1, shares: { level: 'high', shares: 0 } } });
    const m2 = await c.getVmMemory(vm);
    assert.equal(m2.memoryAllocation.limit, -1);
    assert.equal(m2.memoryAllocation.reservation, 256);
    assert.equal(m2.memoryAllocation.shares?.level, 'high');
    assert.equal(m2.memoryMB, 2048, 'an allocation-only reconfigure keeps memoryMB');
    // memoryMB alone keeps the allocation.
    await c.reconfigureVm(vm, { memoryMB: 3072 });
    const m3 = await c.getVmMemory(vm);
    assert.equal(m3.memoryMB, 3072);
    assert.deepEqual(m3.memoryAllocation, m2.memoryAllocation);
  });

  it('vcsim: a PARTIAL memoryAllocation drops the fields left out (why we always send the whole one)', async () => {
    await c.reconfigureVm(vm, { memoryAllocation: { reservation: 128, limit: 1024, shares: { level: 'custom', shares: 1000 } } });
    // Send only the reservation, as libvirt's ESX driver does.
    await c.invokeTask('ReconfigVM_Task', vm, [el('spec', null, el('memoryAllocation', null, el('reservation', null, 256)))]);
    const m = await c.getVmMemory(vm);
    assert.equal(m.memoryAllocation.reservation, 256);
    assert.equal(m.memoryAllocation.limit, undefined, 'limit was reset by the partial allocation');
    assert.equal(m.memoryAllocation.shares, undefined, 'shares were reset by the partial allocation');
    await c.reconfigureVm(vm, { memoryAllocation: WHOLE });
  });

  it('vcsim does not validate element order (memoryAllocation before memoryMB is accepted)', async () => {
    await c.invokeTask('ReconfigVM_Task', vm, [
      el('spec', null, el('memoryAllocation', null, el('reservation', null, 0), el('limit', null, -1), el('shares', null, el('shares', null, 0), el('level', null, 'normal'))), el('memoryMB', null, 1536)),
    ]);
    assert.equal((await c.getVmMemory(vm)).memoryMB, 1536);
  });

  it('a task that fails surfaces the fault (negative reservation → InvalidArgument)', async () => {
    await assert.rejects(
      c.reconfigureVm(vm, { memoryAllocation: { reservation: -5, limit: -1, shares: { level: 'normal', shares: 0 } } }),
      (e: unknown) => {
        assert.ok(isFault(e, 'InvalidArgument'));
        assert.equal(e.method, 'ReconfigVM_Task');
        assert.equal(e.details.invalidProperty, 'spec.memoryAllocation');
        assert.match(e.task ?? '', /^task-/);
        return true;
      },
    );
    await assert.rejects(
      c.reconfigureVm(vm, { memoryAllocation: { reservation: 0, limit: -2, shares: { level: 'normal', shares: 0 } } }),
      (e) => isFault(e, 'InvalidArgument'),
    );
  });

  it('power off and on; powering on a running VM fails with InvalidPowerState', async () => {
    await assert.rejects(c.powerOnVm(vm), (e: unknown) => {
      assert.ok(isFault(e, 'InvalidPowerState'));
      assert.equal(e.details.existingState, 'poweredOn');
      return true;
    });
    await c.powerOffVm(vm);
    assert.equal((await c.getVmMemory(vm)).powerState, 'poweredOff');
    await assert.rejects(c.powerOffVm(vm), (e) => isFault(e, 'InvalidPowerState'));
    await c.powerOnVm(vm);
    assert.equal((await c.getVmMemory(vm)).powerState, 'poweredOn');
  });

  it('vcsim does NOT enforce: hot-add rules, shrinking a running VM, 4 MiB multiples, reservation ≤ limit, host capacity', async () => {
    // All of these would be refused by a real ESXi; vcsim accepts them. vmmem's ESX profile
    // therefore enforces them itself.
    const m0 = await c.getVmMemory(vm);
    assert.equal(m0.powerState, 'poweredOn');
    assert.equal(m0.memoryHotAddEnabled, false);
    await c.reconfigureVm(vm, { memoryMB: m0.memoryMB + 1024 }); // hot-add while disabled
    assert.equal((await c.getVmMemory(vm)).memoryMB, m0.memoryMB + 1024);
    await c.reconfigureVm(vm, { memoryMB: 1024 }); // shrink while running
    assert.equal((await c.getVmMemory(vm)).memoryMB, 1024);
    await c.reconfigureVm(vm, { memoryMB: 1027 }); // not a multiple of 4
    assert.equal((await c.getVmMemory(vm)).memoryMB, 1027);
    await c.reconfigureVm(vm, { memoryAllocation: { reservation: 2048, limit: 1024, shares: { level: 'normal', shares: 0 } } });
    assert.equal((await c.getVmMemory(vm)).memoryAllocation.reservation, 2048); // reservation > limit
    const [host] = await c.hostMemory(m0.host);
    const hostMiB = Number(host!.memorySizeBytes / 1048576n);
    await c.reconfigureVm(vm, { memoryAllocation: { reservation: hostMiB * 4, limit: -1, shares: { level: 'normal', shares: 0 } } });
    assert.equal((await c.getVmMemory(vm)).memoryAllocation.reservation, hostMiB * 4); // no InsufficientResourcesFault
    await c.reconfigureVm(vm, { memoryMB: 1024, memoryAllocation: WHOLE });
  });

  it('host memory capacity (HostSystem summary.hardware.memorySize, bytes)', async () => {
    const hosts = await c.hostMemory();
    assert.ok(hosts.length >= 1);
    for (const h of hosts) {
      assert.equal(typeof h.memorySizeBytes, 'bigint');
      assert.ok(h.memorySizeBytes > 0n);
      assert.ok(h.name);
    }
    const m = await c.getVmMemory(vm);
    const [one] = await c.hostMemory(m.host);
    assert.deepEqual(one!.ref, m.host);
  });

  it('a task wait that cannot finish in time is a VSphereTimeoutError', async () => {
    // Waiting on a task with a zero deadline: either it already finished, or we time out typed.
    const { VSphereTimeoutError } = await import('../../../src/vsphere/index.ts');
    const res = await c.invoke('ReconfigVM_Task', vm, [el('spec', null, el('memoryMB', null, 1024))]);
    const task = { type: 'Task', value: res.children[0]!.text };
    try {
      await c.waitForTask(task, { timeoutMs: 0 });
    } catch (e) {
      assert.ok(e instanceof VSphereTimeoutError, String(e));
    }
    await c.waitForTask(task);
  });
});
