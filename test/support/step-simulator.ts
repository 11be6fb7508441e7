/**
 * Test support, not shipped: a pure model of a hypervisor with a given
 * profile applying planner steps, so the planner's property and matrix tests
 * can check each intermediate state without a peer. It models what the real
 * hypervisors do (libvirt lowers config memory with config maxMemory; ESX
 * memory follows min(memoryMB, limit) and the running VM is its
 * configuration) and refuses what they refuse. The sim driver
 * (src/drivers/sim) is the shipped simulator; this one is the planner's
 * oracle, kept independent of it on purpose.
 */
import type { ObservedVM, Step, WorldValues } from '../../src/model/memory.ts';
import type { Profile } from '../../src/model/profiles.ts';
import { effectiveMemory, poweredOnRefusal } from '../../src/planner/single.ts';
import { formatValue } from '../../src/planner/values.ts';

/** A step the simulated hypervisor refuses, with the hypervisor's kind of message. */
export class StepRefused extends Error {
  readonly step: Step;
  constructor(step: Step, message: string) {
    super(`${step.world} ${step.field} ${formatValue(step.from)} → ${formatValue(step.to)} refused: ${message}`);
    this.name = 'StepRefused';
    this.step = step;
  }
}

function cloneWorld(w: WorldValues | undefined): WorldValues | undefined {
  return w ? { ...w } : undefined;
}

/**
 * Pure simulation of a hypervisor with `profile` applying `steps` in order:
 * returns the next ObservedVM (the input is not modified). Models what the
 * real hypervisors do, side effects included (libvirt lowers config memory
 * with config maxMemory; ESX memory follows min(memoryMB, limit) and the
 * running VM is its configuration). Throws StepRefused for a step the
 * hypervisor would refuse (live change on a shut-off or transient-config
 * domain, live maxMemory on QEMU, memory above maxMemory, ESX shrink while
 * powered on, ...). Invariants between steps are not enforced here:
 * check them with checkInvariants.
 */
export function applyStepsToObserved(observed: ObservedVM, steps: readonly Step[], profile: Profile): ObservedVM {
  const next: ObservedVM = {
    ...observed,
    balloon: { ...observed.balloon },
    live: cloneWorld(observed.live),
    config: cloneWorld(observed.config),
  };
  if (observed.hotAdd) next.hotAdd = { ...observed.hotAdd };
  for (const step of steps) applyOne(next, step, profile);
  return next;
}

function applyOne(vm: ObservedVM, step: Step, profile: Profile): void {
  const cap = profile.fields[step.field];
  const refuse = (msg: string): never => {
    throw new StepRefused(step, msg);
  };
  if (!cap.supported) refuse(cap.unsupportedWhy ?? 'unsupported');
  const poweredOn = vm.powerState !== 'ShutOff';

  if (profile.worlds === 'single') {
    if (step.world !== 'config') refuse('this hypervisor has a single configuration: steps go to world config');
    const w = vm.config ?? vm.live ?? refuse('no configuration');
    if (poweredOn && cap.poweredOn !== 'any') {
      const why = poweredOnRefusal(cap.poweredOn as 'hotAddIncrease' | 'none', w[step.field], step.to, vm);
      if (why) refuse(why);
    }
    if (step.field === 'memory') refuse('ESX has no memory knob: memory goes through limit');
    setKnob(w, step);
    w.memory = effectiveMemory(w.maxMemory, w.limit);
    if (vm.config && vm.live && poweredOn) vm.live = { ...vm.config };
    return;
  }

  if (step.field === 'maxMemory' && cap.refusedWithNuma && vm.numa) refuse('NUMA domains refuse maxMemory changes through this API');
  let w: WorldValues;
  if (step.world === 'live') {
    if (!poweredOn || !vm.live) return refuse('domain is not running');
    if (!cap.live) refuse(`cannot resize the ${step.field} on an active domain`);
    if (cap.liveNeedsBalloon && vm.balloon.device === 'none') refuse('no balloon device');
    w = vm.live;
  } else {
    if (!vm.persistent || !vm.config) return refuse('transient domains do not have any persistent config');
    if (!cap.config) refuse(`cannot change ${step.field} in config`);
    w = vm.config;
  }
  if (typeof step.to === 'bigint' && step.field === 'memory' && profile.enforcesMemoryAtMostMax && step.to > w.maxMemory) {
    refuse('cannot set memory higher than max memory');
  }
  if (typeof step.to === 'bigint' && step.field === 'maxMemory' && step.to < w.memory) {
    if (step.world === 'config' && profile.maxMemoryLowersMemory) w.memory = step.to;
    else refuse('cannot set max memory below the current balloon target');
  }
  setKnob(w, step);
}

function setKnob(w: WorldValues, step: Step): void {
  const to = step.to;
  if (step.field === 'limit') {
    w.limit = to;
  } else if (typeof to === 'bigint') {
    w[step.field] = to;
  } else {
    throw new StepRefused(step, `${step.field} cannot be ${formatValue(to)}`);
  }
}
