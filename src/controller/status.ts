/**
 * From what the planner said and the hypervisor reported to a
 * VirtualMachineMemory status (DESIGN §3 "From verdicts to conditions", §4).
 * Pure: the reconciler decides, this file only phrases.
 */
import { formatLimit, formatQuantity } from '../api/quantity.ts';
import { jsonEqual } from '../util/json-equal.ts';
import type { VMMStatus } from '../api/vmm.ts';
import type { HotplugState, Limit, ObservedVM, Plan, Verdict, WorldValues } from '../model/memory.ts';
import type { DesiredCondition } from './conditions.ts';
import { mergeConditions } from './conditions.ts';
import { hotplugCeiling, hotplugCurrent, hotplugRequested } from '../model/hotplug.ts';

const STALLING = new Set(['Unsupported', 'Unsafe', 'Invalid']);
const PENDING = new Set(['RestartRequired', 'AwaitingPowerOff']);

export type BalloonState =
  | { state: 'settled' }
  | { state: 'settling'; target: bigint; actual: bigint; sinceMs: number }
  | { state: 'unresponsive'; target: bigint; actual: bigint; waitedMs: number };

export interface VMMOutcome {
  observed: ObservedVM;
  plan: Plan;
  balloon: BalloonState;
  /** The VM shut off after vmmem's last change to it (stopped.ts): the StoppedAfterChange message. */
  stoppedAfterChange?: string;
}

/** A failure before the plan could run (hypervisor unreachable, VM not found, spec invalid, conflict). */
export interface VMMFailure {
  reason: string;
  message: string;
  /** true: the user must change something (kstatus Stalled); false: vmmem keeps retrying. */
  stalled: boolean;
  /** What was observed before the failure, when the VM was reached. */
  observed?: ObservedVM;
}

const fmt = (v: bigint | Limit | undefined) => (v === undefined ? undefined : typeof v === 'bigint' ? formatQuantity(v) : formatLimit(v));

/** The world whose values are in effect now: live while running, else the config. */
export function effectiveWorld(o: ObservedVM): WorldValues | undefined {
  return o.powerState !== 'ShutOff' && o.live ? o.live : o.config;
}

type ObservedStatus = NonNullable<VMMStatus['observed']>;

/**
 * status.observed: what is in effect now, the next boot's values, and the facts the planner
 * reads (balloon device, NUMA, ESX hot-add, which VM), so `vmmem plan --observed` can plan from
 * a saved status exactly as from the hypervisor (src/cli/plan-observed.ts reads it back).
 */
export function observedBlock(o: ObservedVM): ObservedStatus {
  const now = effectiveWorld(o);
  const block: ObservedStatus = {
    powerState: o.powerState,
    hypervisorType: o.type,
    persistent: o.persistent,
    maxMemory: fmt(now?.maxMemory),
    memory: fmt(now?.memory),
    actualMemory: fmt(o.balloon.actual),
    reservation: fmt(now?.reservation),
    limit: fmt(now?.limit),
    configMaxMemory: fmt(o.config?.maxMemory),
    configMemory: fmt(o.config?.memory),
    configReservation: fmt(o.config?.reservation),
    configLimit: fmt(o.config?.limit),
  };
  for (const k of Object.keys(block) as (keyof typeof block)[]) if (block[k] === undefined) delete block[k];
  if (o.guest) block.guest = { used: formatQuantity(o.guest.used), source: o.guest.source, ...(o.guest.sampledAt ? { sampledAt: o.guest.sampledAt } : {}) };
  if (now?.hotplug) block.hotplug = hotplugBlock(now.hotplug);
  if (o.config?.hotplug && o.powerState !== 'ShutOff' && o.live) block.configHotplug = hotplugBlock(o.config.hotplug);
  block.vm = { name: o.name, uuid: o.uuid };
  block.balloonDevice = o.balloon.device;
  if (o.numa) block.numa = true;
  if (o.hotAdd) {
    block.hotAdd = { enabled: o.hotAdd.enabled };
    if (o.hotAdd.limit !== undefined) block.hotAdd.limit = formatQuantity(o.hotAdd.limit);
    if (o.hotAdd.increment !== undefined) block.hotAdd.increment = formatQuantity(o.hotAdd.increment);
  }
  return block;
}

