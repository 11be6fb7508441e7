import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { WorkQueue } from '../../src/controller/queue.ts';
import type { QueueMetrics, InFlightProbe } from '../../src/controller/queue.ts';
import {
  BucketRateLimiter,
  FakeClock,
  ItemExponentialFailureRateLimiter,
  MaxOfRateLimiter,
  defaultControllerRateLimiter,
} from '../../src/controller/ratelimit.ts';

/** Resolves whether `p` settled within the current microtask drain. */
async function settled<T>(p: Promise<T>): Promise<{ done: boolean; value?: T }> {
  const marker = Symbol('pending');
  const v = await Promise.race([p, new Promise<typeof marker>((r) => setImmediate(() => r(marker)))]);
  return v === marker ? { done: false } : { done: true, value: v as T };
}

describe('ItemExponentialFailureRateLimiter', () => {
  test('5ms, 10ms, 20ms … capped at 1000s; forget resets', () => {
    const rl = new ItemExponentialFailureRateLimiter<string>(5, 1_000_000);
    const seq = Array.from({ length: 8 }, () => rl.when('a'));
    assert.deepEqual(seq, [5, 10, 20, 40, 80, 160, 320, 640]);
    assert.equal(rl.numRequeues('a'), 8);
    assert.equal(rl.when('b'), 5, 'per item');
    for (let i = 0; i < 30; i++) rl.when('a');
    assert.equal(rl.when('a'), 1_000_000);
    // 5 ms × 2^18 = 1310.72 s > 1000 s: the 19th failure is the first capped one.
    const c = new ItemExponentialFailureRateLimiter<string>(5, 1_000_000);
    const all = Array.from({ length: 20 }, () => c.when('x'));
    assert.equal(all[17], 5 * 2 ** 17);
    assert.equal(all[18], 1_000_000);
    for (let i = 0; i < 2000; i++) c.when('x'); // 2^2000 overflows to Infinity: still capped
    assert.equal(c.when('x'), 1_000_000);
    rl.forget('a');
    assert.equal(rl.numRequeues('a'), 0);
    assert.equal(rl.when('a'), 5);
  });
});

describe('BucketRateLimiter', () => {
  test('burst of 100 immediately, then 10 per second', () => {
    const clock = new FakeClock();
    const rl = new BucketRateLimiter<string>(10, 100, clock);
    for (let i = 0; i < 100; i++) assert.equal(rl.when(`k${i}`), 0);
    // Beyond the burst, reservations are spaced 100 ms apart.
    assert.equal(rl.when('x'), 100);
    assert.equal(rl.when('y'), 200);
    assert.equal(rl.when('z'), 300);
    clock.step(300); // the three reserved tokens are now spent, bucket at 0
    assert.equal(rl.when('w'), 100);
    clock.step(10_000 + 100); // refills, but never beyond the burst
    for (let i = 0; i < 100; i++) assert.equal(rl.when(`r${i}`), 0);
    assert.ok(rl.when('over') > 0);
    assert.equal(rl.numRequeues('x'), 0);
  });
});

describe('MaxOfRateLimiter / default controller limiter', () => {
  test('max of per-item backoff and the bucket', () => {
    const clock = new FakeClock();
    const rl = defaultControllerRateLimiter<string>({ clock });
    assert.equal(rl.when('a'), 5);
    assert.equal(rl.when('a'), 10);
    assert.equal(rl.numRequeues('a'), 2);
    rl.forget('a');
    assert.equal(rl.numRequeues('a'), 0);
    // Exhaust the bucket with distinct items: the bucket dominates.
    const m = new MaxOfRateLimiter<string>(
      new ItemExponentialFailureRateLimiter<string>(5, 1_000_000),
      new BucketRateLimiter<string>(10, 100, clock),
    );
    for (let i = 0; i < 100; i++) assert.equal(m.when(`k${i}`), 5);
    assert.equal(m.when('late'), 100);
  });

  test('peek says what the next when() returns, without counting a failure (a status can say "next in …")', () => {
    const clock = new FakeClock();
    const m = new MaxOfRateLimiter<string>(new ItemExponentialFailureRateLimiter<string>(5, 1_000_000), new BucketRateLimiter<string>(10, 3, clock));
    for (let i = 0; i < 6; i++) {
      const peeked = m.peek('a');
      assert.equal(m.peek('a'), peeked, 'peek changes nothing');
      assert.equal(m.when('a'), peeked, `failure ${i + 1}`);
    }
    assert.equal(m.numRequeues('a'), 6);
    clock.step(250);
    const peeked = m.peek('b');
    assert.equal(m.when('b'), peeked, 'the bucket part too, after time passed');
  });
});

