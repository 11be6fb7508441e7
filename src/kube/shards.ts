// Sharding Hypervisors across operator replicas (docs/operations.md, "Sharding").
//
// Two layers, each doing the one thing it is good at:
//
//   1. A Hypervisor belongs to one of S shards: shardOf(namespace, hypervisorName, S), a stable hash.
//      A VirtualMachineMemory belongs to the shard of the Hypervisor it references, so a host and
//      its VMMs always move together. The shard is written as labels (SHARD_LABEL, SHARDS_LABEL) on
//      both kinds so each replica lists and watches only its own shards (server-side label selector).
//
//   2. Shard k is held through its own coordination.k8s.io Lease `<prefix>-shard-<k>`, with exactly
//      the leader-election semantics of leader.ts (client-go's numbers and local-clock expiry). That
//      is what gives "exactly one writer per Hypervisor": a holder that cannot renew steps down (and
//      aborts its work) renewDeadline after its last renewal, before the Lease can expire for anyone
//      else; a holder that gives a shard away stops its work first and clears the Lease after.
//
// Which replica should hold which shard: rendezvous (highest-random-weight) hashing of the shard
// over the live members. Members announce themselves with their own Lease `<prefix>-member-<id>`
// (labelled MEMBER_LABEL=<prefix>), renewed every retry period; a member whose Lease record has not
// changed for a lease duration on our clock is gone. Rendezvous hashing moves only the shards of a
// member that joins or leaves (about S/N of them), and every replica computes the same answer from
// the same member list. While member views disagree (a few seconds around a join or a death), the
// shard Leases still allow one holder: a replica that wants a shard held by another waits for it to
// hand it over or for its Lease to expire.
import { createHash } from 'node:crypto';
import * as k8s from '@kubernetes/client-node';
import { apiErrorInfo, isConflict, isNotFound } from './errors.ts';
import { sleep } from '../util/sleep.ts';
import { requestOptions, shareConnections, type Logger } from './http.ts';
import { LeaderElector, type StopReason } from './leader.ts';

export const SHARD_LABEL = 'vmmem.io/shard';
/** The shard count the SHARD_LABEL was computed with: a change of --shards relabels everything. */
export const SHARDS_LABEL = 'vmmem.io/shards';
export const MEMBER_LABEL = 'vmmem.io/member-of';

/** FNV-1a (32-bit) of namespace/name: stable across versions and processes, cheap, well spread. */
export function shardOf(namespace: string, hypervisorName: string, shards: number): number {
  let h = 0x811c9dc5;
  const text = `${namespace}/${hypervisorName}`;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h % shards;
}

/** Rendezvous hashing: the member with the highest weight for this shard owns it. */
export function ownerOf(shard: number, members: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestWeight = -1n;
  for (const m of members) {
    const w = createHash('sha256').update(`${shard}\u0000${m}`).digest().readBigUInt64BE(0);
    if (w > bestWeight || (w === bestWeight && best !== undefined && m < best)) {
      best = m;
      bestWeight = w;
    }
  }
  return best;
}

export function shardLeaseName(prefix: string, shard: number): string {
  return `${prefix}-shard-${shard}`;
}

/** A Lease name for a member identity: DNS-1123, bounded, still unique (hash suffix). */
export function memberLeaseName(prefix: string, identity: string): string {
  const clean = identity.toLowerCase().replace(/[^a-z0-9-]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 40) || 'member';
  const hash = createHash('sha256').update(identity).digest('hex').slice(0, 8);
  return `${prefix}-member-${clean}-${hash}`;
}

export interface ShardWork {
  /** We hold shard k now: start reconciling it. `signal` aborts the moment the Lease is lost. */
  start(shard: number, signal: AbortSignal): Promise<void>;
  /**
   * Stop reconciling shard k, and resolve only when no write for it can still happen.
   * 'handover' and 'shutdown': finish in-flight work (bounded), then resolve; the Lease is cleared
   * after. 'lost': the Lease could not be renewed; abort at once.
   */
  stop(shard: number, why: 'handover' | 'shutdown' | 'lost'): Promise<void>;
}

export interface ShardCoordinatorOptions {
  /** The operator's own namespace (the only one where it may touch Leases). */
  namespace: string;
  /** Lease name prefix, default 'vmmem'. */
  prefix?: string;
  shards: number;
  identity: string;
  logger: Logger;
  leaseDurationMs?: number;
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
  /** Called whenever the set of held shards changes (metrics, status). */
  onShardsChanged?: (held: readonly number[]) => void;
}

interface Slot {
  elector: LeaderElector;
  /** true while we hold the Lease and the work runs. */
  holding: boolean;
  /** The work of this shard is being started or stopped: serialize. */
  transition: Promise<void>;
}

