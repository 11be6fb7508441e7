// The container image's recipe, checked statically (fast, nothing installed; the real build
// and run with buildah/podman is test/peer/image/build.test.ts): the Dockerfile: Node 24 base in every stage, production dependencies only
// (`npm ci --omit=dev`), non-root numeric USER, openssh-client, ENTRYPOINT/CMD as documented;
// the build context as .dockerignore defines it: no node_modules, tests, .git, docs or deploy;
// every COPY source present. Running vmmem from the assembled image tree (real `npm ci`) is
// test/peer/image/image.test.ts.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { buildContext, copies, dockerfileText, finalStage, ignored, last, npmCi, parsed, patterns, readDockerignore, ROOT } from '../support/dockerfile.ts';

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
