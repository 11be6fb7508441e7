// A small vim25 SOAP client: the one object callers hold. It knows nothing of vmmem's resources;
// units are vSphere's own (MiB for memory sizes and allocation, bytes for host memory).
//
// The work is split along the API's own seams: session.ts (login, logout, re-login, the call
// path), properties.ts (RetrievePropertiesEx paging, ContainerViews), watch.ts (WaitForUpdatesEx),
// search.ts (SearchIndex and lookups), tasks.ts (waiting on tasks), specs.ts (request data
// objects), decode.ts (response data objects), types.ts (the data).
import { PropertyCache } from './cache.ts';
import { VSphereNotFoundError } from './errors.ts';
import { parseBigIntStrict } from './soap.ts';
import { parseVmMemory } from './decode.ts';
import { listObjects, retrieveProperties } from './properties.ts';
import * as search from './search.ts';
import type { SessionOptions } from './session.ts';
import { Session } from './session.ts';
import { configSpecXml } from './specs.ts';
import { runTask, waitForTask } from './tasks.ts';
import type {
  AboutInfo, HostMemoryInfo, ObjectContent, ObjectUpdate, ReconfigSpec, ServiceContent, UserSession, VmMemoryInfo,
  VmSelector, Watch, WatchOptions,
} from './types.ts';
import { VM_MEMORY_PROPERTIES } from './types.ts';
import { watch } from './watch.ts';
import type { MoRef } from './soap.ts';
import type { Raw, XmlNode } from './xml.ts';
import { el, moRef } from './xml.ts';

export * from './types.ts';
export type { CachedObject, PropertyCache, SyncResult } from './cache.ts';
export { configSpecXml, containerViewObjectSpecXml, escapeEntityName, memoryAllocationXml, objectSpecXml, propertyFilterSpecXml, sharesXml } from './specs.ts';
export { parseMemoryAllocation, parseUpdateSet, parseVmMemory } from './decode.ts';

export interface VSphereClientOptions extends SessionOptions {
  /** Default deadline for waiting on a task. Default 5 min. */
  taskTimeoutMs?: number | undefined;
  /** maxObjects per RetrievePropertiesEx page (continuations follow). Default 500. */
  pageSize?: number | undefined;
}

export class VSphereClient {
  readonly #s: Session;
  readonly #taskTimeoutMs: number;
  readonly #pageSize: number;

  constructor(opts: VSphereClientOptions) {
    this.#s = new Session(opts);
    this.#taskTimeoutMs = opts.taskTimeoutMs ?? 5 * 60_000;
    this.#pageSize = opts.pageSize ?? 500;
  }

  /** Creates a client, reads the service content and logs in. */
  static async connect(opts: VSphereClientOptions): Promise<VSphereClient> {
    const c = new VSphereClient(opts);
    try {
      await c.login();
    } catch (e) {
      c.#s.transport.close();
      throw e;
    }
    return c;
  }

  /** The endpoint, without user info. */
  get url(): string {
    return this.#s.url;
  }

  get session(): UserSession | undefined {
    return this.#s.user;
  }

  /** SOAP requests sent so far (what an observation cost; re-sends after a re-login count). */
  get calls(): number {
    return this.#s.calls;
  }

  /** Runs `fn` and counts the requests it sends (not those of a watch running meanwhile). */
  async countCalls<T>(fn: () => Promise<T>): Promise<{ result: T; calls: number }> {
    return await this.#s.counting(fn);
  }

  /** maxObjects per RetrievePropertiesEx page. */
  get pageSize(): number {
    return this.#pageSize;
  }

