/**
 * Table test: one case per cell of the DESIGN §2 capability matrix and per
 * "other fact" bullet (plus the §3 rules), each checked on plan() and on the
 * profile-driven simulation (applyStepsToObserved).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { checkInvariants, plan } from '../../src/planner/plan.ts';
import { applyStepsToObserved, StepRefused } from '../support/step-simulator.ts';
import { PROFILES, profileFor } from '../../src/model/profiles.ts';
import type { DesiredMemory, HypervisorType, ObservedVM, Plan, Step, Verdict, WorldValues } from '../../src/model/memory.ts';
import { SimHost } from '../../src/drivers/sim/index.ts';

const MiB = 1024n * 1024n;
const g = (n: number) => BigInt(Math.round(n * 1024)) * MiB;

function vm(type: HypervisorType, over: Partial<ObservedVM> & { both?: WorldValues } = {}): ObservedVM {
  const { both, ...rest } = over;
  const w: WorldValues = both ?? { maxMemory: g(8), memory: g(8) };
  const base: ObservedVM = {
    name: 'web-01',
    uuid: '00000000-0000-0000-0000-0000000000aa',
    type,
    powerState: 'Running',
    persistent: true,
    live: { ...w },
    config: { ...w },
    balloon: { device: 'present' },
    numa: false,
  };
  const out = { ...base, ...rest };
  if (out.powerState === 'ShutOff' && !('live' in rest)) delete out.live;
  if (!out.persistent && !('config' in rest)) delete out.config;
  return out;
}

const v = (p: Plan, field: string): Verdict => {
  const found = p.verdicts.find((x) => x.field === field);
  assert.ok(found, `no verdict for ${field}`);
  return found;
};
const steps = (p: Plan) => p.steps.map((s) => `${s.world}.${s.field}=${typeof s.to === 'bigint' ? `${s.to / MiB}Mi` : s.to}`);

/** Applies a plan step by step, asserting each intermediate world is valid; returns the end state. */
function run(o: ObservedVM, p: Plan): ObservedVM {
  const profile = profileFor(o.type);
  let s = o;
  for (const step of p.steps) {
    s = applyStepsToObserved(s, [step], profile);
    for (const w of [s.live, s.config]) if (w) assert.deepEqual(checkInvariants(w), []);
  }
  return s;
}

const refused = (o: ObservedVM, step: Step, re: RegExp) =>
  assert.throws(() => applyStepsToObserved(o, [step], profileFor(o.type)), (e: unknown) => e instanceof StepRefused && re.test(e.message));

