/**
 * Truth after an opted-in risk (issue #12.6). spec.allowUnsafeLimit lets a QEMU hard_limit go
 * below guest memory + overhead, and the kernel then OOM-kills QEMU: the VM is shut off, its
 * config holds every declared value, and the planner alone would call that Converged. So the
 * VMM reconciler remembers the last change it applied to a running VM, and a VM found shut off
 * after it is reported Ready=False / Stalled=True, reason StoppedAfterChange, naming the change.
 *
 * "After it", while the generation that made the change is current: within
 * STOPPED_AFTER_CHANGE_WINDOW_MS of the change, a crash (ObservedVM.stopReason) or, after a change
 * that carried a known risk (the unsafe limit), any stop (not every hypervisor says why a VM
 * stopped); later, a crash while the risky value is still in effect. A plain shutdown after a
 * routine change is not blamed on the change.
 * vmmem never starts a VM: the user does, after raising the limit.
 */
import { formatLimit, formatQuantity } from '../api/quantity.ts';
import type { DesiredMemory, ObservedVM, Step } from '../model/memory.ts';
import type { Profile } from '../model/profiles.ts';
import { describeStep } from './reconcile-support.ts';

/** How long after a change a stop may be blamed on it without a crash reason, or a crash after a routine change. */
export const STOPPED_AFTER_CHANGE_WINDOW_MS = 5 * 60_000;

export const STOPPED_AFTER_CHANGE = 'StoppedAfterChange';

/** A change vmmem applied to a running VM (kept in the VMM's in-memory memo). */
export interface AppliedChange {
  generation: number;
  /** ms since epoch, and the same as RFC 3339 for the message. */
  at: number;
  atText: string;
  /** What was sent, and why it was risky when it was (the unsafe limit). */
  change: string;
  /** The change carried a known risk of stopping the VM. */
  risky: boolean;
}

/** Records `steps` as applied to a VM that was running before them; undefined when it was not. */
export function appliedChange(before: ObservedVM, steps: readonly Step[], desired: DesiredMemory, profile: Profile, generation: number, at: number, atText: string): AppliedChange | undefined {
  if (before.powerState === 'ShutOff') return undefined;
  const sent = steps.map(describeStep).join('; ');
  const risk = unsafeLimitNote(before, desired, profile);
  return { generation, at, atText, change: risk ? `${sent} (${risk})` : sent, risky: risk !== undefined };
}

/** The opted-in risk, in words: a limit below guest memory + the profile's overhead margin. */
function unsafeLimitNote(before: ObservedVM, desired: DesiredMemory, profile: Profile): string | undefined {
  const margin = profile.unsafeLimit?.defaultOverheadMargin;
  const limit = desired.limit;
  if (!desired.allowUnsafeLimit || margin === undefined || typeof limit !== 'bigint') return undefined;
  const guest = before.live?.maxMemory ?? desired.maxMemory;
  if (limit >= guest + margin) return undefined;
  return `spec.limit ${formatLimit(limit)} is below guest memory ${formatQuantity(guest)} + QEMU overhead margin ${formatQuantity(margin)}, allowed by spec.allowUnsafeLimit`;
}

/**
 * The StoppedAfterChange message when `observed` is a VM that stopped after `change`, else
 * undefined. Forgets the change (clears it through `forget`) once it can no longer explain a
 * stop: another generation, or the VM seen running past the window.
 */
export function stoppedAfterChange(change: AppliedChange | undefined, observed: ObservedVM, generation: number, now: number, forget: () => void): string | undefined {
  if (!change) return undefined;
  if (change.generation !== generation) {
    forget();
    return undefined;
  }
  const recent = now - change.at <= STOPPED_AFTER_CHANGE_WINDOW_MS;
  if (observed.powerState !== 'ShutOff') {
    if (!recent) forget();
    return undefined;
  }
  const crashed = observed.stopReason === 'Crashed';
  // Soon after the change, a crash or any stop after a risky one; later, only a crash while the risky value holds.
  if (!(recent ? crashed || change.risky : crashed && change.risky)) return undefined;
  const how = crashed ? 'crashed (the hypervisor reports it shut off, reason crashed)' : 'stopped';
  return (
    `${observed.name} ${how} after vmmem applied ${change.change} at ${change.atText}; ` +
    'vmmem does not start VMs: fix the spec (e.g. raise spec.limit or drop spec.allowUnsafeLimit), then start the VM'
  );
}