export class ShardCoordinator {
  readonly identity: string;
  readonly shards: number;
  private readonly namespace: string;
  private readonly prefix: string;
  private readonly logger: Logger;
  private readonly kubeConfig: k8s.KubeConfig;
  private readonly api: k8s.CoordinationV1Api;
  private readonly leaseDurationMs: number;
  private readonly renewDeadlineMs: number;
  private readonly retryPeriodMs: number;
  private readonly slots = new Map<number, Slot>();
  /** Shards being handed over: not campaigned for again until their Lease is cleared. */
  private readonly releasing = new Map<number, Promise<void>>();
  private readonly stopCtl = new AbortController();
  private readonly seen = new Map<string, { record: string; at: number }>();
  private work: ShardWork | undefined;
  private loopDone: Promise<void> | undefined;
  private members: string[] = [];
  private readonly onShardsChanged: ((held: readonly number[]) => void) | undefined;

  constructor(kubeConfig: k8s.KubeConfig, options: ShardCoordinatorOptions) {
    if (!Number.isInteger(options.shards) || options.shards < 1 || options.shards > 1024) {
      throw new Error(`ShardCoordinator: shards must be an integer from 1 to 1024, got ${options.shards}`);
    }
    this.kubeConfig = kubeConfig;
    this.namespace = options.namespace;
    this.prefix = options.prefix ?? 'vmmem';
    this.shards = options.shards;
    this.identity = options.identity;
    this.logger = options.logger;
    this.leaseDurationMs = options.leaseDurationMs ?? 15_000;
    this.renewDeadlineMs = options.renewDeadlineMs ?? 10_000;
    this.retryPeriodMs = options.retryPeriodMs ?? 2_000;
    this.onShardsChanged = options.onShardsChanged;
    this.api = shareConnections(kubeConfig).makeApiClient(k8s.CoordinationV1Api);
  }

  /** Shards whose Lease we hold and whose work runs. */
  held(): number[] {
    return [...this.slots.entries()].filter(([, s]) => s.holding).map(([k]) => k).sort((a, b) => a - b);
  }

  /** The live members as last seen (including ourselves). */
  liveMembers(): readonly string[] {
    return this.members;
  }

  /** Joins the membership and keeps the held shards in line with it until stop(). */
  run(work: ShardWork): Promise<void> {
    if (this.loopDone) throw new Error('ShardCoordinator.run: already running');
    this.work = work;
    this.loopDone = this.loop().catch((e: unknown) => {
      this.logger.error({ err: apiErrorInfo(e).message }, 'shard coordinator loop crashed');
    });
    return this.loopDone;
  }

  /** Hands every shard over (work stopped first, then the Lease cleared) and leaves the membership. */
  async stop(): Promise<void> {
    this.stopCtl.abort();
    await this.loopDone;
    await Promise.all([...this.slots.keys()].map((k) => this.giveUp(k, 'shutdown')));
    await Promise.all(this.releasing.values());
    await this.deleteMemberLease();
  }

  private async loop(): Promise<void> {
    const stop = this.stopCtl.signal;
    while (!stop.aborted) {
      try {
        await this.renewMemberLease();
        this.members = await this.listLiveMembers();
        this.rebalance();
      } catch (e) {
        // The API server is away: keep what we hold (the electors renew or step down on their own).
        this.logger.warn({ err: apiErrorInfo(e).message }, 'shard membership: cannot read or renew member Leases');
      }
      await sleep(this.retryPeriodMs * (1 + Math.random() * 0.2), stop);
    }
  }

  /** Campaign for the shards rendezvous hashing gives us; give away the ones it gives others. */
  private rebalance(): void {
    for (let k = 0; k < this.shards; k++) {
      const mine = ownerOf(k, this.members) === this.identity;
      const slot = this.slots.get(k);
      if (mine && !slot && !this.releasing.has(k)) this.campaign(k);
      if (!mine && slot) void this.giveUp(k, 'handover');
    }
  }

  private campaign(shard: number): void {
    const work = this.work;
    if (!work) return;
    const elector = new LeaderElector(this.kubeConfig, {
      namespace: this.namespace,
      name: shardLeaseName(this.prefix, shard),
      identity: this.identity,
      logger: this.logger,
      leaseDurationMs: this.leaseDurationMs,
      renewDeadlineMs: this.renewDeadlineMs,
      retryPeriodMs: this.retryPeriodMs,
    });
    const slot: Slot = { elector, holding: false, transition: Promise.resolve() };
    this.slots.set(shard, slot);
    void elector.run({
      onStartedLeading: (signal) => {
        slot.transition = slot.transition.then(async () => {
          if (signal.aborted) return;
          slot.holding = true;
          this.logger.info({ shard, identity: this.identity }, 'shard acquired: reconciling its Hypervisors');
          this.changed();
          await work.start(shard, signal).catch((e: unknown) => this.logger.error({ shard, err: apiErrorInfo(e).message }, 'starting shard work failed'));
        });
      },
      onStoppedLeading: (reason: StopReason) => {
        if (reason === 'released') return; // giveUp() stopped the work before releasing
        slot.transition = slot.transition.then(async () => {
          if (!slot.holding) return;
          slot.holding = false;
          this.logger.warn({ shard, identity: this.identity }, 'shard Lease lost: work aborted');
          this.changed();
          await work.stop(shard, 'lost').catch(() => undefined);
        });
      },
    });
  }