// ---------------------------------------------------------------------------
describe('DESIGN §2 maxMemory', () => {
  test('QEMU: config only; a running domain refuses live change; RestartRequired', () => {
    const o = vm('qemu');
    const p = plan({ maxMemory: g(16), memory: g(8) }, o, PROFILES.qemu);
    assert.deepEqual(steps(p), ['config.maxMemory=16384Mi']);
    assert.equal(v(p, 'maxMemory').kind, 'RestartRequired');
    assert.match(v(p, 'maxMemory').message, /maxMemory.*16Gi.*8Gi.*RestartRequired/);
    refused(o, { field: 'maxMemory', world: 'live', from: g(8), to: g(16) }, /active domain/);
    // Re-planning after the config took it: still RestartRequired, no steps.
    const again = plan({ maxMemory: g(16), memory: g(8) }, run(o, p), PROFILES.qemu);
    assert.deepEqual(again.steps, []);
    assert.equal(v(again, 'maxMemory').kind, 'RestartRequired');
  });

  test('QEMU: lowering config maxMemory below config memory lowers memory (libvirt side effect)', () => {
    const o = vm('qemu', { powerState: 'ShutOff', both: { maxMemory: g(8), memory: g(8) } });
    const after = applyStepsToObserved(o, [{ field: 'maxMemory', world: 'config', from: g(8), to: g(4) }], PROFILES.qemu);
    assert.equal(after.config?.memory, g(4));
    // The planner itself lowers memory first, so it never relies on the side effect.
    const p = plan({ maxMemory: g(4), memory: g(4) }, o, PROFILES.qemu);
    assert.deepEqual(steps(p), ['config.memory=4096Mi', 'config.maxMemory=4096Mi']);
    assert.ok(p.verdicts.every((x) => x.kind === 'Applied'));
  });

  test('QEMU: a domain with NUMA cells refuses maxMemory changes: Unsupported, says NUMA', () => {
    const o = vm('qemu', { numa: true });
    const p = plan({ maxMemory: g(16), memory: g(6) }, o, PROFILES.qemu);
    assert.equal(v(p, 'maxMemory').kind, 'Unsupported');
    assert.match(v(p, 'maxMemory').message, /NUMA/);
    assert.ok(p.steps.every((s) => s.field !== 'maxMemory'));
    assert.equal(v(p, 'memory').kind, 'Applied'); // the other fields are still applied
    assert.deepEqual(steps(p), ['live.memory=6144Mi', 'config.memory=6144Mi']);
  });

  test('QEMU: shut-off domain: config change, Applied (the next boot uses it)', () => {
    const o = vm('qemu', { powerState: 'ShutOff' });
    const p = plan({ maxMemory: g(16), memory: g(16) }, o, PROFILES.qemu);
    assert.deepEqual(steps(p), ['config.maxMemory=16384Mi', 'config.memory=16384Mi']);
    assert.ok(p.verdicts.every((x) => x.kind === 'Applied'));
  });

  test('Xen: live + config, RestartRequired (e820 fixed at boot)', () => {
    const o = vm('xen');
    const p = plan({ maxMemory: g(16), memory: g(8) }, o, PROFILES.xen);
    assert.deepEqual(steps(p), ['live.maxMemory=16384Mi', 'config.maxMemory=16384Mi']);
    assert.equal(v(p, 'maxMemory').kind, 'RestartRequired');
    assert.match(v(p, 'maxMemory').message, /next cold boot/);
  });

  test('Xen: cannot go below the current balloon target: memory is lowered first', () => {
    const o = vm('xen', { both: { maxMemory: g(8), memory: g(8) } });
    refused(o, { field: 'maxMemory', world: 'live', from: g(8), to: g(4) }, /balloon target/);
    const p = plan({ maxMemory: g(4), memory: g(4) }, o, PROFILES.xen);
    assert.deepEqual(steps(p), ['live.memory=4096Mi', 'config.memory=4096Mi', 'live.maxMemory=4096Mi', 'config.maxMemory=4096Mi']);
    run(o, p);
  });

  test('Xen: with no balloon device the live maxMemory cannot drop below the stuck live memory', () => {
    const o = vm('xen', { balloon: { device: 'none' } });
    const p = plan({ maxMemory: g(4), memory: g(4) }, o, PROFILES.xen);
    assert.deepEqual(steps(p), ['config.memory=4096Mi', 'config.maxMemory=4096Mi']);
    assert.equal(v(p, 'maxMemory').kind, 'Unsupported');
    run(o, p);
  });

  test('ESX: powered off: any value', () => {
    const o = vm('esx', { powerState: 'ShutOff', both: { maxMemory: g(8), memory: g(8), reservation: 0n, limit: 'unlimited' } });
    const p = plan({ maxMemory: g(4), memory: g(4) }, o, PROFILES.esx);
    assert.deepEqual(steps(p), ['config.maxMemory=4096Mi']);
    assert.ok(p.verdicts.every((x) => x.kind === 'Applied'));
  });

  const esxOn = (hotAdd: ObservedVM['hotAdd']) =>
    vm('esx', { hotAdd, both: { maxMemory: g(8), memory: g(8), reservation: 0n, limit: 'unlimited' } });

  test('ESX: powered on, hot-add enabled, within limit and increment: increase applied live', () => {
    const o = esxOn({ enabled: true, limit: g(32), increment: 128n * MiB });
    const p = plan({ maxMemory: g(16), memory: g(16) }, o, PROFILES.esx);
    assert.deepEqual(steps(p), ['config.maxMemory=16384Mi']);
    assert.ok(p.verdicts.every((x) => x.kind === 'Applied'));
    assert.equal(run(o, p).live?.maxMemory, g(16));
  });

  for (const [name, hot, desired, re] of [
    ['a decrease', { enabled: true }, g(4), /cannot shrink/],
    ['hot-add disabled', { enabled: false }, g(16), /hot-add is not enabled/],
    ['beyond hotPlugMemoryLimit', { enabled: true, limit: g(12) }, g(16), /hotPlugMemoryLimit/],
    ['not a multiple of hotPlugMemoryIncrementSize', { enabled: true, increment: g(3) }, g(16), /hotPlugMemoryIncrementSize/],
  ] as const) {
    test(`ESX: powered on, ${name}: AwaitingPowerOff, no step; applied once powered off`, () => {
      const o = esxOn(hot);
      const d: DesiredMemory = { maxMemory: desired, memory: desired };
      const p = plan(d, o, PROFILES.esx);
      assert.equal(v(p, 'maxMemory').kind, 'AwaitingPowerOff');
      assert.match(v(p, 'maxMemory').message, re);
      assert.ok(p.steps.every((s) => s.field !== 'maxMemory'));
      refused(o, { field: 'maxMemory', world: 'config', from: g(8), to: desired }, re);
      const off = plan(d, { ...o, powerState: 'ShutOff', live: undefined }, PROFILES.esx);
      assert.deepEqual(steps(off), [`config.maxMemory=${desired / MiB}Mi`]);
      assert.equal(v(off, 'maxMemory').kind, 'Applied');
    });
  }
});

