/**
 * Test support: the Dockerfile and the build context as Docker reads them
 * (continuations, stages, COPY; .dockerignore with moby/patternmatcher's
 * rules, reimplemented), for the static checks in test/unit/dockerfile.test.ts
 * and the image tree assembled in test/peer/image/image.test.ts.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

// ---------------------------------------------------------------------------------------------
// Dockerfile parsing (enough of the syntax for this file: continuations, comments, JSON/shell form)
// ---------------------------------------------------------------------------------------------

export interface Instruction {
  op: string;
  args: string;
  line: number;
}

export function parseDockerfile(text: string): Instruction[] {
  const out: Instruction[] = [];
  const lines = text.split('\n');
  let buf = '';
  let start = 0;
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i]!;
    const t = raw.trim();
    if (buf === '' && (t === '' || t.startsWith('#'))) continue;
    if (buf !== '' && t.startsWith('#')) continue; // comment lines inside a continuation
    if (buf === '') start = i + 1;
    if (t.endsWith('\\')) {
      buf += t.slice(0, -1) + ' ';
      continue;
    }
    buf += t;
    const m = /^(\S+)\s*(.*)$/s.exec(buf)!;
    out.push({ op: m[1]!.toUpperCase(), args: m[2]!.trim(), line: start });
    buf = '';
  }
  return out;
}

export interface Stage {
  from: string;
  name?: string;
  instructions: Instruction[];
}

export function stages(ins: Instruction[]): { args: Map<string, string>; stages: Stage[] } {
  const args = new Map<string, string>();
  const out: Stage[] = [];
  for (const i of ins) {
    if (i.op === 'ARG' && out.length === 0) {
      const [k, v] = i.args.split('=', 2);
      args.set(k!.trim(), (v ?? '').trim());
    } else if (i.op === 'FROM') {
      const m = /^(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?$/i.exec(i.args);
      assert.ok(m, `FROM at line ${i.line}: ${i.args}`);
      const from = m[1]!.replace(/\$\{(\w+)\}|\$(\w+)/g, (_, a: string | undefined, b: string | undefined) => args.get((a ?? b)!) ?? '');
      out.push({ from, ...(m[2] ? { name: m[2] } : {}), instructions: [] });
    } else {
      assert.ok(out.length > 0, `${i.op} before FROM at line ${i.line}`);
      out.at(-1)!.instructions.push(i);
    }
  }
  return { args, stages: out };
}

export interface Copy {
  from?: string;
  sources: string[];
  dest: string;
}

export function copies(stage: Stage): Copy[] {
  return stage.instructions
    .filter((i) => i.op === 'COPY')
    .map((i) => {
      const words = i.args.split(/\s+/);
      let from: string | undefined;
      while (words[0]?.startsWith('--')) {
        const flag = words.shift()!;
        if (flag.startsWith('--from=')) from = flag.slice('--from='.length);
      }
      const dest = words.pop()!;
      return { ...(from ? { from } : {}), sources: words, dest };
    });
}

// ---------------------------------------------------------------------------------------------
// .dockerignore, as moby/patternmatcher reads and applies it
// ---------------------------------------------------------------------------------------------

export interface Pattern {
  text: string;
  exclusion: boolean;
  re: RegExp;
}

export function readDockerignore(text: string): Pattern[] {
  const out: Pattern[] = [];
  for (let line of text.split('\n')) {
    line = line.trim();
    if (line === '' || line.startsWith('#')) continue;
    let exclusion = false;
    if (line.startsWith('!')) {
      exclusion = true;
      line = line.slice(1).trim();
    }
    // filepath.Clean, then a leading '/' is dropped.
    let p = line.replace(/\/+/g, '/').replace(/(^|\/)\.(\/|$)/g, '$1').replace(/\/$/, '');
    if (p.length > 1 && p.startsWith('/')) p = p.slice(1);
    out.push({ text: p, exclusion, re: patternRegExp(p) });
  }
  return out;
}

/** patternmatcher's compile(): `**` spans directories, `*` and `?` stay within one. */
function patternRegExp(p: string): RegExp {
  let re = '^';
  for (let i = 0; i < p.length; i++) {
    const ch = p[i]!;
    if (ch === '*') {
      if (p[i + 1] === '*') {
        i++;
        if (p[i + 1] === '/') {
          i++;
          re += '(.*/)?';
        } else re += '.*';
      } else re += '[^/]*';
    } else if (ch === '?') re += '[^/]';
    else if (ch === '\\' && i + 1 < p.length) re += '\\' + p[++i];
    else re += ch.replace(/[.+^${}()|[\]]/g, '\\$&');
  }
  return new RegExp(re + '$');
}

/** MatchesOrParentMatches: the last pattern matching the path or one of its parents decides. */
export function ignored(patterns: Pattern[], file: string): boolean {
  const parts = file.split('/');
  const parents = parts.slice(0, -1).map((_, i) => parts.slice(0, i + 1).join('/'));
  let matched = false;
  for (const p of patterns) {
    if (p.exclusion !== matched) continue;
    const match = p.re.test(file) || parents.some((d) => p.re.test(d));
    if (match) matched = !p.exclusion;
  }
  return matched;
}

/** Every file of the build context (paths relative to the repository, '/'-separated). */
export function buildContext(patterns: Pattern[]): string[] {
  const out: string[] = [];
  const negations = patterns.filter((p) => p.exclusion).map((p) => p.text);
  const walk = (rel: string) => {
    for (const e of readdirSync(join(ROOT, rel), { withFileTypes: true })) {
      const path = rel === '' ? e.name : `${rel}/${e.name}`;
      if (e.isDirectory()) {
        // Like BuildKit, skip an excluded directory unless an exception could reach inside it.
        if (ignored(patterns, path) && !negations.some((n) => n.startsWith(path + '/') || n.startsWith('**'))) continue;
        walk(path);
      } else if (!ignored(patterns, path)) out.push(path);
    }
  };
  walk('');
  return out.sort();
}

// ---------------------------------------------------------------------------------------------

// ---------------------------------------------------------------------------------------------

export const dockerfileText = readFileSync(join(ROOT, 'Dockerfile'), 'utf8');
export const parsed = stages(parseDockerfile(dockerfileText));
export const finalStage = parsed.stages.at(-1)!;
export const patterns = readDockerignore(readFileSync(join(ROOT, '.dockerignore'), 'utf8'));
export const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { dependencies: Record<string, string>; devDependencies: Record<string, string> };

export function last(stage: Stage, op: string): Instruction | undefined {
  return stage.instructions.filter((i) => i.op === op).at(-1);
}

/** The `npm ci ...` command of a RUN line (up to the next && or ;). */
export function npmCi(stage: Stage): string[] | undefined {
  for (const i of stage.instructions.filter((x) => x.op === 'RUN')) {
    const m = /(?:^|&&|;)\s*(npm\s+ci\b[^&;]*)/.exec(i.args);
    if (m) return m[1]!.trim().split(/\s+/);
  }
  return undefined;
}
