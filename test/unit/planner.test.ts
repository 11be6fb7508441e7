/**
 * Property tests for the planner (DESIGN §3): for every profile and random
 * observed/desired states, the plan keeps each world's invariants after every
 * single step, never touches an unmanaged knob, ends at desired or says why
 * not, and is idempotent. The last tests run the same property against
 * deliberately broken orderings and require a counterexample, so the suite
 * proves it can catch an ordering bug.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { checkInvariants, plan } from '../../src/planner/plan.ts';
import { applyStepsToObserved } from '../support/step-simulator.ts';
import { PROFILES, profileFor } from '../../src/model/profiles.ts';
import { FIELDS, HYPERVISOR_TYPES } from '../../src/model/memory.ts';
import type {
  DesiredMemory,
  Field,
  HypervisorType,
  Limit,
  ObservedVM,
  Plan,
  PowerState,
  Step,
  WorldValues,
} from '../../src/model/memory.ts';
import type { Profile } from '../../src/model/profiles.ts';
import { SimHost } from '../../src/drivers/sim/index.ts';
import type { SimVMState } from '../../src/drivers/sim/index.ts';

const MiB = 1024n * 1024n;
const U = 256n * MiB;
const RUNS = Number(process.env.VMMEM_PLANNER_RUNS ?? 10_000);

type Planner = (d: DesiredMemory, o: ObservedVM, p: Profile) => Plan;

// ---------------------------------------------------------------------------
// Arbitraries: small integer grids (cheap, and equalities happen often)

const units = (lo: number, hi: number) => fc.integer({ min: lo, max: hi }).map((k) => BigInt(k) * U);

/** A valid libvirt world: reservation unsupported (absent); optional hard_limit. */
const libvirtWorld: fc.Arbitrary<WorldValues> = fc
  .tuple(fc.integer({ min: 1, max: 16 }), fc.integer({ min: 1, max: 16 }), fc.oneof(
    fc.constant<Limit | undefined>(undefined),
    fc.constant<Limit | undefined>('unlimited'),
    units(1, 24) as fc.Arbitrary<Limit | undefined>,
  ))
  .map(([a, b, limit]) => {
    const w: WorldValues = { maxMemory: BigInt(Math.max(a, b)) * U, memory: BigInt(Math.min(a, b)) * U };
    if (limit !== undefined) w.limit = limit;
    return w;
  });

/** A valid ESX configuration: memory = min(memoryMB, limit) as its driver reports it. */
const esxWorld: fc.Arbitrary<WorldValues> = fc
  .tuple(fc.integer({ min: 1, max: 16 }), fc.oneof(fc.constant<Limit>('unlimited'), units(1, 20) as fc.Arbitrary<Limit>), fc.integer({ min: 0, max: 16 }))
  .map(([m, limit, r]) => {
    const maxMemory = BigInt(m) * U;
    const memory = typeof limit === 'bigint' && limit < maxMemory ? limit : maxMemory;
    const reservation = BigInt(r) * U > memory ? memory : BigInt(r) * U;
    return { maxMemory, memory, reservation, limit };
  });

const jitter = fc.constantFrom(0n, 0n, 0n, 0n, 0n, 1n, 1000n, 1023n * 1024n);

/** Random desired values near the observed grid, sometimes needing rounding, sometimes invalid. */
const randomDesired: fc.Arbitrary<DesiredMemory> = fc
  .record({
    a: fc.integer({ min: 1, max: 16 }),
    b: fc.integer({ min: 1, max: 16 }),
    r: fc.option(fc.integer({ min: 0, max: 16 }), { freq: 2 }),
    limit: fc.option(fc.oneof(fc.constant<Limit>('unlimited'), units(1, 24) as fc.Arbitrary<Limit>), { freq: 2 }),
    unsafeOk: fc.boolean(),
    jm: jitter,
    jx: jitter,
    invalid: fc.integer({ min: 0, max: 19 }),
  })
  .map(({ a, b, r, limit, unsafeOk, jm, jx, invalid }) => {
    let maxMemory = BigInt(Math.max(a, b)) * U;
    let memory = BigInt(Math.min(a, b)) * U;
    if (memory !== maxMemory) memory += jm;
    maxMemory += jx;
    if (memory > maxMemory) memory = maxMemory;
    const d: DesiredMemory = { maxMemory, memory };
    if (r !== null) d.reservation = BigInt(r) * U > memory ? memory : BigInt(r) * U;
    if (limit !== null) d.limit = typeof limit === 'bigint' && d.reservation !== undefined && limit < d.reservation ? d.reservation : limit;
    if (unsafeOk) d.allowUnsafeLimit = true;
    if (invalid === 0) d.memory = d.maxMemory + U; // memory > maxMemory
    if (invalid === 1 && d.reservation !== undefined) d.reservation = d.memory + U;
    if (invalid === 2 && typeof d.limit === 'bigint' && d.reservation !== undefined) d.limit = d.reservation - 1n;
    return d;
  });

