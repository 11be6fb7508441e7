/** The command table drives parsing, help and docs/cli.md: checked through bin/vmmem as a user runs it. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { COMMANDS } from '../../src/cli/commands.ts';
import { cliReferenceMarkdown } from '../../src/cli/help.ts';

const root = join(import.meta.dirname, '..', '..');
const bin = join(root, 'bin', 'vmmem');
const run = async (args: string[], env: NodeJS.ProcessEnv = process.env) => {
  try {
    const { stdout, stderr } = await promisify(execFile)(bin, args, { cwd: root, env, maxBuffer: 16 << 20 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
};

test('every subcommand has --help and -h: exit 0, every flag listed with its default', async () => {
  for (const spec of COMMANDS) {
    for (const flag of ['--help', '-h']) {
      const r = await run([spec.name, flag]);
      assert.equal(r.code, 0, `${spec.name} ${flag}: ${r.stderr}`);
      assert.match(r.stdout, new RegExp(`^Usage: vmmem ${spec.name}`), spec.name);
      for (const f of spec.flags) {
        assert.ok(r.stdout.includes(`--${f.name}`), `${spec.name} --help lists --${f.name}`);
        if (f.default !== undefined) assert.ok(r.stdout.includes(`default: ${f.default}`), `${spec.name} --help shows --${f.name}'s default ${f.default}`);
        if (f.short) assert.ok(r.stdout.includes(`-${f.short}, --${f.name}`), `${spec.name}: -${f.short}`);
      }
    }
  }
});

test('vmmem --version and vmmem version print the package version', async () => {
  const version = (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string }).version;
  for (const args of [['--version'], ['version']]) {
    const r = await run(args);
    assert.equal(r.code, 0);
    assert.equal(r.stdout.trim(), `vmmem ${version} (vmmem.io/v1alpha1)`);
  }
});

test('usage errors exit 2 in our words, with "did you mean" for typos', async () => {
  const cases: [string[], RegExp][] = [
    [['run', '--log-level=bogus'], /--log-level must be one of trace, debug, info, warn, error, fatal, silent, got "bogus"/],
    [['run', '--log-format', 'pretty'], /--log-format must be one of console, json/],
    [['run', '--manifest', 'examples/demo'], /unknown flag --manifest \(did you mean --manifests\?\)/],
    [['validate', '--filname', 'x'], /unknown flag --filname \(did you mean --filename\?\)/],
    [['valdate'], /unknown command "valdate" \(did you mean validate\?\)/],
    [['plan', '-f', 'examples/demo', '-o', 'jsn'], /-o|--output must be one of table, yaml, json, got "jsn" \(did you mean json\?\)/],
    [['run', '--once', 'extra'], /unexpected argument "extra"/],
    [['run', '--once=yes'], /--once is a switch and takes no value/],
    [['plan', '-f'], /--filename needs a value <file\|dir\|->/],
    [['run', '--manifests', 'examples/demo', '--once', '--timeout', 'soon'], /--timeout: "soon" is not a duration/],
    [['run', '--concurrency', '0'], /--concurrency must be an integer from 1 to 256/],
    [['run', '--manifests', 'examples/demo', '--context', 'x'], /for cluster mode/],
    [['run', '--once'], /--once needs --manifests/],
    [['run', '--manifests', 'no/such/dir', '--once'], /--manifests no\/such\/dir: no such file or directory/],
  ];
  for (const [args, message] of cases) {
    const r = await run(args);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, message, args.join(' '));
    assert.doesNotMatch(r.stderr, /ERR_PARSE_ARGS|TypeError|at .*\.ts:\d+/, `${args.join(' ')}: no internal wording or stack`);
  }
});

test('kubectl names: -f/--filename (and the old --file), -n/--namespace, --context, --kubeconfig, -o/--output', async () => {
  const run_ = COMMANDS.find((c) => c.name === 'run');
  const names = new Map(run_?.flags.map((f) => [f.name, f.short]));
  assert.equal(names.get('namespace'), 'n');
  assert.equal(names.get('output'), 'o');
  assert.ok(names.has('context') && names.has('kubeconfig'));
  for (const flag of ['-f', '--filename', '--file']) {
    const r = await run(['validate', flag, 'examples/demo']);
    assert.equal(r.code, 0, `${flag}: ${r.stderr}`);
  }
});

test('docs/cli.md is the rendering of the command table (npm run generate rewrites it)', () => {
  assert.equal(readFileSync(join(root, 'docs', 'cli.md'), 'utf8'), cliReferenceMarkdown());
});

test('on a Node older than 24, bin/vmmem says which Node it needs (not ERR_UNKNOWN_FILE_EXTENSION)', async () => {
  // /usr/bin/node on the test machines is Node 20; the check must run on it for real.
  const old = '/usr/bin/node';
  const version = await promisify(execFile)(old, ['--version']).then((r) => r.stdout.trim());
  assert.ok(Number(version.slice(1).split('.')[0]) < 24, `${old} is ${version}: this test needs an older Node to be meaningful`);
  const r = await run(['validate', '-f', 'examples/demo'], { ...process.env, VMMEM_NODE: old });
  assert.equal(r.code, 1);
  assert.match(r.stderr, /vmmem: needs Node\.js 24 or newer \(package\.json "engines"\); this is Node\.js 20\./);
  assert.doesNotMatch(r.stderr, /ERR_UNKNOWN_FILE_EXTENSION/);
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { engines?: { node?: string } };
  assert.equal(pkg.engines?.node, '>=24');
});
