/**
 * A fault-injecting loopback TCP proxy, shared by the tests that cut one
 * client off a real peer while others keep using it (the kube adapter, leader
 * election, the chaos suite). Modes:
 *  - open: forward bytes both ways;
 *  - refuse: reset every connection and refuse new ones (a partition, a dead node);
 *  - blackhole: keep connections open and drop every byte (the silent stall
 *    that only a timeout or a keepalive notices).
 */
import { connect, createServer } from 'node:net';
import type { Server, Socket } from 'node:net';
import * as k8s from '@kubernetes/client-node';

export type ProxyMode = 'open' | 'refuse' | 'blackhole';

export interface FaultProxy {
  /** The loopback port to connect to instead of the target. */
  readonly port: number;
  /** TCP connections accepted so far (a client that reuses connections opens few). */
  readonly accepted: number;
  setMode(mode: ProxyMode): void;
  close(): Promise<void>;
}

export async function startFaultProxy(target: { port: number; host?: string }): Promise<FaultProxy> {
  const host = target.host ?? '127.0.0.1';
  const pairs = new Set<{ a: Socket; b: Socket }>();
  let mode: ProxyMode = 'open';
  let accepted = 0;
  const server: Server = createServer((a) => {
    accepted++;
    if (mode === 'refuse') return void a.resetAndDestroy();
    const b = connect(target.port, host);
    const pair = { a, b };
    pairs.add(pair);
    a.on('data', (d: Buffer) => void (mode === 'open' && b.write(d)));
    b.on('data', (d: Buffer) => void (mode === 'open' && a.write(d)));
    const close = () => {
      pairs.delete(pair);
      a.destroy();
      b.destroy();
    };
    a.on('close', close).on('error', close);
    b.on('close', close).on('error', close);
  });
  await new Promise<void>((res) => server.listen(0, '127.0.0.1', res));
  const port = (server.address() as { port: number }).port;
  return {
    port,
    get accepted() {
      return accepted;
    },
    setMode(m: ProxyMode) {
      mode = m;
      if (m !== 'refuse') return;
      for (const { a, b } of pairs) {
        a.resetAndDestroy();
        b.destroy();
      }
      pairs.clear();
    },
    async close() {
      for (const { a, b } of pairs) {
        a.destroy();
        b.destroy();
      }
      await new Promise<void>((res) => server.close(() => res()));
    },
  };
}

/** The same credentials as `kc`, with every cluster's server at the proxy on `port`. */
export function kubeConfigVia(kc: k8s.KubeConfig, port: number): k8s.KubeConfig {
  const out = new k8s.KubeConfig();
  out.loadFromOptions({
    clusters: kc.clusters.map((c) => ({ ...c, server: `https://127.0.0.1:${port}` })),
    users: kc.users,
    contexts: kc.contexts,
    currentContext: kc.currentContext,
  });
  return out;
}
