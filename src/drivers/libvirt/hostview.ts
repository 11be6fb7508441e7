// The libvirt driver's host-level observation (HOSTVIEW.md, DESIGN §5a):
// one round of virConnectListAllDomains(PERSISTENT) +
// virConnectGetAllDomainStats(STATE | BALLOON) for the whole host, plus the
// domain XML from a per-domain cache. The XML of a domain is fetched again
// only when it is new, an event said its definition changed (the driver calls
// invalidate()), its stats disagree with the cache (state, id, persistence,
// balloon.maximum, a shut-off domain's balloon.current), or the cached copy is
// older than `xmlMaxAgeMs` — libvirt emits no event for memtune changes or
// config-only memory changes (qemuDomainSetMemoryFlags/SetMemoryParameters in
// libvirt 9.0 send none), so age is the only way to see those when made out
// of band. Where a daemon lacks the bulk call, each domain is read alone.
import type { HostObservation } from '../driver.ts';
import type { GuestUsage, HypervisorType, ObservedVM } from '../../model/memory.ts';
import { DomainStatsGroup, DomainXmlFlags, ErrorCode, LibvirtError, ListDomainsFlags, parseDomainXml, statNumber } from '../../libvirt/index.ts';
import type { DomainRef, DomainStatsRecord, LibvirtClient } from '../../libvirt/index.ts';
import { abortable, checkAborted, toDriverError } from './errors.ts';
import { PER_DOMAIN_CALLS, configXml, guestUsageOf, isActive, observedOf, readDomainFacts } from './observe.ts';
import type { DomainFacts, LiveTargets } from './observe.ts';

interface Entry {
  facts: DomainFacts;
  fetchedAt: number;
}

/** The driver state observeAll works on (owned by LibvirtDriver). */
export interface HostViewContext {
  client: LibvirtClient;
  type: HypervisorType;
  liveTargets: LiveTargets;
  signal?: AbortSignal | undefined;
}

export class DomainCache {
  private readonly entries = new Map<string, Entry>();
  /** uuid -> invalidation count; an XML read started before an invalidation is not trusted. */
  private readonly gens = new Map<string, number>();
  /** False once the daemon refused virConnectGetAllDomainStats: read per domain from then on. */
  bulkStats = true;
  /** Counted in HostObservation.calls by the next observeAll (event registrations made for the cache). */
  pendingCalls = 0;
  readonly xmlMaxAgeMs: number;
  private readonly now: () => number;

  constructor(xmlMaxAgeMs: number, now: () => number = Date.now) {
    this.xmlMaxAgeMs = xmlMaxAgeMs;
    this.now = now;
  }

  /** An event said the definition (XML) of `uuid` changed. */
  invalidate(uuid: string): void {
    this.gens.set(uuid, (this.gens.get(uuid) ?? 0) + 1);
    this.entries.delete(uuid);
  }

  /** A balloon event: the running domain's actual size, KiB. */
  balloon(uuid: string, kib: number): void {
    const e = this.entries.get(uuid);
    if (e && isActive(e.facts)) e.facts.actualKiB = kib;
  }

  clear(): void {
    this.entries.clear();
    this.gens.clear();
    this.bulkStats = true;
  }

  /** The cached facts of `uuid` (the live object: apply patches it in place). */
  get(uuid: string): DomainFacts | undefined {
    return this.entries.get(uuid)?.facts;
  }

  generation(uuid: string): number {
    return this.gens.get(uuid) ?? 0;
  }

  /** Store facts read fresh, unless an invalidation arrived since the read started (generation `gen`). */
  store(facts: DomainFacts, gen: number): void {
    if (this.generation(facts.uuid) !== gen) return;
    this.entries.set(facts.uuid, { facts, fetchedAt: this.now() });
  }

  /** Keep only `uuids` (domains the host still has). */
  retain(uuids: ReadonlySet<string>): void {
    for (const u of this.entries.keys()) if (!uuids.has(u)) this.entries.delete(u);
    for (const u of this.gens.keys()) if (!uuids.has(u)) this.gens.delete(u);
  }

