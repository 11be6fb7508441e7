/**
 * Reads Kubernetes manifests (multi-document YAML or JSON, `List` kinds)
 * keeping where each value came from, so every problem can be reported as
 * `<file>:<line>`. Used by `vmmem validate`, `vmmem plan` and standalone mode.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { extname, join } from 'node:path';
import { parseYamlDocuments } from '../util/yaml.ts';

export interface ManifestObject {
  file: string;
  /** 1-based line of the object's first line. */
  line: number;
  /** The plain object (JSON-compatible). */
  object: Record<string, unknown>;
  /** 1-based line of a path inside the object, falling back to the nearest known parent. */
  lineOf(path: readonly (string | number)[]): number;
}

export interface ManifestProblem {
  file: string;
  line: number;
  message: string;
}

const MANIFEST_EXTENSIONS = new Set(['.yaml', '.yml', '.json']);

/** Expands files and directories (recursively, sorted) into manifest file paths. `-` is stdin. */
export function expandPaths(paths: readonly string[]): string[] {
  const out: string[] = [];
  for (const path of paths) {
    if (path === '-') {
      out.push('-');
      continue;
    }
    const stat = statSync(path); // throws ENOENT: callers report it as a usage error
    if (stat.isDirectory()) {
      const entries = readdirSync(path, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name));
      out.push(...expandPaths(entries.filter((e) => e.isDirectory() || MANIFEST_EXTENSIONS.has(extname(e.name))).map((e) => join(path, e.name))));
    } else {
      out.push(path);
    }
  }
  return out;
}

// stdin can be read only once, but `plan` and standalone `run` read their input twice (validate,
// then load): the first read is kept for the rest of the process.
let stdinText: string | undefined;

function readSource(file: string): string {
  if (file !== '-') return readFileSync(file, 'utf8');
  stdinText ??= readFileSync(0, 'utf8');
  return stdinText;
}

/** Parses one file into objects (List items flattened) and syntax problems. */
export function loadManifestText(file: string, text: string): { objects: ManifestObject[]; problems: ManifestProblem[] } {
  const objects: ManifestObject[] = [];
  const problems: ManifestProblem[] = [];
  for (const doc of parseYamlDocuments(text)) {
    if (doc.kind === 'problem') {
      problems.push({ file, line: doc.line, message: doc.message });
      continue;
    }
    if (doc.value === null) continue; // empty document
    if (typeof doc.value !== 'object' || Array.isArray(doc.value)) {
      problems.push({ file, line: doc.line, message: 'document is not an object (a Kubernetes manifest is a mapping with apiVersion and kind)' });
      continue;
    }
    const obj = doc.value as Record<string, unknown>;
    const make = (object: Record<string, unknown>, prefix: (string | number)[]): ManifestObject => ({
      file,
      line: doc.lineOf(prefix),
      object,
      lineOf: (path) => doc.lineOf([...prefix, ...path]),
    });
    if (typeof obj.kind === 'string' && obj.kind.endsWith('List') && Array.isArray(obj.items)) {
      obj.items.forEach((item, i) => {
        if (item && typeof item === 'object' && !Array.isArray(item)) objects.push(make(item as Record<string, unknown>, ['items', i]));
        else problems.push({ file, line: doc.lineOf(['items', i]), message: `items[${i}] is not an object` });
      });
    } else {
      objects.push(make(obj, []));
    }
  }
  return { objects, problems };
}

export function loadManifestFile(file: string): { objects: ManifestObject[]; problems: ManifestProblem[] } {
  return loadManifestText(file, readSource(file));
}
