// Pure parts of the vSphere driver: coalescing (no reordering), the whole-allocation spec,
// vSphere → vmmem observation, error mapping.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DriverError } from '../../src/drivers/driver.ts';
import { coalesce, observedOf, specFor, toDriverError } from '../../src/drivers/vsphere/index.ts';
import type { Step } from '../../src/model/memory.ts';
import type { VmMemoryInfo } from '../../src/vsphere/index.ts';
import { VSphereFault, VSphereNotFoundError, VSphereTimeoutError, VSphereTransportError } from '../../src/vsphere/index.ts';

const MiB = 1024n * 1024n;
const s = (field: Step['field'], to: Step['to'], world: Step['world'] = 'config'): Step => ({ field, world, from: undefined, to });

function info(over: Partial<VmMemoryInfo> = {}): VmMemoryInfo {
  return {
    ref: { type: 'VirtualMachine', value: 'vm-1' },
    name: 'web',
    uuid: 'bios-uuid',
    instanceUuid: 'inst-uuid',
    memoryMB: 4096,
    memoryAllocation: { reservation: 256, limit: -1, expandableReservation: false, shares: { level: 'custom', shares: 99 } },
    memoryHotAddEnabled: true,
    hotPlugMemoryLimit: 16384,
    hotPlugMemoryIncrementSize: 128,
    powerState: 'poweredOn',
    host: undefined,
    quickStats: { guestMemoryUsage: 0, hostMemoryUsage: 0, balloonedMemory: 0 },
    ...over,
  };
}

describe('coalesce', () => {
  it('keeps consecutive distinct fields in one group, in order', () => {
    const steps = [s('maxMemory', 8n * MiB), s('limit', 4n * MiB), s('reservation', 2n * MiB)];
    assert.deepEqual(coalesce(steps).map((g) => g.steps), [steps]);
  });

  it('starts a new group when a field comes back with another value', () => {
    const steps = [s('limit', 8n * MiB), s('reservation', 6n * MiB), s('limit', 6n * MiB)];
    assert.deepEqual(coalesce(steps).map((g) => g.steps.length), [2, 1]);
  });

  it('the same change in the other world joins the group', () => {
    const steps = [s('limit', 8n * MiB, 'live'), s('limit', 8n * MiB, 'config')];
    const g = coalesce(steps);
    assert.equal(g.length, 1);
    assert.equal(g[0]!.values.limit, 8n * MiB);
  });

  it('a memory step stands alone', () => {
    const steps = [s('maxMemory', 8n * MiB), s('memory', 4n * MiB), s('limit', 4n * MiB)];
    assert.deepEqual(coalesce(steps).map((g) => g.steps.map((x) => x.field)), [['maxMemory'], ['memory'], ['limit']]);
  });
});

describe('specFor', () => {
  it('sends the whole allocation, keeping shares and expandableReservation', () => {
    assert.deepEqual(specFor({ limit: 1024n * MiB }, info(), 'web'), {
      memoryAllocation: { reservation: 256, limit: 1024, shares: { level: 'custom', shares: 99 }, expandableReservation: false },
    });
  });

  it('memoryMB only when only maxMemory changes; unlimited = -1', () => {
    assert.deepEqual(specFor({ maxMemory: 8192n * MiB }, info(), 'web'), { memoryMB: 8192 });
    assert.equal(specFor({ limit: 'unlimited' }, info(), 'web').memoryAllocation?.limit, -1);
  });

  it('fills absent allocation fields with vSphere defaults (0, unlimited, normal)', () => {
    assert.deepEqual(specFor({ reservation: 0n }, info({ memoryAllocation: {} }), 'web').memoryAllocation, {
      reservation: 0, limit: -1, shares: { level: 'normal', shares: 0 },
    });
  });

  it('refuses memory steps and values off MiB', () => {
    assert.throws(() => specFor({ memory: 8n * MiB }, info(), 'web'), (e) => e instanceof DriverError && e.code === 'Refused');
    assert.throws(() => specFor({ reservation: MiB + 1n }, info(), 'web'), (e) => e instanceof DriverError && /whole number of MB/.test(e.message));
    assert.throws(() => specFor({ maxMemory: 0n }, info(), 'web'), DriverError);
  });
});

