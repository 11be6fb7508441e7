import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { parseAddress, startHealthServer } from '../../src/controller/health.ts';
import { Metrics } from '../../src/controller/metrics.ts';

describe('health server', () => {
  test('/readyz flips with ready(); reason in the body; /healthz stays 200', async () => {
    let synced = false;
    const s = await startHealthServer({
      metricsAddress: '0',
      probeAddress: '127.0.0.1:0',
      ready: () => synced || 'caches not synced',
    });
    try {
      assert.equal(s.metricsUrl, undefined);
      let res = await fetch(`${s.probeUrl}/readyz`);
      assert.equal(res.status, 503);
      const body = await res.text();
      assert.match(body, /\[-\]ready failed: caches not synced/);
      assert.match(body, /readyz check failed/);
      res = await fetch(`${s.probeUrl}/healthz`);
      assert.equal(res.status, 200);
      assert.equal(await res.text(), 'ok');

      synced = true;
      res = await fetch(`${s.probeUrl}/readyz`);
      assert.equal(res.status, 200);
      assert.equal(await res.text(), 'ok');
      res = await fetch(`${s.probeUrl}/readyz?verbose`);
      assert.match(await res.text(), /\[\+\]ready ok/);

      synced = false;
      res = await fetch(`${s.probeUrl}/readyz`);
      assert.equal(res.status, 503);
      await res.text();

      res = await fetch(`${s.probeUrl}/metrics`);
      assert.equal(res.status, 404, 'metrics disabled');
      await res.text();
    } finally {
      await s.close();
    }
  });

  test('checks: false, throw, async, timeout, named sub-paths, liveness checks', async () => {
    let alive = true;
    const s = await startHealthServer({
      metricsAddress: '0',
      probeAddress: '127.0.0.1:0',
      checkTimeoutMs: 50,
      readyChecks: {
        informers: async () => true,
        leader: () => false,
        driver: () => {
          throw new Error('libvirt unreachable');
        },
        slow: () => new Promise<boolean>((r) => setTimeout(() => r(true), 1000).unref()),
      },
      healthChecks: { workers: () => alive || 'workers stopped' },
    });
    try {
      let res = await fetch(`${s.probeUrl}/readyz`);
      assert.equal(res.status, 503);
      const body = await res.text();
      assert.match(body, /\[-\]leader failed: not ready/);
      assert.match(body, /\[-\]driver failed: libvirt unreachable/);
      assert.match(body, /\[-\]slow failed: timed out after 50 ms/);
      assert.doesNotMatch(body, /informers/);
      res = await fetch(`${s.probeUrl}/readyz/informers`);
      assert.equal(res.status, 200);
      await res.text();
      res = await fetch(`${s.probeUrl}/readyz/nope`);
      assert.equal(res.status, 404);
      await res.text();
      res = await fetch(`${s.probeUrl}/healthz`);
      assert.equal(res.status, 200);
      await res.text();
      alive = false;
      res = await fetch(`${s.probeUrl}/healthz`);
      assert.equal(res.status, 503);
      assert.match(await res.text(), /\[-\]workers failed: workers stopped/);
      res = await fetch(`${s.probeUrl}/healthz`, { method: 'POST' });
      assert.equal(res.status, 405);
      await res.text();
    } finally {
      await s.close();
    }
  });

  test('one port for both: /metrics, /healthz, /readyz on the same listener', async () => {
    const metrics = new Metrics({ processMetrics: false });
    metrics.setLeader('l', false);
    // Find a free port, then ask for it on both addresses.
    const probe = await startHealthServer({ metricsAddress: '0', probeAddress: '127.0.0.1:0' });
    const port = probe.probes?.port;
    await probe.close();
    const s = await startHealthServer({ metricsAddress: `127.0.0.1:${port}`, probeAddress: `127.0.0.1:${port}`, metrics });
    try {
      assert.equal(s.metricsUrl, s.probeUrl);
      for (const path of ['/metrics', '/healthz', '/readyz']) {
        const res = await fetch(`${s.probeUrl}${path}`);
        assert.equal(res.status, 200, path);
        await res.text();
      }
      const res = await fetch(`${s.probeUrl}/nothing`);
      assert.equal(res.status, 404);
      await res.text();
    } finally {
      await s.close();
    }
  });

  test('separate ports: probes are not served on the metrics port and vice versa', async () => {
    const metrics = new Metrics({ processMetrics: false });
    const s = await startHealthServer({ metricsAddress: '127.0.0.1:0', probeAddress: '127.0.0.1:0', metrics });
    try {
      assert.notEqual(s.metricsUrl, s.probeUrl);
      let res = await fetch(`${s.metricsUrl}/metrics`);
      assert.equal(res.status, 200);
      await res.text();
      res = await fetch(`${s.metricsUrl}/healthz`);
      assert.equal(res.status, 404);
      await res.text();
      res = await fetch(`${s.probeUrl}/metrics`);
      assert.equal(res.status, 404);
      await res.text();
    } finally {
      await s.close();
    }
  });

  test('close() ends keep-alive connections promptly; a busy port rejects start', async () => {
    const s = await startHealthServer({ metricsAddress: '0', probeAddress: '127.0.0.1:0' });
    const res = await fetch(`${s.probeUrl}/healthz`, { headers: { connection: 'keep-alive' } });
    await res.text();
    const t0 = Date.now();
    const port = s.probes?.port;
    const busy = await startHealthServer({ metricsAddress: '0', probeAddress: `127.0.0.1:${port}` }).then(
      () => 'started',
      (e: NodeJS.ErrnoException) => e.code,
    );
    assert.equal(busy, 'EADDRINUSE');
    await s.close();
    assert.ok(Date.now() - t0 < 1000);
  });

  test('parseAddress', () => {
    assert.deepEqual(parseAddress(':8080'), { host: undefined, port: 8080 });
    assert.deepEqual(parseAddress('127.0.0.1:0'), { host: '127.0.0.1', port: 0 });
    assert.deepEqual(parseAddress('[::1]:9443'), { host: '::1', port: 9443 });
    assert.deepEqual(parseAddress('8081'), { host: undefined, port: 8081 });
    assert.equal(parseAddress('0'), undefined);
    assert.equal(parseAddress(''), undefined);
    assert.throws(() => parseAddress('localhost'), /invalid address/);
    assert.throws(() => parseAddress('host:99999'), /invalid port/);
  });
});
