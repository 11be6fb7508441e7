/**
 * Equality of two values as JSON documents: what the API server would store.
 * util.isDeepStrictEqual already ignores key order; the JSON round trip first
 * drops keys holding undefined (JSON has no such value, so the server never
 * sends them back) — without it `{a: undefined}` and `{}` would differ and a
 * status would be rewritten on every pass.
 */
import { isDeepStrictEqual } from 'node:util';

function asJson(v: unknown): unknown {
  return v === undefined ? undefined : (JSON.parse(JSON.stringify(v)) as unknown);
}

export function jsonEqual(a: unknown, b: unknown): boolean {
  return isDeepStrictEqual(asJson(a), asJson(b));
}