  /** Stop the work, then clear the Lease, so the next holder cannot overlap with us. */
  private async giveUp(shard: number, why: 'handover' | 'shutdown'): Promise<void> {
    const slot = this.slots.get(shard);
    const work = this.work;
    if (!slot || !work) return;
    this.slots.delete(shard);
    const done = slot.transition.then(async () => {
      if (slot.holding) {
        this.logger.info({ shard, why }, 'handing shard over: stopping its work before releasing its Lease');
        await work.stop(shard, why).catch((e: unknown) => this.logger.error({ shard, err: apiErrorInfo(e).message }, 'stopping shard work failed'));
        slot.holding = false;
        this.changed();
      }
      await slot.elector.release();
    });
    slot.transition = done;
    this.releasing.set(shard, done);
    try {
      await done;
    } finally {
      this.releasing.delete(shard);
    }
  }

  private changed(): void {
    this.onShardsChanged?.(this.held());
  }

  private get memberName(): string {
    return memberLeaseName(this.prefix, this.identity);
  }

  private async renewMemberLease(): Promise<void> {
    const name = this.memberName;
    const opts = requestOptions(this.renewDeadlineMs);
    const now = new k8s.V1MicroTime();
    const spec: k8s.V1LeaseSpec = { holderIdentity: this.identity, leaseDurationSeconds: Math.ceil(this.leaseDurationMs / 1000), renewTime: now };
    try {
      const lease = await this.api.readNamespacedLease({ namespace: this.namespace, name }, opts);
      await this.api.replaceNamespacedLease({ namespace: this.namespace, name, body: { ...lease, spec: { ...lease.spec, ...spec } } }, opts);
    } catch (e) {
      if (!isNotFound(e)) {
        if (isConflict(e)) return; // renewed by a concurrent call of ours; the next round renews again
        throw e;
      }
      await this.api.createNamespacedLease(
        {
          namespace: this.namespace,
          body: { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name, namespace: this.namespace, labels: { [MEMBER_LABEL]: this.prefix } }, spec: { ...spec, acquireTime: now } },
        },
        opts,
      );
    }
  }

  /**
   * Members whose Lease record changed within a lease duration of our own clock (as leader.ts
   * judges expiry: never against the holder's clock). Leases gone stale for long are deleted.
   */
  private async listLiveMembers(): Promise<string[]> {
    const list = await this.api.listNamespacedLease({ namespace: this.namespace, labelSelector: `${MEMBER_LABEL}=${this.prefix}` }, requestOptions(this.renewDeadlineMs));
    const now = Date.now();
    const live = new Set<string>([this.identity]);
    const present = new Set<string>();
    for (const lease of list.items) {
      const name = lease.metadata?.name ?? '';
      const holder = lease.spec?.holderIdentity ?? '';
      if (!holder) continue;
      present.add(name);
      const record = `${holder}|${String(lease.spec?.renewTime instanceof Date ? lease.spec.renewTime.toISOString() : lease.spec?.renewTime)}`;
      const prev = this.seen.get(name);
      if (!prev || prev.record !== record) this.seen.set(name, { record, at: now });
      const since = this.seen.get(name)?.at ?? now;
      const durationMs = (lease.spec?.leaseDurationSeconds ?? this.leaseDurationMs / 1000) * 1000;
      if (now - since < durationMs) live.add(holder);
      else if (now - since > STALE_MEMBER_FACTOR * durationMs && holder !== this.identity) await this.deleteStale(name);
    }
    for (const name of this.seen.keys()) if (!present.has(name)) this.seen.delete(name);
    return [...live].sort();
  }

  private async deleteStale(name: string): Promise<void> {
    try {
      await this.api.deleteNamespacedLease({ namespace: this.namespace, name }, requestOptions(this.renewDeadlineMs));
      this.logger.info({ lease: name }, 'deleted the Lease of a member gone for long');
    } catch (e) {
      if (!isNotFound(e)) this.logger.debug({ lease: name, err: apiErrorInfo(e).message }, 'cannot delete a stale member Lease');
    }
  }

  private async deleteMemberLease(): Promise<void> {
    try {
      await this.api.deleteNamespacedLease({ namespace: this.namespace, name: this.memberName }, requestOptions(this.renewDeadlineMs));
    } catch (e) {
      if (!isNotFound(e)) this.logger.warn({ err: apiErrorInfo(e).message }, 'cannot delete our member Lease (it expires on its own)');
    }
  }
}

/** A member Lease unchanged this many lease durations is deleted (its replica is long gone). */
const STALE_MEMBER_FACTOR = 20;