function recordingMetrics(): QueueMetrics & {
  adds: number;
  retries: number;
  depths: number[];
  queueDurations: number[];
  workDurations: number[];
  probe?: InFlightProbe;
} {
  const m = {
    adds: 0,
    retries: 0,
    depths: [] as number[],
    queueDurations: [] as number[],
    workDurations: [] as number[],
    probe: undefined as InFlightProbe | undefined,
    add() {
      m.adds++;
    },
    retry() {
      m.retries++;
    },
    depth(n: number) {
      m.depths.push(n);
    },
    queueDuration(s: number) {
      m.queueDurations.push(s);
    },
    workDuration(s: number) {
      m.workDurations.push(s);
    },
    inFlight(p: InFlightProbe) {
      m.probe = p;
    },
  };
  return m;
}

describe('WorkQueue', () => {
  test('dedup: a key added while queued is queued once; FIFO order', async () => {
    const q = new WorkQueue<string>({ clock: new FakeClock() });
    q.add('a');
    q.add('b');
    q.add('a');
    q.add('c');
    q.add('b');
    assert.equal(q.len(), 3);
    assert.equal(await q.get(), 'a');
    assert.equal(await q.get(), 'b');
    assert.equal(await q.get(), 'c');
    assert.equal(q.len(), 0);
    assert.equal((await settled(q.get())).done, false, 'get blocks on an empty queue');
    q.shutDown();
  });

  test('lanes: high keys are handed out before low ones, FIFO within each lane', async () => {
    const q = new WorkQueue<string>({ clock: new FakeClock() });
    for (const k of ['sync-1', 'sync-2', 'sync-3']) q.add(k, 'low');
    q.add('event-1');
    q.add('spec-1', 'high');
    assert.deepEqual([q.len('high'), q.len('low'), q.len()], [2, 3, 5]);
    const order = [];
    for (let i = 0; i < 5; i++) order.push(await q.get());
    assert.deepEqual(order, ['event-1', 'spec-1', 'sync-1', 'sync-2', 'sync-3']);
    q.shutDown();
  });

  test('lanes: a waiting low key added high jumps ahead; a high key added low stays high; dedup holds', async () => {
    const q = new WorkQueue<string>({ clock: new FakeClock() });
    q.add('a', 'low');
    q.add('b', 'low');
    q.add('c', 'low');
    q.add('x');
    q.add('c'); // promoted
    q.add('x', 'low'); // stays high
    assert.equal(q.len(), 4);
    const order = [];
    for (let i = 0; i < 4; i++) order.push(await q.get());
    assert.deepEqual(order, ['x', 'c', 'a', 'b']);
    q.shutDown();
  });

  test('lanes: a key re-added high while processing is queued high on done, ahead of low keys', async () => {
    const q = new WorkQueue<string>({ clock: new FakeClock() });
    q.add('busy', 'low');
    assert.equal(await q.get(), 'busy');
    q.add('sync', 'low');
    q.add('busy', 'low');
    q.add('busy'); // an event for the key being processed
    q.done('busy');
    assert.equal(await q.get(), 'busy', 'the parked key kept its promotion');
    assert.equal(await q.get(), 'sync');
    q.shutDown();
  });

  test('lanes: delayed adds default to the low lane and do not overtake events', async () => {
    const clock = new FakeClock();
    const q = new WorkQueue<string>({ clock });
    q.addAfter('resync', 10);
    q.addAfter('poll', 10, 'high');
    clock.step(10);
    q.add('event');
    assert.deepEqual([await q.get(), await q.get(), await q.get()], ['poll', 'event', 'resync']);
    q.addRateLimited('retry');
    clock.step(1000);
    q.add('event-2');
    assert.deepEqual([await q.get(), await q.get()], ['event-2', 'retry']);
    q.shutDown();
  });

  test('a key being processed is not handed out again until done; re-added then', async () => {
    const q = new WorkQueue<string>({ clock: new FakeClock() });
    q.add('a');
    assert.equal(await q.get(), 'a');
    q.add('a'); // while processing: parked
    q.add('a');
    assert.equal(q.len(), 0);
    const second = q.get();
    assert.equal((await settled(second)).done, false, 'not handed to a second worker');
    q.done('a');
    assert.equal(await second, 'a', 're-queued once after done');
    q.done('a');
    assert.equal(q.len(), 0);
    assert.equal(q.processing(), 0);
    q.shutDown();
  });

  test('waiting getters are served in order, one key each', async () => {
    const q = new WorkQueue<string>({ clock: new FakeClock() });
    const g1 = q.get();
    const g2 = q.get();
    q.add('x');
    q.add('y');
    assert.equal(await g1, 'x');
    assert.equal(await g2, 'y');
  });

  test('done without get is a no-op', () => {
    const q = new WorkQueue<string>({ clock: new FakeClock() });
    q.done('nope');
    assert.equal(q.len(), 0);
  });

  test('addAfter delays; earliest wins; later add of the same key does not postpone', async () => {
    const clock = new FakeClock();
    const q = new WorkQueue<string>({ clock });
    q.addAfter('a', 1000);
    q.addAfter('a', 500); // earlier: wins
    q.addAfter('a', 2000); // later: ignored
    q.addAfter('b', 700);
    assert.equal(q.len(), 0);
    assert.equal(q.delayed(), 2);
    clock.step(499);
    assert.equal(q.len(), 0);
    clock.step(1);
    assert.equal(q.len(), 1);
    assert.equal(await q.get(), 'a');
    clock.step(200);
    assert.equal(await q.get(), 'b');
    clock.step(5000);
    assert.equal(q.len(), 0, 'the ignored later add never fires');
    assert.equal(q.delayed(), 0);
    q.addAfter('c', 0);
    assert.equal(q.len(), 1, 'non-positive delay adds immediately');
    q.shutDown();
  });

  test('addRateLimited follows the backoff; forget resets it', () => {
    const clock = new FakeClock();
    const q = new WorkQueue<string>({ clock });
    q.addRateLimited('a'); // 5 ms
    clock.step(4);
    assert.equal(q.len(), 0);
    clock.step(1);
    assert.equal(q.len(), 1);
    assert.equal(q.numRequeues('a'), 1);
    q.addRateLimited('b');
    q.addRateLimited('b'); // 10 ms, but the 5 ms one is earlier and wins
    assert.equal(q.numRequeues('b'), 2);
    q.forget('b');
    assert.equal(q.numRequeues('b'), 0);
    q.shutDown();
  });

  test('shutDown: intake stops, getters resolve undefined, delayed adds dropped', async () => {
    const clock = new FakeClock();
    const q = new WorkQueue<string>({ clock });
    const waiting = q.get();
    q.addAfter('later', 100);
    q.shutDown();
    assert.equal(await waiting, undefined);
    assert.equal(await q.get(), undefined);
    q.add('x');
    assert.equal(q.len(), 0);
    assert.equal(clock.pending, 0, 'delay timer cleared');
  });

  test('shutDownWithDrain resolves only after in-flight keys are done', async () => {
    const q = new WorkQueue<string>({ clock: new FakeClock() });
    q.add('a');
    q.add('b');
    const a = await q.get();
    const b = await q.get();
    assert.equal(a, 'a');
    assert.equal(b, 'b');
    q.add('a'); // re-added while processing: dropped by shutdown
    const drained = q.shutDownWithDrain();
    assert.equal((await settled(drained)).done, false);
    q.done('a');
    assert.equal((await settled(drained)).done, false);
    q.done('b');
    assert.equal((await settled(drained)).done, true);
    assert.equal(await q.get(), undefined);
  });

  test('metrics hooks: adds, depth, retries, queue and work durations, in-flight probe', async () => {
    const clock = new FakeClock();
    const m = recordingMetrics();
    const q = new WorkQueue<string>({ clock, metrics: m });
    assert.ok(m.probe);
    q.add('a');
    q.add('a'); // deduplicated: not an add
    q.add('b');
    assert.equal(m.adds, 2);
    assert.deepEqual(m.depths, [1, 2]);
    clock.step(250);
    assert.equal(await q.get(), 'a');
    assert.deepEqual(m.queueDurations, [0.25]);
    assert.equal(m.depths.at(-1), 1);
    clock.step(1000);
    assert.equal(await q.get(), 'b');
    clock.step(500);
    assert.equal(m.probe.unfinishedWorkSeconds(), 1.5 + 0.5);
    assert.equal(m.probe.longestRunningProcessorSeconds(), 1.5);
    q.done('a');
    assert.deepEqual(m.workDurations, [1.5]);
    q.addAfter('c', 10);
    q.addRateLimited('d');
    assert.equal(m.retries, 2);
    q.done('b');
    assert.equal(m.probe.unfinishedWorkSeconds(), 0);
    assert.equal(m.probe.longestRunningProcessorSeconds(), 0);
    q.shutDown();
  });

  test('real clock: addAfter fires', async () => {
    const q = new WorkQueue<string>();
    const t0 = performance.now();
    q.addAfter('a', 20);
    assert.equal(await q.get(), 'a');
    assert.ok(performance.now() - t0 >= 15);
    q.shutDown();
  });
});
