// The container image's filesystem, run for real without a Docker engine: /app assembled from the
// Dockerfile's own COPY instructions over the .dockerignore'd build context, the Dockerfile's own
// `npm ci` command run in it (real npm, real registry; cache in ~/.npm), then vmmem run from it with
// Node 24 (the repository's, as the image has its own): `vmmem validate -f examples` works, and
// every module under src/ loads with production dependencies alone. The static checks of the
// Dockerfile and the context are test/unit/dockerfile.test.ts.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { cpSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { promisify } from 'node:util';
import { buildContext, copies, finalStage, npmCi, parsed, patterns, pkg, ROOT } from '../../support/dockerfile.ts';
import type { Stage } from '../../support/dockerfile.ts';

const execFileP = promisify(execFile);
const NODE24 = join(ROOT, 'node_modules', '.bin', 'node');

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
