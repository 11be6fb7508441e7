// The session: one Transport, the service content, Login/Logout, and the call path every other
// part of the client goes through. A call that fails with NotAuthenticated (the session expired
// or was terminated) logs in again once, shared by all concurrent callers, and is retried once.
import { AsyncLocalStorage } from 'node:async_hooks';
import { VSphereError, VSphereFault, VSphereProtocolError } from './errors.ts';
import { parseServiceContent, parseUserSession } from './decode.ts';
import type { MoRef } from './soap.ts';
import { buildRequest, decodeResponse } from './soap.ts';
import type { TransportOptions } from './transport.ts';
import { SESSION_COOKIE, Transport } from './transport.ts';
import type { ServiceContent, UserSession } from './types.ts';
import type { Child, XmlNode } from './xml.ts';
import { child, el } from './xml.ts';

export interface SessionOptions extends TransportOptions {
  username: string;
  password: string;
  /** The vim25 version sent in SOAPAction (lowered to the server's if older). Default 8.0.1.0. */
  apiVersion?: string | undefined;
  /** Locale for Login (server messages). Default `en`. */
  locale?: string | undefined;
}

export type Decode<T> = (res: XmlNode) => T;

/** Attributes requests to the operation that made them, though other work shares the session. */
const callCounter = new AsyncLocalStorage<{ n: number }>();

const SERVICE_INSTANCE: MoRef = { type: 'ServiceInstance', value: 'ServiceInstance' };
const NO_RELOGIN = new Set(['Login', 'Logout', 'RetrieveServiceContent']);

function compareVersions(a: string, b: string): number {
  const pa = a.split('.').map((x) => Number.parseInt(x, 10) || 0);
  const pb = b.split('.').map((x) => Number.parseInt(x, 10) || 0);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

export class Session {
  readonly transport: Transport;
  readonly #username: string;
  readonly #password: string;
  readonly #locale: string;
  #apiVersion: string;
  #content: ServiceContent | undefined;
  #session: UserSession | undefined;
  #loggedIn = false; // the user asked for a session (so re-login on expiry is wanted)
  #relogin: Promise<void> | undefined;
  #generation = 0; // bumps on every successful login
  /** Every SOAP request sent (re-sends after a re-login included): what a fleet resync costs. */
  calls = 0;

  constructor(opts: SessionOptions) {
    this.transport = new Transport(opts);
    this.#username = opts.username;
    this.#password = opts.password;
    this.#locale = opts.locale ?? 'en';
    this.#apiVersion = opts.apiVersion ?? '8.0.1.0';
  }

  get url(): string {
    return this.transport.endpoint.href;
  }

  get username(): string {
    return this.#username;
  }

  get loggedIn(): boolean {
    return this.#loggedIn;
  }

  get user(): UserSession | undefined {
    return this.#session;
  }

  /** Runs `fn` and counts the requests it (and only it) sends: what one observation cost. */
  async counting<T>(fn: () => Promise<T>): Promise<{ result: T; calls: number }> {
    const ctr = { n: 0 };
    const result = await callCounter.run(ctr, fn);
    return { result, calls: ctr.n };
  }

  /** Calls `method` on `self`, logging in again once if the session has expired. */
  async call<T>(method: string, self: MoRef, params: Child[], decode: Decode<T>, timeoutMs?: number): Promise<T> {
    const gen = this.#generation;
    try {
      return await this.callOnce(method, self, params, decode, timeoutMs);
    } catch (e) {
      if (!(e instanceof VSphereFault) || e.faultName !== 'NotAuthenticated' || !this.#loggedIn || NO_RELOGIN.has(method)) {
        throw e;
      }
      await this.#reloginOnce(gen);
      return await this.callOnce(method, self, params, decode, timeoutMs);
    }
  }

  /** One request, no re-login (for Login/Logout themselves and best-effort cleanup). */
  async callOnce<T>(method: string, self: MoRef, params: Child[], decode: Decode<T>, timeoutMs?: number): Promise<T> {
    const body = buildRequest(method, self, ...params);
    this.calls++;
    const ctr = callCounter.getStore();
    if (ctr) ctr.n++;
    const res = await this.transport.post(method, body, `urn:vim25/${this.#apiVersion}`, timeoutMs);
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
    this.#relogin ??= (async () => {
      try {
        this.transport.sessionCookie = undefined;
        await this.#doLogin();
      } finally {
        this.#relogin = undefined;
      }
    })();
    return this.#relogin;
  }

  async retrieveServiceContent(): Promise<ServiceContent> {
    const method = 'RetrieveServiceContent';
    const sc = await this.callOnce(method, SERVICE_INSTANCE, [], (res) => parseServiceContent(child(res, 'returnval'), method));
    if (sc.about.apiVersion && compareVersions(sc.about.apiVersion, this.#apiVersion) < 0) {
      this.#apiVersion = sc.about.apiVersion;
    }
    this.#content = sc;
    return sc;
  }

  /** The service content (read once, then cached). */
  async content(): Promise<ServiceContent> {
    return this.#content ?? (await this.retrieveServiceContent());
  }

  async #doLogin(): Promise<UserSession> {
    const sc = await this.content();
    const method = 'Login';
    const s = await this.callOnce(
      method,
      sc.sessionManager,
      [el('userName', null, this.#username), el('password', null, this.#password), el('locale', null, this.#locale)],
      (res) => parseUserSession(child(res, 'returnval'), method),
    );
    if (this.transport.sessionCookie === undefined) {
      throw new VSphereProtocolError(`${method}: server set no ${SESSION_COOKIE} cookie`, method);
    }
    this.#session = s;
    this.#loggedIn = true;
    this.#generation++;
    return s;
  }

  /** Logs in (SessionManager.Login). A wrong user or password gives VSphereFault `InvalidLogin`. */
  async login(): Promise<UserSession> {
    this.transport.sessionCookie = undefined;
    return await this.#doLogin();
  }

  /** Logs out and forgets the session (no re-login afterwards until login() is called). */
  async logout(timeoutMs?: number): Promise<void> {
    if (!this.#loggedIn && this.transport.sessionCookie === undefined) return;
    const sc = this.#content;
    this.#loggedIn = false;
    if (!sc) {
      this.transport.sessionCookie = undefined;
      return;
    }
    try {
      await this.callOnce('Logout', sc.sessionManager, [], () => undefined, timeoutMs);
    } catch (e) {
      if (!(e instanceof VSphereFault && e.faultName === 'NotAuthenticated')) throw e;
    } finally {
      this.transport.sessionCookie = undefined;
      this.#session = undefined;
    }
  }

  /** Terminates other sessions by key (SessionManager.TerminateSession). */
  async terminateSessions(keys: string[]): Promise<void> {
    const sc = await this.content();
    await this.call('TerminateSession', sc.sessionManager, [keys.map((k) => el('sessionId', null, k))], () => undefined);
  }

  /** Logs out (best effort, at most 5 s) and releases the connections. */
  async close(): Promise<void> {
    try {
      await this.logout(Math.min(5000, this.transport.requestTimeoutMs));
    } catch {
      // the session is gone either way
    } finally {
      this.transport.close();
    }
  }
}