describe('DESIGN §2 memory', () => {
  test('QEMU: balloon target, live and config', () => {
    const p = plan({ maxMemory: g(8), memory: g(6) }, vm('qemu'), PROFILES.qemu);
    assert.deepEqual(steps(p), ['live.memory=6144Mi', 'config.memory=6144Mi']);
    assert.equal(v(p, 'memory').kind, 'Applied');
  });

  test("QEMU: memballoon model='none': live change Unsupported, config still updated", () => {
    const o = vm('qemu', { balloon: { device: 'none' } });
    const p = plan({ maxMemory: g(8), memory: g(6) }, o, PROFILES.qemu);
    assert.deepEqual(steps(p), ['config.memory=6144Mi']);
    assert.equal(v(p, 'memory').kind, 'Unsupported');
    assert.match(v(p, 'memory').message, /balloon/);
    refused(o, { field: 'memory', world: 'live', from: g(8), to: g(6) }, /balloon/);
  });

  test('QEMU: a device without guest driver: libvirt accepts, the plan is the same (actual is the controller’s business)', () => {
    const o = vm('qemu', { balloon: { device: 'present', actual: g(8) } });
    const p = plan({ maxMemory: g(8), memory: g(6) }, o, PROFILES.qemu);
    assert.deepEqual(steps(p), ['live.memory=6144Mi', 'config.memory=6144Mi']);
  });

  test('Xen: balloon target, live and config', () => {
    const p = plan({ maxMemory: g(8), memory: g(2) }, vm('xen'), PROFILES.xen);
    assert.deepEqual(steps(p), ['live.memory=2048Mi', 'config.memory=2048Mi']);
    assert.equal(v(p, 'memory').kind, 'Applied');
  });

  const esx = (limit: WorldValues['limit'], memory = g(8)) =>
    vm('esx', { both: { maxMemory: g(8), memory, reservation: 0n, limit } });

  test('ESX: memory < maxMemory, limit unmanaged: memoryAllocation.limit = memory', () => {
    const p = plan({ maxMemory: g(8), memory: g(6) }, esx('unlimited'), PROFILES.esx);
    assert.deepEqual(steps(p), ['config.limit=6144Mi']);
    assert.equal(v(p, 'memory').kind, 'Applied');
    assert.equal(run(esx('unlimited'), p).config?.memory, g(6));
  });

  test('ESX: memory == maxMemory, limit unmanaged: unlimited (-1)', () => {
    const p = plan({ maxMemory: g(8), memory: g(8) }, esx(g(6), g(6)), PROFILES.esx);
    assert.deepEqual(steps(p), ['config.limit=unlimited']);
    // An existing cap at or above maxMemory already gives all of it: left alone.
    assert.deepEqual(plan({ maxMemory: g(8), memory: g(8) }, esx(g(10)), PROFILES.esx).steps, []);
  });

  test('ESX: applied limit is min(memory, limit); verdicts for both fields', () => {
    const p = plan({ maxMemory: g(8), memory: g(6), limit: g(4) }, esx('unlimited'), PROFILES.esx);
    assert.deepEqual(steps(p), ['config.limit=4096Mi']);
    assert.equal(v(p, 'memory').kind, 'Applied');
    assert.equal(v(p, 'limit').kind, 'Applied');
    assert.equal(v(p, 'limit').desired, g(4));
    const q = plan({ maxMemory: g(8), memory: g(6), limit: 'unlimited' }, esx('unlimited'), PROFILES.esx);
    assert.deepEqual(steps(q), ['config.limit=6144Mi']);
    const r = plan({ maxMemory: g(8), memory: g(8), limit: 'unlimited' }, esx(g(6), g(6)), PROFILES.esx);
    assert.deepEqual(steps(r), ['config.limit=unlimited']);
  });
});