function vmArb(type: HypervisorType): fc.Arbitrary<ObservedVM> {
  const esx = type === 'esx';
  const world = esx ? esxWorld : libvirtWorld;
  return fc
    .record({
      powerState: fc.constantFrom<PowerState>('Running', 'Paused', 'ShutOff'),
      persistent: esx ? fc.constant(true) : fc.integer({ min: 0, max: 4 }).map((k) => k > 0),
      live: world,
      config: world,
      balloon: fc.constantFrom<'present' | 'none'>('present', 'present', 'none'),
      numa: type === 'qemu' || type === 'test' ? fc.boolean() : fc.constant(false),
      hotEnabled: fc.boolean(),
      hotLimit: fc.option(units(4, 20)),
      hotIncrement: fc.option(fc.constantFrom(128n * MiB, U, 2n * U)),
    })
    .map(({ powerState, persistent, live, config, balloon, numa, hotEnabled, hotLimit, hotIncrement }) => {
      const on = powerState !== 'ShutOff';
      const vm: ObservedVM = {
        name: 'vm',
        uuid: '00000000-0000-0000-0000-000000000001',
        type,
        powerState,
        persistent: persistent || !on, // a shut-off transient domain does not exist
        balloon: { device: balloon },
        numa,
      };
      if (esx) {
        vm.config = config;
        if (on) vm.live = { ...config };
        vm.hotAdd = { enabled: hotEnabled };
        if (hotLimit !== null) vm.hotAdd.limit = hotLimit;
        if (hotIncrement !== null) vm.hotAdd.increment = hotIncrement;
      } else {
        if (on) vm.live = balloon === 'none' ? { ...live, memory: live.maxMemory } : live;
        if (vm.persistent) vm.config = config;
      }
      return vm;
    });
}

/** Desired = what a world already holds (converged), or random. */
function desiredArb(vm: fc.Arbitrary<ObservedVM>): fc.Arbitrary<[ObservedVM, DesiredMemory]> {
  return fc.tuple(vm, randomDesired, fc.integer({ min: 0, max: 3 }), fc.boolean(), fc.boolean()).map(([o, rnd, mode, keepR, keepL]) => {
    const w = mode === 0 ? (o.config ?? o.live) : mode === 1 ? (o.live ?? o.config) : undefined;
    if (!w) return [o, rnd];
    const d: DesiredMemory = { maxMemory: w.maxMemory, memory: w.memory };
    if (keepR && w.reservation !== undefined) d.reservation = w.reservation;
    if (keepL && w.limit !== undefined) d.limit = w.limit;
    if (rnd.allowUnsafeLimit) d.allowUnsafeLimit = true;
    return [o, d];
  });
}

// ---------------------------------------------------------------------------
// The property

const norm = (f: Field, v: bigint | Limit | undefined) =>
  v === undefined ? (f === 'limit' ? 'unlimited' : f === 'reservation' ? 0n : undefined) : v;

function managed(d: DesiredMemory): Field[] {
  return FIELDS.filter((f) => d[f] !== undefined);
}

function worldsOf(vm: ObservedVM, profile: Profile): ['live' | 'config', WorldValues][] {
  const out: ['live' | 'config', WorldValues][] = [];
  if (profile.worlds === 'single') {
    const w = vm.config ?? vm.live;
    if (w) out.push(['config', w]);
    return out;
  }
  if (vm.powerState !== 'ShutOff' && vm.live) out.push(['live', vm.live]);
  if (vm.persistent && vm.config) out.push(['config', vm.config]);
  return out;
}

function isValid(d: DesiredMemory): boolean {
  return !(
    d.memory > d.maxMemory ||
    (d.reservation !== undefined && d.reservation > d.memory) ||
    (typeof d.limit === 'bigint' && d.reservation !== undefined && d.limit < d.reservation)
  );
}

