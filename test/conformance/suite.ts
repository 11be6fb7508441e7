/**
 * The driver conformance suite: one set of behavioral tests every driver
 * must pass (sim, libvirt against the test driver and QEMU, vsphere against
 * vcsim). A driver's test file calls runConformance(name, fixture); the
 * tests registered are chosen from fixture.capabilities, so a test that does
 * not apply to a peer is never registered for it (no skips).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Driver, DriverErrorCode, DriverEvent, VMHandle } from '../../src/drivers/driver.ts';
import { DriverError } from '../../src/drivers/driver.ts';
import type { ObservedVM, Step, World } from '../../src/model/memory.ts';
import type { ApplyCapability, ConformanceFixture, RefusalKind, VMSpec } from './fixture.ts';

export type { ConformanceFixture } from './fixture.ts';

const Mi = 1n << 20n;
const Gi = 1n << 30n;
/** Base VM: 1Gi maximum, ballooned to 512Mi where the peer has a balloon target. */
const BASE_MAX = Gi;
const BASE_MEMORY = 512n * Mi;
/** Every change is by 256Mi: a multiple of KiB, MiB, 4 MiB and common hot-add increments. */
const DELTA = 256n * Mi;
const TEST_TIMEOUT = 120_000;

let counter = 0;

function isDriverError(code: DriverErrorCode | readonly DriverErrorCode[]) {
  const codes = typeof code === 'string' ? [code] : code;
  return (err: unknown): boolean => {
    assert.ok(err instanceof DriverError, `expected a DriverError, got ${String(err)}`);
    assert.ok(codes.includes(err.code), `expected code ${codes.join(' or ')}, got ${err.code}: ${err.message}`);
    assert.ok(err.op, 'DriverError.op must name the call');
    return true;
  };
}

