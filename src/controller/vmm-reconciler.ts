/**
 * The VirtualMachineMemory reconciler (DESIGN §5, §6; issue #13, #17.1):
 * resolve the Hypervisor → connected driver (pooled) → the VM from the host
 * view (or lookup + observe for drivers without one) → plan → apply →
 * status (vmm-converge.ts).
 *
 * A no-op costs nothing: when neither the VMM's generation, its
 * Hypervisor's generation, the VM's snapshot in the host view nor the
 * reconcile-request annotation moved since a reconcile that ended steady,
 * the reconcile returns before any status write or hypervisor call.
 * spec.suspend: true stops all hypervisor calls for the VMM (status says
 * Suspended).
 */
import { HypervisorSpecSchema } from '../api/hypervisor.ts';
import type { VMMSpec, VMMStatus } from '../api/vmm.ts';
import { VMMSpecSchema } from '../api/vmm.ts';
import type { Driver, HypervisorIdentity, VMHandle } from '../drivers/driver.ts';
import { describeVMRef, vmRefFromSpec } from '../model/desired.ts';
import type { ObservedVM } from '../model/memory.ts';
import { CapacityGate } from './capacity.ts';
import { mergeConditions, nowRFC3339 } from './conditions.ts';
import type { HostView, HostViews } from './hostview.ts';
import { fingerprintOf } from './hostview.ts';
import type { HypervisorPool } from './pool.ts';
import type { ObjectKey, StoredObject } from './ports.ts';
import { keyString, parseKey } from './ports.ts';
import type { SupportOptions } from './reconcile-support.ts';
import { DEFAULT_BALLOON_TIMEOUT_MS, DEFAULT_SYNC_INTERVAL_MS, ReconcileSupport, RetryableError, connectionFailure, durationOr, isOlder, parseSpec, vmFailure } from './reconcile-support.ts';
import type { ReconcileContext, Result } from './runner.ts';
import { TerminalError } from './runner.ts';
import { initialStatus } from './status.ts';
import type { VMMFailure } from './status.ts';
import type { VMMMemo } from './vmm-converge.ts';
import { converge, fail, withHandled } from './vmm-converge.ts';

/** Any change of this annotation's value asks for an immediate reconcile (Flux's reconcile.fluxcd.io/requestedAt). */
export const RECONCILE_REQUESTED_ANNOTATION = 'vmmem.io/reconcile-requested-at';

export interface VMMReconcilerOptions extends SupportOptions {
  pool: HypervisorPool;
  views: HostViews;
  /**
   * The VMM keys that reference a Hypervisor (the operator's VMMIndex), so the
   * conflict check looks at one host's VMMs; without it, every VMM in the store.
   */
  vmmsOfHypervisor?: (hv: ObjectKey) => Iterable<string>;
}

type Timing = { syncMs: number; balloonTimeoutMs: number };

export class VMMReconciler {
  private readonly s: ReconcileSupport;
  private readonly pool: HypervisorPool;
  private readonly views: HostViews;
  private readonly vmmsOfHypervisor: ((hv: ObjectKey) => Iterable<string>) | undefined;
  private readonly memo = new Map<string, VMMMemo>();
  private readonly capacity = new CapacityGate();

  constructor(opts: VMMReconcilerOptions) {
    this.s = new ReconcileSupport(opts);
    this.pool = opts.pool;
    this.views = opts.views;
    this.vmmsOfHypervisor = opts.vmmsOfHypervisor;
  }

  /** Balloon actual the last reconcile of this VMM saw (undefined: unknown). */
  lastActual(key: ObjectKey): bigint | undefined {
    return this.memo.get(keyString(key))?.lastActual;
  }

  /** Fingerprint of the VM as the last reconcile left it (undefined: not reconciled yet). */
  lastSeen(key: string): string | undefined {
    return this.memo.get(key)?.seen;
  }

  /** The VM (re)started: changes staged for its next boot are now in effect. */
  noteRestart(key: ObjectKey): void {
    const memo = this.memo.get(keyString(key));
    if (!memo) return;
    memo.staged = undefined;
    memo.steady = undefined; // the outcome depends on the staged verdicts: look again
    memo.freshNext = true;
  }