/** The value a world holds for a field, as the verdict's `desired` is expressed. */
function held(profile: Profile, w: WorldValues, f: Field): bigint | Limit | undefined {
  if (profile.memoryVia === 'limit' && f === 'memory') {
    return typeof w.limit === 'bigint' && w.limit < w.maxMemory ? w.limit : w.maxMemory;
  }
  return w[f];
}

const up = (v: bigint, g: bigint) => (v % g === 0n ? v : v + g - (v % g));

/** What the hypervisor should end up holding per field, computed from DESIGN §1–§2 independently of the planner. */
function expectedHeld(profile: Profile, d: DesiredMemory, f: Field): bigint | Limit {
  const g = (x: Field) => profile.fields[x].granularity;
  const max = up(d.maxMemory, g('maxMemory'));
  const mem = d.memory === d.maxMemory ? max : up(d.memory, g('memory'));
  const lim = typeof d.limit === 'bigint' ? up(d.limit, g('limit')) : d.limit;
  if (f === 'maxMemory') return max;
  if (f === 'reservation') return up(d.reservation!, g('reservation'));
  if (profile.memoryVia === 'limit') {
    const held = typeof lim === 'bigint' && lim < mem ? lim : mem;
    if (f === 'memory') return held;
    return lim === 'unlimited' && mem === max ? 'unlimited' : held;
  }
  return f === 'memory' ? mem : lim!;
}

/** Throws (with a reason) when the plan breaks a property. */
function checkPlan(planner: Planner, profile: Profile, vm: ObservedVM, desired: DesiredMemory): void {
  const p = planner(desired, vm, profile);
  const fields = managed(desired);

  // One verdict per managed field, canonical order.
  assert.deepEqual(p.verdicts.map((v) => v.field), fields, 'one verdict per managed field');
  for (const v of p.verdicts) {
    assert.ok(v.message.includes(v.field), `message names the field: ${v.message}`);
    assert.ok(v.message.includes(v.reason), `message names the reason: ${v.message}`);
  }
  if (!isValid(desired)) {
    assert.equal(p.steps.length, 0, 'invalid spec: no steps');
    assert.ok(p.verdicts.every((v) => v.kind === 'Invalid'), 'invalid spec: Invalid verdicts');
    return;
  }

  // No step touches an unmanaged knob (on ESX the limit knob is memory's knob too).
  for (const s of p.steps) {
    const owner = s.field === 'limit' && profile.memoryVia === 'limit' ? 'memory' : s.field;
    assert.ok(desired[owner] !== undefined || desired[s.field] !== undefined, `step touches unmanaged ${s.field}`);
  }

  // Every single step is accepted and every intermediate state keeps the invariants.
  let state = vm;
  for (const [world, w] of worldsOf(state, profile)) {
    assert.deepEqual(checkInvariants(w), [], `observed ${world} must be valid (generator)`);
  }
  for (let i = 0; i < p.steps.length; i++) {
    state = applyStepsToObserved(state, [p.steps[i]!], profile);
    for (const [world, w] of worldsOf(state, profile)) {
      const bad = checkInvariants(w);
      assert.deepEqual(bad, [], `after step ${i + 1} (${p.steps[i]!.world} ${p.steps[i]!.field}) ${world} breaks ${bad.join(', ')}`);
    }
  }

  // Unmanaged knobs are unchanged in every world.
  for (const f of FIELDS) {
    if (desired[f] !== undefined) continue;
    if (f === 'limit' && profile.memoryVia === 'limit') continue;
    for (const world of ['live', 'config'] as const) {
      if (f === 'memory') continue;
      if (profile.worlds === 'single' && world === 'live') continue;
      assert.equal(state[world]?.[f], vm[world]?.[f], `unmanaged ${f} changed in ${world}`);
    }
  }

  // Applied ⇔ every world holds the desired value (Xen's live maxMemory still needs its restart).
  const worlds = worldsOf(state, profile);
  for (const v of p.verdicts) {
    const reached = worlds.length > 0 && worlds.every(([, w]) => norm(v.field, held(profile, w, v.field)) === norm(v.field, v.desired));
    const xenBoot = profile.fields[v.field].liveTakesEffectAtBoot && p.steps.some((s) => s.field === v.field && s.world === 'live');
    if (v.kind === 'Applied') assert.ok(reached, `${v.field} Applied but not reached: ${v.message}`);
    else if (reached && !xenBoot && profile.fields[v.field].supported) assert.fail(`${v.field} reached but verdict ${v.kind}: ${v.message}`);
    if (v.kind === 'RestartRequired' && !xenBoot) {
      assert.ok(state.config && state.config[v.field] !== undefined, 'RestartRequired needs a config that holds it');
    }
    assert.equal(v.desired, expectedHeld(profile, desired, v.field), `${v.field}: verdict.desired is what the hypervisor should hold`);
  }

  // Idempotent: planning again yields no steps and the same verdicts.
  const again = planner(desired, state, profile);
  assert.deepEqual(again.steps, [], `second plan not empty: ${JSON.stringify(again.steps, (_k, x) => (typeof x === 'bigint' ? `${x}` : x))}`);
  for (let i = 0; i < p.verdicts.length; i++) {
    const a = p.verdicts[i]!;
    const b = again.verdicts[i]!;
    const xenBoot = a.kind === 'RestartRequired' && profile.fields[a.field].liveTakesEffectAtBoot;
    if (!xenBoot) assert.equal(b.kind, a.kind, `verdict of ${a.field} changed on re-plan: ${a.message} / ${b.message}`);
  }
}