describe('DESIGN §2 reservation', () => {
  for (const type of ['qemu', 'xen', 'test'] as const) {
    test(`${type}: unsupported (min_guarantee rejected), even when 0; other fields still applied`, () => {
      const p = plan({ maxMemory: g(8), memory: g(6), reservation: g(2) }, vm(type), PROFILES[type]);
      assert.equal(v(p, 'reservation').kind, 'Unsupported');
      assert.match(v(p, 'reservation').message, /min_guarantee/);
      assert.ok(p.steps.every((s) => s.field !== 'reservation'));
      assert.equal(v(p, 'memory').kind, 'Applied');
      assert.equal(v(plan({ maxMemory: g(8), memory: g(8), reservation: 0n }, vm(type), PROFILES[type]), 'reservation').kind, 'Unsupported');
    });
  }

  test('ESX: memoryAllocation.reservation live; raise limit before reservation, lower reservation before limit', () => {
    const o = vm('esx', { both: { maxMemory: g(8), memory: g(2), reservation: g(1), limit: g(2) } });
    const up = plan({ maxMemory: g(8), memory: g(6), reservation: g(4) }, o, PROFILES.esx);
    assert.deepEqual(steps(up), ['config.limit=6144Mi', 'config.reservation=4096Mi']);
    run(o, up);
    const o2 = vm('esx', { both: { maxMemory: g(8), memory: g(6), reservation: g(4), limit: g(6) } });
    const down = plan({ maxMemory: g(8), memory: g(2), reservation: g(1) }, o2, PROFILES.esx);
    assert.deepEqual(steps(down), ['config.reservation=1024Mi', 'config.limit=2048Mi']);
    run(o2, down);
  });
});

describe('DESIGN §2 limit', () => {
  test('QEMU: memtune hard_limit, live and config', () => {
    const p = plan({ maxMemory: g(8), memory: g(8), limit: g(10) }, vm('qemu'), PROFILES.qemu);
    assert.deepEqual(steps(p), ['live.limit=10240Mi', 'config.limit=10240Mi']);
    assert.equal(v(p, 'limit').kind, 'Applied');
  });

  test('QEMU: limit < maxMemory + 512Mi refused: Unsafe / UnsafeLimit; opt-in with allowUnsafeLimit', () => {
    const p = plan({ maxMemory: g(8), memory: g(8), limit: g(8.25) }, vm('qemu'), PROFILES.qemu);
    assert.equal(v(p, 'limit').kind, 'Unsafe');
    assert.equal(v(p, 'limit').reason, 'UnsafeLimit');
    assert.match(v(p, 'limit').message, /limit.*8448Mi.*UnsafeLimit/);
    assert.deepEqual(p.steps, []);
    const ok = plan({ maxMemory: g(8), memory: g(8), limit: g(8.5) }, vm('qemu'), PROFILES.qemu);
    assert.equal(v(ok, 'limit').kind, 'Applied');
    const optIn = plan({ maxMemory: g(8), memory: g(8), limit: g(8.25), allowUnsafeLimit: true }, vm('qemu'), PROFILES.qemu);
    assert.equal(v(optIn, 'limit').kind, 'Applied');
    const margin = plan({ maxMemory: g(8), memory: g(8), limit: g(8.25) }, vm('qemu'), PROFILES.qemu, { overheadMargin: 128n * MiB });
    assert.equal(v(margin, 'limit').kind, 'Applied');
  });

  test('QEMU: the margin counts the running guest too (lowering maxMemory does not shrink it before restart)', () => {
    const o = vm('qemu', { both: { maxMemory: g(16), memory: g(8) } });
    const p = plan({ maxMemory: g(8), memory: g(8), limit: g(9) }, o, PROFILES.qemu);
    assert.equal(v(p, 'limit').kind, 'Unsafe');
    assert.match(v(p, 'limit').message, /16Gi/);
  });

  test('QEMU: raising maxMemory over an unmanaged hard_limit that would become unsafe: Unsafe', () => {
    const o = vm('qemu', { both: { maxMemory: g(8), memory: g(8), limit: g(9) } });
    const p = plan({ maxMemory: g(16), memory: g(8) }, o, PROFILES.qemu);
    assert.equal(v(p, 'maxMemory').kind, 'Unsafe');
    assert.equal(v(p, 'maxMemory').reason, 'UnsafeLimit');
    assert.deepEqual(p.steps, []);
  });

  test('Xen: unsupported', () => {
    const p = plan({ maxMemory: g(8), memory: g(8), limit: g(16) }, vm('xen'), PROFILES.xen);
    assert.equal(v(p, 'limit').kind, 'Unsupported');
    assert.deepEqual(p.steps, []);
  });

  test('ESX: memoryAllocation.limit, live; Unlimited = -1', () => {
    const o = vm('esx', { both: { maxMemory: g(8), memory: g(4), reservation: 0n, limit: g(4) } });
    const p = plan({ maxMemory: g(8), memory: g(8), limit: 'unlimited' }, o, PROFILES.esx);
    assert.deepEqual(steps(p), ['config.limit=unlimited']);
    assert.equal(v(p, 'limit').kind, 'Applied');
  });
});