  /** Forget in-memory state of a deleted VMM: the VM stays as it is (DESIGN §4). */
  forget(key: ObjectKey): void {
    this.memo.delete(keyString(key));
  }

  async reconcile(key: ObjectKey, ctx?: Pick<ReconcileContext, 'signal'>): Promise<Result> {
    const obj = this.s.store.get('VirtualMachineMemory', key);
    if (!obj) {
      this.forget(key);
      return {};
    }
    const memo = this.memoFor(keyString(key));
    const generation = obj.metadata.generation ?? 1;
    const existing = obj.status as VMMStatus | undefined;
    const requested = obj.metadata.annotations?.[RECONCILE_REQUESTED_ANNOTATION];
    const requestedAt = requested !== undefined && requested !== existing?.lastHandledReconcileAt ? requested : undefined;

    // DESIGN §4: on first sight, Ready=Unknown + Reconciling=True + observedGeneration in one write.
    if (existing?.observedGeneration === undefined || !existing.conditions?.length) {
      await this.s.writeStatus(key, () => initialStatus(generation, nowRFC3339(new Date(this.s.now()))));
    }

    const spec = parseSpec(VMMSpecSchema, obj.spec);
    if (!spec.ok) return this.stall(obj, memo, { reason: 'InvalidSpec', message: spec.message, stalled: true }, requestedAt);
    if (spec.value.suspend === true) return this.suspend(obj, memo, requestedAt);
    if (requestedAt === undefined && this.unchanged(memo, generation, spec.value, key.namespace)) return {};
    const conflict = this.conflictFor(obj, spec.value, memo);
    if (conflict) return this.stall(obj, memo, { reason: 'Conflict', message: conflict, stalled: true }, requestedAt);

    const hv = this.resolveHypervisor(obj, spec.value);
    if (!hv.ok) {
      if (hv.failure.stalled) return this.stall(obj, memo, hv.failure, requestedAt);
      await fail(this.s, obj, memo, hv.failure, requestedAt);
      throw new RetryableError(hv.failure.reason, hv.failure.message);
    }

    let driver: Driver;
    let identity: HypervisorIdentity;
    let view: HostView | undefined;
    try {
      ({ driver, identity } = await this.pool.get(hv.key, hv.spec));
      view = await this.views.ensure(hv.key, driver, ctx?.signal);
    } catch (err) {
      await this.pool.noteError(hv.key, err);
      const failure = connectionFailure(hv.key.name, err);
      if (failure.stalled) return this.stall(obj, memo, failure, requestedAt);
      await fail(this.s, obj, memo, failure, requestedAt);
      throw new RetryableError(failure.reason, failure.message, { cause: err });
    }

    const ref = vmRefFromSpec(spec.value);
    const snap = view?.find(ref);
    try {
      const { vm, observed, fromView } = await this.look(driver, view, ref, snap?.dirty === false && !memo.freshNext && requestedAt === undefined ? snap.vm : undefined, ctx?.signal);
      memo.uuid = vm.uuid.toLowerCase();
      const lateConflict = this.conflictFor(obj, spec.value, memo);
      if (lateConflict) return this.stall(obj, memo, { reason: 'Conflict', message: lateConflict, stalled: true }, requestedAt);
      const host = { name: keyString(hv.key), spec: hv.spec, identity };
      const out = await converge(this.s, { obj, memo, driver, vm, observed, fromView, view, spec: spec.value, timing: hv.timing, signal: ctx?.signal, requestedAt, host, capacity: this.capacity });
      const fingerprint = fingerprintOf(out.observed);
      memo.seen = fingerprint;
      memo.freshNext = !out.steady;
      memo.steady = out.steady ? { generation, hypervisorGeneration: hv.generation, fingerprint, requestedAt: requested } : undefined;
      return out.result;
    } catch (err) {
      if (err instanceof RetryableError || err instanceof TerminalError) throw err;
      await this.pool.noteError(hv.key, err);
      const failure = vmFailure(describeVMRef(ref), hv.key.name, err);
      memo.freshNext = true;
      await fail(this.s, obj, memo, failure, requestedAt);
      if (failure.reason === 'VMNotFound') {
        memo.seen = fingerprintOf(undefined);
        return view ? {} : { requeueAfter: this.s.jittered(hv.timing.syncMs) };
      }
      throw new RetryableError(failure.reason, failure.message, { cause: err });
    }
  }

