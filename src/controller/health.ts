/**
 * HTTP endpoints for Prometheus and the kubelet, like a kubebuilder manager: `/metrics` on the
 * metrics address (default `:8080`), `/healthz` and `/readyz` on the probe address (default
 * `:8081`). Give both the same address to serve everything on one port; give `'0'` to disable one.
 *
 * Checks (kubebuilder's healthz.Checker, in TypeScript): a function returning `true` or nothing
 * when healthy, `false` or a string (the reason) when not; a throw is unhealthy with its message.
 * Response bodies follow kubebuilder: `ok`, or one `[-]name failed: reason` line per failing check
 * and `healthz check failed` / `readyz check failed`; `?verbose` lists passing checks as `[+]name ok`.
 */
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { redactText } from './log.ts';
import type { Logger } from './ports.ts';

export type CheckResult = boolean | string | undefined | void;
export type Checker = () => CheckResult | Promise<CheckResult>;

/** What /metrics serves: a `Metrics` (src/controller/metrics.ts) or anything with the same shape. */
export interface MetricsSource {
  text(): Promise<string>;
  readonly contentType: string;
}

/** A metrics authorizer's verdict: serve, or refuse with 401 (who are you?), 403 (not allowed) or 503 (could not check). */
export type MetricsAccess = { allowed: true } | { allowed: false; status: 401 | 403 | 503; reason: string };

/** The metrics listener's key pair (PEM); `watch`, if given, delivers renewed pairs (e.g. a
 *  rotated mounted Secret) until the returned function is called. */
export interface MetricsTls {
  key: string;
  cert: string;
  watch?: (apply: (next: { key: string; cert: string }) => void) => () => void;
}

/** HTTPS and a per-scrape authorizer for /metrics, both or neither (src/kube/metrics-tls.ts). */
export type MetricsSecurity = Pick<HealthServerOptions, 'metricsTls' | 'authorizeMetrics'>;

export interface HealthServerOptions {
  /** `host:port`, `:port` (all interfaces) or `'0'` (disabled). Default `:8080`. */
  metricsAddress?: string;
  /** `host:port`, `:port` or `'0'`. Default `:8081`. Equal to metricsAddress → one server. */
  probeAddress?: string;
  /** Served on /metrics; without it /metrics is 404. */
  metrics?: MetricsSource;
  /** Serve the metrics listener over HTTPS with this key pair (PEM). Needs its own address: the
   *  kubelet's probes stay plain HTTP, so sharing one port with them is refused. */
  metricsTls?: MetricsTls;
  /** Asked before every /metrics response (e.g. TokenReview + SubjectAccessReview, src/kube/metrics-auth.ts). */
  authorizeMetrics?: (req: http.IncomingMessage) => Promise<MetricsAccess>;
  /** The readiness check (e.g. caches synced), registered as `ready`. */
  ready?: Checker;
  /** More named readiness checks. */
  readyChecks?: Record<string, Checker>;
  /** Named liveness checks in addition to `ping` (which passes while the event loop answers). */
  healthChecks?: Record<string, Checker>;
  /** A check slower than this fails with "timed out" (default 5000 ms). */
  checkTimeoutMs?: number;
  logger?: Logger;
}

export interface HealthServer {
  /** Bound address of the metrics listener (undefined when disabled or shared with probes). */
  readonly metrics: AddressInfo | undefined;
  /** Bound address of the probe listener (undefined when disabled). */
  readonly probes: AddressInfo | undefined;
  /** Base URLs, e.g. `http://127.0.0.1:8080` (loopback substituted for a wildcard host). */
  readonly metricsUrl: string | undefined;
  readonly probeUrl: string | undefined;
  close(): Promise<void>;
}

/** Parses `host:port`, `:port`, `[v6]:port` or a bare port. Returns undefined for `'0'`/empty (disabled). */
export function parseAddress(addr: string): { host: string | undefined; port: number } | undefined {
  const a = addr.trim();
  if (a === '' || a === '0') return undefined;
  let host: string | undefined;
  let portText: string;
  const v6 = /^\[([^\]]+)\]:(\d+)$/.exec(a);
  if (v6 !== null) {
    host = v6[1];
    portText = v6[2] ?? '';
  } else if (/^\d+$/.test(a)) {
    portText = a;
  } else {
    const i = a.lastIndexOf(':');
    if (i < 0) throw new Error(`invalid address ${JSON.stringify(addr)}: want host:port or :port`);
    host = a.slice(0, i) || undefined;
    portText = a.slice(i + 1);
  }
  const port = Number(portText);
  if (!/^\d+$/.test(portText) || port > 65535) throw new Error(`invalid port in address ${JSON.stringify(addr)}`);
  return { host, port };
}

