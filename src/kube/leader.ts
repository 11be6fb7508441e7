// Leader election on a coordination.k8s.io/v1 Lease, with client-go's semantics
// (k8s.io/client-go/tools/leaderelection) and numbers: lease 15 s, renew deadline 10 s, retry 2 s.
//
//   - Every write is optimistic (metadata.resourceVersion); a 409 means another replica won the race.
//   - Expiry is judged on the local clock, like client-go: a lease held by someone else is expired
//     when its record (holder, renewTime, transitions) has not changed for leaseDurationSeconds
//     since *we* first saw it. Comparing the holder's renewTime with our clock instead would let a
//     replica with a skewed clock steal a healthy lease; the price is that a candidate that has just
//     started waits one lease duration before taking over a lease left behind by a crashed holder.
//     A lease with no holder (released) is free at once.
//   - The leader renews every retryPeriod; if no renewal succeeds within renewDeadline of the last
//     one, it steps down (aborts the signal given to onStartedLeading, then onStoppedLeading) before
//     the lease can expire for the others (renewDeadline < leaseDuration), and becomes a candidate.
//   - release() (SIGTERM) stops renewing and clears holderIdentity, so another replica takes over
//     at its next retry instead of after a full lease duration.
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import * as k8s from '@kubernetes/client-node';
import { KubeApiError, apiErrorInfo, isConflict, isNotFound } from './errors.ts';
import { sleep } from '../util/sleep.ts';
import { requestOptions, shareConnections, type Logger } from './http.ts';

export interface LeaderElectorOptions {
  /** Namespace of the Lease (the operator's own namespace). */
  namespace: string;
  /** Lease name, e.g. 'vmmem-leader'. */
  name: string;
  /** Unique per replica; default `<hostname>_<8 hex>`. */
  identity?: string;
  logger: Logger;
  /** Default 15 000; rounded up to whole seconds (Lease.spec.leaseDurationSeconds). */
  leaseDurationMs?: number;
  /** Default 10 000; must be < leaseDurationMs. */
  renewDeadlineMs?: number;
  /** Default 2 000; must be < renewDeadlineMs / 1.2. */
  retryPeriodMs?: number;
}

export interface LeaderCallbacks {
  /** Became leader: start work; `signal` aborts when leadership is lost or released. */
  onStartedLeading(signal: AbortSignal): void;
  /**
   * No longer leader: stop work now. `reason` is 'lost' when renewal failed or someone else took the
   * lease (controller-runtime exits then), 'released' when release() was called (a graceful
   * shutdown already under way: do not treat it as a failure).
   */
  onStoppedLeading(reason: StopReason): void;
  /** The observed holder changed (including to ourselves); '' = nobody. */
  onNewLeader?(identity: string): void;
}

export type StopReason = 'lost' | 'released';

const JITTER = 1.2;

function timeString(t: unknown): string {
  if (t instanceof Date) return t.toISOString();
  return t === undefined || t === null ? '' : String(t);
}

export function defaultIdentity(): string {
  return `${process.env.POD_NAME || hostname()}_${randomBytes(4).toString('hex')}`;
}

export class LeaderElector {
  readonly identity: string;
  readonly namespace: string;
  readonly name: string;
  readonly leaseDurationMs: number;
  readonly renewDeadlineMs: number;
  readonly retryPeriodMs: number;
  private readonly logger: Logger;
  private readonly api: k8s.CoordinationV1Api;
  private readonly stopCtl = new AbortController();
  private leading = false;
  private leaderCtl: AbortController | undefined;
  private running: Promise<void> | undefined;
  private observedKey = '';
  private observedAtMs = 0;
  private observedHolder: string | undefined;
  private callbacks: LeaderCallbacks | undefined;

  constructor(kubeConfig: k8s.KubeConfig, options: LeaderElectorOptions) {
    this.namespace = options.namespace;
    this.name = options.name;
    this.identity = options.identity ?? defaultIdentity();
    this.logger = options.logger;
    this.leaseDurationMs = Math.ceil((options.leaseDurationMs ?? 15_000) / 1000) * 1000;
    this.renewDeadlineMs = options.renewDeadlineMs ?? 10_000;
    this.retryPeriodMs = options.retryPeriodMs ?? 2_000;
    if (!(this.leaseDurationMs > this.renewDeadlineMs)) throw new Error('LeaderElector: leaseDuration must be greater than renewDeadline');
    if (!(this.renewDeadlineMs > JITTER * this.retryPeriodMs)) throw new Error(`LeaderElector: renewDeadline must be greater than ${JITTER} × retryPeriod`);
    if (!this.identity) throw new Error('LeaderElector: identity must not be empty');
    this.api = shareConnections(kubeConfig).makeApiClient(k8s.CoordinationV1Api);
  }

