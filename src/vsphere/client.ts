// A small vim25 SOAP client: sessions, lookups, memory properties, reconfigure, power, tasks.
// It knows nothing of vmmem's resources; units are vSphere's own (MiB for memory sizes and
// allocation, bytes for host memory).
import {
  VSphereError,
  VSphereFault,
  VSphereNotFoundError,
  VSphereProtocolError,
  VSphereTimeoutError,
} from './errors.ts';
import type { MoRef } from './soap.ts';
import {
  buildRequest,
  decodeLocalizedFault,
  decodeResponse,
  parseBigIntStrict,
  parseBool,
  parseIntStrict,
  parseMoRef,
  typed,
} from './soap.ts';
import type { TransportOptions } from './transport.ts';
import { Transport } from './transport.ts';
import type { Child, Raw, XmlNode } from './xml.ts';
import { child, childrenNamed, childText, el, moRef, opt } from './xml.ts';

export type { MoRef } from './soap.ts';

export interface VSphereClientOptions extends TransportOptions {
  username: string;
  password: string;
  /** Default deadline for waiting on a task. Default 5 min. */
  taskTimeoutMs?: number | undefined;
  /** The vim25 version sent in SOAPAction (lowered to the server's if older). Default 8.0.1.0. */
  apiVersion?: string | undefined;
  /** Locale for Login (server messages). Default `en`. */
  locale?: string | undefined;
  /** maxObjects per RetrievePropertiesEx page (continuations follow). Default 500. */
  pageSize?: number | undefined;
}

export interface AboutInfo {
  name: string;
  fullName: string;
  vendor: string;
  version: string;
  build: string;
  apiType: string; // 'HostAgent' (ESXi) | 'VirtualCenter'
  apiVersion: string;
  instanceUuid: string | undefined;
  osType: string;
  productLineId: string;
}

export interface ServiceContent {
  about: AboutInfo;
  rootFolder: MoRef;
  propertyCollector: MoRef;
  viewManager: MoRef | undefined;
  sessionManager: MoRef;
  searchIndex: MoRef;
}

export interface UserSession {
  key: string;
  userName: string;
  fullName: string;
  loginTime: string;
}

export type SharesLevel = 'low' | 'normal' | 'high' | 'custom';

export interface SharesInfo {
  level: SharesLevel;
  /** Number of shares; meaningful for `custom` (the server computes it for the other levels). */
  shares: number;
}

/** A VM's memory allocation as read: any field may be absent (vcsim drops unsent ones). MiB. */
export interface MemoryAllocationInfo {
  reservation?: number;
  /** -1 = unlimited. */
  limit?: number;
  expandableReservation?: boolean;
  shares?: SharesInfo;
  overheadLimit?: number;
}

/**
 * A whole memory allocation for ReconfigVM_Task: every field is required on purpose, because a
 * partial `memoryAllocation` resets the fields left out (see docs/vsphere.md). MiB; limit -1 = unlimited.
 */
export interface MemoryAllocationSpec {
  reservation: number;
  limit: number;
  shares: SharesInfo;
  expandableReservation?: boolean;
}

export type PowerState = 'poweredOn' | 'poweredOff' | 'suspended';

export interface VmMemoryInfo {
  ref: MoRef;
  name: string;
  uuid: string | undefined;
  instanceUuid: string | undefined;
  /** Configured memory (guest-visible RAM), MiB. */
  memoryMB: number;
  memoryAllocation: MemoryAllocationInfo;
  memoryHotAddEnabled: boolean;
  /** MiB; undefined when the server does not report it. */
  hotPlugMemoryLimit: number | undefined;
  /** MiB; undefined when the server does not report it. */
  hotPlugMemoryIncrementSize: number | undefined;
  powerState: PowerState;
  host: MoRef | undefined;
  quickStats: { guestMemoryUsage: number; hostMemoryUsage: number; balloonedMemory: number };
}

export interface HostMemoryInfo {
  ref: MoRef;
  name: string;
  /** `summary.hardware.memorySize`: physical memory, bytes. */
  memorySizeBytes: bigint;
}

export interface ReconfigSpec {
  /** MiB (vSphere wants a multiple of 4). */
  memoryMB?: number;
  memoryAllocation?: MemoryAllocationSpec;
}

export interface ObjectContent {
  obj: MoRef;
  props: Map<string, XmlNode>;
  /** Properties the server could not return, with the fault. */
  missing: Map<string, VSphereFault>;
}

export interface PropertyChange {
  name: string;
  op: 'add' | 'remove' | 'assign' | 'indirectRemove';
  /** Absent for removals. */
  val: XmlNode | undefined;
}

export interface ObjectUpdate {
  obj: MoRef;
  kind: 'enter' | 'modify' | 'leave';
  changes: PropertyChange[];
}