interface CheckOutcome {
  name: string;
  ok: boolean;
  reason: string;
}

async function runCheck(name: string, check: Checker, timeoutMs: number): Promise<CheckOutcome> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    const result = await Promise.race([
      Promise.resolve().then(check),
      new Promise<string>((resolve) => {
        timer = setTimeout(() => resolve(`timed out after ${timeoutMs} ms`), timeoutMs);
      }),
    ]);
    if (result === true || result === undefined) return { name, ok: true, reason: '' };
    if (result === false) return { name, ok: false, reason: 'not ready' };
    return { name, ok: false, reason: String(result) };
  } catch (err) {
    return { name, ok: false, reason: err instanceof Error ? err.message : String(err) };
  } finally {
    clearTimeout(timer);
  }
}

function urlOf(info: AddressInfo, scheme = 'http'): string {
  let host = info.address;
  if (host === '::' || host === '0.0.0.0' || host === '') host = info.family === 'IPv6' ? '::1' : '127.0.0.1';
  if (host.includes(':')) host = `[${host}]`;
  return `${scheme}://${host}:${info.port}`;
}

type Address = { host: string | undefined; port: number };

/** Which listeners to open: metrics and probes on their own addresses, or one shared port. */
function listenerPlan(opts: HealthServerOptions): { metricsAddr: Address | undefined; probeAddr: Address | undefined; shared: boolean } {
  const metricsAddr = parseAddress(opts.metricsAddress ?? ':8080');
  const probeAddr = parseAddress(opts.probeAddress ?? ':8081');
  const shared =
    metricsAddr !== undefined &&
    probeAddr !== undefined &&
    metricsAddr.host === probeAddr.host &&
    metricsAddr.port === probeAddr.port &&
    metricsAddr.port !== 0; // two ephemeral ports are two listeners
  if (shared && opts.metricsTls !== undefined) {
    throw new Error(`metrics over HTTPS need their own address: ${opts.metricsAddress} is also the probe address (the kubelet probes plain HTTP)`);
  }
  return { metricsAddr, probeAddr, shared };
}

/** What a request handler needs: the options, both check sets, the check timeout. */
interface HandlerContext {
  opts: HealthServerOptions;
  healthChecks: Record<string, Checker>;
  readyChecks: Record<string, Checker>;
  timeoutMs: number;
  log: Logger | undefined;
}

/** The liveness checks (always `ping`) and the readiness checks (`ping` when none is given). */
function handlerContext(opts: HealthServerOptions): HandlerContext {
  const healthChecks: Record<string, Checker> = { ping: () => true, ...opts.healthChecks };
  const readyChecks: Record<string, Checker> = {
    ...(opts.ready !== undefined ? { ready: opts.ready } : {}),
    ...opts.readyChecks,
  };
  if (Object.keys(readyChecks).length === 0) readyChecks.ping = () => true;
  return { opts, healthChecks, readyChecks, timeoutMs: opts.checkTimeoutMs ?? 5000, log: opts.logger };
}

/** /healthz or /readyz (or one check, `/readyz/<name>`), answered in kubebuilder's format. */
async function serveChecks(
  ctx: HandlerContext,
  kind: 'healthz' | 'readyz',
  sub: string,
  verbose: boolean,
  res: http.ServerResponse,
): Promise<void> {
  let entries = Object.entries(kind === 'healthz' ? ctx.healthChecks : ctx.readyChecks);
  if (sub !== '') {
    entries = entries.filter(([n]) => n === sub);
    if (entries.length === 0) {
      res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end(`no such check: ${sub}\n`);
      return;
    }
  }
  const outcomes = await Promise.all(entries.map(([n, c]) => runCheck(n, c, ctx.timeoutMs)));
  const failed = outcomes.filter((o) => !o.ok);
  const lines: string[] = [];
  for (const o of outcomes) {
    if (o.ok && verbose) lines.push(`[+]${o.name} ok`);
    else if (!o.ok) lines.push(`[-]${o.name} failed: ${redactText(o.reason)}`);
  }
  let body: string;
  if (failed.length === 0) body = verbose ? `${lines.join('\n')}\n${kind} check passed\n` : 'ok';
  else body = `${lines.join('\n')}\n${kind} check failed\n`;
  if (failed.length > 0) ctx.log?.info({ endpoint: kind, failed: failed.map((f) => f.name) }, `${kind} check failed`);
  res.writeHead(failed.length === 0 ? 200 : 503, {
    'content-type': 'text/plain; charset=utf-8',
    'x-content-type-options': 'nosniff',
  });
  res.end(body);
}

