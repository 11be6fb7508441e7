/**
 * Reads Kubernetes manifests (multi-document YAML or JSON, `List` kinds)
 * keeping where each value came from, so every problem can be reported as
 * `<file>:<line>`. Used by `vmmem validate`, `vmmem plan` and standalone mode.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { extname, join } from 'node:path';
import { isMap, isSeq, isScalar, LineCounter, parseAllDocuments } from 'yaml';
import type { Document, Node as YamlNode } from 'yaml';

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

function readSource(file: string): string {
  return file === '-' ? readFileSync(0, 'utf8') : readFileSync(file, 'utf8');
}

/** Parses one file into objects (List items flattened) and syntax problems. */
export function loadManifestText(file: string, text: string): { objects: ManifestObject[]; problems: ManifestProblem[] } {
  const lineCounter = new LineCounter();
  const docs = parseAllDocuments(text, { lineCounter, uniqueKeys: true, prettyErrors: true });
  const objects: ManifestObject[] = [];
  const problems: ManifestProblem[] = [];
  const lineAt = (offset: number | undefined) => (offset === undefined ? 1 : lineCounter.linePos(offset).line);

  for (const doc of Array.isArray(docs) ? docs : [docs]) {
    if (doc.errors.length > 0) {
      for (const err of doc.errors) problems.push({ file, line: err.linePos?.[0]?.line ?? 1, message: `YAML syntax error: ${(err.message.split('\n')[0] ?? '').replace(/ at line \d+, column \d+:?$/, '')}` });
      continue;
    }
    let value: unknown;
    try {
      value = doc.toJS({ maxAliasCount: 100 }) as unknown;
    } catch (err) {
      problems.push({ file, line: lineAt(doc.contents?.range?.[0]), message: `YAML error: ${(err as Error).message}` });
      continue;
    }
    if (value === null || value === undefined) continue; // empty document
    const rootLine = lineAt(doc.contents?.range?.[0]);
    const shape = shapeProblem(value);
    if (shape) {
      problems.push({ file, line: rootLine, message: shape });
      continue;
    }
    if (typeof value !== 'object' || Array.isArray(value)) {
      problems.push({ file, line: rootLine, message: 'document is not an object (a Kubernetes manifest is a mapping with apiVersion and kind)' });
      continue;
    }
    const obj = value as Record<string, unknown>;
    const make = (object: Record<string, unknown>, prefix: (string | number)[]): ManifestObject => ({
      file,
      line: lineAt(nodeAt(doc, prefix)?.range?.[0]),
      object,
      lineOf: (path) => lineAt(nearestNode(doc, [...prefix, ...path])?.range?.[0]),
    });
    if (typeof obj.kind === 'string' && obj.kind.endsWith('List') && Array.isArray(obj.items)) {
      obj.items.forEach((item, i) => {
        if (item && typeof item === 'object' && !Array.isArray(item)) objects.push(make(item as Record<string, unknown>, ['items', i]));
        else problems.push({ file, line: lineAt(nodeAt(doc, ['items', i])?.range?.[0]), message: `items[${i}] is not an object` });
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

const MAX_DEPTH = 2000;

/** Manifests are trees: a recursive YAML alias or absurd nesting is an error, not a stack overflow later. */
function shapeProblem(root: unknown): string | undefined {
  const path = new Set<object>();
  const visit = (v: unknown, depth: number): string | undefined => {
    if (v === null || typeof v !== 'object') return undefined;
    if (path.has(v)) return 'a YAML alias refers to itself (recursive anchor); manifests must be trees';
    if (depth > MAX_DEPTH) return `nesting deeper than ${MAX_DEPTH} levels`;
    path.add(v);
    for (const child of Array.isArray(v) ? v : Object.values(v)) {
      const problem = visit(child, depth + 1);
      if (problem) return problem;
    }
    path.delete(v);
    return undefined;
  };
  return visit(root, 0);
}

function nodeAt(doc: Document, path: readonly (string | number)[]): YamlNode | undefined {
  let node: unknown = doc.contents;
  for (const key of path) {
    if (isMap(node)) {
      const pair = node.items.find((p) => (isScalar(p.key) ? p.key.value : p.key) === key);
      if (!pair) return undefined;
      // A key whose value is empty has no value node: point at the key.
      node = pair.value ?? pair.key;
    } else if (isSeq(node) && typeof key === 'number') {
      node = node.items[key];
    } else {
      return undefined;
    }
  }
  return node as YamlNode | undefined;
}

/** The node at path, or at the longest prefix that exists (for missing fields). For a key, its key node. */
function nearestNode(doc: Document, path: readonly (string | number)[]): YamlNode | undefined {
  for (let n = path.length; n >= 0; n--) {
    const prefix = path.slice(0, n);
    if (n > 0 && n === path.length) {
      // Prefer the key's own line (`maxMemroy: 8Gi`), which is where a person looks.
      const parent = nodeAt(doc, prefix.slice(0, -1));
      if (isMap(parent)) {
        const pair = parent.items.find((p) => (isScalar(p.key) ? p.key.value : p.key) === prefix[n - 1]);
        if (pair && isScalar(pair.key)) return pair.key;
      }
    }
    const node = nodeAt(doc, prefix);
    if (node) return node;
  }
  return undefined;
}