  get isLeader(): boolean {
    return this.leading;
  }

  private get what(): string {
    return `Lease ${this.namespace}/${this.name}`;
  }

  /**
   * Campaigns for the lease until release(): calls onStartedLeading when it becomes leader and
   * onStoppedLeading when it stops (then campaigns again). Resolves after release().
   */
  run(callbacks: LeaderCallbacks): Promise<void> {
    if (this.running) throw new Error('LeaderElector.run: already running');
    this.callbacks = callbacks;
    this.running = this.loop(callbacks).catch((e: unknown) => {
      this.logger.error({ lease: this.what, err: apiErrorInfo(e).message }, 'leader election loop crashed');
      if (this.leading) this.stepDown(callbacks, 'lost', 'election loop crashed');
    });
    return this.running;
  }

  /**
   * Stops campaigning; if leading, steps down (onStoppedLeading) and clears holderIdentity so that
   * another replica takes over at once. Call on SIGTERM after in-flight work has finished.
   */
  async release(): Promise<void> {
    this.stopCtl.abort();
    await this.running;
    if (this.leading && this.callbacks) this.stepDown(this.callbacks, 'released', 'released');
    try {
      const lease = await this.api.readNamespacedLease({ namespace: this.namespace, name: this.name }, requestOptions(this.renewDeadlineMs));
      if (lease.spec?.holderIdentity !== this.identity) return;
      const now = new k8s.V1MicroTime();
      await this.api.replaceNamespacedLease(
        {
          namespace: this.namespace,
          name: this.name,
          body: {
            ...lease,
            spec: { ...lease.spec, holderIdentity: undefined, leaseDurationSeconds: 1, renewTime: now, acquireTime: now },
          },
        },
        requestOptions(this.renewDeadlineMs),
      );
      this.logger.info({ lease: this.what, identity: this.identity }, 'released the lease');
    } catch (e) {
      if (isNotFound(e)) return;
      // Not fatal: the lease simply expires after leaseDuration.
      this.logger.warn({ lease: this.what, err: new KubeApiError('release', this.what, e).message }, 'could not release the lease');
    }
  }

  private stepDown(cb: LeaderCallbacks, reason: StopReason, why: string): void {
    this.leading = false;
    this.leaderCtl?.abort(new Error(`leadership ${why}`));
    this.leaderCtl = undefined;
    this.logger.info({ lease: this.what, identity: this.identity, why }, 'stopped leading');
    try {
      cb.onStoppedLeading(reason);
    } catch (e) {
      this.logger.error({ lease: this.what, err: apiErrorInfo(e).message }, 'onStoppedLeading threw');
    }
  }

  private async loop(cb: LeaderCallbacks): Promise<void> {
    const stop = this.stopCtl.signal;
    while (!stop.aborted) {
      // Candidate: try every retryPeriod (jittered) until we hold the lease.
      const ok = await this.tryAcquireOrRenew(Date.now() + this.retryPeriodMs * JITTER);
      if (stop.aborted) return;
      if (!ok) {
        await sleep(this.retryPeriodMs * (1 + Math.random() * (JITTER - 1)), stop);
        continue;
      }
      this.leading = true;
      this.leaderCtl = new AbortController();
      this.logger.info({ lease: this.what, identity: this.identity }, 'started leading');
      try {
        cb.onStartedLeading(this.leaderCtl.signal);
      } catch (e) {
        this.logger.error({ lease: this.what, err: apiErrorInfo(e).message }, 'onStartedLeading threw');
      }
      // Leader: renew every retryPeriod; step down when nothing succeeded within renewDeadline.
      let lastRenew = Date.now();
      while (!stop.aborted && this.leading) {
        await sleep(this.retryPeriodMs, stop);
        if (stop.aborted) return; // release() steps down and clears the lease
        const deadline = lastRenew + this.renewDeadlineMs;
        let renewed = false;
        while (!stop.aborted && Date.now() < deadline) {
          if (await this.tryAcquireOrRenew(deadline)) {
            renewed = true;
            break;
          }
          if (this.observedHolder !== undefined && this.observedHolder !== this.identity && this.observedHolder !== '') break; // someone else holds it now
          await sleep(Math.min(this.retryPeriodMs, Math.max(0, deadline - Date.now())), stop);
        }
        if (stop.aborted) return;
        if (renewed) lastRenew = Date.now();
        else this.stepDown(cb, 'lost', `not renewed within ${this.renewDeadlineMs} ms`);
      }
    }
  }