/** /metrics, after the authorizer (when there is one) allows this request. */
async function serveMetricsText(metrics: MetricsSource, authorize: HealthServerOptions['authorizeMetrics'], req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  const access = authorize === undefined ? { allowed: true as const } : await authorize(req);
  if (!access.allowed) {
    res.writeHead(access.status, { 'content-type': 'text/plain; charset=utf-8' }).end(`${access.reason}\n`);
    return;
  }
  const text = await metrics.text();
  res.writeHead(200, { 'content-type': metrics.contentType }).end(text);
}

/** One listener's requests: GET/HEAD only, then /metrics and/or the probes, else 404; a throw is a 500. */
function handler(ctx: HandlerContext, serveMetrics: boolean, serveProbes: boolean): http.RequestListener {
  return (req, res) => {
    void (async () => {
      try {
        const url = new URL(req.url ?? '/', 'http://localhost');
        if (req.method !== 'GET' && req.method !== 'HEAD') {
          res.writeHead(405, { allow: 'GET, HEAD' }).end();
          return;
        }
        const path = url.pathname;
        const verbose = url.searchParams.has('verbose');
        if (serveMetrics && path === '/metrics' && ctx.opts.metrics !== undefined) {
          await serveMetricsText(ctx.opts.metrics, ctx.opts.authorizeMetrics, req, res);
          return;
        }
        if (serveProbes) {
          const m = /^\/(healthz|readyz)(?:\/([^/]+))?\/?$/.exec(path);
          if (m !== null) {
            await serveChecks(ctx, m[1] as 'healthz' | 'readyz', m[2] ?? '', verbose, res);
            return;
          }
        }
        res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end('404 page not found\n');
      } catch (err) {
        ctx.log?.error({ err, path: req.url }, 'health server request failed');
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' });
        res.end('internal error\n');
      }
    })();
  };
}

/** The open listeners and certificate watches, closed together. */
class Listeners {
  readonly #servers: http.Server[] = [];
  readonly #unwatch: (() => void)[] = [];
  readonly #ctx: HandlerContext;

  constructor(ctx: HandlerContext) {
    this.#ctx = ctx;
  }

  async listen(addr: Address, serveMetrics: boolean, serveProbes: boolean, tls?: MetricsTls): Promise<AddressInfo> {
    const onRequest = handler(this.#ctx, serveMetrics, serveProbes);
    const server = tls === undefined ? http.createServer(onRequest) : https.createServer({ key: tls.key, cert: tls.cert }, onRequest);
    // New connections get the renewed pair; open ones keep theirs.
    if (tls?.watch) this.#unwatch.push(tls.watch((next) => (server as https.Server).setSecureContext(next)));
    server.keepAliveTimeout = 5000;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(addr.port, addr.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', (err) => this.#ctx.log?.error({ err }, 'health server error'));
    this.#servers.push(server);
    return server.address() as AddressInfo;
  }

  async close(): Promise<void> {
    for (const stop of this.#unwatch.splice(0)) stop();
    await Promise.all(
      this.#servers.splice(0).map(
        (s) =>
          new Promise<void>((resolve) => {
            s.close(() => resolve());
            s.closeAllConnections();
          }),
      ),
    );
  }
}

/** Starts the listeners; resolves once they are bound. */
export async function startHealthServer(opts: HealthServerOptions = {}): Promise<HealthServer> {
  const { metricsAddr, probeAddr, shared } = listenerPlan(opts);
  const ctx = handlerContext(opts);
  const listeners = new Listeners(ctx);
  try {
    let metricsInfo: AddressInfo | undefined;
    let probeInfo: AddressInfo | undefined;
    if (shared) {
      probeInfo = await listeners.listen(probeAddr!, true, true);
    } else {
      if (metricsAddr !== undefined) metricsInfo = await listeners.listen(metricsAddr, true, false, opts.metricsTls);
      if (probeAddr !== undefined) probeInfo = await listeners.listen(probeAddr, false, true);
    }
    const m = shared ? probeInfo : metricsInfo;
    const metricsScheme = opts.metricsTls === undefined ? 'http' : 'https';
    ctx.log?.info(
      { metrics: m !== undefined ? urlOf(m, metricsScheme) : 'disabled', metricsAuth: opts.authorizeMetrics !== undefined, probes: probeInfo !== undefined ? urlOf(probeInfo) : 'disabled' },
      'serving metrics and health probes',
    );
    return {
      metrics: metricsInfo,
      probes: probeInfo,
      metricsUrl: m !== undefined ? urlOf(m, metricsScheme) : undefined,
      probeUrl: probeInfo !== undefined ? urlOf(probeInfo) : undefined,
      close: () => listeners.close(),
    };
  } catch (err) {
    await listeners.close();
    throw err;
  }
}