  /**
   * Nothing moved since a reconcile that had nothing left to do: same VMM and
   * Hypervisor generations, and the host view (same connection) holds the
   * same, clean snapshot of the VM. Costs no call and no status write.
   */
  private unchanged(memo: VMMMemo, generation: number, spec: VMMSpec, namespace: string): boolean {
    const steady = memo.steady;
    if (!steady || memo.freshNext || steady.generation !== generation) return false;
    const hvKey = { namespace, name: spec.hypervisorRef.name };
    const hvObj = this.s.store.get('Hypervisor', hvKey);
    if (!hvObj || (hvObj.metadata.generation ?? 1) !== steady.hypervisorGeneration) return false;
    const view = this.views.peek(hvKey);
    if (!view || this.pool.peek(hvKey) !== view.driver) return false; // reconnected: the view is another connection's
    const snap = view.find(vmRefFromSpec(spec));
    return snap !== undefined && !snap.dirty && snap.fingerprint === steady.fingerprint;
  }

  /** The VM's handle and observation: the host view's snapshot when usable, else lookup (if needed) + observe. */
  private async look(driver: Driver, view: HostView | undefined, ref: ReturnType<typeof vmRefFromSpec>, snapshot: ObservedVM | undefined, signal: AbortSignal | undefined): Promise<{ vm: VMHandle; observed: ObservedVM; fromView: boolean }> {
    if (snapshot) return { vm: { name: snapshot.name, uuid: snapshot.uuid }, observed: snapshot, fromView: true };
    const call = signal ? { signal } : {};
    const known = view?.find(ref)?.vm;
    const vm = known ? { name: known.name, uuid: known.uuid } : await this.s.timeCall(driver, 'lookup', () => driver.lookup(ref, call));
    const observed = await this.s.timeCall(driver, 'observe', () => driver.observe(vm, call));
    view?.patch(observed);
    return { vm, observed, fromView: false };
  }

  private resolveHypervisor(obj: StoredObject, spec: VMMSpec): { ok: true; key: ObjectKey; spec: ReturnType<typeof HypervisorSpecSchema.parse>; generation: number; timing: Timing } | { ok: false; failure: VMMFailure } {
    const ns = obj.metadata.namespace;
    const key = { namespace: ns, name: spec.hypervisorRef.name };
    const hvObj = this.s.store.get('Hypervisor', key);
    if (!hvObj) return { ok: false, failure: { reason: 'HypervisorNotFound', message: `Hypervisor "${key.name}" (spec.hypervisorRef) not found in namespace ${ns}`, stalled: false } };
    const hvSpec = parseSpec(HypervisorSpecSchema, hvObj.spec);
    if (!hvSpec.ok) {
      const reason = hvSpec.reason === 'InvalidURI' ? 'InvalidURI' : 'HypervisorInvalid';
      return { ok: false, failure: { reason, message: `Hypervisor "${key.name}" is invalid: ${hvSpec.message}`, stalled: true } };
    }
    const timing = {
      syncMs: durationOr(hvSpec.value.syncInterval, 'spec.syncInterval', DEFAULT_SYNC_INTERVAL_MS),
      balloonTimeoutMs: durationOr(hvSpec.value.balloonTimeout, 'spec.balloonTimeout', DEFAULT_BALLOON_TIMEOUT_MS),
    };
    return { ok: true, key, spec: hvSpec.value, generation: hvObj.metadata.generation ?? 1, timing };
  }

  /** A failure only the user can fix: status says so, and the runner does not retry (TerminalError). */
  private async stall(obj: StoredObject, memo: VMMMemo, failure: VMMFailure, requestedAt: string | undefined): Promise<never> {
    await fail(this.s, obj, memo, failure, requestedAt);
    throw new TerminalError(`${obj.kind} ${keyString(obj.metadata)}: ${failure.reason}: ${failure.message}`);
  }

