// LeaderElector (src/kube/leader.ts) against a real kube-apiserver + etcd (test/env/kube.ts), with
// shortened durations (lease 3 s, renew deadline 2 s, retry 0.25 s). Needs the binaries built by
// test/peer/kube/setup.sh; fails (never skips) without them.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as k8s from '@kubernetes/client-node';
import { startKube, type KubeEnv } from '../../env/kube.ts';
import { kubeConfigVia, startFaultProxy } from '../../env/proxy.ts';
import { LeaderElector, type LeaderElectorOptions } from '../../../src/kube/leader.ts';
import type { Logger } from '../../../src/kube/http.ts';

// kube-apiserver 1.37 refuses the harness's --advertise-address=127.0.0.1 with the default (lease)
// endpoint reconciler ("may not be in the loopback range"); no Service endpoints are needed here.
const APISERVER_ARGS = ['--endpoint-reconciler-type=none'];
const NS = 'vmmem-system';
const FAST = { leaseDurationMs: 3000, renewDeadlineMs: 2000, retryPeriodMs: 250 };
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

const quiet: Logger = {
  info: (o, m) => void (process.env.VMMEM_TEST_LOG && console.error('info', m, JSON.stringify(o))),
  warn: (o, m) => void (process.env.VMMEM_TEST_LOG && console.error('warn', m, JSON.stringify(o))),
  error: (o, m) => void console.error('error', m, JSON.stringify(o)),
  debug: () => {},
  child: () => quiet,
};