function hotplugBlock(h: HotplugState): NonNullable<ObservedStatus['hotplug']> {
  return {
    model: h.model,
    bootMemory: formatQuantity(h.boot),
    ceiling: formatQuantity(hotplugCeiling(h)),
    devices: h.devices.map((d) => {
      const dev: NonNullable<ObservedStatus['hotplug']>['devices'][number] = {
        blockSize: formatQuantity(d.block),
        size: formatQuantity(d.size),
        requested: formatQuantity(d.requested),
      };
      if (d.alias !== undefined) dev.alias = d.alias;
      if (d.node !== undefined) dev.node = d.node;
      if (d.current !== undefined) dev.current = formatQuantity(d.current);
      return dev;
    }),
  };
}

/** virtio-mem devices still plugging (or unplugging): requested and current of the live world, when they differ. */
function hotplugProgress(o: ObservedVM): { requested: bigint; current: bigint } | undefined {
  const h = o.powerState !== 'ShutOff' ? o.live?.hotplug : undefined;
  if (!h) return undefined;
  const current = hotplugCurrent(h);
  const requested = hotplugRequested(h);
  return current === undefined || current === requested ? undefined : { requested, current };
}

function joinMessages(verdicts: readonly Verdict[]): string {
  return verdicts.map((v) => v.message).join('; ');
}

/** Conditions, pending list and a one-line summary for an outcome. */
export function conditionsFor(outcome: VMMOutcome): { conditions: DesiredCondition[]; pending: NonNullable<VMMStatus['pending']>; summary: string } {
  const { plan, balloon } = outcome;
  // With virtio-mem the guest's memory is balloon + plugged blocks: when the devices lag, that is
  // what the wait is about (HotplugUnresponsive / HotplugPlugging), not the balloon.
  const plugging = hotplugProgress(outcome.observed);
  const stalling = plan.verdicts.filter((v) => STALLING.has(v.kind));
  const pendingVerdicts = plan.verdicts.filter((v) => PENDING.has(v.kind));
  const pending = pendingVerdicts.map((v) => ({ field: v.field, value: fmt(v.desired) as string, reason: v.kind, message: v.message }));

  const stalled: DesiredCondition = outcome.stoppedAfterChange
    ? { type: 'Stalled', status: 'True', reason: 'StoppedAfterChange', message: outcome.stoppedAfterChange }
    : stalling.length
    ? { type: 'Stalled', status: 'True', reason: stalling[0]?.reason ?? 'Unsupported', message: joinMessages(stalling) }
    : balloon.state === 'unresponsive' && plugging
      ? {
          type: 'Stalled',
          status: 'True',
          reason: 'HotplugUnresponsive',
          message: `maxMemory: the guest plugged ${formatQuantity(plugging.current)} of the ${formatQuantity(plugging.requested)} its virtio-mem devices request within ${Math.round(balloon.waitedMs / 1000)}s (it holds ${formatQuantity(balloon.actual)} of ${formatQuantity(balloon.target)}); is the guest's virtio_mem driver loaded and onlining memory?`,
        }
    : balloon.state === 'unresponsive'
      ? {
          type: 'Stalled',
          status: 'True',
          reason: 'BalloonUnresponsive',
          message: `memory: the balloon did not reach ${formatQuantity(balloon.target)} within ${Math.round(balloon.waitedMs / 1000)}s (the guest holds ${formatQuantity(balloon.actual)}); is the guest's balloon driver loaded?`,
        }
      : { type: 'Stalled', status: 'False', reason: 'AsExpected', message: 'nothing blocks the declared memory' };

  const restart: DesiredCondition = pendingVerdicts.length
    ? {
        type: 'RestartRequired',
        status: 'True',
        reason: pendingVerdicts.some((v) => v.kind === 'AwaitingPowerOff') ? 'AwaitingPowerOff' : 'RestartRequired',
        message: joinMessages(pendingVerdicts),
      }
    : { type: 'RestartRequired', status: 'False', reason: 'AsExpected', message: 'every declared value is in effect or being applied' };

  const reconciling: DesiredCondition =
    balloon.state === 'settling' && plugging
      ? {
          type: 'Reconciling',
          status: 'True',
          reason: plugging.current < plugging.requested ? 'HotplugPlugging' : 'HotplugUnplugging',
          message: `maxMemory: the guest has plugged ${formatQuantity(plugging.current)} of ${formatQuantity(plugging.requested)} requested (it holds ${formatQuantity(balloon.actual)}, target ${formatQuantity(balloon.target)})`,
        }
    : balloon.state === 'settling'
      ? {
          type: 'Reconciling',
          status: 'True',
          reason: balloon.target < balloon.actual ? 'BalloonInflating' : 'BalloonDeflating',
          message: `memory: guest holds ${formatQuantity(balloon.actual)}, balloon target ${formatQuantity(balloon.target)}`,
        }
      : { type: 'Reconciling', status: 'False', reason: 'AsExpected', message: 'no change in progress' };

  let ready: DesiredCondition;
  if (stalled.status === 'True') ready = { type: 'Ready', status: 'False', reason: stalled.reason, message: stalled.message };
  else if (restart.status === 'True') ready = { type: 'Ready', status: 'False', reason: restart.reason, message: restart.message };
  else if (reconciling.status === 'True') ready = { type: 'Ready', status: 'False', reason: reconciling.reason, message: reconciling.message };
  else {
    const inEffect = plan.verdicts.map((v) => `${v.field} ${fmt(v.desired)}`).join(', ');
    ready = { type: 'Ready', status: 'True', reason: 'Converged', message: `in effect: ${inEffect}` };
  }
  // A shrink vmmem could not guard (no guest statistics) or was told not to is said where users look.
  const guard = plan.shrinkGuard;
  if (guard && (guard.state === 'unguarded' || guard.state === 'overridden') && stalled.status !== 'True') ready.message += `; ${guard.message}`;
  return { conditions: [ready, reconciling, stalled, restart], pending, summary: `${ready.reason}: ${ready.message}` };
}

