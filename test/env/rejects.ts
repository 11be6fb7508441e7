/**
 * The error a call must fail with, returned for further assertions: the peer
 * tests check the hypervisor's own words, codes and context on it.
 */
import assert from 'node:assert/strict';

export async function rejectsWith<E extends Error>(p: Promise<unknown>, type: abstract new (...args: never[]) => E): Promise<E> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof type, `expected ${type.name}, got ${String(e)}`);
    return e;
  }
  assert.fail(`expected the call to fail with ${type.name}`);
}
