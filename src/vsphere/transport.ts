// HTTPS transport: one keep-alive Agent per client, TLS verification on unless explicitly
// disabled, a deadline on every request, a cap on response size, and the vmware_soap_session cookie.
//
// The endpoint is tenant input (a Hypervisor's spec.uri), so a hostile server must not be able to
// exhaust the operator's memory: a body is refused as soon as it passes the cap (announced by
// Content-Length or counted while streaming), and the cap is far below the heap because parsing
// multiplies it (the XML tree costs tens of bytes per byte). Large inventories are paged by
// RetrievePropertiesEx maxObjects, so no legitimate answer needs more.
import http from 'node:http';
import https from 'node:https';
import { VSphereProtocolError, VSphereTimeoutError, VSphereTransportError } from './errors.ts';

export const SESSION_COOKIE = 'vmware_soap_session';

/**
 * 8 MiB: a RetrievePropertiesEx page of a few hundred VMs is well under 1 MiB, and parsing
 * 8 MiB of the worst XML stays within a 256 MiB heap (test/security/vsphere-hostile.test.ts).
 */
export const DEFAULT_MAX_RESPONSE_BYTES = 8 * 1024 * 1024;

export interface TransportOptions {
  /** `https://host[:port]/sdk`. User info in the URL is refused (credentials come from the Secret). */
  url: string;
  /** PEM CA bundle to trust (replaces the system roots for this client). */
  caPem?: string | undefined;
  /** Disables certificate verification. Only when explicitly true. */
  insecureSkipVerify?: boolean | undefined;
  /** TLS server name to verify against, when it differs from the URL host. */
  serverName?: string | undefined;
  /** Per-request deadline (connect + send + whole response). Default 30 s. */
  requestTimeoutMs?: number | undefined;
  /** Largest accepted response body. Default DEFAULT_MAX_RESPONSE_BYTES (8 MiB). */
  maxResponseBytes?: number | undefined;
}

/** Internal: the keep-alive socket was closed by the server before our request was read. */
class StaleSocketError extends VSphereTransportError {
  constructor(method: string) {
    super(`${method}: keep-alive connection closed by the server`, method, 'ECONNRESET');
  }
}

export interface HttpResult {
  status: number;
  contentType: string;
  body: string;
}

export class Transport {
  readonly endpoint: URL;
  readonly #agent: https.Agent | http.Agent;
  readonly #timeoutMs: number;
  readonly #maxBytes: number;
  #cookie: string | undefined;
  #closed = false;

  constructor(opts: TransportOptions) {
    let u: URL;
    try {
      u = new URL(opts.url);
    } catch {
      throw new VSphereTransportError('invalid vSphere URL', 'connect', 'ERR_INVALID_URL');
    }
    if (u.username !== '' || u.password !== '') {
      throw new VSphereTransportError(
        'credentials in the vSphere URL are refused: put username and password in the Secret named by spec.credentialsSecretRef',
        'connect',
        'ERR_INVALID_URL',
      );
    }
    if (u.search !== '' || u.hash !== '') {
      throw new VSphereTransportError('a vSphere URL has no query or fragment (use https://host[:port]/sdk)', 'connect', 'ERR_INVALID_URL');
    }
    if (u.protocol !== 'https:' && u.protocol !== 'http:') {
      throw new VSphereTransportError(`unsupported URL scheme ${u.protocol} (want https:)`, 'connect', 'ERR_INVALID_URL');
    }
    if (u.pathname === '/' || u.pathname === '') u.pathname = '/sdk';
    this.endpoint = u;
    this.#timeoutMs = opts.requestTimeoutMs ?? 30_000;
    this.#maxBytes = opts.maxResponseBytes ?? DEFAULT_MAX_RESPONSE_BYTES;
    if (u.protocol === 'https:') {
      const agentOpts: https.AgentOptions = {
        keepAlive: true,
        maxSockets: 8,
        rejectUnauthorized: opts.insecureSkipVerify !== true,
      };
      if (opts.caPem !== undefined) agentOpts.ca = opts.caPem;
      if (opts.serverName !== undefined) agentOpts.servername = opts.serverName;
      this.#agent = new https.Agent(agentOpts);
    } else {
      this.#agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
    }
  }

  /** The default per-request deadline, ms. */
  get requestTimeoutMs(): number {
    return this.#timeoutMs;
  }

  /** The session cookie value as the server set it (opaque), or undefined. */
  get sessionCookie(): string | undefined {
    return this.#cookie;
  }

  set sessionCookie(v: string | undefined) {
    this.#cookie = v;
  }

  close(): void {
    this.#closed = true;
    this.#agent.destroy();
  }

  /**
   * Posts one SOAP request. `method` is only used in error messages. A request that fails with
   * a reset on a reused keep-alive socket (the server closed it while idle, before reading our
   * request) is sent once more on a fresh connection, as Node's documentation advises.
   */
  async post(method: string, body: string, soapAction: string, timeoutMs?: number): Promise<HttpResult> {
    try {
      return await this.#postOnce(method, body, soapAction, timeoutMs);
    } catch (e) {
      if (e instanceof StaleSocketError) return await this.#postOnce(method, body, soapAction, timeoutMs);
      throw e;
    }
  }