describe('observedOf', () => {
  it('running: config = live, memory = min(memoryMB, limit), hot-add in bytes', () => {
    const o = observedOf(info({ memoryAllocation: { reservation: 256, limit: 2048 } }));
    assert.equal(o.powerState, 'Running');
    assert.deepEqual(o.config, { maxMemory: 4096n * MiB, memory: 2048n * MiB, reservation: 256n * MiB, limit: 2048n * MiB });
    assert.deepEqual(o.live, o.config);
    assert.deepEqual(o.hotAdd, { enabled: true, limit: 16384n * MiB, increment: 128n * MiB });
    assert.equal(o.uuid, 'bios-uuid');
  });

  it('powered off: no live world; absent limit = unlimited; suspended = Paused', () => {
    const o = observedOf(info({ powerState: 'poweredOff', memoryAllocation: {}, hotPlugMemoryLimit: 0, hotPlugMemoryIncrementSize: undefined }));
    assert.equal(o.live, undefined);
    assert.equal(o.config!.limit, 'unlimited');
    assert.equal(o.config!.memory, 4096n * MiB);
    assert.equal(o.config!.reservation, 0n);
    assert.deepEqual(o.hotAdd, { enabled: true });
    assert.equal(observedOf(info({ powerState: 'suspended' })).powerState, 'Paused');
  });
});

describe('toDriverError', () => {
  it('maps faults and client errors to driver codes, keeping vSphere\'s message', () => {
    const f = (faultName: string, faultString = 'msg') => new VSphereFault({ method: 'ReconfigVM_Task', faultName, faultString });
    const e = toDriverError(f('InsufficientResourcesFault', 'Insufficient resources.'), 'apply', 'web');
    assert.equal(e.code, 'Refused');
    assert.equal(e.op, 'ReconfigVM_Task');
    assert.equal(e.hypervisorMessage, 'InsufficientResourcesFault: Insufficient resources.');
    assert.equal(toDriverError(f('InvalidLogin'), 'Login').code, 'AuthFailed');
    assert.equal(toDriverError(f('ManagedObjectNotFound'), 'x').code, 'VMNotFound');
    assert.equal(toDriverError(new VSphereNotFoundError('no VM with name "a"', 'lookupVm'), 'x').code, 'VMNotFound');
    assert.equal(toDriverError(new VSphereTransportError('x: TLS verification of h failed', 'Login', 'SELF_SIGNED_CERT_IN_CHAIN'), 'x').code, 'TLS');
    assert.equal(toDriverError(new VSphereTransportError('x: connection refused', 'Login', 'ECONNREFUSED'), 'x').code, 'Unreachable');
    assert.equal(toDriverError(new VSphereTimeoutError('late', 'Login', 5), 'x').code, 'Timeout');
  });
});

describe('eventsOf / parseUpdateSet', () => {
  it('initial set only records; then power, reconfigure, rename, leave become lifecycle events', async () => {
    const { parseUpdateSet } = await import('../../src/vsphere/client.ts');
    const { parseXml } = await import('../../src/vsphere/xml.ts');
    const { eventsOf } = await import('../../src/drivers/vsphere/index.ts');
    const set = (objs: string) => parseUpdateSet(parseXml(`<returnval><version>1</version><filterSet><filter type="PropertyFilter">f</filter>${objs}</filterSet></returnval>`), 'WaitForUpdatesEx');
    const known = new Map<string, { name: string; uuid: string }>();
    const initial = set('<objectSet><kind>enter</kind><obj type="VirtualMachine">vm-1</obj><changeSet><name>name</name><op>assign</op><val>web</val></changeSet><changeSet><name>config.uuid</name><op>assign</op><val>u-1</val></changeSet></objectSet>');
    assert.deepEqual(eventsOf(initial, true, known), []);
    assert.deepEqual(known.get('vm-1'), { name: 'web', uuid: 'u-1' });
    const mod = set('<objectSet><kind>modify</kind><obj type="VirtualMachine">vm-1</obj><changeSet><name>runtime.powerState</name><op>assign</op><val>poweredOff</val></changeSet><changeSet><name>config.changeVersion</name><op>assign</op><val>7</val></changeSet></objectSet>');
    assert.deepEqual(eventsOf(mod, false, known).map((e) => e.kind === 'lifecycle' && e.detail), ['Stopped', 'Reconfigured']);
    const ren = set('<objectSet><kind>modify</kind><obj type="VirtualMachine">vm-1</obj><changeSet><name>name</name><op>assign</op><val>web2</val></changeSet></objectSet>');
    assert.deepEqual(eventsOf(ren, false, known), [{ kind: 'lifecycle', vm: { name: 'web2', uuid: 'u-1' }, detail: 'Renamed' }]);
    const leave = set('<objectSet><kind>leave</kind><obj type="VirtualMachine">vm-1</obj></objectSet>');
    assert.deepEqual(eventsOf(leave, false, known), [{ kind: 'lifecycle', vm: { name: 'web2', uuid: 'u-1' }, detail: 'Undefined' }]);
    assert.equal(known.size, 0);
    assert.throws(() => set('<objectSet><kind>weird</kind><obj type="VirtualMachine">vm-1</obj></objectSet>'), /unknown update kind/);
  });
});