  /** spec.suspend: true — no hypervisor call; status says Suspended (Flux's convention). */
  private async suspend(obj: StoredObject, memo: VMMMemo, requestedAt: string | undefined): Promise<Result> {
    const key = { namespace: obj.metadata.namespace, name: obj.metadata.name };
    const generation = obj.metadata.generation ?? 1;
    const nowText = nowRFC3339(new Date(this.s.now()));
    const message = 'spec.suspend is true: vmmem does not observe or change this VM';
    memo.steady = undefined;
    memo.freshNext = true; // resuming reads the VM fresh: the view may have moved meanwhile
    await this.s.writeStatus(key, (fresh) => {
      if ((fresh.metadata.generation ?? 1) !== generation) return undefined;
      const old = fresh.status as VMMStatus | undefined;
      const status: VMMStatus = {
        ...(old ?? {}),
        observedGeneration: generation,
        conditions: mergeConditions(
          old?.conditions,
          [
            { type: 'Ready', status: 'False', reason: 'Suspended', message },
            { type: 'Reconciling', status: 'False', reason: 'Suspended', message },
            { type: 'Stalled', status: 'False', reason: 'Suspended', message },
          ],
          generation,
          nowText,
        ),
      };
      return withHandled(status, fresh, requestedAt);
    });
    return {};
  }

  /**
   * Two VMMs on one VM (DESIGN §4): the older keeps it, the newer is Stalled
   * with reason Conflict. Compared by reference (name or uuid) and, once
   * looked up, by the VM's UUID.
   */
  private conflictFor(obj: StoredObject, spec: VMMSpec, memo: VMMMemo): string | undefined {
    const ns = obj.metadata.namespace;
    const uuid = spec.vm.uuid?.toLowerCase();
    // Only VMMs on the same Hypervisor can name the same VM: the index holds them, so this costs
    // O(VMMs on the host), not O(VMMs in the fleet) on every reconcile (quadratic at N = 10,000).
    for (const other of this.sameHypervisor(ns, spec.hypervisorRef.name)) {
      if (other.metadata.namespace !== ns || other.metadata.name === obj.metadata.name) continue;
      // Raw reads first: this runs for every VMM of the namespace on every
      // reconcile, so only the rare candidate pays for a full parse.
      const raw = other.spec as { hypervisorRef?: { name?: unknown }; vm?: { name?: unknown; uuid?: unknown } } | undefined;
      if (raw?.hypervisorRef?.name !== spec.hypervisorRef.name) continue;
      const otherUuid = this.memo.get(keyString({ namespace: ns, name: other.metadata.name }))?.uuid;
      const sameRef =
        (spec.vm.name !== undefined && raw.vm?.name === spec.vm.name) ||
        (uuid !== undefined && typeof raw.vm?.uuid === 'string' && raw.vm.uuid.toLowerCase() === uuid) ||
        (memo.uuid !== undefined && memo.uuid === otherUuid);
      if (!sameRef || !isOlder(other, obj) || !VMMSpecSchema.safeParse(other.spec).success) continue;
      return `VirtualMachineMemory "${other.metadata.name}" already manages this VM (${spec.vm.name ?? spec.vm.uuid}) and is older; delete one of them`;
    }
    return undefined;
  }

  private *sameHypervisor(namespace: string, hypervisor: string): Iterable<StoredObject> {
    if (!this.vmmsOfHypervisor) {
      yield* this.s.store.list('VirtualMachineMemory');
      return;
    }
    for (const id of this.vmmsOfHypervisor({ namespace, name: hypervisor })) {
      const other = this.s.store.get('VirtualMachineMemory', parseKey(id));
      if (other) yield other;
    }
  }

  private memoFor(id: string): VMMMemo {
    let m = this.memo.get(id);
    if (!m) {
      m = { roundingsReported: new Set() };
      this.memo.set(id, m);
    }
    return m;
  }
}