async function until<T>(what: string, timeoutMs: number, fn: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

function fmt(v: unknown): string {
  return typeof v === 'bigint' ? `${v}` : JSON.stringify(v);
}

/** Registers the conformance tests for one peer. */
export function runConformance(name: string, fixture: ConformanceFixture): void {
  const caps = fixture.capabilities;
  const memoryKnob = caps.applies.some((a) => a.field === 'memory');
  const balloonTimeout = caps.balloonTimeoutMs ?? 5000;
  /** The peer reports the live balloon target (else only the balloon's actual size: QEMU via libvirt). */
  const targetObservable = (caps.liveBalloonTarget ?? 'observable') === 'observable';

  function spec(overrides: Partial<VMSpec> = {}): VMSpec {
    const maxMemory = overrides.maxMemory ?? BASE_MAX;
    return {
      name: `conf-${++counter}-${Date.now().toString(36)}`,
      powerState: 'Running',
      persistent: true,
      maxMemory,
      memory: memoryKnob ? BASE_MEMORY : maxMemory,
      balloon: true,
      ...overrides,
    };
  }

  /** Creates a VM, connects a driver, looks the VM up; cleans all of it up afterwards. */
  async function withVM(overrides: Partial<VMSpec>, fn: (ctx: { driver: Driver; vm: VMHandle; spec: VMSpec }) => Promise<void>): Promise<void> {
    const s = spec(overrides);
    await fixture.createVM(s);
    let driver: Driver | undefined;
    try {
      driver = await fixture.connect();
      const vm = await driver.lookup({ name: s.name });
      await fn({ driver, vm, spec: s });
    } finally {
      await driver?.close();
      await fixture.removeVM(s.name);
    }
  }

  function stepFor(o: ObservedVM, field: Step['field'], world: World, to: Step['to']): Step {
    return { field, world, from: o[world]?.[field] ?? o.config?.[field], to };
  }

  describe(`driver conformance: ${name}`, { timeout: TEST_TIMEOUT * 20 }, () => {
    before(async () => {
      await fixture.setup?.();
    });
    after(async () => {
      await fixture.teardown?.();
    });

    // ------------------------------------------------------------ identity

    test('identify reports the hypervisor type and a version', { timeout: TEST_TIMEOUT }, async () => {
      const driver = await fixture.connect();
      try {
        const id = await driver.identify();
        assert.equal(id.type, caps.type);
        assert.equal(typeof id.version, 'string');
        assert.ok(id.version.length > 0, 'version is empty');
        if (id.hostMemory !== undefined) assert.ok(id.hostMemory > 0n, 'hostMemory must be > 0 when reported');
      } finally {
        await driver.close();
      }
    });

    test('lookup by name and by uuid finds the same VM', { timeout: TEST_TIMEOUT }, async () => {
      await withVM({}, async ({ driver, vm, spec: s }) => {
        assert.equal(vm.name, s.name);
        assert.match(vm.uuid, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i);
        const byUuid = await driver.lookup({ uuid: vm.uuid });
        assert.equal(byUuid.name, vm.name);
        assert.equal(byUuid.uuid.toLowerCase(), vm.uuid.toLowerCase());
      });
    });

    test('lookup of an unknown VM fails with VMNotFound (by name and by uuid)', { timeout: TEST_TIMEOUT }, async () => {
      const driver = await fixture.connect();
      try {
        await assert.rejects(driver.lookup({ name: `conf-missing-${Date.now().toString(36)}` }), isDriverError('VMNotFound'));
        await assert.rejects(driver.lookup({ uuid: '00000000-0000-4000-8000-00000000dead' }), isDriverError('VMNotFound'));
      } finally {
        await driver.close();
      }
    });

    // ------------------------------------------------------------- observe

    test('observe a running VM: power state, both worlds, sane values', { timeout: TEST_TIMEOUT }, async () => {
      await withVM({}, async ({ driver, vm, spec: s }) => {
        const o = await driver.observe(vm);
        assert.equal(o.name, s.name);
        assert.equal(o.uuid.toLowerCase(), vm.uuid.toLowerCase());
        assert.equal(o.type, caps.type);
        assert.equal(o.powerState, 'Running');
        assert.equal(o.persistent, true);
        assert.ok(o.live, 'a running VM has a live world');
        assert.ok(o.config, 'a persistent VM has a config world');
        for (const [world, w] of [['live', o.live], ['config', o.config]] as const) {
          assert.equal(w.maxMemory, s.maxMemory);
          assert.ok(w.memory > 0n && w.memory <= w.maxMemory, `memory ${w.memory} must be in (0, maxMemory ${w.maxMemory}]`);
          if (memoryKnob && world === 'live' && !targetObservable) {
            // The target set at boot is not reported: live memory is the balloon's actual size.
            assert.equal(w.memory, o.balloon.actual, 'live.memory is the balloon\'s actual size (the target is not observable)');
          } else if (memoryKnob) {
            assert.equal(w.memory, s.memory, `${world}.memory is the VM's balloon target`);
          }
          if (w.reservation !== undefined) assert.ok(w.reservation >= 0n && w.reservation <= w.memory);
          if (w.limit !== undefined && w.limit !== 'unlimited') assert.ok(w.limit > 0n);
        }
        if (caps.balloonActual !== 'unreported') {
          assert.ok(o.balloon.actual !== undefined, 'balloon.actual is reported for a running VM');
          assert.ok(o.balloon.actual > 0n && o.balloon.actual <= s.maxMemory);
        }
      });
    });

    if (caps.create.shutOff) {
      test('observe a shut-off VM: no live world, config holds the next boot', { timeout: TEST_TIMEOUT }, async () => {
        await withVM({ powerState: 'ShutOff' }, async ({ driver, vm, spec: s }) => {
          const o = await driver.observe(vm);
          assert.equal(o.powerState, 'ShutOff');
          assert.equal(o.live, undefined, 'a shut-off VM has no live world');
          assert.ok(o.config);
          assert.equal(o.config.maxMemory, s.maxMemory);
          assert.equal(o.persistent, true);
        });
      });
    }

    if (caps.create.transient) {
      test('observe a transient VM: not persistent, no config world', { timeout: TEST_TIMEOUT }, async () => {
        await withVM({ persistent: false }, async ({ driver, vm, spec: s }) => {
          const o = await driver.observe(vm);
          assert.equal(o.persistent, false);
          assert.equal(o.config, undefined, 'a transient domain has no config world');
          assert.ok(o.live);
          assert.equal(o.live.maxMemory, s.maxMemory);
        });
      });
    }

    if (caps.create.withoutBalloon) {
      test('observe reports a missing balloon device', { timeout: TEST_TIMEOUT }, async () => {
        await withVM({ balloon: false, memory: BASE_MAX }, async ({ driver, vm }) => {
          assert.equal((await driver.observe(vm)).balloon.device, 'none');
        });
      });
    }

    // ---------------------------------------------------------- idempotence

    test('idempotence: observing twice gives the same result; an empty apply changes nothing', { timeout: TEST_TIMEOUT }, async () => {
      await withVM({}, async ({ driver, vm }) => {
        const first = await driver.observe(vm);
        const second = await driver.observe(vm);
        assert.deepEqual(second, first);
        const result = await driver.apply(vm, []);
        assert.deepEqual(result.applied, []);
        assert.deepEqual(await driver.observe(vm), first);
      });
    });

    // --------------------------------------------------------------- apply

    for (const cap of caps.applies) registerApply(cap);

    function registerApply(cap: ApplyCapability): void {
      const label = `apply ${cap.field} (${cap.world}) on a ${cap.power === 'Running' ? 'running' : 'shut-off'} VM${cap.hotAdd ? ' with hot-add' : ''}, then observe shows it`;
      test(label, { timeout: TEST_TIMEOUT }, async () => {
        const overrides: Partial<VMSpec> = { powerState: cap.power };
        if (cap.hotAdd) overrides.hotAdd = { enabled: true };
        await withVM(overrides, async ({ driver, vm }) => {
          const before = await driver.observe(vm);
          const w = before[cap.world];
          assert.ok(w, `the VM has a ${cap.world} world`);
          const targets: Step['to'][] =
            cap.field === 'maxMemory' ? [w.maxMemory + DELTA]
              : cap.field === 'memory' ? [w.memory + DELTA <= w.maxMemory ? w.memory + DELTA : w.memory - DELTA]
                : cap.field === 'reservation' ? [DELTA]
                  : [w.maxMemory + Gi, 'unlimited'];
          let current = before;
          for (const to of targets) {
            const step = stepFor(current, cap.field, cap.world, to);
            const result = await driver.apply(vm, [step]);
            assert.deepEqual(result.applied, [step]);
            // A live balloon target is reported at once (by the peer, or remembered by the driver
            // that set it); where the balloon follows, wait for it rather than assume it.
            const liveBalloon = cap.field === 'memory' && cap.world === 'live' && caps.balloonActual === 'follows';
            const after = liveBalloon
              ? await until(`${cap.field} to reach ${fmt(to)}`, balloonTimeout, async () => {
                const o = await driver.observe(vm);
                return o[cap.world]?.[cap.field] === to ? o : undefined;
              })
              : await driver.observe(vm);
            assert.equal(after[cap.world]?.[cap.field], to, `${cap.world}.${cap.field} after apply`);
            const other: World = cap.world === 'live' ? 'config' : 'live';
            if (caps.singleConfig) {
              if (after[other]) assert.equal(after[other][cap.field], to, `single configuration: ${other}.${cap.field} too`);
            } else if (current[other]) {
              assert.equal(after[other]?.[cap.field], current[other][cap.field], `${other}.${cap.field} must not change`);
            }
            current = after;
          }
        });
      });
    }

    const configMax = caps.applies.find((a) => a.field === 'maxMemory' && a.world === 'config' && a.power === 'Running');
    if (configMax && !caps.singleConfig) {
      test('a config change on a running VM takes effect at the next cold boot', { timeout: TEST_TIMEOUT }, async () => {
        await withVM({}, async ({ driver, vm, spec: s }) => {
          const before = await driver.observe(vm);
          const to = s.maxMemory + DELTA;
          await driver.apply(vm, [stepFor(before, 'maxMemory', 'config', to)]);
          assert.equal((await driver.observe(vm)).live?.maxMemory, s.maxMemory, 'live keeps the old maximum until restart');
          await fixture.powerOff(s.name);
          assert.equal((await driver.observe(vm)).powerState, 'ShutOff');
          await fixture.powerOn(s.name);
          const after = await until('the VM to run again', 30_000, async () => {
            const o = await driver.observe(vm);
            return o.powerState === 'Running' && o.live ? o : undefined;
          });
          assert.equal(after.live?.maxMemory, to);
        });
      });
    }

    const liveMemory = caps.applies.find((a) => a.field === 'memory' && a.world === 'live' && a.power === 'Running');
    if (liveMemory && caps.balloonActual !== 'unreported') {
      const label = caps.balloonActual === 'follows'
        ? 'after a live memory change, balloon.actual reaches the target'
        : 'after a live memory change without a guest balloon driver, balloon.actual stays put';
      test(label, { timeout: TEST_TIMEOUT }, async () => {
        await withVM({}, async ({ driver, vm, spec: s }) => {
          const before = await driver.observe(vm);
          // From the VM's own target (512Mi), not live.memory: where the target is not
          // observable that is the actual size, and actual + DELTA may exceed maxMemory.
          const to = s.memory + DELTA;
          await driver.apply(vm, [stepFor(before, 'memory', 'live', to)]);
          if (caps.balloonActual === 'follows') {
            await until('balloon.actual to reach the target', balloonTimeout, async () =>
              (await driver.observe(vm)).balloon.actual === to ? true : undefined);
          } else {
            await new Promise((r) => setTimeout(r, 300));
            const after = await driver.observe(vm);
            assert.equal(after.balloon.actual, before.balloon.actual, 'balloon.actual stays put');
            assert.equal(after.live?.memory, to, 'the accepted target is what live.memory reports');
          }
        });
      });

      if (targetObservable) {
        test('the live balloon target is observable: another connection sees the target this one set', { timeout: TEST_TIMEOUT }, async () => {
          await withVM({}, async ({ driver, vm, spec: s }) => {
            const to = s.memory + DELTA;
            await driver.apply(vm, [stepFor(await driver.observe(vm), 'memory', 'live', to)]);
            const other = await fixture.connect();
            try {
              assert.equal((await other.observe(await other.lookup({ uuid: vm.uuid }))).live?.memory, to);
            } finally {
              await other.close();
            }
          });
        });
      } else {
        test('the live balloon target is not observable: the driver reports the target it set; another connection and a cold boot report the actual size', { timeout: TEST_TIMEOUT }, async () => {
          await withVM({}, async ({ driver, vm, spec: s }) => {
            const to = s.memory + DELTA;
            await driver.apply(vm, [stepFor(await driver.observe(vm), 'memory', 'live', to)]);
            assert.equal((await driver.observe(vm)).live?.memory, to, 'the driver that set the target reports it');
            const other = await fixture.connect();
            try {
              const seen = await other.observe(await other.lookup({ uuid: vm.uuid }));
              assert.ok(seen.balloon.actual !== undefined, 'balloon.actual is reported');
              assert.equal(seen.live?.memory, seen.balloon.actual, 'another connection sees the actual size');
              if (caps.balloonActual === 'stays') assert.notEqual(seen.live?.memory, to, 'nothing moved, so the target is not what it sees');
            } finally {
              await other.close();
            }
            await fixture.powerOff(s.name);
            await fixture.powerOn(s.name);
            const booted = await until('the VM to run again', 30_000, async () => {
              const o = await driver.observe(vm);
              return o.powerState === 'Running' && o.live ? o : undefined;
            });
            assert.equal(booted.live?.memory, booted.balloon.actual, 'after a cold boot the remembered target is forgotten');
          });
        });
      }
    }

    // ------------------------------------------------------------- refuse

    for (const kind of caps.refusals) registerRefusal(kind);

    function registerRefusal(kind: RefusalKind): void {
      const r = refusalRecipe(kind);
      test(`refuses ${kind}: ${r.what}, with the hypervisor's own error`, { timeout: TEST_TIMEOUT }, async () => {
        await withVM(r.vm, async ({ driver, vm, spec: s }) => {
          const before = await driver.observe(vm);
          const step = r.step(before, s);
          let caught: unknown;
          try {
            await driver.apply(vm, [step]);
          } catch (err) {
            caught = err;
          }
          assert.ok(caught instanceof DriverError, `expected a refusal, got ${caught === undefined ? 'success' : String(caught)}`);
          assert.equal(caught.code, 'Refused', `code: ${caught.message}`);
          assert.ok(caught.op, 'op names the hypervisor call');
          assert.ok(caught.hypervisorMessage && caught.hypervisorMessage.length > 0, 'hypervisorMessage is the hypervisor\'s text');
          if (r.text) assert.match(caught.hypervisorMessage, r.text);
          assert.deepEqual(caught.applied, [], 'nothing applied');
          assert.deepEqual(await driver.observe(vm), before, 'a refused step changes nothing');
        });
      });
    }

    function refusalRecipe(kind: RefusalKind): { what: string; vm: Partial<VMSpec>; step: (o: ObservedVM, s: VMSpec) => Step; text?: RegExp } {
      const shutOffIfPossible: Partial<VMSpec> = caps.create.shutOff ? { powerState: 'ShutOff' } : {};
      switch (kind) {
        case 'liveMaxMemory':
          return { what: 'live maxMemory on a running domain', vm: {}, step: (o, s) => stepFor(o, 'maxMemory', 'live', s.maxMemory + DELTA), text: /cannot resize the maximum memory on an active domain/ };
        case 'memoryAboveMax':
          return { what: 'memory above maxMemory', vm: {}, step: (o, s) => stepFor(o, 'memory', 'live', s.maxMemory + DELTA), text: /cannot set memory higher than max memory/ };
        case 'liveOnShutOff':
          return { what: 'a live change on a shut-off domain', vm: { powerState: 'ShutOff' }, step: (o, s) => stepFor(o, 'memory', 'live', s.memory), text: /domain is not running/ };
        case 'configOnTransient':
          return { what: 'a config change on a transient domain', vm: { persistent: false }, step: (o, s) => stepFor(o, 'memory', 'config', s.memory), text: /transient domains do not have any persistent config/ };
        case 'reservationUnsupported':
          return { what: 'reservation (min_guarantee)', vm: {}, step: (o) => stepFor(o, 'reservation', 'live', DELTA), text: /not supported/ };
        case 'limitUnsupported':
          return { what: 'limit (hard_limit)', vm: {}, step: (o, s) => stepFor(o, 'limit', 'live', s.maxMemory + Gi), text: /not supported/ };
        case 'liveMemoryWithoutBalloon':
          return { what: 'live memory without a balloon device', vm: { balloon: false, memory: BASE_MAX }, step: (o, s) => stepFor(o, 'memory', 'live', s.maxMemory - DELTA), text: /without the balloon device/ };
        case 'numaMaxMemory':
          return { what: 'maxMemory of a domain with NUMA cells', vm: { numa: true, ...shutOffIfPossible }, step: (o, s) => stepFor(o, 'maxMemory', 'config', s.maxMemory + DELTA), text: /NUMA/ };
        case 'maxMemoryPoweredOnWithoutHotAdd':
          return { what: 'maxMemory while powered on without hot-add', vm: { hotAdd: { enabled: false } }, step: (o, s) => stepFor(o, 'maxMemory', 'config', s.maxMemory + DELTA) };
        case 'maxMemoryDecreasePoweredOn':
          return { what: 'a maxMemory decrease while powered on', vm: { hotAdd: { enabled: true } }, step: (o, s) => stepFor(o, 'maxMemory', 'config', s.maxMemory - DELTA) };
        case 'maxMemoryBeyondHotAddLimit':
          return { what: 'maxMemory beyond the hot-add limit', vm: { hotAdd: { enabled: true, limit: BASE_MAX + DELTA } }, step: (o, s) => stepFor(o, 'maxMemory', 'config', s.maxMemory + 2n * DELTA) };
        case 'memoryKnobAbsent':
          return { what: 'a balloon target where the hypervisor has none', vm: {}, step: (o, s) => stepFor(o, 'memory', 'config', s.maxMemory - DELTA) };
        case 'reservationAboveLimit':
          return { what: 'reservation above limit', vm: { limit: 2n * DELTA }, step: (o) => stepFor(o, 'reservation', 'config', 3n * DELTA) };
        case 'offGranularity':
          return { what: `a value off the ${caps.granularity}-byte granularity`, vm: shutOffIfPossible, step: (o, s) => stepFor(o, 'maxMemory', 'config', s.maxMemory + caps.granularity / 2n) };
      }
    }

    // ------------------------------------------------------ failure modes

    test('a VM that disappears: observe and apply fail with VMNotFound', { timeout: TEST_TIMEOUT }, async () => {
      const s = spec();
      await fixture.createVM(s);
      const driver = await fixture.connect();
      try {
        const vm = await driver.lookup({ name: s.name });
        const o = await driver.observe(vm);
        const cap = caps.applies.find((a) => a.power === 'Running') ?? { field: 'maxMemory', world: 'config' as const };
        const step = stepFor(o, cap.field, cap.world, cap.field === 'limit' ? 'unlimited' : (o[cap.world]?.[cap.field] as bigint) ?? s.maxMemory);
        await fixture.removeVM(s.name);
        await assert.rejects(driver.observe(vm), isDriverError('VMNotFound'));
        await assert.rejects(driver.apply(vm, [step]), isDriverError('VMNotFound'));
        await assert.rejects(driver.lookup({ name: s.name }), isDriverError('VMNotFound'));
      } finally {
        await driver.close();
        await fixture.removeVM(s.name);
      }
    });

    test('a dropped connection: calls fail with Disconnected or Unreachable, then a new connect works', { timeout: TEST_TIMEOUT }, async () => {
      await withVM({}, async ({ driver, vm }) => {
        await driver.identify();
        await fixture.dropConnections();
        await assert.rejects(
          until('the dropped connection to fail a call', 10_000, async () => {
            await driver.observe(vm);
            return undefined;
          }),
          isDriverError(['Disconnected', 'Unreachable']),
        );
        const fresh = await fixture.connect();
        try {
          assert.equal((await fresh.identify()).type, caps.type);
          const again = await fresh.lookup({ uuid: vm.uuid });
          assert.equal((await fresh.observe(again)).name, vm.name);
        } finally {
          await fresh.close();
        }
      });
    });

    if (caps.lifecycleEvents) {
      test('events report lifecycle changes of a VM', { timeout: TEST_TIMEOUT }, async () => {
        await withVM({}, async ({ driver, vm, spec: s }) => {
          assert.ok(driver.events, 'the driver implements events()');
          const seen: DriverEvent[] = [];
          const unsubscribe = await driver.events((e) => seen.push(e));
          try {
            await fixture.powerOff(s.name);
            await until('a lifecycle event for the VM', 10_000, async () =>
              seen.some((e) => e.kind === 'lifecycle' && e.vm.uuid.toLowerCase() === vm.uuid.toLowerCase()) ? true : undefined);
          } finally {
            await unsubscribe();
          }
        });
      });
    }
  });
}
