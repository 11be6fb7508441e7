/**
 * The one YAML reader of the house: Kubernetes manifests (src/manifests) and
 * the sim inventory both parse through here, so both report problems as
 * `<file>:<line>`. Built on the `yaml` package because it keeps every node's
 * source range (js-yaml gives a position only for syntax errors, not for a
 * value that later fails validation). Keys must be unique, aliases are
 * bounded, and a document must be a tree (no recursive anchor, bounded depth).
 */
import { isMap, isSeq, isScalar, LineCounter, parseAllDocuments } from 'yaml';
import type { Document, Node as YamlNode } from 'yaml';

export type YamlPath = readonly (string | number)[];

/** One parsed document whose value is usable. */
export interface YamlDocument {
  kind: 'document';
  /** The plain value (JSON-compatible); null for an empty document. */
  value: unknown;
  /** 1-based line of the document's root value. */
  line: number;
  /** 1-based line of a path inside the document, falling back to the nearest known parent. */
  lineOf(path: YamlPath): number;
}

/** A document that could not be read: syntax, alias or shape. The message never quotes the text. */
export interface YamlProblem {
  kind: 'problem';
  line: number;
  message: string;
}

const MAX_DEPTH = 2000;
const MAX_ALIAS_COUNT = 100;

/** Parses every document of `text`, in order; a document with problems yields them instead. */
export function parseYamlDocuments(text: string): (YamlDocument | YamlProblem)[] {
  const lineCounter = new LineCounter();
  const docs = parseAllDocuments(text, { lineCounter, uniqueKeys: true, prettyErrors: true });
  const lineAt = (offset: number | undefined): number => (offset === undefined ? 1 : lineCounter.linePos(offset).line);
  const out: (YamlDocument | YamlProblem)[] = [];
  const problem = (line: number, message: string): void => void out.push({ kind: 'problem', line, message });
  for (const doc of Array.isArray(docs) ? docs : [docs]) {
    if (doc.errors.length > 0) {
      for (const err of doc.errors) problem(err.linePos?.[0]?.line ?? 1, `YAML syntax error: ${firstLine(err.message)}`);
      continue;
    }
    const line = lineAt(doc.contents?.range?.[0]);
    let value: unknown;
    try {
      value = doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT }) as unknown;
    } catch (err) {
      problem(line, `YAML error: ${firstLine((err as Error).message)}`);
      continue;
    }
    const shape = shapeProblem(value);
    if (shape) {
      problem(line, shape);
      continue;
    }
    out.push({ kind: 'document', value: value ?? null, line, lineOf: (path) => lineAt(nearestNode(doc, path)?.range?.[0]) });
  }
  return out;
}

/** The yaml package's first message line, without its own trailing position (we give the line). */
function firstLine(message: string): string {
  return (message.split('\n')[0] ?? '').replace(/ at line \d+, column \d+:?$/, '');
}

/** Documents we read are trees: a recursive YAML alias or absurd nesting is an error, not a stack overflow later. */
function shapeProblem(root: unknown): string | undefined {
  const path = new Set<object>();
  const visit = (v: unknown, depth: number): string | undefined => {
    if (v === null || typeof v !== 'object') return undefined;
    if (path.has(v)) return 'a YAML alias refers to itself (recursive anchor); the document must be a tree';
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

function nodeAt(doc: Document, path: YamlPath): YamlNode | undefined {
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
function nearestNode(doc: Document, path: YamlPath): YamlNode | undefined {
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