  /** Why the cached XML of this domain cannot be reused with these stats (undefined = reuse). */
  staleReason(rec: DomainStatsRecord, persistent: boolean): string | undefined {
    const e = this.entries.get(rec.dom.uuid);
    if (!e) return 'new';
    const f = e.facts;
    if (this.now() - e.fetchedAt > this.xmlMaxAgeMs) return 'age';
    if (f.id !== rec.dom.id) return 'id';
    if (f.name !== rec.dom.name) return 'name';
    if (f.persistent !== persistent) return 'persistence';
    // A start or stop changes the id; pausing and resuming keep the XML (state comes from the stats anyway).
    const max = statNumber(rec, 'balloon.maximum');
    const cur = statNumber(rec, 'balloon.current');
    const defXml = isActive(f) ? f.xml : (configXml(f) ?? f.xml);
    if (max !== undefined && max !== defXml.memoryKiB) return 'balloon.maximum';
    if (!isActive(f) && cur !== undefined && cur !== defXml.currentMemoryKiB) return 'balloon.current';
    return undefined;
  }
}

const STATS_OP = 'virConnectGetAllDomainStats';

/** libvirt's answers that mean "this daemon or driver has no such call". */
function unsupported(e: unknown): boolean {
  return e instanceof LibvirtError && e.reason === 'remote' && (e.code === ErrorCode.NO_SUPPORT || e.code === ErrorCode.RPC);
}

/** One bulk look at the whole host; see the file comment for what it costs. */
export async function observeHost(cache: DomainCache, ctx: HostViewContext): Promise<HostObservation> {
  const c = ctx.client;
  let calls = cache.pendingCalls;
  cache.pendingCalls = 0;
  checkAborted(ctx.signal, STATS_OP);
  if (!cache.bulkStats) return observeEach(cache, ctx, calls);
  let persistentDoms: DomainRef[];
  let records: DomainStatsRecord[];
  try {
    const persistentP = c.listAllDomains(ListDomainsFlags.PERSISTENT);
    const statsP = c.getAllDomainStats(DomainStatsGroup.STATE | DomainStatsGroup.BALLOON, 0);
    persistentP.catch(() => undefined);
    statsP.catch(() => undefined);
    calls += 2;
    records = await abortable(statsP, ctx.signal, STATS_OP);
    persistentDoms = await abortable(persistentP, ctx.signal, 'virConnectListAllDomains');
  } catch (e) {
    if (unsupported(e)) {
      cache.bulkStats = false;
      return observeEach(cache, ctx, calls);
    }
    throw toDriverError(e, STATS_OP);
  }
  const persistent = new Set(persistentDoms.map((d) => d.uuid));
  const present = new Set<string>();
  const jobs: Promise<DomainFacts | undefined>[] = [];
  for (const rec of records) {
    present.add(rec.dom.uuid);
    const isPersistent = persistent.has(rec.dom.uuid);
    const why = cache.staleReason(rec, isPersistent);
    const cached = why === undefined ? cache.get(rec.dom.uuid) : undefined;
    const needInfo = rec.dom.id !== -1 && statNumber(rec, 'balloon.current') === undefined;
    // Without the BALLOON group the guest's statistics need virDomainMemoryStats too (as observe() reads them).
    calls += (cached ? 0 : rec.dom.id !== -1 && isPersistent ? 2 : 1) + (needInfo ? 2 : 0);
    jobs.push(factsFor(c, cache, rec, isPersistent, cached, needInfo).catch(goneIsUndefined));
  }
  let facts: (DomainFacts | undefined)[];
  try {
    facts = await abortable(Promise.all(jobs), ctx.signal, 'virDomainGetXMLDesc');
  } catch (e) {
    throw toDriverError(e, 'virDomainGetXMLDesc');
  }
  cache.retain(present);
  const vms: ObservedVM[] = [];
  for (const f of facts) if (f) vms.push(observedOf(f, ctx.type, ctx.liveTargets));
  return { vms, calls };
}

/** A domain undefined between the stats and its XML read is simply gone from this observation. */
function goneIsUndefined(e: unknown): undefined {
  if (e instanceof LibvirtError && e.code === ErrorCode.NO_DOMAIN) return undefined;
  throw e;
}

