import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { Controller, TerminalError } from '../../src/controller/runner.ts';
import type { ReconcileContext, Result } from '../../src/controller/runner.ts';
import { Metrics } from '../../src/controller/metrics.ts';
import { FakeClock, ItemExponentialFailureRateLimiter } from '../../src/controller/ratelimit.ts';
import { createLogger } from '../../src/controller/log.ts';

function capture(): { logger: ReturnType<typeof createLogger>; lines: () => Record<string, unknown>[] } {
  let out = '';
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      out += chunk.toString();
      cb();
    },
  });
  const logger = createLogger({ stream, level: 'debug' });
  return {
    logger,
    lines: () =>
      out
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}

/** Waits (real time, briefly) until `cond` holds. */
async function until(cond: () => boolean, ms = 2000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setImmediate(r));
  }
}

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

async function value(m: Metrics, name: string, labels: Record<string, string>): Promise<number> {
  const metric = await m.registry.getSingleMetric(name)?.get();
  const v = metric?.values.find((x) => Object.entries(labels).every(([k, val]) => x.labels[k] === val));
  return v?.value ?? NaN;
}

describe('Controller', () => {
  test('reconciles enqueued keys with a fresh reconcile ID and a child logger', async () => {
    const { logger, lines } = capture();
    const seen: { key: string; ctx: ReconcileContext }[] = [];
    const c = new Controller({
      name: 'vmm',
      logger,
      reconcile: async (key, ctx) => {
        seen.push({ key, ctx });
        ctx.log.info('reconciling');
        return {};
      },
    });
    c.start();
    c.enqueue('ns/a');
    c.enqueue('ns/b');
    await until(() => seen.length === 2);
    await c.stop({ drain: true });
    assert.deepEqual(seen.map((s) => s.key).sort(), ['ns/a', 'ns/b']);
    const ids = seen.map((s) => s.ctx.reconcileID);
    assert.notEqual(ids[0], ids[1]);
    for (const id of ids) assert.match(id, /^[0-9a-f-]{36}$/);
    const logged = lines().filter((l) => l.msg === 'reconciling');
    assert.equal(logged.length, 2);
    for (const l of logged) {
      assert.equal(l.controller, 'vmm');
      assert.ok(l.key === 'ns/a' || l.key === 'ns/b');
      assert.ok(ids.includes(l.reconcileID as string));
    }
  });

  test('one key is never reconciled by two workers at once; re-added while running runs again after', async () => {
    let running = 0;
    let maxRunning = 0;
    let calls = 0;
    const gate = deferred();
    const c = new Controller({
      name: 'vmm',
      concurrency: 4,
      logger: capture().logger,
      reconcile: async () => {
        calls++;
        running++;
        maxRunning = Math.max(maxRunning, running);
        if (calls === 1) await gate.promise;
        running--;
        return {};
      },
    });
    c.start();
    c.enqueue('k');
    await until(() => calls === 1);
    c.enqueue('k');
    c.enqueue('k');
    await new Promise((r) => setTimeout(r, 10));
    assert.equal(calls, 1, 'not started again while in flight');
    gate.resolve();
    await until(() => calls === 2);
    await new Promise((r) => setTimeout(r, 10));
    assert.equal(calls, 2, 'the two adds while running collapse into one re-run');
    assert.equal(maxRunning, 1);
    await c.stop();
  });

  test('a throwing (or synchronously throwing) reconcile does not kill the worker; counts errors; retries with backoff', async () => {
    const { logger, lines } = capture();
    const metrics = new Metrics({ processMetrics: false });
    const clock = new FakeClock();
    let calls = 0;
    const c = new Controller({
      name: 'vmm',
      concurrency: 1,
      logger,
      metrics,
      clock,
      rateLimiter: new ItemExponentialFailureRateLimiter<string>(5, 1_000_000),
      reconcile: (key) => {
        calls++;
        if (key === 'sync') throw new Error('sync boom');
        if (calls <= 2) return Promise.reject(new Error(`boom ${calls}`));
        return Promise.resolve({});
      },
    });
    c.start();
    c.enqueue('k');
    await until(() => calls === 1);
    await until(() => c.queue.delayed() === 1);
    assert.equal(c.queue.numRequeues('k'), 1);
    clock.step(5);
    await until(() => calls === 2);
    await until(() => c.queue.delayed() === 1);
    clock.step(9);
    await new Promise((r) => setTimeout(r, 5));
    assert.equal(calls, 2, 'second retry waits 10 ms');
    clock.step(1);
    await until(() => calls === 3);
    await until(() => c.queue.processing() === 0);
    assert.equal(c.queue.numRequeues('k'), 0, 'success forgets the backoff');

    c.enqueue('sync');
    await until(() => calls === 4);
    await until(() => c.queue.delayed() === 1);
    // The worker survived: another key still gets reconciled.
    c.enqueue('other');
    await until(() => calls === 5);
    await c.stop();

    assert.equal(await value(metrics, 'controller_runtime_reconcile_errors_total', { controller: 'vmm' }), 3);
    assert.equal(await value(metrics, 'controller_runtime_reconcile_total', { controller: 'vmm', result: 'error' }), 3);
    assert.equal(await value(metrics, 'controller_runtime_reconcile_total', { controller: 'vmm', result: 'success' }), 2);
    const errs = lines().filter((l) => l.msg === 'reconciler error');
    assert.equal(errs.length, 3);
    for (const e of errs) {
      assert.equal(e.controller, 'vmm');
      assert.ok(typeof e.key === 'string');
      assert.match(e.reconcileID as string, /^[0-9a-f-]{36}$/);
      assert.match((e.err as { message: string }).message, /boom/);
      assert.equal(e.level, 'error');
    }
  });

  test('result handling: requeueAfter → forget + addAfter; requeue → rate limited; terminal error → no retry', async () => {
    const metrics = new Metrics({ processMetrics: false });
    const clock = new FakeClock();
    const results = new Map<string, () => Promise<Result>>([
      ['after', () => Promise.resolve({ requeueAfter: 30_000 })],
      ['again', () => Promise.resolve({ requeue: true })],
      ['terminal', () => Promise.reject(new TerminalError('invalid spec'))],
    ]);
    const calls = new Map<string, number>();
    const c = new Controller({
      name: 'vmm',
      concurrency: 2,
      logger: capture().logger,
      metrics,
      clock,
      reconcile: async (key) => {
        calls.set(key, (calls.get(key) ?? 0) + 1);
        return (results.get(key) as () => Promise<Result>)();
      },
    });
    c.queue.rateLimiter.when('after'); // pretend an earlier failure: requeueAfter must forget it
    c.start();
    c.enqueue('after');
    c.enqueue('again');
    c.enqueue('terminal');
    await until(() => calls.size === 3 && c.queue.processing() === 0);
    assert.equal(c.queue.numRequeues('after'), 0);
    assert.equal(c.queue.numRequeues('again'), 1);
    assert.equal(c.queue.numRequeues('terminal'), 0);
    assert.equal(c.queue.delayed(), 2, 'after + again wait; terminal does not');
    results.set('again', () => Promise.resolve({}));
    clock.step(5);
    await until(() => calls.get('again') === 2);
    clock.step(29_000);
    assert.equal(calls.get('after'), 1);
    results.set('after', () => Promise.resolve({}));
    clock.step(1_000);
    await until(() => calls.get('after') === 2);
    await until(() => c.queue.processing() === 0);
    assert.equal(calls.get('terminal'), 1);
    await c.stop();
    const v = (result: string) => value(metrics, 'controller_runtime_reconcile_total', { controller: 'vmm', result });
    assert.equal(await v('requeue_after'), 1);
    assert.equal(await v('requeue'), 1);
    assert.equal(await v('error'), 1);
    assert.equal(await v('success'), 2);
    assert.equal(await value(metrics, 'controller_runtime_terminal_reconcile_errors_total', { controller: 'vmm' }), 1);
    assert.equal(await value(metrics, 'controller_runtime_max_concurrent_reconciles', { controller: 'vmm' }), 2);
    assert.equal(await value(metrics, 'controller_runtime_active_workers', { controller: 'vmm' }), 0);
  });

  test('stop with drain finishes in-flight reconciles and takes no new work', async () => {
    const gate = deferred();
    const started: string[] = [];
    const finished: string[] = [];
    const c = new Controller({
      name: 'vmm',
      concurrency: 1,
      logger: capture().logger,
      reconcile: async (key) => {
        started.push(key);
        await gate.promise;
        finished.push(key);
      },
    });
    c.start();
    c.enqueue('a');
    await until(() => started.length === 1);
    c.enqueue('b'); // queued behind a: dropped at stop
    let stopped = false;
    const stopping = c.stop({ drain: true }).then(() => (stopped = true));
    await new Promise((r) => setTimeout(r, 10));
    assert.equal(stopped, false, 'waits for the in-flight reconcile');
    c.enqueue('c');
    gate.resolve();
    await stopping;
    assert.deepEqual(started, ['a']);
    assert.deepEqual(finished, ['a']);
    assert.equal(c.alive(), false);
  });

  test('stop without drain aborts in-flight signals', async () => {
    let signal: AbortSignal | undefined;
    const c = new Controller({
      name: 'vmm',
      logger: capture().logger,
      reconcile: (_key, ctx) => {
        signal = ctx.signal;
        return new Promise((_, reject) => ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason)));
      },
    });
    c.start();
    c.enqueue('a');
    await until(() => signal !== undefined);
    await c.stop({ drain: false });
    assert.equal(signal?.aborted, true);
  });

  test('reconcile timeout aborts the signal, counts an error, and keeps the key exclusive until it settles', async () => {
    const metrics = new Metrics({ processMetrics: false });
    const clock = new FakeClock();
    const gate = deferred();
    let calls = 0;
    let aborted = false;
    const c = new Controller({
      name: 'vmm',
      concurrency: 2,
      logger: capture().logger,
      metrics,
      clock,
      reconcileTimeout: 1000,
      reconcile: async (_key, ctx) => {
        calls++;
        if (calls === 1) {
          ctx.signal.addEventListener('abort', () => (aborted = true));
          await gate.promise; // ignores the abort for a while
        }
        return {};
      },
    });
    c.start();
    c.enqueue('k');
    await until(() => calls === 1);
    clock.step(1000);
    assert.equal(aborted, true);
    await until(() => c.queue.delayed() === 1);
    clock.step(5); // backoff elapsed: k is re-added, but still "processing"
    await new Promise((r) => setTimeout(r, 10));
    assert.equal(calls, 1, 'not reconciled concurrently with the abandoned run');
    gate.resolve();
    await until(() => calls === 2);
    await c.stop();
    assert.equal(await value(metrics, 'controller_runtime_reconcile_total', { controller: 'vmm', result: 'error' }), 1);
  });

  test('enqueueAfter delays', async () => {
    const clock = new FakeClock();
    const keys: string[] = [];
    const c = new Controller({
      name: 'vmm',
      logger: capture().logger,
      clock,
      reconcile: async (key) => {
        keys.push(key);
      },
    });
    c.start();
    c.enqueueAfter('a', 100);
    await new Promise((r) => setTimeout(r, 5));
    assert.deepEqual(keys, []);
    clock.step(100);
    await until(() => keys.length === 1);
    await c.stop();
  });
});
