// Per-request options for client-node 2.x generated clients: a timeout (client-node sets none, so a
// request to a black-holed API server would hang forever) and, for PATCH, the content type (the
// generated code picks application/json-patch+json unless a middleware overrides the header).
import { createHash } from 'node:crypto';
import type * as https from 'node:https';
import * as k8s from '@kubernetes/client-node';

// The adapter logs through the controller's one Logger port (re-exported for the adapter's files).
export type { Logger } from '../controller/ports.ts';

export const DEFAULT_REQUEST_TIMEOUT_MS = 30_000;

/** ConfigurationOptions that abort the request after `timeoutMs` and optionally set Content-Type. */
export function requestOptions(timeoutMs: number, contentType?: k8s.PatchStrategy): k8s.ConfigurationOptions {
  const timeout: k8s.ObservableMiddleware = {
    pre: (ctx: k8s.RequestContext) => {
      ctx.setSignal(AbortSignal.timeout(timeoutMs));
      return new k8s.Observable(Promise.resolve(ctx));
    },
    post: (rsp: k8s.ResponseContext) => new k8s.Observable(Promise.resolve(rsp)),
  };
  const opts: k8s.ConfigurationOptions = { middleware: [timeout], middlewareMergeStrategy: 'append' };
  return contentType ? k8s.setHeaderOptions('Content-Type', contentType, opts) : opts;
}

interface Closable {
  close(): Promise<void>;
}
type DispatcherFactory = (cluster: k8s.Cluster | null, agentOptions: https.AgentOptions) => Closable | undefined;
const SHARED = Symbol('vmmem.sharedDispatcher');

/**
 * Makes every request made through `kubeConfig` share one connection pool (per TLS identity).
 *
 * client-node 2.x builds a new undici Agent for every API request
 * (KubeConfig.applySecurityAuthentication → createDispatcher, not cached, unlike its https.Agent
 * path), so each request opens a new TCP + TLS connection with a new secure context, and the
 * abandoned agents' sockets linger until their keep-alive timeout. The scale benchmark saw this as
 * TLS setup in the CPU profile and as tens of MiB of native (malloc) memory at 1,000 VMMs, and the
 * API server pays a handshake per status write. This wraps that private method (a plain method in
 * client-node 2.0 dist/config.js) so that the agent is made once and reused while the TLS material
 * (CA, client cert and key, server name) stays the same; when it changes (rotated client
 * certificate files), a new agent is made and the old one is closed once its requests finish.
 * Idempotent. Returns `kubeConfig`.
 */
export function shareConnections(kubeConfig: k8s.KubeConfig): k8s.KubeConfig {
  const kc = kubeConfig as unknown as { createDispatcher?: DispatcherFactory; [SHARED]?: true };
  if (kc[SHARED] || typeof kc.createDispatcher !== 'function') return kubeConfig;
  const make = kc.createDispatcher.bind(kubeConfig);
  let current: { key: string; dispatcher: Closable | undefined } | undefined;
  kc.createDispatcher = (cluster, agentOptions) => {
    const { ca, cert, key, pfx, passphrase, servername, rejectUnauthorized } = agentOptions;
    const material = materialKey([cluster?.server, cluster?.proxyUrl, ca, cert, key, pfx, passphrase, servername, rejectUnauthorized]);
    if (current?.key === material) return current.dispatcher;
    const old = current?.dispatcher;
    current = { key: material, dispatcher: make(cluster, agentOptions) };
    // close() lets in-flight requests finish; the agent is garbage afterwards.
    old?.close().catch(() => undefined);
    return current.dispatcher;
  };
  kc[SHARED] = true;
  return kubeConfig;
}

/**
 * A digest of the TLS material, asked on every API request: buffers go to the hash as bytes
 * (JSON.stringify would spell each byte of a CA bundle as a number — it was the operator's top
 * self-time function in the scale benchmark's CPU profile).
 */
function materialKey(parts: readonly unknown[]): string {
  const h = createHash('sha256');
  const add = (v: unknown): void => {
    if (Array.isArray(v)) {
      h.update(`[${v.length}`);
      for (const x of v) add(x);
    } else if (typeof v === 'string' || Buffer.isBuffer(v)) {
      h.update(`${typeof v === 'string' ? 's' : 'b'}${v.length}:`);
      h.update(v);
    } else {
      h.update(`j:${JSON.stringify(v) ?? 'undefined'}`);
    }
    h.update('\0');
  };
  for (const p of parts) add(p);
  return h.digest('hex');
}
