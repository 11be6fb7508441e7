/**
 * Reads Kubernetes manifests (multi-document YAML or JSON, `List` kinds)
 * keeping where each value came from, so every problem can be reported as
 * `<file>:<line>`. Used by `vmmem validate`, `vmmem plan` and standalone mode.
 */
import { closeSync, constants as fsConstants, fstatSync, openSync, readdirSync, readSync, statSync } from 'node:fs';
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

/**
 * Size caps. The YAML parser keeps a document tree per file (for `<file>:<line>` reports) that
 * costs about 40 times the text: 4 MiB (about 20,000 VMMs) is some 160 MiB of heap, and a 50 MB
 * file would be 2 GB. A file or a set of manifests over the cap is refused before it is parsed.
 */
export const MANIFEST_FILE_MAX_BYTES = 4 * 1024 * 1024;
export const MANIFEST_TOTAL_MAX_BYTES = 16 * 1024 * 1024;

/** Over a size cap: refused before parsing (callers report it like a missing path). */
export class ManifestTooLargeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ManifestTooLargeError';
  }
}

/**
 * Expands files and directories (recursively, sorted) into manifest file paths. `-` is stdin.
 * Throws ManifestTooLargeError when the regular files together exceed MANIFEST_TOTAL_MAX_BYTES.
 */
export function expandPaths(paths: readonly string[]): string[] {
  const files = expandPathsUnchecked(paths);
  let total = 0;
  for (const f of files) {
    if (f === '-') continue;
    const st = statSync(f);
    if (st.isFile()) total += st.size;
  }
  if (total > MANIFEST_TOTAL_MAX_BYTES) {
    throw new ManifestTooLargeError(`the manifests (${files.length} files) total ${total} bytes, over the ${MANIFEST_TOTAL_MAX_BYTES}-byte cap: split them across runs`);
  }
  return files;
}

function expandPathsUnchecked(paths: readonly string[]): string[] {
  const out: string[] = [];
  for (const path of paths) {
    if (path === '-') {
      out.push('-');
      continue;
    }
    const stat = statSync(path); // throws ENOENT: callers report it as a usage error
    if (stat.isDirectory()) {
      const entries = readdirSync(path, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name));
      out.push(...expandPathsUnchecked(entries.filter((e) => e.isDirectory() || MANIFEST_EXTENSIONS.has(extname(e.name))).map((e) => join(path, e.name))));
    } else {
      out.push(path);
    }
  }
  return out;
}

// stdin can be read only once, but `plan` and standalone `run` read their input twice (validate,
// then load): the first read is kept for the rest of the process. A refusal (over the cap) is
// kept too, so the second reader reports the same problem instead of reading on.
let stdinRead: { text: string } | { refused: ManifestTooLargeError } | undefined;

function readSource(file: string): string {
  if (file !== '-') return readBounded(file);
  if (!stdinRead) {
    try {
      stdinRead = { text: readBounded('-') };
    } catch (err) {
      if (!(err instanceof ManifestTooLargeError)) throw err;
      stdinRead = { refused: err };
    }
  }
  if ('refused' in stdinRead) throw stdinRead.refused;
  return stdinRead.text;
}

/**
 * Reads at most MANIFEST_FILE_MAX_BYTES (+1 to tell "over"): stdin, a FIFO or /dev/zero cannot
 * make the reader buffer without bound. A named file must be a regular file; it is opened
 * non-blocking so that a FIFO is refused at once instead of waiting for a writer.
 */
function readBounded(file: string): string {
  const fd = file === '-' ? 0 : openSync(file, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK | fsConstants.O_NOCTTY);
  try {
    if (file !== '-' && !fstatSync(fd).isFile()) throw new ManifestTooLargeError('not a regular file (a device, FIFO or socket is not read as a manifest)');
    const chunks: Buffer[] = [];
    let total = 0;
    const buf = Buffer.alloc(64 * 1024);
    for (;;) {
      let n: number;
      try {
        n = readSync(fd, buf, 0, buf.length, null);
      } catch (err) {
        // stdin may be a non-blocking pipe: wait a little for the writer instead of spinning.
        if ((err as NodeJS.ErrnoException).code === 'EAGAIN') {
          Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 5);
          continue;
        }
        throw err;
      }
      if (n === 0) break;
      total += n;
      if (total > MANIFEST_FILE_MAX_BYTES) throw new ManifestTooLargeError(`over the ${MANIFEST_FILE_MAX_BYTES}-byte cap for one manifest file: split it`);
      chunks.push(Buffer.from(buf.subarray(0, n)));
    }
    return Buffer.concat(chunks).toString('utf8');
  } finally {
    if (file !== '-') closeSync(fd);
  }
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
  let text: string;
  try {
    text = readSource(file);
  } catch (err) {
    if (err instanceof ManifestTooLargeError) return { objects: [], problems: [{ file, line: 1, message: err.message }] };
    throw err;
  }
  return loadManifestText(file, text);
}