function property(planner: Planner, type: HypervisorType) {
  const profile = profileFor(type);
  return fc.property(desiredArb(vmArb(type)), ([vm, desired]) => {
    checkPlan(planner, profile, vm, desired);
  });
}

for (const type of HYPERVISOR_TYPES) {
  test(`planner properties hold for ${type} (${RUNS} cases)`, () => {
    fc.assert(property(plan, type), { numRuns: RUNS });
  });
}

test('a converged VM gets an empty plan and Applied verdicts, on every profile', () => {
  for (const type of HYPERVISOR_TYPES) {
    fc.assert(
      fc.property(vmArb(type), (vm) => {
        const w = vm.config ?? vm.live;
        if (!w) return;
        if (vm.live && vm.config && (vm.live.maxMemory !== vm.config.maxMemory || vm.live.memory !== vm.config.memory)) return;
        const profile = PROFILES[type];
        const d: DesiredMemory = { maxMemory: w.maxMemory, memory: w.memory };
        const p = plan(d, vm, profile);
        if (vm.numa || vm.balloon.device === 'none') return;
        assert.deepEqual(p.steps, []);
        assert.ok(p.verdicts.every((v) => v.kind === 'Applied'), JSON.stringify(p.verdicts.map((v) => v.message)));
      }),
      { numRuns: 500 },
    );
  }
});

// ---------------------------------------------------------------------------
// The suite proves its own power: broken orderings must be caught.

/** Emits every memory step before any maxMemory step ("content before container"). */
const memoryBeforeMaxMemory: Planner = (d, o, p) => {
  const r = plan(d, o, p);
  const first = r.steps.filter((s) => s.field === 'memory');
  return { ...r, steps: [...first, ...r.steps.filter((s) => s.field !== 'memory')] };
};

/** Emits reservation steps before limit steps ("raise reservation before limit"). */
const reservationBeforeLimit: Planner = (d, o, p) => {
  const r = plan(d, o, p);
  const first = r.steps.filter((s) => s.field === 'reservation');
  return { ...r, steps: [...first, ...r.steps.filter((s) => s.field !== 'reservation')] };
};

const show = (x: unknown) => JSON.stringify(x, (_k, v) => (typeof v === 'bigint' ? `${v}` : v));

for (const [name, broken, type] of [
  ['memory before maxMemory', memoryBeforeMaxMemory, 'qemu'],
  ['memory before maxMemory', memoryBeforeMaxMemory, 'test'],
  ['reservation before limit', reservationBeforeLimit, 'esx'],
] as const) {
  test(`the properties catch a broken ordering: ${name} on ${type}`, () => {
    const result = fc.check(property(broken, type), { numRuns: RUNS, seed: 42 });
    assert.ok(result.failed, 'the broken planner must be caught');
    const [vm, desired] = result.counterexample![0];
    const steps = broken(desired, vm, profileFor(type)).steps;
    const error = result.errorInstance instanceof Error ? result.errorInstance.message.split('\n')[0] : String(result.errorInstance);
    console.log(
      `broken ordering "${name}" on ${type}: counterexample after ${result.numRuns} runs, ${result.numShrinks} shrinks\n` +
        `  observed: ${show({ powerState: vm.powerState, persistent: vm.persistent, live: vm.live, config: vm.config })}\n` +
        `  desired:  ${show(desired)}\n  steps:    ${show(steps)}\n  failure:  ${error}`,
    );
  });
}