  private observe(spec: k8s.V1LeaseSpec | undefined, now: number): void {
    const key = JSON.stringify([spec?.holderIdentity ?? '', timeString(spec?.renewTime), spec?.leaseTransitions ?? 0, spec?.leaseDurationSeconds ?? 0]);
    if (key !== this.observedKey) {
      this.observedKey = key;
      this.observedAtMs = now;
    }
    const holder = spec?.holderIdentity ?? '';
    if (holder !== this.observedHolder) {
      this.observedHolder = holder;
      if (holder !== this.identity) this.logger.info({ lease: this.what, holder: holder || '(none)' }, 'observed leader');
      try {
        this.callbacks?.onNewLeader?.(holder);
      } catch (e) {
        this.logger.error({ lease: this.what, err: apiErrorInfo(e).message }, 'onNewLeader threw');
      }
    }
  }

  /** One attempt; true when we hold the lease afterwards. Requests end by `deadlineMs`. */
  private async tryAcquireOrRenew(deadlineMs: number): Promise<boolean> {
    const opts = () => requestOptions(Math.max(100, deadlineMs - Date.now()));
    const leaseDurationSeconds = this.leaseDurationMs / 1000;
    let lease: k8s.V1Lease;
    try {
      lease = await this.api.readNamespacedLease({ namespace: this.namespace, name: this.name }, opts());
    } catch (e) {
      if (!isNotFound(e)) {
        this.logger.debug({ lease: this.what, err: apiErrorInfo(e).message }, 'cannot read the lease');
        return false;
      }
      const now = new k8s.V1MicroTime();
      try {
        const created = await this.api.createNamespacedLease(
          {
            namespace: this.namespace,
            body: {
              apiVersion: 'coordination.k8s.io/v1',
              kind: 'Lease',
              metadata: { name: this.name, namespace: this.namespace },
              spec: { holderIdentity: this.identity, leaseDurationSeconds, acquireTime: now, renewTime: now, leaseTransitions: 0 },
            },
          },
          opts(),
        );
        this.observe(created.spec, Date.now());
        return true;
      } catch (e2) {
        this.logger.debug({ lease: this.what, err: apiErrorInfo(e2).message }, isConflict(e2) ? 'lost the race to create the lease' : 'cannot create the lease');
        return false;
      }
    }

    const now = Date.now();
    const spec = lease.spec ?? {};
    this.observe(spec, now);
    const holder = spec.holderIdentity ?? '';
    const heldByOther = holder !== '' && holder !== this.identity;
    const theirDurationMs = (spec.leaseDurationSeconds ?? leaseDurationSeconds) * 1000;
    if (heldByOther && this.observedAtMs + theirDurationMs > now) return false; // valid, someone else's

    const micro = new k8s.V1MicroTime(now);
    const body: k8s.V1Lease = {
      ...lease,
      spec: {
        ...spec,
        holderIdentity: this.identity,
        leaseDurationSeconds,
        renewTime: micro,
        acquireTime: holder === this.identity ? spec.acquireTime : micro,
        leaseTransitions: (spec.leaseTransitions ?? 0) + (holder === this.identity ? 0 : 1),
      },
    };
    try {
      const updated = await this.api.replaceNamespacedLease({ namespace: this.namespace, name: this.name, body }, opts());
      this.observe(updated.spec, Date.now());
      if (holder !== this.identity) this.logger.info({ lease: this.what, identity: this.identity, previous: holder || '(none)' }, 'acquired the lease');
      return true;
    } catch (e) {
      this.logger.debug({ lease: this.what, err: apiErrorInfo(e).message }, isConflict(e) ? 'lease changed meanwhile (409)' : 'cannot update the lease');
      return false;
    }
  }
}
