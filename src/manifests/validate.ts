/**
 * Validation of vmmem objects read from manifests: zod schemas from src/api
 * (the same ones the CRDs are generated from), reported per field with
 * file and line. Kinds vmmem does not own are ignored.
 */
import type { z } from 'zod';
import { GROUP, HYPERVISOR_KIND, VERSION, VMM_KIND } from '../api/group.ts';
import { HypervisorSchema, VirtualMachineMemorySchema, withoutNulls } from '../api/objects.ts';
import { formatPath, schemaProblems } from '../util/schema-problems.ts';
import type { ManifestObject } from './load.ts';
import { loadManifestFile } from './load.ts';

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
  return schemaProblems(schema, obj, result.error).map((p) => problem(p.path, p.message));
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