// ---------------------------------------------------------------------------
// Cross-check against the sim host (src/drivers/sim), which encodes the
// hypervisors' refusal rules independently of the profiles: every planned
// step is accepted there too, and both simulations end in the same values.

const SIM_RUNS = Math.max(1, Math.floor(RUNS / 5));

function simVM(o: ObservedVM): SimVMState {
  const s: SimVMState = {
    name: o.name,
    uuid: o.uuid,
    type: o.type,
    powerState: o.powerState,
    persistent: o.persistent,
    numa: o.numa,
    balloon: o.balloon.device === 'none' ? 'none' : 'responsive',
    balloonDelayMs: 0,
  };
  if (o.type === 'esx') {
    s.config = { ...o.config! };
    s.hotAdd = { ...o.hotAdd! };
    return s;
  }
  if (o.live) {
    s.live = { ...o.live };
    s.actual = o.live.memory;
  }
  if (o.config) s.config = { ...o.config };
  return s;
}

function applyOnSim(host: SimHost, o: ObservedVM, step: Step): void {
  const h = host.lookupByName(o.name);
  const flags = { live: step.world === 'live', config: step.world === 'config' };
  const kib = (v: bigint | Limit) => (v === 'unlimited' ? 'unlimited' : v / 1024n);
  if (o.type !== 'esx') {
    if (step.field === 'maxMemory' || step.field === 'memory') {
      host.virDomainSetMemoryFlags(h, step.to as bigint / 1024n, { ...flags, maximum: step.field === 'maxMemory' });
    } else {
      host.virDomainSetMemoryParameters(h, { [step.field === 'limit' ? 'hard_limit' : 'min_guarantee']: kib(step.to) }, flags);
    }
    return;
  }
  const c = host.vm(o.name)!.config!;
  const mb = (v: bigint | Limit | undefined) => (v === undefined || v === 'unlimited' ? -1 : Number(v / MiB));
  const alloc = { reservation: mb(c.reservation ?? 0n), limit: mb(c.limit) };
  if (step.field === 'maxMemory') host.ReconfigVM_Task(h, { memoryMB: mb(step.to), memoryAllocation: alloc });
  else if (step.field === 'reservation') host.ReconfigVM_Task(h, { memoryAllocation: { ...alloc, reservation: mb(step.to) } });
  else host.ReconfigVM_Task(h, { memoryAllocation: { ...alloc, limit: mb(step.to) } });
}

for (const type of HYPERVISOR_TYPES) {
  test(`every planned step is accepted by the independent sim host (${type}, ${SIM_RUNS} cases)`, () => {
    const profile = profileFor(type);
    fc.assert(
      fc.property(desiredArb(vmArb(type)), ([o, desired]) => {
        const host = new SimHost('memory:planner', 'sim:memory:planner', {
          hostMemory: 1024n * 1024n * MiB,
          latency: { meanMs: 0, jitterMs: 0 },
          faults: { errorRate: 0, seed: 1 },
          qemuOverhead: 256n * MiB,
          vms: [simVM(o)],
        });
        const p = plan(desired, o, profile);
        for (const step of p.steps) {
          applyOnSim(host, o, step);
          // allowUnsafeLimit is the user's explicit opt-in to what the sim then does: OOM-kill the QEMU process.
          if (desired.allowUnsafeLimit && host.vm(o.name)?.powerState !== o.powerState) return;
        }
        const mine = applyStepsToObserved(o, p.steps, profile);
        const theirs = host.vm(o.name);
        assert.ok(theirs && theirs.powerState === o.powerState, 'the sim VM was not OOM-killed');
        for (const world of ['live', 'config'] as const) {
          if (type === 'esx' && world === 'live') continue;
          for (const f of FIELDS) {
            if (type === 'esx' && f === 'memory') continue; // the sim reports memoryMB there
            assert.equal(norm(f, theirs[world]?.[f]), norm(f, mine[world]?.[f]), `${world}.${f}: sim and planner simulation agree`);
          }
        }
      }),
      { numRuns: SIM_RUNS },
    );
  });
}
