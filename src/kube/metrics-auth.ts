// Who may read /metrics, decided by the API server, as kubebuilder's metrics server does
// (controller-runtime filters.WithAuthenticationAndAuthorization): the scraper sends its
// ServiceAccount token as `Authorization: Bearer`; a TokenReview says who it is (401 if nobody),
// a SubjectAccessReview whether that identity may `get` the non-resource URL /metrics (403 if not).
// Grant it with a ClusterRole rule `nonResourceURLs: ["/metrics"], verbs: ["get"]` bound to the
// scraper (ClusterRole vmmem-metrics-reader, deploy/base/rbac/metrics-auth.yaml). The operator itself needs `create` on
// tokenreviews and subjectaccessreviews (METRICS_AUTH_RULES in rbac.ts).
//
// Verdicts are cached by a hash of the token (never the token itself): an allow for 60 s, a deny
// for 10 s, at most 1000 tokens, so a scrape every 15 s costs two API requests a minute, not two
// per scrape. A revoked binding therefore stops a scraper within a minute.
import { createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import * as k8s from '@kubernetes/client-node';
import type { MetricsAccess } from '../controller/health.ts';
import { DEFAULT_REQUEST_TIMEOUT_MS, requestOptions, type Logger } from './http.ts';

export interface MetricsAuthOptions {
  /** How long an allow verdict is reused (default 60 s, controller-runtime's authentication cache; 0 = ask every time). */
  allowTtlMs?: number;
  /** How long a deny (401/403) verdict is reused (default 10 s, so a new binding takes effect soon; 0 = ask every time). */
  denyTtlMs?: number;
  /** Bound on cached tokens (default 1000); the oldest is dropped beyond it. */
  maxCached?: number;
  logger?: Logger;
  /** Called once per TokenReview sent (tests count API calls with it). */
  onReview?: () => void;
}

/** Bearer tokens longer than this are refused before any API call (a JWT is a few KiB). */
const MAX_TOKEN_LENGTH = 16 * 1024;

/** The bearer token of a request, or undefined (no header, another scheme, empty, oversized). */
export function bearerToken(req: IncomingMessage): string | undefined {
  const h = req.headers.authorization;
  if (typeof h !== 'string') return undefined;
  const m = /^Bearer +([^\s]+)\s*$/i.exec(h);
  if (m === null || m[1]!.length > MAX_TOKEN_LENGTH) return undefined;
  return m[1];
}

/** An authorizeMetrics function (src/controller/health.ts) backed by the API server. */
/** An authorizeMetrics function (src/controller/health.ts) backed by the API server. */
export function kubeMetricsAuthorizer(kubeConfig: k8s.KubeConfig, opts: MetricsAuthOptions = {}): (req: IncomingMessage) => Promise<MetricsAccess> {
  const authn = kubeConfig.makeApiClient(k8s.AuthenticationV1Api);
  const authz = kubeConfig.makeApiClient(k8s.AuthorizationV1Api);
  const allowTtl = opts.allowTtlMs ?? 60_000;
  const denyTtl = opts.denyTtlMs ?? 10_000;
  const cache = new BoundedTtlCache<MetricsAccess>(opts.maxCached ?? 1000);
  // Scrapes that arrive together with one token wait for one review, not one each.
  const inFlight = new Map<string, Promise<MetricsAccess | undefined>>();
  const reqOpts = requestOptions(DEFAULT_REQUEST_TIMEOUT_MS);

  async function review(token: string): Promise<MetricsAccess> {
    opts.onReview?.();
    const tr = await authn.createTokenReview({ body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token } } }, reqOpts);
    if (tr.status?.authenticated !== true || tr.status.user?.username === undefined) {
      return { allowed: false, status: 401, reason: 'Unauthorized: the bearer token was not accepted by the API server' };
    }
    const user = tr.status.user;
    const sar = await authz.createSubjectAccessReview(
      {
        body: {
          apiVersion: 'authorization.k8s.io/v1',
          kind: 'SubjectAccessReview',
          spec: {
            user: user.username,
            ...(user.groups ? { groups: user.groups } : {}),
            ...(user.uid ? { uid: user.uid } : {}),
            ...(user.extra ? { extra: user.extra } : {}),
            nonResourceAttributes: { path: '/metrics', verb: 'get' },
          },
        },
      },
      reqOpts,
    );
    if (sar.status?.allowed === true) return { allowed: true };
    return { allowed: false, status: 403, reason: `Forbidden: ${JSON.stringify(user.username)} may not get /metrics` };
  }

  /** A verdict, or undefined when the API server could not be asked (logged without the token). */
  async function decide(token: string): Promise<MetricsAccess | undefined> {
    try {
      return await review(token);
    } catch (err) {
      const message = ((err as Error).message ?? String(err)).split(token).join('[token]').slice(0, 500);
      opts.logger?.warn({ error: message }, 'metrics authorization: TokenReview/SubjectAccessReview failed');
      return undefined;
    }
  }

  return async (req) => {
    const token = bearerToken(req);
    if (token === undefined) return { allowed: false, status: 401, reason: 'Unauthorized: send a ServiceAccount token as Authorization: Bearer <token>' };
    // Keyed by a hash: the cache never holds a token.
    const key = createHash('sha256').update(token).digest('hex');
    const hit = cache.get(key);
    if (hit !== undefined) return hit;
    let pending = inFlight.get(key);
    if (pending === undefined) {
      pending = decide(token).finally(() => inFlight.delete(key));
      inFlight.set(key, pending);
    }
    const access = await pending;
    // Not asked: refuse, never serve on error, and do not cache (the next scrape asks again).
    if (access === undefined) return { allowed: false, status: 503, reason: 'Service Unavailable: could not check the token with the API server' };
    const ttl = access.allowed ? allowTtl : denyTtl;
    if (ttl > 0) cache.set(key, access, ttl);
    return access;
  };
}

/** At most `max` entries, each until its own deadline; beyond `max` the oldest insert goes. */
export class BoundedTtlCache<V> {
  private readonly entries = new Map<string, { until: number; value: V }>();
  private readonly max: number;
  constructor(max: number) {
    this.max = max;
  }

  get size(): number {
    return this.entries.size;
  }

  get(key: string, now = Date.now()): V | undefined {
    const e = this.entries.get(key);
    if (e === undefined) return undefined;
    if (e.until > now) return e.value;
    this.entries.delete(key);
    return undefined;
  }

  set(key: string, value: V, ttlMs: number, now = Date.now()): void {
    this.entries.delete(key);
    this.entries.set(key, { until: now + ttlMs, value });
    while (this.entries.size > this.max) this.entries.delete(this.entries.keys().next().value!);
  }
}