  #postOnce(method: string, body: string, soapAction: string, timeoutMs?: number): Promise<HttpResult> {
    if (this.#closed) {
      return Promise.reject(new VSphereTransportError(`${method}: client is closed`, method, 'ERR_CLIENT_CLOSED'));
    }
    const deadline = timeoutMs ?? this.#timeoutMs;
    const u = this.endpoint;
    const payload = Buffer.from(body, 'utf8');
    const mod = u.protocol === 'https:' ? https : http;
    return new Promise<HttpResult>((resolve, reject) => {
      let settled = false;
      const fail = (err: Error) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        req.destroy();
        reject(err);
      };
      const req = mod.request(
        this.#requestOptions(payload, soapAction),
        (res) => {
          this.#captureCookie(res.headers['set-cookie']);
          const tooLarge = () =>
            fail(new VSphereProtocolError(`${method}: response from ${u.host} larger than ${this.#maxBytes} bytes (refused; the connection is closed)`, method, res.statusCode));
          const announced = Number(res.headers['content-length']);
          if (Number.isFinite(announced) && announced > this.#maxBytes) {
            tooLarge();
            return;
          }
          const chunks: Buffer[] = [];
          let size = 0;
          res.on('data', (c: Buffer) => {
            if (settled) return;
            size += c.length;
            if (size > this.#maxBytes) {
              chunks.length = 0; // let what was read go now, not when the socket is collected
              tooLarge();
              return;
            }
            chunks.push(c);
          });
          res.on('error', (e: NodeJS.ErrnoException) =>
            fail(new VSphereTransportError(`${method}: reading response from ${u.host}: ${e.message}`, method, e.code, { cause: e })),
          );
          res.on('aborted', () =>
            fail(new VSphereTransportError(`${method}: response from ${u.host} aborted`, method, 'ECONNRESET')),
          );
          res.on('end', () => {
            if (settled) return;
            settled = true;
            clearTimeout(timer);
            resolve({
              status: res.statusCode ?? 0,
              contentType: String(res.headers['content-type'] ?? ''),
              body: Buffer.concat(chunks).toString('utf8'),
            });
          });
        },
      );
      const timer = setTimeout(
        () => fail(new VSphereTimeoutError(`${method}: no complete response from ${u.host} within ${deadline} ms`, method, deadline)),
        deadline,
      );
      let gotResponse = false;
      req.on('response', () => {
        gotResponse = true;
      });
      req.on('error', (e: NodeJS.ErrnoException) => {
        if (!gotResponse && req.reusedSocket && (e.code === 'ECONNRESET' || e.code === 'EPIPE')) {
          fail(new StaleSocketError(method));
          return;
        }
        fail(connectionError(method, u.host, e));
      });
      req.end(payload);
    });
  }

  /** One SOAP POST to the endpoint, with the session cookie when there is one. */
  #requestOptions(payload: Buffer, soapAction: string): http.RequestOptions {
    const u = this.endpoint;
    const headers: http.OutgoingHttpHeaders = {
      'Content-Type': 'text/xml; charset="utf-8"',
      'Content-Length': payload.length,
      SOAPAction: `"${soapAction}"`,
      Accept: 'text/xml, application/soap+xml',
      'User-Agent': 'vmmem-vsphere/0.1',
    };
    if (this.#cookie !== undefined) headers.Cookie = `${SESSION_COOKIE}=${this.#cookie}`;
    return {
      protocol: u.protocol,
      hostname: u.hostname.replace(/^\[|\]$/g, ''),
      port: u.port === '' ? undefined : Number(u.port),
      path: u.pathname + u.search,
      method: 'POST',
      headers,
      agent: this.#agent,
    };
  }

  #captureCookie(setCookie: string[] | undefined): void {
    if (!setCookie) return;
    for (const line of setCookie) {
      const first = line.split(';', 1)[0] ?? '';
      const eq = first.indexOf('=');
      if (eq < 0) continue;
      if (first.slice(0, eq).trim() === SESSION_COOKIE) {
        const v = first.slice(eq + 1).trim();
        this.#cookie = v === '' ? undefined : v;
      }
    }
  }
}

/** A request that failed before a response: TLS verification failures say how to fix them. */
function connectionError(method: string, host: string, e: NodeJS.ErrnoException): VSphereTransportError {
  const tls = typeof e.code === 'string' && /CERT|SELF_SIGNED|TLS|SSL|ALTNAME|UNABLE_TO/.test(e.code);
  const msg = tls
    ? `${method}: TLS verification of ${host} failed: ${e.message} (supply the server's CA, or set insecureSkipVerify explicitly)`
    : `${method}: connection to ${host} failed: ${e.message}`;
  return new VSphereTransportError(msg, method, e.code, { cause: e });
}