describe('DESIGN §2 other facts', () => {
  test('ESX: one configuration: all steps in world config (the driver sends one ReconfigVM_Task with the whole memoryAllocation)', () => {
    const o = vm('esx', { both: { maxMemory: g(8), memory: g(8), reservation: 0n, limit: 'unlimited' }, hotAdd: { enabled: true } });
    const p = plan({ maxMemory: g(16), memory: g(12), reservation: g(2) }, o, PROFILES.esx);
    assert.ok(p.steps.every((s) => s.world === 'config'));
    assert.deepEqual(steps(p), ['config.limit=12288Mi', 'config.maxMemory=16384Mi', 'config.reservation=2048Mi']);
    const end = run(o, p);
    assert.deepEqual(end.live, end.config); // a powered-on VM runs its configuration
  });

  test('ESX: a suspended VM (Paused) cannot hot-add: AwaitingPowerOff; allocation changes still apply', () => {
    const o = vm('esx', { powerState: 'Paused', hotAdd: { enabled: true }, both: { maxMemory: g(8), memory: g(8), reservation: 0n } });
    const p = plan({ maxMemory: g(16), memory: g(16), reservation: g(1) }, o, PROFILES.esx);
    assert.equal(v(p, 'maxMemory').kind, 'AwaitingPowerOff');
    assert.match(v(p, 'maxMemory').message, /suspended/);
    assert.equal(v(p, 'reservation').kind, 'Applied');
  });

  test('ESX: vcsim does not enforce power-state or hot-add rules; the profile does', () => {
    assert.equal(PROFILES.esx.fields.maxMemory.poweredOn, 'hotAddIncrease');
    const p = plan({ maxMemory: g(4), memory: g(4) }, vm('esx', { both: { maxMemory: g(8), memory: g(8), reservation: 0n } }), PROFILES.esx);
    assert.equal(v(p, 'maxMemory').kind, 'AwaitingPowerOff');
  });

  test('test driver: live maxMemory refused, memory <= max enforced, min_guarantee rejected, LIVE|CONFIG rejected', () => {
    const o = vm('test');
    refused(o, { field: 'maxMemory', world: 'live', from: g(8), to: g(16) }, /active domain/);
    refused(o, { field: 'memory', world: 'live', from: g(8), to: g(16) }, /higher than max memory/);
    refused(o, { field: 'reservation', world: 'live', from: undefined, to: g(1) }, /min_guarantee/);
    assert.equal(PROFILES.test.liveAndConfigInOneCall, false);
    const p = plan({ maxMemory: g(16), memory: g(6) }, o, PROFILES.test);
    assert.deepEqual(steps(p), ['live.memory=6144Mi', 'config.memory=6144Mi', 'config.maxMemory=16384Mi']);
    assert.equal(v(p, 'maxMemory').kind, 'RestartRequired');
  });

  test('power states: only config changes on a shut-off libvirt domain; Paused counts as active', () => {
    const off = vm('qemu', { powerState: 'ShutOff', live: { maxMemory: g(8), memory: g(8) } });
    const p = plan({ maxMemory: g(8), memory: g(4), limit: g(10) }, off, PROFILES.qemu);
    assert.ok(p.steps.every((s) => s.world === 'config'));
    refused(off, { field: 'memory', world: 'live', from: g(8), to: g(4) }, /not running/);
    const paused = plan({ maxMemory: g(8), memory: g(4) }, vm('qemu', { powerState: 'Paused' }), PROFILES.qemu);
    assert.deepEqual(steps(paused), ['live.memory=4096Mi', 'config.memory=4096Mi']);
  });

  test('transient domain: no config steps; a change that needs config is Unsupported, says transient', () => {
    const o = vm('qemu', { persistent: false });
    const p = plan({ maxMemory: g(16), memory: g(6) }, o, PROFILES.qemu);
    assert.deepEqual(steps(p), ['live.memory=6144Mi']);
    assert.equal(v(p, 'maxMemory').kind, 'Unsupported');
    assert.match(v(p, 'maxMemory').message, /transient/);
    assert.equal(v(p, 'memory').kind, 'Applied');
    refused(o, { field: 'memory', world: 'config', from: g(8), to: g(6) }, /transient/);
  });
});