async function waitFor(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for: ${what}`);
    await sleep(20);
  }
}

/** An elector plus a record of what its callbacks saw; `leaders` counts concurrent leaders. */
function candidate(kc: k8s.KubeConfig, lease: string, identity: string, leaders: { now: number; max: number }, extra: Partial<LeaderElectorOptions> = {}) {
  const el = new LeaderElector(kc, { namespace: NS, name: lease, identity, logger: quiet, ...FAST, ...extra });
  const rec = { started: [] as number[], stopped: [] as number[], reasons: [] as string[], signal: undefined as AbortSignal | undefined };
  const done = el.run({
    onStartedLeading(signal) {
      rec.started.push(Date.now());
      rec.signal = signal;
      leaders.now++;
      leaders.max = Math.max(leaders.max, leaders.now);
    },
    onStoppedLeading(reason) {
      rec.stopped.push(Date.now());
      rec.reasons.push(reason);
      leaders.now--;
    },
  });
  return { el, rec, done };
}

describe('LeaderElector against a real kube-apiserver', { timeout: 90_000 }, () => {
  let env: KubeEnv;
  let coord: k8s.CoordinationV1Api;
  const holder = async (name: string) => (await coord.readNamespacedLease({ namespace: NS, name })).spec?.holderIdentity;

  before(async () => {
    env = await startKube({ apiServerArgs: APISERVER_ARGS });
    await env.kubeConfig.makeApiClient(k8s.CoreV1Api).createNamespace({ body: { metadata: { name: NS } } });
    coord = env.kubeConfig.makeApiClient(k8s.CoordinationV1Api);
  });
  after(async () => {
    await env?.stop();
  });

  it('defaults to client-go numbers and rejects inconsistent durations', () => {
    const el = new LeaderElector(env.kubeConfig, { namespace: NS, name: 'x', logger: quiet });
    assert.deepEqual([el.leaseDurationMs, el.renewDeadlineMs, el.retryPeriodMs], [15_000, 10_000, 2_000]);
    assert.match(el.identity, /^.+_[0-9a-f]{8}$/);
    assert.notEqual(el.identity, new LeaderElector(env.kubeConfig, { namespace: NS, name: 'x', logger: quiet }).identity);
    assert.throws(() => new LeaderElector(env.kubeConfig, { namespace: NS, name: 'x', logger: quiet, leaseDurationMs: 5000, renewDeadlineMs: 5000 }), /leaseDuration/);
    assert.throws(() => new LeaderElector(env.kubeConfig, { namespace: NS, name: 'x', logger: quiet, renewDeadlineMs: 2000, retryPeriodMs: 2000 }), /renewDeadline/);
  });

  it('two electors on one Lease: exactly one leads; release hands over at once', async () => {
    const leaders = { now: 0, max: 0 };
    const a = candidate(env.kubeConfig, 'pair', 'replica-a', leaders);
    const b = candidate(env.kubeConfig, 'pair', 'replica-b', leaders);
    await waitFor('a leader', () => a.el.isLeader || b.el.isLeader);
    await sleep(FAST.leaseDurationMs + 500); // several renewals and retries later...
    assert.equal(leaders.max, 1, 'never two leaders');
    assert.equal(Number(a.el.isLeader) + Number(b.el.isLeader), 1, 'exactly one leads');
    const [leader, other] = a.el.isLeader ? [a, b] : [b, a];
    assert.equal(await holder('pair'), leader.el.identity);
    const lease = await coord.readNamespacedLease({ namespace: NS, name: 'pair' });
    assert.equal(lease.spec?.leaseDurationSeconds, 3);
    assert.equal(leader.rec.started.length, 1, 'renewals do not restart leadership');

    const t0 = Date.now();
    await leader.el.release();
    await leader.done; // run() resolves after release
    assert.equal(leader.el.isLeader, false);
    assert.deepEqual(leader.rec.reasons, ['released'], 'onStoppedLeading(released) on release');
    assert.equal(leader.rec.signal?.aborted, true, 'the leading signal is aborted');
    await waitFor('takeover', () => other.el.isLeader, FAST.leaseDurationMs);
    const took = Date.now() - t0;
    assert.ok(took < FAST.leaseDurationMs, `took over in ${took} ms (< lease duration: the lease was released)`);
    assert.equal(await holder('pair'), other.el.identity);
    assert.equal(leaders.max, 1);
    const after = await coord.readNamespacedLease({ namespace: NS, name: 'pair' });
    assert.equal(after.spec?.leaseTransitions, (lease.spec?.leaseTransitions ?? 0) + 1);
    await other.el.release();
    await other.done;
    assert.equal(await holder('pair'), undefined, 'released lease has no holder');
  });

  it('a leader cut off from the API server steps down after the renew deadline; the other takes over after the lease expires', async () => {
    const proxy = await startFaultProxy({ port: Number(new URL(env.server).port) });
    const leaders = { now: 0, max: 0 };
    const a = candidate(kubeConfigVia(env.kubeConfig, proxy.port), 'cut', 'replica-a', leaders);
    await waitFor('a leads', () => a.el.isLeader);
    const b = candidate(env.kubeConfig, 'cut', 'replica-b', leaders);
    await sleep(1000);
    assert.equal(b.el.isLeader, false);

    const cut = Date.now();
    proxy.setMode('refuse');
    await waitFor('a steps down', () => !a.el.isLeader, FAST.renewDeadlineMs + 1500);
    const down = a.rec.stopped[0]! - cut;
    assert.ok(down <= FAST.renewDeadlineMs + 700, `stepped down ${down} ms after the cut (renew deadline ${FAST.renewDeadlineMs})`);
    assert.equal(a.rec.signal?.aborted, true);
    assert.deepEqual(a.rec.reasons, ['lost']);
    await waitFor('b takes over', () => b.el.isLeader, FAST.leaseDurationMs + 2000);
    const up = b.rec.started[0]! - cut;
    assert.ok(b.rec.started[0]! > a.rec.stopped[0]!, 'b starts only after a stopped');
    assert.ok(up >= FAST.leaseDurationMs - FAST.retryPeriodMs * 2, `b waited for expiry (${up} ms)`);
    assert.equal(leaders.max, 1, 'never two leaders');

    // a comes back: it sees b's valid lease and stays a follower.
    proxy.setMode('open');
    await sleep(1000);
    assert.equal(a.el.isLeader, false);
    assert.equal(await holder('cut'), 'replica-b');
    await a.el.release();
    await b.el.release();
    await Promise.all([a.done, b.done]);
    await proxy.close();
  });

  it('when the API server disappears the leader steps down; after it returns someone leads again', async () => {
    const leaders = { now: 0, max: 0 };
    const a = candidate(env.kubeConfig, 'outage', 'replica-a', leaders);
    await waitFor('a leads', () => a.el.isLeader);
    const t0 = Date.now();
    await env.stopApiServer();
    await waitFor('a steps down', () => !a.el.isLeader, FAST.renewDeadlineMs + 2000);
    assert.ok(a.rec.stopped[0]! - t0 <= FAST.renewDeadlineMs + 700, `stepped down after ${a.rec.stopped[0]! - t0} ms`);
    await env.startApiServer();
    await waitFor('a leads again', () => a.el.isLeader, 10_000); // still its lease: re-acquired at once
    assert.equal(a.rec.started.length, 2);
    await a.el.release();
    await a.done;
  });

  it("takes over a crashed holder's lease once it has not been renewed for the lease duration", async () => {
    const old = new k8s.V1MicroTime(Date.now() - 3_600_000);
    await coord.createNamespacedLease({
      namespace: NS,
      body: {
        metadata: { name: 'ghost' },
        spec: { holderIdentity: 'crashed-replica', leaseDurationSeconds: 3, renewTime: old, acquireTime: old, leaseTransitions: 4 },
      },
    });
    const leaders = { now: 0, max: 0 };
    const t0 = Date.now();
    const a = candidate(env.kubeConfig, 'ghost', 'replica-a', leaders);
    await waitFor('a leads', () => a.el.isLeader, 8000);
    const waited = Date.now() - t0;
    // Expiry is judged on the local clock from the first observation (clock-skew safe, as client-go).
    assert.ok(waited >= 2900, `waited ${waited} ms`);
    const lease = await coord.readNamespacedLease({ namespace: NS, name: 'ghost' });
    assert.equal(lease.spec?.holderIdentity, 'replica-a');
    assert.equal(lease.spec?.leaseTransitions, 5);
    await a.el.release();
    await a.done;
  });
});
