// The container image, checked without a Docker engine (none runs here):
//  - the Dockerfile: Node 24 base in every stage, production dependencies only (`npm ci --omit=dev`),
//    non-root numeric USER, openssh-client, ENTRYPOINT/CMD as documented;
//  - the build context as .dockerignore defines it (Docker's own pattern rules, reimplemented
//    below): no node_modules, tests, .git, docs or deploy; every COPY source present;
//  - the important one: the image's /app assembled from the same COPY instructions and the same
//    `npm ci` command (real npm, real registry; cache in ~/.npm), then vmmem run from it with Node 24
//    (the repository's, as the image has its own): `vmmem validate -f examples` works, and every
//    module under src/ loads with production dependencies alone.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { cpSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const execFileP = promisify(execFile);
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const NODE24 = join(ROOT, 'node_modules', '.bin', 'node');

// ---------------------------------------------------------------------------------------------
// Dockerfile parsing (enough of the syntax for this file: continuations, comments, JSON/shell form)
// ---------------------------------------------------------------------------------------------

interface Instruction {
  op: string;
  args: string;
  line: number;
}

function parseDockerfile(text: string): Instruction[] {
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

interface Stage {
  from: string;
  name?: string;
  instructions: Instruction[];
}

function stages(ins: Instruction[]): { args: Map<string, string>; stages: Stage[] } {
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

interface Copy {
  from?: string;
  sources: string[];
  dest: string;
}

function copies(stage: Stage): Copy[] {
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

interface Pattern {
  text: string;
  exclusion: boolean;
  re: RegExp;
}

function readDockerignore(text: string): Pattern[] {
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
function ignored(patterns: Pattern[], file: string): boolean {
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
function buildContext(patterns: Pattern[]): string[] {
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

const dockerfileText = readFileSync(join(ROOT, 'Dockerfile'), 'utf8');
const parsed = stages(parseDockerfile(dockerfileText));
const finalStage = parsed.stages.at(-1)!;
const patterns = readDockerignore(readFileSync(join(ROOT, '.dockerignore'), 'utf8'));
const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { dependencies: Record<string, string>; devDependencies: Record<string, string> };

function last(stage: Stage, op: string): Instruction | undefined {
  return stage.instructions.filter((i) => i.op === op).at(-1);
}

/** The `npm ci ...` command of a RUN line (up to the next && or ;). */
function npmCi(stage: Stage): string[] | undefined {
  for (const i of stage.instructions.filter((x) => x.op === 'RUN')) {
    const m = /(?:^|&&|;)\s*(npm\s+ci\b[^&;]*)/.exec(i.args);
    if (m) return m[1]!.trim().split(/\s+/);
  }
  return undefined;
}

void describe('Dockerfile', () => {
  void it('uses a Node 24 base in every stage', () => {
    assert.ok(parsed.stages.length >= 2, 'multi-stage');
    for (const s of parsed.stages) assert.match(s.from, /^(docker\.io\/(library\/)?)?node:24([.-][\w.-]+)?(@sha256:[0-9a-f]{64})?$/, `FROM ${s.from}`);
  });

  void it('installs production dependencies only, with npm ci from the lockfile, and never npm install', () => {
    const ci = parsed.stages.map(npmCi).filter((c) => c !== undefined);
    assert.equal(ci.length, 1, 'exactly one npm ci');
    assert.ok(ci[0]!.includes('--omit=dev'), `npm ci without --omit=dev: ${ci[0]!.join(' ')}`);
    assert.doesNotMatch(dockerfileText.replace(/^\s*#.*$/gm, ''), /npm\s+(install|i)\b/, 'npm install would ignore the lockfile');
    // The runtime stage takes node_modules from the stage that ran `npm ci --omit=dev`, and
    // copies no node_modules from the context (.dockerignore excludes it anyway).
    const depsStage = parsed.stages.find((s) => npmCi(s))!;
    const nm = copies(finalStage).filter((c) => c.sources.some((s) => s.includes('node_modules')));
    assert.deepEqual(nm.map((c) => c.from), [depsStage.name], 'node_modules only from the deps stage');
    assert.equal(npmCi(finalStage), undefined, 'no npm ci in the runtime stage (no npm cache, no dev tooling)');
  });

  void it('runs as a non-root numeric user, with openssh-client, ENTRYPOINT node /app/src/cli/main.ts and CMD run', () => {
    const user = last(finalStage, 'USER');
    assert.ok(user, 'USER in the runtime stage');
    const [uid, gid] = user.args.split(':');
    assert.match(uid!, /^\d+$/, 'numeric uid (runAsNonRoot can verify it)');
    assert.notEqual(Number(uid), 0);
    assert.equal(Number(uid), 65532);
    if (gid !== undefined) assert.notEqual(Number(gid), 0);
    // USER comes after every RUN: nothing runs as root after it and nothing is left to do as root.
    const idx = finalStage.instructions.indexOf(user);
    assert.ok(!finalStage.instructions.slice(idx + 1).some((i) => i.op === 'RUN'), 'no RUN after USER');
    assert.ok(finalStage.instructions.some((i) => i.op === 'RUN' && /apt-get install[^&]*\bopenssh-client\b/.test(i.args)), 'openssh-client installed');
    assert.ok(finalStage.instructions.some((i) => i.op === 'RUN' && /--no-install-recommends/.test(i.args) && /rm -rf \/var\/lib\/apt\/lists/.test(i.args)), 'slim apt layer');
    assert.deepEqual(JSON.parse(last(finalStage, 'ENTRYPOINT')!.args), ['node', '/app/src/cli/main.ts']);
    assert.deepEqual(JSON.parse(last(finalStage, 'CMD')!.args), ['run']);
    assert.equal(last(finalStage, 'WORKDIR')?.args, '/app');
  });
});

void describe('.dockerignore build context', () => {
  const context = buildContext(patterns);

  void it('follows Docker pattern rules (self-check of the matcher)', () => {
    const p = readDockerignore('*\n!src/\n**/*.test.ts\n/docs\n!docs/keep.md\n');
    assert.equal(ignored(p, 'README.md'), true);
    assert.equal(ignored(p, 'src/a/b.ts'), false);
    assert.equal(ignored(p, 'src/a/b.test.ts'), true);
    assert.equal(ignored(p, 'docs/x.md'), true);
    assert.equal(ignored(p, 'docs/keep.md'), false);
    assert.equal(ignored(readDockerignore('node_modules\n'), 'node_modules/a/index.js'), true);
    assert.equal(ignored(readDockerignore('**/node_modules\n'), 'src/node_modules/a.js'), true);
    assert.equal(ignored(readDockerignore('*.md\n'), 'docs/a.md'), false, '* does not cross directories');
  });

  void it('excludes node_modules, tests, .git, docs, deploy, Dockerfile-unrelated files', () => {
    const bad = context.filter((f) => /(^|\/)node_modules\//.test(f) || f.startsWith('test/') || f.startsWith('.git/') || f.startsWith('docs/') || f.startsWith('deploy/') || f.endsWith('.test.ts'));
    assert.deepEqual(bad, []);
    for (const d of ['node_modules', '.git', 'test', 'docs', 'deploy', 'bench', 'scripts', 'crds']) {
      if (existsSync(join(ROOT, d))) assert.equal(ignored(patterns, `${d}/x`), true, `${d}/ is in the context`);
    }
    // An allow-list: a new file at the top (a local .env, a kubeconfig) stays out.
    assert.equal(ignored(patterns, '.env'), true);
    assert.equal(ignored(patterns, 'kubeconfig'), true);
    const top = new Set(context.map((f) => f.split('/')[0]));
    assert.deepEqual([...top].sort(), ['bin', 'examples', 'package-lock.json', 'package.json', 'src']);
  });

  void it('holds every source the Dockerfile copies', () => {
    for (const s of parsed.stages) {
      for (const c of copies(s).filter((x) => x.from === undefined)) {
        for (const src of c.sources) {
          const clean = src.replace(/\/$/, '');
          assert.ok(context.some((f) => f === clean || f.startsWith(clean + '/')), `COPY ${src} (${s.name ?? 'runtime'} stage) is not in the build context`);
        }
      }
    }
    assert.ok(context.includes('src/cli/main.ts'));
  });
});

void describe('the image filesystem runs vmmem with production dependencies only', () => {
  let app: string;
  let work: string;
  let npmSeconds = 0;

  before(async () => {
    work = mkdtempSync(join(tmpdir(), 'vmmem-image-'));
    app = join(work, 'app');
    mkdirSync(app);
    const context = buildContext(patterns);
    // Materialize one stage's COPY instructions from the context into /app (= `app`).
    const materialize = (stage: Stage) => {
      for (const c of copies(stage).filter((x) => x.from === undefined)) {
        const destDir = c.dest.startsWith('/') ? join(work, c.dest) : join(app, c.dest);
        for (const src of c.sources) {
          const clean = src.replace(/\/$/, '');
          const files = context.filter((f) => f === clean || f.startsWith(clean + '/'));
          for (const f of files) {
            // COPY dir dest: the directory's contents go into dest; COPY file dir/: into dir.
            const rel = f === clean ? f.split('/').at(-1)! : relative(clean, f);
            const target = c.sources.length > 1 || c.dest.endsWith('/') || f !== clean ? join(destDir, rel) : destDir;
            mkdirSync(dirname(target), { recursive: true });
            cpSync(join(ROOT, f), target, { dereference: false });
          }
        }
      }
    };
    const depsStage = parsed.stages.find((s) => npmCi(s))!;
    materialize(depsStage);
    const [npm, ...ciArgs] = npmCi(depsStage)!;
    const t0 = Date.now();
    try {
      await execFileP(npm!, ciArgs, { cwd: app, env: { ...process.env, NODE_ENV: 'production', npm_config_update_notifier: 'false' }, timeout: 300_000 });
    } catch (e) {
      const err = e as Error & { stderr?: string; stdout?: string };
      throw new Error(`${npm} ${ciArgs.join(' ')} failed in ${app}: ${err.stderr || err.message}`, { cause: e });
    }
    npmSeconds = (Date.now() - t0) / 1000;
    console.log(`# ${npm} ${ciArgs.join(' ')}: ${npmSeconds.toFixed(1)} s`);
    materialize(finalStage);
  });

  after(() => {
    if (work) rmSync(work, { recursive: true, force: true });
  });

  const vmmem = (args: string[]) =>
    spawnSync(NODE24, [join(app, 'src', 'cli', 'main.ts'), ...args], {
      cwd: app,
      encoding: 'utf8',
      env: { PATH: process.env.PATH, NODE_ENV: 'production', HOME: work },
      timeout: 60_000,
    });

  void it('npm ci --omit=dev installed no devDependency and nothing the lockfile marks dev', () => {
    const lock = JSON.parse(readFileSync(join(app, 'package-lock.json'), 'utf8')) as { packages: Record<string, { dev?: boolean }> };
    const devInTree = Object.entries(lock.packages)
      .filter(([path, p]) => path !== '' && p.dev === true && existsSync(join(app, path)))
      .map(([path]) => path);
    assert.deepEqual(devInTree, []);
    // A devDependency may also be a production one's dependency (@types/node comes with
    // @kubernetes/client-node): the lockfile says which are dev-only; those must be absent.
    const devOnly = Object.keys(pkg.devDependencies).filter((n) => lock.packages[`node_modules/${n}`]?.dev === true);
    assert.ok(['typescript', 'eslint', 'fast-check', 'node'].every((n) => devOnly.includes(n)), `dev-only per the lockfile: ${devOnly.join(', ')}`);
    for (const name of devOnly) assert.ok(!existsSync(join(app, 'node_modules', name)), `devDependency ${name} installed`);
    for (const name of Object.keys(pkg.dependencies)) assert.ok(existsSync(join(app, 'node_modules', name, 'package.json')), `dependency ${name} missing`);
    assert.ok(!existsSync(join(app, 'node_modules', 'typescript')), 'TypeScript is not needed at runtime');
    assert.ok(!existsSync(join(app, 'test')) && !existsSync(join(app, 'docs')), 'no tests or docs in the image');
  });

  void it('vmmem version and vmmem validate -f examples run from the image tree', () => {
    const v = vmmem(['version']);
    assert.equal(v.status, 0, v.stderr);
    assert.match(v.stdout, /^vmmem \d+\.\d+\.\d+/);

    const ok = vmmem(['validate', '-f', join(app, 'examples')]);
    assert.equal(ok.status, 0, `validate failed:\n${ok.stdout}\n${ok.stderr}`);
    assert.match(ok.stdout + ok.stderr, /valid/);

    // And it really validates (zod + yaml from the production tree): a bad manifest fails.
    const bad = join(work, 'bad.yaml');
    writeFileSync(bad, 'apiVersion: vmmem.io/v1alpha1\nkind: VirtualMachineMemory\nmetadata: {name: x, namespace: default}\nspec:\n  hypervisorRef: {name: h}\n  vm: {name: x}\n  maxMemory: 4Gi\n  memory: 8Gi\n');
    const no = vmmem(['validate', '-f', bad]);
    assert.equal(no.status, 1, `validate of an invalid manifest: ${no.stdout}\n${no.stderr}`);
    assert.match(no.stdout + no.stderr, /memory/);
  });

  void it('every module under src/ loads with production dependencies only', () => {
    const modules: string[] = [];
    const walk = (d: string) => {
      for (const e of readdirSync(d, { withFileTypes: true })) {
        const p = join(d, e.name);
        if (e.isDirectory()) walk(p);
        else if (e.name.endsWith('.ts') && !e.name.endsWith('.d.ts') && !lstatSync(p).isSymbolicLink()) modules.push(p);
      }
    };
    walk(join(app, 'src'));
    // main.ts runs the CLI when imported; it is exercised above.
    const targets = modules.filter((m) => m !== join(app, 'src', 'cli', 'main.ts'));
    assert.ok(targets.length > 10, `only ${targets.length} modules`);
    const loader = join(work, 'load-all.mjs');
    writeFileSync(
      loader,
      `const failed = [];\nfor (const m of ${JSON.stringify(targets)}) {\n  try { await import(m); } catch (e) { failed.push(m + ': ' + (e && e.message)); }\n}\nconsole.log(JSON.stringify(failed));\nprocess.exit(0);\n`,
    );
    const r = spawnSync(NODE24, [loader], { cwd: app, encoding: 'utf8', env: { PATH: process.env.PATH, NODE_ENV: 'production', HOME: work }, timeout: 120_000 });
    assert.equal(r.status, 0, r.stderr);
    const failed = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as string[];
    assert.deepEqual(failed.map((f) => f.replace(app + '/', '')), []);
  });
});