describe('DESIGN §3 rules', () => {
  test('a converged VM: empty plan, all Applied', () => {
    for (const type of ['qemu', 'xen', 'test'] as const) {
      const p = plan({ maxMemory: g(8), memory: g(8) }, vm(type), PROFILES[type]);
      assert.deepEqual(p.steps, []);
      assert.ok(p.verdicts.every((x) => x.kind === 'Applied' && /already in effect/.test(x.message)));
    }
  });

  test('a shut-off VM whose config holds the desired values: all Applied (Ready)', () => {
    const o = vm('qemu', { powerState: 'ShutOff', both: { maxMemory: g(16), memory: g(12), limit: g(20) } });
    const p = plan({ maxMemory: g(16), memory: g(12), limit: g(20) }, o, PROFILES.qemu);
    assert.deepEqual(p.steps, []);
    assert.ok(p.verdicts.every((x) => x.kind === 'Applied'));
  });

  for (const [name, d, fields] of [
    ['memory > maxMemory', { maxMemory: g(4), memory: g(8) }, ['maxMemory', 'memory']],
    ['reservation > memory', { maxMemory: g(8), memory: g(4), reservation: g(6) }, ['reservation', 'memory']],
    ['limit < reservation', { maxMemory: g(8), memory: g(8), reservation: g(6), limit: g(4) }, ['limit', 'reservation']],
    ['limit 0', { maxMemory: g(8), memory: g(8), limit: 0n }, ['limit']],
  ] as const) {
    test(`invalid spec (${name}): Invalid / InvalidSpec for every managed field, no steps`, () => {
      for (const type of ['qemu', 'esx'] as const) {
        const p = plan(d, vm(type), PROFILES[type]);
        assert.deepEqual(p.steps, []);
        assert.ok(p.verdicts.every((x) => x.kind === 'Invalid' && x.reason === 'InvalidSpec'));
        for (const f of fields) assert.match(v(p, f).message, new RegExp(name.split(' ')[0]!));
      }
    });
  }

  test('rounding up: libvirt KiB, ESX 4 MiB memoryMB and 1 MiB allocation; reported in roundings', () => {
    const p = plan({ maxMemory: g(8) + 1n, memory: g(4) + 1n }, vm('qemu'), PROFILES.qemu);
    assert.deepEqual(p.roundings, [
      { field: 'maxMemory', requested: g(8) + 1n, effective: g(8) + 1024n },
      { field: 'memory', requested: g(4) + 1n, effective: g(4) + 1024n },
    ]);
    const e = plan(
      { maxMemory: g(8) + MiB, memory: g(8) + MiB, reservation: 1n },
      vm('esx', { powerState: 'ShutOff', both: { maxMemory: g(8), memory: g(8), reservation: 0n } }),
      PROFILES.esx,
    );
    assert.equal(v(e, 'maxMemory').desired, g(8) + 4n * MiB);
    assert.equal(v(e, 'memory').desired, g(8) + 4n * MiB); // memory == maxMemory stays "all of it"
    assert.equal(v(e, 'reservation').desired, MiB);
    assert.deepEqual(e.roundings.map((r) => r.field), ['maxMemory', 'memory', 'reservation']);
  });

  test('unmanaged fields are never touched; a conflict with one is reported, not forced', () => {
    const o = vm('qemu', { both: { maxMemory: g(8), memory: g(8), limit: g(20) } });
    const p = plan({ maxMemory: g(8), memory: g(4) }, o, PROFILES.qemu);
    assert.ok(p.steps.every((s) => s.field === 'memory'));
    assert.deepEqual(p.verdicts.map((x) => x.field), ['maxMemory', 'memory']);
    const e = vm('esx', { both: { maxMemory: g(8), memory: g(8), reservation: g(6), limit: 'unlimited' } });
    const q = plan({ maxMemory: g(8), memory: g(4) }, e, PROFILES.esx);
    assert.deepEqual(q.steps, []);
    assert.equal(v(q, 'memory').kind, 'Invalid');
    assert.equal(v(q, 'memory').reason, 'ConflictsWithUnmanagedField');
    assert.match(v(q, 'memory').message, /reservation/);
  });

  test('ordering: grow maxMemory before memory, shrink memory before maxMemory (each world)', () => {
    const off = vm('xen', { both: { maxMemory: g(4), memory: g(4) } });
    assert.deepEqual(steps(plan({ maxMemory: g(8), memory: g(8) }, off, PROFILES.xen)), [
      'live.maxMemory=8192Mi',
      'config.maxMemory=8192Mi',
      'live.memory=8192Mi',
      'config.memory=8192Mi',
    ]);
  });

  test('message names field, both values and the reason', () => {
    const p = plan({ maxMemory: g(16), memory: g(8) }, vm('qemu'), PROFILES.qemu);
    assert.ok(v(p, 'maxMemory').message.startsWith('maxMemory: desired 16Gi, observed 8Gi: RestartRequired: '));
  });
});

