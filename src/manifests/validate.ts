/**
 * Validation of vmmem objects read from manifests: zod schemas from src/api
 * (the same ones the CRDs are generated from), reported per field with
 * file and line. Kinds vmmem does not own are ignored.
 */
import type { z } from 'zod';
import { GROUP, HYPERVISOR_KIND, VERSION, VMM_KIND } from '../api/group.ts';
import { HypervisorSchema, VirtualMachineMemorySchema, withoutNulls } from '../api/objects.ts';
import type { ManifestObject } from './load.ts';
import { loadManifestFile } from './load.ts';
import { closest } from '../util/closest.ts';

export interface ObjectProblem {
  file: string;
  line: number;
  /** "VirtualMachineMemory/web-01" */
  object: string;
  /** "spec.maxMemory" */
  path: string;
  message: string;
}

const OWNED_KINDS = [VMM_KIND, HYPERVISOR_KIND];

/** Whether this object belongs to the vmmem.io group (and so must validate). */
export function isOwned(obj: Record<string, unknown>): boolean {
  return typeof obj.apiVersion === 'string' && obj.apiVersion.split('/')[0] === GROUP;
}

export function objectLabel(obj: Record<string, unknown>): string {
  const meta = obj.metadata as Record<string, unknown> | undefined;
  const name = meta && typeof meta.name === 'string' ? meta.name : '<unnamed>';
  return `${typeof obj.kind === 'string' ? obj.kind : '<no kind>'}/${name}`;
}

export function validateManifestObject(mo: ManifestObject): ObjectProblem[] {
  const obj = withoutNulls(mo.object);
  if (!isOwned(obj)) return [];
  const label = objectLabel(obj);
  const problem = (path: (string | number)[], message: string): ObjectProblem => ({
    file: mo.file,
    line: mo.lineOf(path),
    object: label,
    path: formatPath(path),
    message,
  });
  const version = String(obj.apiVersion).split('/')[1];
  if (version !== VERSION) return [problem(['apiVersion'], `unsupported version ${JSON.stringify(obj.apiVersion)}: this vmmem serves ${GROUP}/${VERSION}`)];
  const schema: z.ZodType | undefined = obj.kind === VMM_KIND ? VirtualMachineMemorySchema : obj.kind === HYPERVISOR_KIND ? HypervisorSchema : undefined;
  if (!schema) return [problem(['kind'], `unknown kind ${JSON.stringify(obj.kind)} in ${GROUP} (known: ${OWNED_KINDS.join(', ')})`)];

  const result = schema.safeParse(obj);
  if (result.success) return [];
  const problems: ObjectProblem[] = [];
  for (const issue of result.error.issues) {
    const path = issue.path.filter((p): p is string | number => typeof p !== 'symbol');
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys) {
        const suggestion = closest(key, knownKeys(schema, path));
        problems.push(problem([...path, key], `unknown field${suggestion ? ` (did you mean "${suggestion}"?)` : ''}`));
      }
      continue;
    }
    problems.push(problem(path, describeIssue(issue, obj, path)));
  }
  return problems;
}

function formatPath(path: readonly (string | number)[]): string {
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

function describeIssue(issue: z.core.$ZodIssue, obj: unknown, path: (string | number)[]): string {
  const value = valueAt(obj, path);
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

/**
 * Every problem in these manifest files, one `<file>:<line>: …` line each
 * (syntax, unreadable files, and each vmmem object's fields), and how many
 * vmmem objects were checked. Shared by `vmmem validate` and `vmmem plan`.
 */
export function manifestProblemLines(paths: readonly string[]): { lines: string[]; checked: number } {
  const lines: string[] = [];
  let checked = 0;
  const seenAt = new Map<string, string>();
  for (const file of paths) {
    let loaded;
    try {
      loaded = loadManifestFile(file);
    } catch (err) {
      lines.push(`${file}:1: cannot read: ${(err as Error).message}`);
      continue;
    }
    for (const p of loaded.problems) lines.push(`${p.file}:${p.line}: ${p.message}`);
    for (const mo of loaded.objects) {
      if (isOwned(mo.object)) checked++;
      for (const p of validateManifestObject(mo)) lines.push(`${p.file}:${p.line}: ${p.object}: ${p.path}: ${p.message}`);
      const duplicate = duplicateOf(mo, seenAt);
      if (duplicate) lines.push(`${mo.file}:${mo.line}: ${objectLabel(mo.object)}: metadata.name: duplicate: the same ${String(mo.object.kind)} namespace/name is defined at ${duplicate} (vmmem run refuses both)`);
    }
  }
  return { lines, checked };
}

/** Where this vmmem object was first defined, when another object has its kind/namespace/name. */
function duplicateOf(mo: ManifestObject, seenAt: Map<string, string>): string | undefined {
  if (!isOwned(mo.object)) return undefined;
  const meta = mo.object.metadata as Record<string, unknown> | undefined;
  if (!meta || typeof meta.name !== 'string') return undefined;
  const namespace = typeof meta.namespace === 'string' ? meta.namespace : 'default';
  const id = `${String(mo.object.kind)}/${namespace}/${meta.name}`;
  const first = seenAt.get(id);
  if (first === undefined) seenAt.set(id, `${mo.file}:${mo.line}`);
  return first;
}