export interface WatchOptions {
  /** How long one WaitForUpdatesEx may wait on the server. Default 60 s. */
  maxWaitSeconds?: number;
  /** Called when the watch breaks (it then restarts by itself with a fresh initial set). */
  onError?: (err: VSphereError) => void;
  /** First and longest pause before re-establishing a broken watch. Default 1 s and 30 s. */
  retryMinMs?: number;
  retryMaxMs?: number;
}

export interface Watch {
  /** Cancels the wait on the server, destroys the collector and view; resolves when done. */
  stop(): Promise<void>;
}

export type VmSelector =
  | { name: string }
  | { uuid: string }
  | { instanceUuid: string }
  | { inventoryPath: string }
  | { moref: string };

export const VM_MEMORY_PROPERTIES = [
  'name',
  'config.uuid',
  'config.instanceUuid',
  'config.hardware.memoryMB',
  'config.memoryAllocation',
  'config.memoryHotAddEnabled',
  'config.hotPlugMemoryLimit',
  'config.hotPlugMemoryIncrementSize',
  'runtime.powerState',
  'runtime.host',
  'summary.quickStats',
] as const;

const SERVICE_INSTANCE: MoRef = { type: 'ServiceInstance', value: 'ServiceInstance' };
const NO_RELOGIN = new Set(['Login', 'Logout', 'RetrieveServiceContent']);

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function compareVersions(a: string, b: string): number {
  const pa = a.split('.').map((x) => Number.parseInt(x, 10) || 0);
  const pb = b.split('.').map((x) => Number.parseInt(x, 10) || 0);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

// Request builders (exported for unit tests) ------------------------------------------------

export function sharesXml(name: string, s: SharesInfo): Raw {
  if (!Number.isSafeInteger(s.shares) || s.shares < 0) throw new RangeError(`shares must be a non-negative integer, got ${s.shares}`);
  // SharesInfo: shares, level (schema order)
  return el(name, null, el('shares', null, s.shares), el('level', null, s.level));
}

/** ResourceAllocationInfo in schema order: reservation, expandableReservation, limit, shares. */
export function memoryAllocationXml(a: MemoryAllocationSpec): Raw {
  for (const [k, v] of [['reservation', a.reservation], ['limit', a.limit]] as const) {
    if (!Number.isSafeInteger(v)) throw new RangeError(`memoryAllocation.${k} must be an integer (MiB), got ${v}`);
  }
  return el(
    'memoryAllocation',
    null,
    el('reservation', null, a.reservation),
    opt('expandableReservation', a.expandableReservation),
    el('limit', null, a.limit),
    sharesXml('shares', a.shares),
  );
}

/** VirtualMachineConfigSpec with only the memory fields, in schema order (memoryMB before memoryAllocation). */
export function configSpecXml(spec: ReconfigSpec): Raw {
  if (spec.memoryMB !== undefined && (!Number.isSafeInteger(spec.memoryMB) || spec.memoryMB <= 0)) {
    throw new RangeError(`memoryMB must be a positive integer (MiB), got ${spec.memoryMB}`);
  }
  return el(
    'spec',
    null,
    opt('memoryMB', spec.memoryMB),
    spec.memoryAllocation ? memoryAllocationXml(spec.memoryAllocation) : undefined,
  );
}

export function propertyFilterSpecXml(
  type: string,
  paths: readonly string[],
  objects: Raw[],
  elementName = 'specSet',
): Raw {
  return el(
    elementName,
    null,
    el('propSet', null, el('type', null, type), el('all', null, false), paths.map((p) => el('pathSet', null, p))),
    objects,
  );
}

export function objectSpecXml(obj: MoRef): Raw {
  return el('objectSet', null, moRef('obj', obj), el('skip', null, false));
}

export function containerViewObjectSpecXml(view: MoRef): Raw {
  return el(
    'objectSet',
    null,
    moRef('obj', view),
    el('skip', null, true),
    typed('selectSet', 'TraversalSpec', el('name', null, 'traverseView'), el('type', null, 'ContainerView'), el('path', null, 'view'), el('skip', null, false)),
  );
}

/**
 * An entity name as vCenter stores it: `%` (unless it already starts an escape `%xx`), `/` and `\`
 * escaped as `%25`, `%2f`, `%5c` (vim25 ManagedEntity.name).
 */
export function escapeEntityName(name: string): string {
  return name.replace(/%(?![0-9a-fA-F]{2})|\/|\\/g, (c) => (c === '%' ? '%25' : c === '/' ? '%2f' : '%5c'));
}

// Response decoders ------------------------------------------------------------------------

function parseAbout(n: XmlNode | undefined): AboutInfo {
  const t = (k: string) => childText(n, k) ?? '';
  return {
    name: t('name'),
    fullName: t('fullName'),
    vendor: t('vendor'),
    version: t('version'),
    build: t('build'),
    apiType: t('apiType'),
    apiVersion: t('apiVersion'),
    instanceUuid: childText(n, 'instanceUuid'),
    osType: t('osType'),
    productLineId: t('productLineId'),
  };
}

export function parseMemoryAllocation(n: XmlNode, method: string): MemoryAllocationInfo {
  const out: MemoryAllocationInfo = {};
  const r = childText(n, 'reservation');
  if (r !== undefined) out.reservation = parseIntStrict(r, 'memoryAllocation.reservation', method);
  const l = childText(n, 'limit');
  if (l !== undefined) out.limit = parseIntStrict(l, 'memoryAllocation.limit', method);
  const e = childText(n, 'expandableReservation');
  if (e !== undefined) out.expandableReservation = parseBool(e, 'memoryAllocation.expandableReservation', method);
  const o = childText(n, 'overheadLimit');
  if (o !== undefined) out.overheadLimit = parseIntStrict(o, 'memoryAllocation.overheadLimit', method);
  const s = child(n, 'shares');
  if (s) {
    const level = childText(s, 'level') ?? 'normal';
    if (!['low', 'normal', 'high', 'custom'].includes(level)) {
      throw new VSphereProtocolError(`${method}: unknown shares level ${JSON.stringify(level)}`, method);
    }
    out.shares = { level: level as SharesLevel, shares: parseIntStrict(childText(s, 'shares') ?? '0', 'shares', method) };
  }
  return out;
}

export function parseUpdateSet(rv: XmlNode, method: string): ObjectUpdate[] {
  const out: ObjectUpdate[] = [];
  for (const fs of childrenNamed(rv, 'filterSet')) {
    for (const os of childrenNamed(fs, 'objectSet')) {
      const kind = childText(os, 'kind');
      if (kind !== 'enter' && kind !== 'modify' && kind !== 'leave') {
        throw new VSphereProtocolError(`${method}: unknown update kind ${JSON.stringify(kind)}`, method);
      }
      const changes: PropertyChange[] = childrenNamed(os, 'changeSet').map((cs) => {
        const op = childText(cs, 'op') ?? 'assign';
        if (op !== 'add' && op !== 'remove' && op !== 'assign' && op !== 'indirectRemove') {
          throw new VSphereProtocolError(`${method}: unknown change op ${JSON.stringify(op)}`, method);
        }
        return { name: childText(cs, 'name') ?? '', op, val: child(cs, 'val') };
      });
      out.push({ obj: parseMoRef(child(os, 'obj'), method), kind, changes });
    }
  }
  return out;
}

// The client ------------------------------------------------------------------------------

export class VSphereClient {
  readonly #transport: Transport;
  readonly #username: string;
  readonly #password: string;
  readonly #locale: string;
  readonly #taskTimeoutMs: number;
  readonly #pageSize: number;
  #apiVersion: string;
  #content: ServiceContent | undefined;
  #session: UserSession | undefined;
  #loggedIn = false; // the user asked for a session (so re-login on expiry is wanted)
  #relogin: Promise<void> | undefined;
  #generation = 0; // bumps on every successful login

  constructor(opts: VSphereClientOptions) {
    this.#transport = new Transport(opts);
    this.#username = opts.username;
    this.#password = opts.password;
    this.#locale = opts.locale ?? 'en';
    this.#taskTimeoutMs = opts.taskTimeoutMs ?? 5 * 60_000;
    this.#apiVersion = opts.apiVersion ?? '8.0.1.0';
    this.#pageSize = opts.pageSize ?? 500;
  }

  /** Creates a client, reads the service content and logs in. */
  static async connect(opts: VSphereClientOptions): Promise<VSphereClient> {
    const c = new VSphereClient(opts);
    try {
      await c.login();
    } catch (e) {
      c.#transport.close();
      throw e;
    }
    return c;
  }

  /** The endpoint, without user info. */
  get url(): string {
    return this.#transport.endpoint.href;
  }

  get session(): UserSession | undefined {
    return this.#session;
  }

  // Keep credentials out of console.log / util.inspect.
  toJSON(): object {
    return { url: this.url, username: this.#username };
  }

  [Symbol.for('nodejs.util.inspect.custom')](): string {
    return `VSphereClient { url: '${this.url}', username: '${this.#username}', loggedIn: ${this.#loggedIn} }`;
  }

  // Core call path ---------------------------------------------------------------------------

  async #call<T>(
    method: string,
    self: MoRef,
    params: Child[],
    decode: (res: XmlNode) => T,
    timeoutMs?: number,
  ): Promise<T> {
    const gen = this.#generation;
    try {
      return await this.#callOnce(method, self, params, decode, timeoutMs);
    } catch (e) {
      if (!(e instanceof VSphereFault) || e.faultName !== 'NotAuthenticated' || !this.#loggedIn || NO_RELOGIN.has(method)) {
        throw e;
      }
      // The session expired or was terminated: log in again once, then retry once.
      await this.#reloginOnce(gen);
      return await this.#callOnce(method, self, params, decode, timeoutMs);
    }
  }

  async #callOnce<T>(method: string, self: MoRef, params: Child[], decode: (res: XmlNode) => T, timeoutMs?: number): Promise<T> {
    const body = buildRequest(method, self, ...params);
    const res = await this.#transport.post(method, body, `urn:vim25/${this.#apiVersion}`, timeoutMs);
    const node = decodeResponse(method, res.status, res.contentType, res.body);
    try {
      return decode(node);
    } catch (e) {
      if (e instanceof VSphereError) throw e;
      throw new VSphereProtocolError(`${method}: cannot decode response: ${(e as Error).message}`, method, res.status, { cause: e });
    }
  }

  #reloginOnce(failedGeneration: number): Promise<void> {
    if (this.#generation !== failedGeneration) return Promise.resolve(); // someone already did
    if (!this.#relogin) {
      this.#relogin = (async () => {
        try {
          this.#transport.sessionCookie = undefined;
          await this.#doLogin();
        } finally {
          this.#relogin = undefined;
        }
      })();
    }
    return this.#relogin;
  }

  // Service content, sessions ------------------------------------------------------------------

  async retrieveServiceContent(): Promise<ServiceContent> {
    const method = 'RetrieveServiceContent';
    const sc = await this.#callOnce(method, SERVICE_INSTANCE, [], (res) => {
      const rv = child(res, 'returnval');
      if (!rv) throw new VSphereProtocolError(`${method}: no returnval`, method);
      const vm = child(rv, 'viewManager');
      return {
        about: parseAbout(child(rv, 'about')),
        rootFolder: parseMoRef(child(rv, 'rootFolder'), method),
        propertyCollector: parseMoRef(child(rv, 'propertyCollector'), method),
        viewManager: vm ? parseMoRef(vm, method) : undefined,
        sessionManager: parseMoRef(child(rv, 'sessionManager'), method),
        searchIndex: parseMoRef(child(rv, 'searchIndex'), method),
      } satisfies ServiceContent;
    });
    if (sc.about.apiVersion && compareVersions(sc.about.apiVersion, this.#apiVersion) < 0) {
      this.#apiVersion = sc.about.apiVersion;
    }
    this.#content = sc;
    return sc;
  }

  async #sc(): Promise<ServiceContent> {
    return this.#content ?? (await this.retrieveServiceContent());
  }

  /** About info (apiType `HostAgent` for ESXi, `VirtualCenter` for vCenter; version). */
  async about(): Promise<AboutInfo> {
    return (await this.#sc()).about;
  }

  async #doLogin(): Promise<UserSession> {
    const sc = await this.#sc();
    const method = 'Login';
    const s = await this.#callOnce(
      method,
      sc.sessionManager,
      [el('userName', null, this.#username), el('password', null, this.#password), el('locale', null, this.#locale)],
      (res) => {
        const rv = child(res, 'returnval');
        const key = childText(rv, 'key');
        if (!rv || !key) throw new VSphereProtocolError(`${method}: no session in response`, method);
        return {
          key,
          userName: childText(rv, 'userName') ?? '',
          fullName: childText(rv, 'fullName') ?? '',
          loginTime: childText(rv, 'loginTime') ?? '',
        };
      },
    );
    if (this.#transport.sessionCookie === undefined) {
      throw new VSphereProtocolError(`${method}: server set no ${'vmware_soap_session'} cookie`, method);
    }
    this.#session = s;
    this.#loggedIn = true;
    this.#generation++;
    return s;
  }

  /** Logs in (SessionManager.Login). A wrong user or password gives VSphereFault `InvalidLogin`. */
  async login(): Promise<UserSession> {
    this.#transport.sessionCookie = undefined;
    return await this.#doLogin();
  }

  /** Logs out and forgets the session (no re-login afterwards until login() is called). */
  async logout(): Promise<void> {
    await this.#logout();
  }

  async #logout(timeoutMs?: number): Promise<void> {
    if (!this.#loggedIn && this.#transport.sessionCookie === undefined) return;
    const sc = this.#content;
    this.#loggedIn = false;
    if (!sc) {
      this.#transport.sessionCookie = undefined;
      return;
    }
    try {
      await this.#callOnce('Logout', sc.sessionManager, [], () => undefined, timeoutMs);
    } catch (e) {
      if (!(e instanceof VSphereFault && e.faultName === 'NotAuthenticated')) throw e;
    } finally {
      this.#transport.sessionCookie = undefined;
      this.#session = undefined;
    }
  }

  /** Terminates other sessions by key (SessionManager.TerminateSession). */
  async terminateSessions(keys: string[]): Promise<void> {
    const sc = await this.#sc();
    await this.#call('TerminateSession', sc.sessionManager, [keys.map((k) => el('sessionId', null, k))], () => undefined);
  }

  /** Logs out (best effort, at most 5 s) and releases the connections. */
  async close(): Promise<void> {
    try {
      await this.#logout(Math.min(5000, this.#transport.requestTimeoutMs));
    } catch {
      // the session is gone either way
    } finally {
      this.#transport.close();
    }
  }

  // Properties -------------------------------------------------------------------------------

  #decodeRetrieveResult(method: string, rv: XmlNode | undefined): { objects: ObjectContent[]; token: string | undefined } {
    if (!rv) return { objects: [], token: undefined };
    const objects: ObjectContent[] = [];
    for (const o of childrenNamed(rv, 'objects')) {
      const props = new Map<string, XmlNode>();
      for (const p of childrenNamed(o, 'propSet')) {
        const name = childText(p, 'name');
        const val = child(p, 'val');
        if (name !== undefined && val) props.set(name, val);
      }
      const missing = new Map<string, VSphereFault>();
      for (const m of childrenNamed(o, 'missingSet')) {
        const path = childText(m, 'path') ?? '';
        const f = child(m, 'fault');
        const fault = f ? decodeLocalizedFault(method, f) : new VSphereFault({ method, faultName: 'MethodFault', faultString: '' });
        if (fault.faultName === 'NotAuthenticated') throw fault; // triggers re-login
        missing.set(path, fault);
      }
      objects.push({ obj: parseMoRef(child(o, 'obj'), method), props, missing });
    }
    return { objects, token: childText(rv, 'token') };
  }

  /** RetrievePropertiesEx over the given spec (objectSet elements), following continuation tokens. */
  async #retrieve(type: string, paths: readonly string[], objectSets: Raw[]): Promise<ObjectContent[]> {
    const sc = await this.#sc();
    const method = 'RetrievePropertiesEx';
    const first = await this.#call(
      method,
      sc.propertyCollector,
      [propertyFilterSpecXml(type, paths, objectSets), el('options', null, el('maxObjects', null, this.#pageSize))],
      (res) => this.#decodeRetrieveResult(method, child(res, 'returnval')),
    );
    const all = [...first.objects];
    let token = first.token;
    for (let i = 0; token !== undefined; i++) {
      if (i > 10_000) throw new VSphereProtocolError(`${method}: too many continuation pages`, method);
      const m2 = 'ContinueRetrievePropertiesEx';
      const page = await this.#call(m2, sc.propertyCollector, [el('token', null, token)], (res) =>
        this.#decodeRetrieveResult(m2, child(res, 'returnval')),
      );
      all.push(...page.objects);
      token = page.token;
    }
    return all;
  }

  /** Reads `paths` of each object (all of one type). Unknown objects give ManagedObjectNotFound. */
  async retrieveProperties(objs: MoRef[], paths: readonly string[]): Promise<ObjectContent[]> {
    if (objs.length === 0) return [];
    const type = objs[0]!.type;
    return await this.#retrieve(type, paths, objs.map(objectSpecXml));
  }

  /** Every object of `type` under the root folder, with `paths`, through a ContainerView (destroyed after). */
  async listObjects(type: string, paths: readonly string[]): Promise<ObjectContent[]> {
    const sc = await this.#sc();
    if (!sc.viewManager) throw new VSphereError('this server has no ViewManager', 'CreateContainerView');
    const view = await this.#call(
      'CreateContainerView',
      sc.viewManager,
      [moRef('container', sc.rootFolder), el('type', null, type), el('recursive', null, true)],
      (res) => parseMoRef(child(res, 'returnval'), 'CreateContainerView'),
    );
    try {
      return await this.#retrieve(type, paths, [containerViewObjectSpecXml(view)]);
    } finally {
      try {
        await this.#call('DestroyView', view, [], () => undefined);
      } catch {
        // a view left behind dies with the session
      }
    }
  }

  // Watching ------------------------------------------------------------------------------------

  /**
   * Watches `paths` of every object of `type` (through a ContainerView and a private
   * PropertyCollector, WaitForUpdatesEx long polls). `onUpdates(updates, initial)` gets the
   * whole current set first (`initial` true: kind `enter`), then changes. A broken watch (network,
   * expired session, ...) is reported to `onError` and re-established with a new initial set.
   */
  async watch(
    type: string,
    paths: readonly string[],
    onUpdates: (updates: ObjectUpdate[], initial: boolean) => void,
    opts: WatchOptions = {},
  ): Promise<Watch> {
    const maxWait = opts.maxWaitSeconds ?? 60;
    const retryMin = opts.retryMinMs ?? 1000;
    const retryMax = opts.retryMaxMs ?? 30_000;
    let stopped = false;
    let collector: MoRef | undefined;
    let view: MoRef | undefined;
    let wake: (() => void) | undefined;

    const teardown = async () => {
      const pc = collector;
      const v = view;
      collector = undefined;
      view = undefined;
      for (const [m, ref] of [['DestroyPropertyCollector', pc], ['DestroyView', v]] as const) {
        if (!ref) continue;
        try {
          await this.#callOnce(m, ref, [], () => undefined, 5000);
        } catch {
          // gone with the session anyway
        }
      }
    };

    const setup = async () => {
      const sc = await this.#sc();
      if (!sc.viewManager) throw new VSphereError('this server has no ViewManager', 'CreateContainerView');
      collector = await this.#call('CreatePropertyCollector', sc.propertyCollector, [], (res) =>
        parseMoRef(child(res, 'returnval'), 'CreatePropertyCollector'),
      );
      view = await this.#call(
        'CreateContainerView',
        sc.viewManager,
        [moRef('container', sc.rootFolder), el('type', null, type), el('recursive', null, true)],
        (res) => parseMoRef(child(res, 'returnval'), 'CreateContainerView'),
      );
      await this.#call(
        'CreateFilter',
        collector,
        [propertyFilterSpecXml(type, paths, [containerViewObjectSpecXml(view)], 'spec'), el('partialUpdates', null, false)],
        () => undefined,
      );
    };

    // Resolves when the first initial set has been delivered; rejects if the first attempt fails
    // (so a caller learns of a broken setup at once, and sees every change made after watch()).
    let readyResolve!: () => void;
    let readyReject!: (e: unknown) => void;
    const ready = new Promise<void>((res, rej) => {
      readyResolve = res;
      readyReject = rej;
    });
    let first = true;

    const loop = async () => {
      let delay = retryMin;
      while (!stopped) {
        try {
          await setup();
          let version = '';
          let initial = true;
          while (!stopped) {
            const method = 'WaitForUpdatesEx';
            const res = await this.#call(
              method,
              collector!,
              [el('version', null, version), el('options', null, el('maxWaitSeconds', null, maxWait))],
              (r) => r,
              (maxWait + 30) * 1000,
            );
            const rv = child(res, 'returnval');
            if (!rv) continue; // maxWaitSeconds passed without a change
            version = childText(rv, 'version') ?? version;
            const updates = parseUpdateSet(rv, method);
            const truncated = childText(rv, 'truncated') === 'true';
            if (updates.length > 0 || initial) {
              try {
                onUpdates(updates, initial);
              } catch {
                // a subscriber's failure is its own
              }
            }
            if (!truncated && initial) {
              initial = false;
              if (first) {
                first = false;
                readyResolve();
              }
            }
            delay = retryMin;
          }
        } catch (e) {
          if (stopped) break;
          if (first) {
            stopped = true;
            readyReject(e);
            break;
          }
          const err = e instanceof VSphereError ? e : new VSphereError(String(e), 'watch', { cause: e });
          try {
            opts.onError?.(err);
          } catch {
            // ignore
          }
          await teardown();
          await new Promise<void>((r) => {
            const t = setTimeout(r, delay);
            wake = () => {
              clearTimeout(t);
              r();
            };
          });
          wake = undefined;
          delay = Math.min(delay * 2, retryMax);
        }
      }
      await teardown();
    };

    const done = loop();
    try {
      await ready;
    } catch (e) {
      await done;
      throw e;
    }
    return {
      stop: async () => {
        if (stopped) return done;
        stopped = true;
        wake?.();
        const pc = collector;
        if (pc) {
          try {
            await this.#callOnce('CancelWaitForUpdates', pc, [], () => undefined, 5000);
          } catch {
            // the wait ends with its own timeout
          }
        }
        // A cancel that raced with the start of a wait leaves that wait to its maxWaitSeconds: do
        // not hold the caller that long (the loop still tears down when the wait returns).
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([done, new Promise<void>((r) => (timer = setTimeout(r, 5000)))]);
        clearTimeout(timer);
      },
    };
  }

  // Lookups ----------------------------------------------------------------------------------

  /** SearchIndex.FindByUuid for VMs: BIOS uuid (`config.uuid`) or, with instanceUuid, `config.instanceUuid`. */
  async findVmByUuid(uuid: string, opts: { instanceUuid?: boolean; datacenter?: MoRef } = {}): Promise<MoRef | undefined> {
    const sc = await this.#sc();
    const method = 'FindByUuid';
    return await this.#call(
      method,
      sc.searchIndex,
      [
        opts.datacenter ? moRef('datacenter', opts.datacenter) : undefined,
        el('uuid', null, uuid),
        el('vmSearch', null, true),
        el('instanceUuid', null, opts.instanceUuid === true),
      ],
      (res) => {
        const rv = child(res, 'returnval');
        return rv ? parseMoRef(rv, method) : undefined;
      },
    );
  }

  /** SearchIndex.FindByInventoryPath, e.g. `DC0/vm/web-01`. Returns any managed entity found. */
  async findByInventoryPath(path: string): Promise<MoRef | undefined> {
    const sc = await this.#sc();
    const method = 'FindByInventoryPath';
    return await this.#call(method, sc.searchIndex, [el('inventoryPath', null, path)], (res) => {
      const rv = child(res, 'returnval');
      return rv ? parseMoRef(rv, method) : undefined;
    });
  }

  /**
   * VMs whose name is exactly `name` (names are unique per folder only, so there may be several).
   * vCenter reports `/`, `\` and `%` in entity names escaped (`%2f`, `%5c`, `%25`): both the
   * name as given and its escaped form match.
   */
  async findVmsByName(name: string): Promise<MoRef[]> {
    const escaped = escapeEntityName(name);
    const all = await this.listObjects('VirtualMachine', ['name']);
    return all
      .filter((o) => {
        const n = o.props.get('name')?.text;
        return n === name || n === escaped;
      })
      .map((o) => o.obj);
  }

  /** Resolves a selector to exactly one VM, or throws VSphereNotFoundError naming what was looked for. */
  async lookupVm(sel: VmSelector): Promise<MoRef> {
    const method = 'lookupVm';
    let ref: MoRef | undefined;
    let what: string;
    if ('name' in sel) {
      what = `name ${JSON.stringify(sel.name)}`;
      const refs = await this.findVmsByName(sel.name);
      if (refs.length > 1) {
        throw new VSphereNotFoundError(
          `${refs.length} VMs are named ${JSON.stringify(sel.name)} (${refs.map((r) => r.value).join(', ')}): use a uuid`,
          method,
          true,
        );
      }
      ref = refs[0];
    } else if ('uuid' in sel) {
      what = `BIOS uuid ${sel.uuid}`;
      ref = await this.findVmByUuid(sel.uuid);
    } else if ('instanceUuid' in sel) {
      what = `instance uuid ${sel.instanceUuid}`;
      ref = await this.findVmByUuid(sel.instanceUuid, { instanceUuid: true });
    } else if ('inventoryPath' in sel) {
      what = `inventory path ${JSON.stringify(sel.inventoryPath)}`;
      ref = await this.findByInventoryPath(sel.inventoryPath);
      if (ref && ref.type !== 'VirtualMachine') {
        throw new VSphereNotFoundError(`${what} is a ${ref.type}, not a VirtualMachine`, method);
      }
    } else {
      what = `managed object ${sel.moref}`;
      ref = { type: 'VirtualMachine', value: sel.moref };
      try {
        await this.retrieveProperties([ref], ['name']);
      } catch (e) {
        if (e instanceof VSphereFault && e.faultName === 'ManagedObjectNotFound') ref = undefined;
        else throw e;
      }
    }
    if (!ref) throw new VSphereNotFoundError(`no VM with ${what} on ${this.url}`, method);
    return ref;
  }

  // VM memory -----------------------------------------------------------------------------------

  /** Reads the memory-related properties of a VM. */
  async getVmMemory(vm: MoRef): Promise<VmMemoryInfo> {
    const method = 'RetrievePropertiesEx';
    const [o] = await this.retrieveProperties([vm], VM_MEMORY_PROPERTIES);
    if (!o) throw new VSphereNotFoundError(`VM ${vm.value} not found on ${this.url}`, method);
    const p = o.props;
    const text = (k: string) => p.get(k)?.text;
    const int = (k: string) => {
      const t = text(k);
      return t === undefined ? undefined : parseIntStrict(t, k, method);
    };
    const memoryMB = int('config.hardware.memoryMB');
    if (memoryMB === undefined) throw new VSphereProtocolError(`${method}: VM ${vm.value} has no config.hardware.memoryMB`, method);
    const ps = text('runtime.powerState');
    if (ps !== 'poweredOn' && ps !== 'poweredOff' && ps !== 'suspended') {
      throw new VSphereProtocolError(`${method}: VM ${vm.value}: unknown runtime.powerState ${JSON.stringify(ps)}`, method);
    }
    const alloc = p.get('config.memoryAllocation');
    const qs = p.get('summary.quickStats');
    const qsInt = (k: string) => {
      const t = childText(qs, k);
      return t === undefined ? 0 : parseIntStrict(t, `summary.quickStats.${k}`, method);
    };
    const host = p.get('runtime.host');
    const hotAdd = text('config.memoryHotAddEnabled');
    return {
      ref: o.obj,
      name: text('name') ?? '',
      uuid: text('config.uuid'),
      instanceUuid: text('config.instanceUuid'),
      memoryMB,
      memoryAllocation: alloc ? parseMemoryAllocation(alloc, method) : {},
      memoryHotAddEnabled: hotAdd === undefined ? false : parseBool(hotAdd, 'config.memoryHotAddEnabled', method),
      hotPlugMemoryLimit: int('config.hotPlugMemoryLimit'),
      hotPlugMemoryIncrementSize: int('config.hotPlugMemoryIncrementSize'),
      powerState: ps,
      host: host ? parseMoRef(host, method) : undefined,
      quickStats: {
        guestMemoryUsage: qsInt('guestMemoryUsage'),
        hostMemoryUsage: qsInt('hostMemoryUsage'),
        balloonedMemory: qsInt('balloonedMemory'),
      },
    };
  }

  /** Host memory capacity of one host, or of every host when none is given. */
  async hostMemory(host?: MoRef): Promise<HostMemoryInfo[]> {
    const method = 'RetrievePropertiesEx';
    const paths = ['name', 'summary.hardware.memorySize'];
    const objs = host ? await this.retrieveProperties([host], paths) : await this.listObjects('HostSystem', paths);
    return objs.map((o) => ({
      ref: o.obj,
      name: o.props.get('name')?.text ?? '',
      memorySizeBytes: parseBigIntStrict(o.props.get('summary.hardware.memorySize')?.text, 'summary.hardware.memorySize', method),
    }));
  }

  // Tasks -----------------------------------------------------------------------------------

  /**
   * Waits for a task to finish by polling `info.state`/`info.error` (25 ms doubling to 1 s).
   * Resolves on success; throws the task's fault as a VSphereFault; VSphereTimeoutError past the deadline.
   */
  async waitForTask(task: MoRef, opts: { timeoutMs?: number; method?: string } = {}): Promise<void> {
    const method = opts.method ?? 'waitForTask';
    const timeoutMs = opts.timeoutMs ?? this.#taskTimeoutMs;
    const deadline = Date.now() + timeoutMs;
    let delay = 25;
    for (;;) {
      const [o] = await this.retrieveProperties([task], ['info.state', 'info.error']);
      const state = o?.props.get('info.state')?.text;
      if (state === 'success') return;
      if (state === 'error') {
        const err = o?.props.get('info.error');
        if (!err) throw new VSphereFault({ method, faultName: 'MethodFault', faultString: 'task failed without error info', task: task.value });
        throw decodeLocalizedFault(method, err, task.value);
      }
      if (state !== 'queued' && state !== 'running') {
        throw new VSphereProtocolError(`${method}: task ${task.value} has unknown state ${JSON.stringify(state)}`, method);
      }
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new VSphereTimeoutError(`${method}: task ${task.value} still ${state} after ${timeoutMs} ms`, method, timeoutMs);
      }
      await sleep(Math.min(delay, left));
      delay = Math.min(delay * 2, 1000);
    }
  }

  async #runTask(method: string, self: MoRef, params: Child[], timeoutMs?: number): Promise<void> {
    const task = await this.#call(method, self, params, (res) => parseMoRef(child(res, 'returnval'), method));
    const o: { timeoutMs?: number; method: string } = { method };
    if (timeoutMs !== undefined) o.timeoutMs = timeoutMs;
    await this.waitForTask(task, o);
  }

  /**
   * ReconfigVM_Task with memoryMB and/or a whole memoryAllocation, and waits for the task.
   * Task failures surface as VSphereFault (`InvalidArgument`, `InvalidPowerState`, ...).
   */
  async reconfigureVm(vm: MoRef, spec: ReconfigSpec, opts: { timeoutMs?: number } = {}): Promise<void> {
    if (spec.memoryMB === undefined && spec.memoryAllocation === undefined) return;
    await this.#runTask('ReconfigVM_Task', vm, [configSpecXml(spec)], opts.timeoutMs);
  }

  async powerOffVm(vm: MoRef, opts: { timeoutMs?: number } = {}): Promise<void> {
    await this.#runTask('PowerOffVM_Task', vm, [], opts.timeoutMs);
  }

  async powerOnVm(vm: MoRef, opts: { timeoutMs?: number; host?: MoRef } = {}): Promise<void> {
    await this.#runTask('PowerOnVM_Task', vm, [opts.host ? moRef('host', opts.host) : undefined], opts.timeoutMs);
  }

  /**
   * Low-level escape hatch: calls any vim25 method with already-built parameters (see xml.ts `el`),
   * with the same session handling, and returns the `${method}Response` element.
   */
  async invoke(method: string, self: MoRef, params: Raw[] = []): Promise<XmlNode> {
    return await this.#call(method, self, params, (res) => res);
  }

  /** Like invoke() for a `*_Task` method, then waits for the task. */
  async invokeTask(method: string, self: MoRef, params: Raw[] = [], opts: { timeoutMs?: number } = {}): Promise<void> {
    await this.#runTask(method, self, params, opts.timeoutMs);
  }

  /** The service content's managed objects (cached after the first call). */
  async serviceContent(): Promise<ServiceContent> {
    return await this.#sc();
  }

  /** Rename_Task on any managed entity. */
  async renameEntity(ref: MoRef, newName: string, opts: { timeoutMs?: number } = {}): Promise<void> {
    await this.#runTask('Rename_Task', ref, [el('newName', null, newName)], opts.timeoutMs);
  }
}
