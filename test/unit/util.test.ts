/** src/util and the one UUID rule: the behaviour their callers rely on. No test waits on a real clock beyond a few ms. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { sleep } from '../../src/util/sleep.ts';
import { Backoff, exponentialDelay } from '../../src/util/backoff.ts';
import { jsonEqual } from '../../src/util/json-equal.ts';
import { canonicalUuid } from '../../src/api/uuid.ts';

test('sleep resolves (not rejects) when its signal aborts, at once when already aborted', async () => {
  const ctl = new AbortController();
  const waiting = sleep(60_000, ctl.signal);
  ctl.abort();
  await waiting; // would hang the test for a minute, or reject, if the abort were ignored
  await sleep(60_000, AbortSignal.abort());
});

test('exponentialDelay doubles per failure and caps at max, also past overflow', () => {
  assert.deepEqual([0, 1, 2, 3].map((n) => exponentialDelay(5, 1000, n)), [5, 10, 20, 40]);
  assert.equal(exponentialDelay(5, 1000, 10), 1000);
  assert.equal(exponentialDelay(5, 1000, 5000), 1000);
});

test('Backoff jitters within [d/2, d], counts failures and resets', () => {
  const b = new Backoff(100, 800);
  const bounds = [100, 200, 400, 800, 800];
  for (const d of bounds) {
    const v = b.next();
    assert.ok(v >= d / 2 && v <= d, `${v} not in [${d / 2}, ${d}]`);
  }
  assert.equal(b.failures, 5);
  b.reset();
  assert.ok(b.next() <= 100);
});

test('jsonEqual: key order and undefined-valued keys do not count; values and array order do', () => {
  assert.ok(jsonEqual({ a: 1, b: { c: [1, 2] } }, { b: { c: [1, 2] }, a: 1 }));
  assert.ok(jsonEqual({ a: 1, gone: undefined }, { a: 1 }));
  assert.ok(!jsonEqual({ a: [1, 2] }, { a: [2, 1] }));
  assert.ok(!jsonEqual({ a: '1' }, { a: 1 }));
  assert.ok(!jsonEqual(undefined, null));
});

test('canonicalUuid: dashes optional, any case, one canonical form; anything else refused', () => {
  const want = '4b6f0a4e-0b7f-4bd4-9b5d-2a0e8e1f6c3a';
  assert.equal(canonicalUuid('4B6F0A4E-0B7F-4BD4-9B5D-2A0E8E1F6C3A'), want);
  assert.equal(canonicalUuid('4b6f0a4e0b7f4bd49b5d2a0e8e1f6c3a'), want);
  for (const bad of ['', 'not-a-uuid', `${want}0`, '4b6f0a4e-0b7f-4bd4-9b5d-2a0e8e1f6c3g']) assert.equal(canonicalUuid(bad), undefined, bad);
});