  // Keep credentials out of console.log / util.inspect.
  toJSON(): object {
    return { url: this.url, username: this.#s.username };
  }

  [Symbol.for('nodejs.util.inspect.custom')](): string {
    return `VSphereClient { url: '${this.url}', username: '${this.#s.username}', loggedIn: ${this.#s.loggedIn} }`;
  }

  // Session ----------------------------------------------------------------------------------

  async retrieveServiceContent(): Promise<ServiceContent> {
    return await this.#s.retrieveServiceContent();
  }

  /** The service content's managed objects (cached after the first call). */
  async serviceContent(): Promise<ServiceContent> {
    return await this.#s.content();
  }

  /** About info (apiType `HostAgent` for ESXi, `VirtualCenter` for vCenter; version). */
  async about(): Promise<AboutInfo> {
    return (await this.#s.content()).about;
  }

  /** Logs in (SessionManager.Login). A wrong user or password gives VSphereFault `InvalidLogin`. */
  async login(): Promise<UserSession> {
    return await this.#s.login();
  }

  /** Logs out and forgets the session (no re-login afterwards until login() is called). */
  async logout(): Promise<void> {
    await this.#s.logout();
  }

  /** Terminates other sessions by key (SessionManager.TerminateSession). */
  async terminateSessions(keys: string[]): Promise<void> {
    await this.#s.terminateSessions(keys);
  }

  /** Logs out (best effort, at most 5 s) and releases the connections. */
  async close(): Promise<void> {
    await this.#s.close();
  }

  // Property collector ------------------------------------------------------------------------

  /** Reads `paths` of each object (all of one type). Unknown objects give ManagedObjectNotFound. */
  async retrieveProperties(objs: MoRef[], paths: readonly string[]): Promise<ObjectContent[]> {
    return await retrieveProperties(this.#s, this.#pageSize, objs, paths);
  }

  /** Every object of `type` under the root folder, with `paths`, through a ContainerView (destroyed after). */
  async listObjects(type: string, paths: readonly string[]): Promise<ObjectContent[]> {
    return await listObjects(this.#s, this.#pageSize, type, paths);
  }

  /** See watch.ts: the whole set first, then changes, re-established by itself when broken. */
  async watch(
    type: string,
    paths: readonly string[],
    onUpdates: (updates: ObjectUpdate[], initial: boolean) => void,
    opts: WatchOptions = {},
  ): Promise<Watch> {
    return await watch(this.#s, type, paths, onUpdates, opts);
  }

  /**
   * An incremental copy of `paths` of every `type` under the root folder (cache.ts): one filter,
   * each sync() one WaitForUpdatesEx once the first has read the whole set.
   */
  propertyCache(type: string, paths: readonly string[]): PropertyCache {
    return new PropertyCache(this.#s, type, paths, this.#pageSize);
  }

  // Lookups ----------------------------------------------------------------------------------

  /** SearchIndex.FindByUuid for VMs: BIOS uuid (`config.uuid`) or, with instanceUuid, `config.instanceUuid`. */
  async findVmByUuid(uuid: string, opts: { instanceUuid?: boolean; datacenter?: MoRef } = {}): Promise<MoRef | undefined> {
    return await search.findVmByUuid(this.#s, uuid, opts);
  }

  /** SearchIndex.FindByInventoryPath, e.g. `DC0/vm/web-01`. Returns any managed entity found. */
  async findByInventoryPath(path: string): Promise<MoRef | undefined> {
    return await search.findByInventoryPath(this.#s, path);
  }

  /** VMs whose name (or its vCenter-escaped form) is exactly `name`. */
  async findVmsByName(name: string): Promise<MoRef[]> {
    return await search.findVmsByName(this.#s, this.#pageSize, name);
  }

  /** Resolves a selector to exactly one VM, or throws VSphereNotFoundError naming what was looked for. */
  async lookupVm(sel: VmSelector): Promise<MoRef> {
    return await search.lookupVm(this.#s, this.#pageSize, sel);
  }

  // VM and host memory --------------------------------------------------------------------------

  /** Reads the memory-related properties of a VM. */
  async getVmMemory(vm: MoRef): Promise<VmMemoryInfo> {
    const method = 'RetrievePropertiesEx';
    const [o] = await this.retrieveProperties([vm], VM_MEMORY_PROPERTIES);
    if (!o) throw new VSphereNotFoundError(`VM ${vm.value} not found on ${this.url}`, method);
    return parseVmMemory(o.obj, o.props, method);
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
    await waitForTask(this.#s, this.#pageSize, task, { method: opts.method ?? 'waitForTask', timeoutMs: opts.timeoutMs ?? this.#taskTimeoutMs });
  }

  async #runTask(method: string, self: MoRef, params: (Raw | undefined)[], timeoutMs?: number): Promise<void> {
    await runTask(this.#s, this.#pageSize, method, self, params, timeoutMs ?? this.#taskTimeoutMs);
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

  /** Rename_Task on any managed entity. */
  async renameEntity(ref: MoRef, newName: string, opts: { timeoutMs?: number } = {}): Promise<void> {
    await this.#runTask('Rename_Task', ref, [el('newName', null, newName)], opts.timeoutMs);
  }

  /**
   * Low-level escape hatch: calls any vim25 method with already-built parameters (see xml.ts `el`),
   * with the same session handling, and returns the `${method}Response` element.
   */
  async invoke(method: string, self: MoRef, params: Raw[] = []): Promise<XmlNode> {
    return await this.#s.call(method, self, params, (res) => res);
  }

  /** Like invoke() for a `*_Task` method, then waits for the task. */
  async invokeTask(method: string, self: MoRef, params: Raw[] = [], opts: { timeoutMs?: number } = {}): Promise<void> {
    await this.#runTask(method, self, params, opts.timeoutMs);
  }
}