/** The facts of one stats record: cached XML with fresh state/balloon, or the XML read again. */
async function factsFor(c: LibvirtClient, cache: DomainCache, rec: DomainStatsRecord, persistent: boolean, cached: DomainFacts | undefined, needInfo: boolean): Promise<DomainFacts> {
  const dom = rec.dom;
  const active = dom.id !== -1;
  const state = statNumber(rec, 'state.state') ?? (active ? 1 : 5);
  const stateReason = statNumber(rec, 'state.reason');
  // The test driver has no BALLOON group (libvirt 9.0 test_driver.c: STATE and IOTHREAD only): ask virDomainGetInfo.
  const actualP = !active ? Promise.resolve(undefined) : needInfo ? c.domainGetInfo(dom).then((i) => i.memoryKiB) : Promise.resolve(statNumber(rec, 'balloon.current'));
  // The BALLOON group carries the guest's statistics (balloon.available, .usable, ...) when it reports them.
  const guest = !active ? undefined : needInfo ? await memoryStatsUsage(c, dom) : guestUsageOf((k) => statNumber(rec, `balloon.${k}`), 'libvirt memory stats');
  if (cached) {
    cached.state = state;
    cached.stateReason = stateReason;
    cached.guest = guest;
    cached.actualKiB = await actualP;
    if (active) cached.xml.currentMemoryKiB = cached.actualKiB ?? cached.xml.currentMemoryKiB;
    return cached;
  }
  const gen = cache.generation(dom.uuid);
  const liveP = c.domainGetXmlDesc(dom, 0);
  const inactiveP = active && persistent ? c.domainGetXmlDesc(dom, DomainXmlFlags.INACTIVE) : undefined;
  inactiveP?.catch(() => undefined);
  actualP.catch(() => undefined);
  const xml = parseDomainXml(await liveP);
  const inactiveXml = inactiveP ? parseDomainXml(await inactiveP) : undefined;
  const actualKiB = await actualP;
  // The live <currentMemory> of a running domain is its balloon size, which the stats report fresher.
  if (active && actualKiB !== undefined) xml.currentMemoryKiB = actualKiB;
  const f: DomainFacts = { name: dom.name, uuid: dom.uuid, id: dom.id, state, stateReason, persistent, xml, inactiveXml, actualKiB, guest };
  cache.store(f, gen);
  return f;
}

/** virDomainMemoryStats as observe() reads it; best effort (no balloon, no statistics: undefined). */
function memoryStatsUsage(c: LibvirtClient, dom: DomainRef): Promise<GuestUsage | undefined> {
  return c.domainMemoryStats(dom).then((m) => guestUsageOf((k) => m[k as keyof typeof m], 'libvirt memory stats'), () => undefined);
}

/** The fallback without virConnectGetAllDomainStats: list, then read each domain alone. */
async function observeEach(cache: DomainCache, ctx: HostViewContext, calls: number): Promise<HostObservation> {
  const c = ctx.client;
  let doms: DomainRef[];
  try {
    calls += 1;
    doms = await abortable(c.listAllDomains(0), ctx.signal, 'virConnectListAllDomains');
  } catch (e) {
    throw toDriverError(e, 'virConnectListAllDomains');
  }
  calls += doms.length * PER_DOMAIN_CALLS;
  const facts = await Promise.all(
    doms.map(async (d) => {
      const op = { name: 'virDomainGetState' };
      const gen = cache.generation(d.uuid);
      try {
        const f = await abortable(readDomainFacts(c, d, op), ctx.signal, op.name, d.name);
        cache.store(f, gen);
        return f;
      } catch (e) {
        try {
          return goneIsUndefined(e);
        } catch {
          throw toDriverError(e, op.name, d.name);
        }
      }
    }),
  );
  const present = new Set<string>();
  const vms: ObservedVM[] = [];
  for (const f of facts) {
    if (!f) continue;
    present.add(f.uuid);
    vms.push(observedOf(f, ctx.type, ctx.liveTargets));
  }
  cache.retain(present);
  return { vms, calls };
}
