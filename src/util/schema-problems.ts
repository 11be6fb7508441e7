/**
 * zod's issues in vmmem's words: "spec.vm.name: must be a string, got number 5",
 * "spec.memroy: unknown field (did you mean "memory"?)" instead of zod's
 * "Invalid input: expected string, received number" / "Unrecognized key".
 * One function for every place that reports a spec problem — `vmmem validate`
 * and `plan` (src/manifests/validate.ts), the reconcilers' InvalidSpec/InvalidURI
 * status (src/controller/reconcile-support.ts) in standalone and cluster mode —
 * so a user sees the same sentence whichever tool found it. In src/util because
 * the controller may not import src/manifests, and src/api imports nothing.
 */
import type { z } from 'zod';
import { closest } from './closest.ts';

export type SchemaPath = (string | number)[];

export interface SchemaProblem {
  /** Relative to the value that was parsed (["vm", "name"] for a spec). */
  path: SchemaPath;
  message: string;
}

/**
 * One problem per issue, and one per unknown key (zod groups them in one issue). `value` is what
 * was parsed: the message quotes what the user wrote there ("got number 5").
 */
export function schemaProblems(schema: z.ZodType, value: unknown, error: z.ZodError): SchemaProblem[] {
  const problems: SchemaProblem[] = [];
  for (const issue of error.issues) {
    const path = issue.path.filter((p): p is string | number => typeof p !== 'symbol');
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys) {
        const suggestion = closest(key, knownKeys(schema, path));
        problems.push({ path: [...path, key], message: `unknown field${suggestion ? ` (did you mean "${suggestion}"?)` : ''}` });
      }
      continue;
    }
    problems.push({ path, message: describeIssue(issue, valueAt(value, path)) });
  }
  return problems;
}

/** `spec.vm.name`, `spec.items[0]`; `<object>` for the root. */
export function formatPath(path: readonly (string | number)[]): string {
  let out = '';
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : out === '' ? p : `.${p}`;
  return out || '<object>';
}

function valueAt(obj: unknown, path: readonly (string | number)[]): unknown {
  let v: unknown = obj;
  for (const p of path) v = v && typeof v === 'object' ? (v as Record<string | number, unknown>)[p] : undefined;
  return v;
}

function typeName(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'an object';
  return `${typeof v} ${JSON.stringify(v)}`;
}

function describeIssue(issue: z.core.$ZodIssue, value: unknown): string {
  switch (issue.code) {
    case 'invalid_type':
      if (value === undefined) return 'is required';
      return `must be ${article(issue.expected)}, got ${typeName(value)}`;
    case 'invalid_value':
      return `must be ${issue.values.map((v) => JSON.stringify(v)).join(' or ')}, got ${typeName(value)}`;
    case 'too_small':
      return typeof value === 'string' ? `must not be empty` : issue.message;
    case 'too_big':
      return typeof value === 'string' ? `is too long (at most ${String(issue.maximum)} characters)` : issue.message;
    case 'invalid_format':
      return `${JSON.stringify(value)} ${issue.message}`;
    default:
      return issue.message;
  }
}

function article(expected: string): string {
  return expected === 'object' || expected === 'array' ? `an ${expected}` : `a ${expected}`;
}

/** Keys the schema accepts at `path`, for "did you mean" hints. */
function knownKeys(schema: z.ZodType, path: readonly (string | number)[]): string[] {
  let node: unknown = schema;
  for (const p of path) {
    node = unwrap(node);
    const shape = (node as { shape?: Record<string, unknown> }).shape;
    if (!shape || typeof p !== 'string') return [];
    node = shape[p];
  }
  const shape = (unwrap(node) as { shape?: Record<string, unknown> } | undefined)?.shape;
  return shape ? Object.keys(shape) : [];
}

function unwrap(node: unknown): unknown {
  let n = node as { unwrap?: () => unknown; def?: { type?: string; innerType?: unknown } } | undefined;
  while (n && typeof n.unwrap === 'function' && n.def?.type === 'optional') n = n.unwrap() as typeof n;
  return n;
}