// ---------------------------------------------------------------------------
// Gaps found by the planner × sim cross-check (test/unit/sim-planner.test.ts), one focused case each.

describe('sim cross-check fixes', () => {
  test('test driver: a domain with NUMA cells refuses maxMemory (testDomainSetMemoryFlags): Unsupported, says NUMA', () => {
    for (const powerState of ['Running', 'ShutOff'] as const) {
      const o = vm('test', { numa: true, powerState });
      const p = plan({ maxMemory: g(16), memory: g(6) }, o, PROFILES.test);
      assert.equal(v(p, 'maxMemory').kind, 'Unsupported', powerState);
      assert.match(v(p, 'maxMemory').message, /NUMA/);
      assert.ok(p.steps.every((s) => s.field !== 'maxMemory'), powerState);
      assert.equal(v(p, 'memory').kind, 'Applied'); // the other fields are still applied
      assert.deepEqual(steps(p), powerState === 'Running' ? ['live.memory=6144Mi', 'config.memory=6144Mi'] : ['config.memory=6144Mi']);
      run(o, p);
      refused(o, { field: 'maxMemory', world: 'config', from: g(8), to: g(16) }, /NUMA/);
    }
    // Without NUMA cells the config takes it.
    assert.equal(v(plan({ maxMemory: g(16), memory: g(6) }, vm('test'), PROFILES.test), 'maxMemory').kind, 'RestartRequired');
  });

  test('QEMU shut-off NUMA domain: the limit is checked against the maxMemory that stays (16Gi), not the desired one', () => {
    const o = vm('qemu', { numa: true, powerState: 'ShutOff', both: { maxMemory: g(16), memory: g(8) } });
    const d: DesiredMemory = { maxMemory: g(8), memory: g(8), limit: g(9) };
    const p = plan(d, o, PROFILES.qemu);
    assert.equal(v(p, 'maxMemory').kind, 'Unsupported');
    assert.match(v(p, 'maxMemory').message, /NUMA/);
    assert.equal(v(p, 'limit').kind, 'Unsafe');
    assert.equal(v(p, 'limit').reason, 'UnsafeLimit');
    assert.match(v(p, 'limit').message, /guest memory 16Gi/);
    assert.ok(p.steps.every((s) => s.field !== 'limit'), 'no config hard_limit below the next boot’s guest RAM');
    // A limit that covers the 16Gi the next boot uses is fine.
    const ok = plan({ ...d, limit: g(16.5) }, o, PROFILES.qemu);
    assert.equal(v(ok, 'limit').kind, 'Applied');
    assert.deepEqual(steps(ok), ['config.limit=16896Mi']);
    // Without NUMA the config takes maxMemory 8Gi, so 9Gi covers it: Applied.
    const plain = plan(d, { ...o, numa: false }, PROFILES.qemu);
    assert.equal(v(plain, 'limit').kind, 'Applied');
    assert.deepEqual(steps(plain), ['config.maxMemory=8192Mi', 'config.limit=9216Mi']);
  });

  test('QEMU running NUMA domain: the config maxMemory that stays counts too (next boot), not only the live one', () => {
    const o = vm('qemu', { numa: true, live: { maxMemory: g(8), memory: g(8) }, config: { maxMemory: g(16), memory: g(8) } });
    const p = plan({ maxMemory: g(8), memory: g(8), limit: g(9) }, o, PROFILES.qemu);
    assert.equal(v(p, 'limit').kind, 'Unsafe');
    assert.match(v(p, 'limit').message, /16Gi/);
    assert.deepEqual(p.steps, []);
  });

  test('QEMU transient domain: only the running guest counts (maxMemory cannot be staged anywhere)', () => {
    const o = vm('qemu', { persistent: false });
    const p = plan({ maxMemory: g(16), memory: g(8), limit: g(9) }, o, PROFILES.qemu);
    assert.equal(v(p, 'maxMemory').kind, 'Unsupported');
    assert.match(v(p, 'maxMemory').message, /transient/);
    assert.equal(v(p, 'limit').kind, 'Applied');
    assert.deepEqual(steps(p), ['live.limit=9216Mi']);
  });

  test('ESX: a maxMemory shrink that conflicts with an unmanaged reservation is Invalid in both power states, same message', () => {
    const both: WorldValues = { maxMemory: g(8), memory: g(8), reservation: g(6), limit: 'unlimited' };
    const d: DesiredMemory = { maxMemory: g(4), memory: g(4) };
    const on = plan(d, vm('esx', { both, hotAdd: { enabled: true } }), PROFILES.esx);
    const off = plan(d, vm('esx', { both, powerState: 'ShutOff' }), PROFILES.esx);
    for (const p of [on, off]) {
      assert.deepEqual(p.steps, []);
      assert.equal(v(p, 'maxMemory').kind, 'Invalid');
      assert.equal(v(p, 'maxMemory').reason, 'ConflictsWithUnmanagedField');
      assert.match(v(p, 'maxMemory').message, /reservation is not managed by this object and holds 6Gi/);
      assert.doesNotMatch(v(p, 'maxMemory').message, /powered off/);
      assert.equal(v(p, 'memory').kind, 'Invalid');
    }
    assert.equal(v(on, 'maxMemory').message, v(off, 'maxMemory').message);
    // Declaring the reservation resolves it: the shrink then waits for power-off honestly.
    const declared: DesiredMemory = { ...d, reservation: g(2) };
    const on2 = plan(declared, vm('esx', { both, hotAdd: { enabled: true } }), PROFILES.esx);
    assert.equal(v(on2, 'maxMemory').kind, 'AwaitingPowerOff');
    assert.deepEqual(steps(on2), ['config.reservation=2048Mi']);
    const off2 = plan(declared, vm('esx', { both, powerState: 'ShutOff' }), PROFILES.esx);
    assert.ok(off2.verdicts.every((x) => x.kind === 'Applied'));
  });

  test("test driver: memballoon model='none' does not block a live memory change (testDomainSetMemoryFlags ignores it)", () => {
    const o = vm('test', { balloon: { device: 'none' } });
    const p = plan({ maxMemory: g(8), memory: g(6) }, o, PROFILES.test);
    assert.deepEqual(steps(p), ['live.memory=6144Mi', 'config.memory=6144Mi']);
    assert.equal(v(p, 'memory').kind, 'Applied');
    assert.equal(run(o, p).live?.memory, g(6));
    // The independent sim host agrees: only QEMU refuses without a balloon device.
    const host = new SimHost('memory:matrix-balloon', 'sim:memory:matrix-balloon', {
      hostMemory: 1024n * 1024n * MiB,
      latency: { meanMs: 0, jitterMs: 0 },
      faults: { errorRate: 0, seed: 1 },
      qemuOverhead: 0n,
      vms: [{
        name: o.name, uuid: o.uuid, type: 'test', powerState: 'Running', persistent: true, numa: false,
        balloon: 'none', balloonDelayMs: 0, live: { ...o.live! }, config: { ...o.config! }, actual: g(8),
      }],
    });
    const h = host.lookupByName(o.name);
    host.virDomainSetMemoryFlags(h, g(6) / 1024n, { live: true });
    host.virDomainSetMemoryFlags(h, g(6) / 1024n, { config: true });
    assert.equal(host.vm(o.name)?.live?.memory, g(6));
    // QEMU still needs the device.
    assert.equal(v(plan({ maxMemory: g(8), memory: g(6) }, vm('qemu', { balloon: { device: 'none' } }), PROFILES.qemu), 'memory').kind, 'Unsupported');
  });
});