export function statusForOutcome(existing: VMMStatus | undefined, generation: number, outcome: VMMOutcome, now: string): VMMStatus {
  const { conditions, pending } = conditionsFor(outcome);
  const status: VMMStatus = {
    observedGeneration: generation,
    conditions: mergeConditions(existing?.conditions, conditions, generation, now),
    observed: observedBlock(outcome.observed),
    lastSyncTime: now,
  };
  if (pending.length) status.pending = pending;
  return status;
}

export function statusForFailure(existing: VMMStatus | undefined, generation: number, failure: VMMFailure, now: string): VMMStatus {
  const conditions: DesiredCondition[] = [
    { type: 'Ready', status: 'False', reason: failure.reason, message: failure.message },
    failure.stalled
      ? { type: 'Reconciling', status: 'False', reason: failure.reason, message: 'waiting for the spec to change' }
      : { type: 'Reconciling', status: 'True', reason: failure.reason, message: `retrying: ${failure.message}` },
    failure.stalled
      ? { type: 'Stalled', status: 'True', reason: failure.reason, message: failure.message }
      : { type: 'Stalled', status: 'False', reason: 'Retrying', message: 'vmmem retries with backoff' },
  ];
  // Keep what we knew of the VM and of pending restarts: a failure to reach
  // the hypervisor does not make a staged change less pending.
  const restart = existing?.conditions?.find((c) => c.type === 'RestartRequired');
  if (restart) conditions.push({ type: 'RestartRequired', status: restart.status, reason: restart.reason, message: restart.message });
  const status: VMMStatus = {
    observedGeneration: generation,
    conditions: mergeConditions(existing?.conditions, conditions, generation, now),
    lastSyncTime: now,
  };
  if (failure.observed) status.observed = observedBlock(failure.observed);
  else if (existing?.observed && !failure.stalled) status.observed = existing.observed;
  if (existing?.pending && restart?.status === 'True') status.pending = existing.pending;
  return status;
}

/** The first status a VMM gets (DESIGN §4): Ready=Unknown + Reconciling=True + observedGeneration, in one write. */
export function initialStatus(generation: number, now: string): VMMStatus {
  return {
    observedGeneration: generation,
    conditions: mergeConditions(
      undefined,
      [
        { type: 'Ready', status: 'Unknown', reason: 'Reconciling', message: 'vmmem is observing the VM' },
        { type: 'Reconciling', status: 'True', reason: 'FirstObservation', message: 'vmmem is observing the VM' },
      ],
      generation,
      now,
    ),
  };
}

/**
 * Two statuses equal but for lastSyncTime: no need to write. Compared
 * canonically: the API server returns keys in its own order, and a
 * key-order difference must not look like a change (it would write on every
 * pass, and every write comes back as a watch event).
 */
export function sameStatus(a: unknown, b: unknown): boolean {
  return jsonEqual(withoutSyncTime(a), withoutSyncTime(b));
}

function withoutSyncTime(v: unknown): unknown {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return v;
  const { lastSyncTime: _, ...rest } = v as Record<string, unknown>;
  return rest;
}
