import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { validateCommand } from '../../src/cli/validate.ts';

const root = join(import.meta.dirname, '..', '..');
const fixtures = join(root, 'test', 'fixtures', 'invalid');
const expectations = JSON.parse(readFileSync(join(fixtures, 'expectations.json'), 'utf8')) as Record<
  string,
  { path: string | null; message: string }
>;

function run(files: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const code = validateCommand(files, { out: (l) => out.push(l), err: (l) => err.push(l) });
  return { code, out, err };
}

test('the examples are valid', () => {
  const r = run([join(root, 'examples')]);
  assert.equal(r.code, 0, r.out.join('\n'));
  assert.deepEqual(r.out, []);
});

test('there are at least 25 invalid fixtures, each with an expectation', () => {
  const files = readdirSync(fixtures).filter((f) => f.endsWith('.yaml'));
  assert.ok(files.length >= 25, `only ${files.length} fixtures`);
  assert.deepEqual(files.sort(), Object.keys(expectations).sort());
});

for (const [file, want] of Object.entries(expectations)) {
  test(`invalid fixture ${file}: exit 1 with file, line and field`, () => {
    const path = join(fixtures, file);
    const r = run([path]);
    assert.equal(r.code, 1, `expected exit 1, got ${r.code}: ${r.out.join('\n')}`);
    const lines = readFileSync(path, 'utf8').split('\n');
    const pattern = want.path
      ? new RegExp(`^${escape(path)}:(\\d+): [A-Za-z]+/[^:]+: ${escape(want.path)}: .*${want.message}`)
      : new RegExp(`^${escape(path)}:(\\d+): .*${want.message}`);
    const hit = r.out.find((l) => pattern.test(l));
    assert.ok(hit, `no line matching ${pattern} in:\n${r.out.join('\n')}`);
    const line = Number(pattern.exec(hit)?.[1]);
    assert.ok(line >= 1 && line <= lines.length, `line ${line} out of range`);
    // When the offending key is written in the file, the line must point at it.
    const key = want.path?.split('.').pop();
    if (key && lines.some((l) => new RegExp(`^\\s*-?\\s*${escape(key)}:`).test(l))) {
      assert.match(lines[line - 1] ?? '', new RegExp(`\\b${escape(key)}\\b`), `line ${line} of ${file} should name ${key}`);
    }
  });
}

test('kinds vmmem does not own are ignored; List kinds are checked item by item', () => {
  const r = run([join(root, 'examples', 'hypervisors', 'vcenter.yaml')]);
  assert.equal(r.code, 0);
});

test('usage errors exit 2', () => {
  assert.equal(run([]).code, 2);
  assert.equal(run([join(root, 'does-not-exist.yaml')]).code, 2);
});

test('reads stdin with -f - through the real CLI', () => {
  const bin = join(root, 'bin', 'vmmem');
  const bad = readFileSync(join(fixtures, 'memory-over-max.yaml'), 'utf8');
  const r = spawnSync(bin, ['validate', '-f', '-'], { input: bad, encoding: 'utf8' });
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stdout, /^-:12: VirtualMachineMemory\/web-01: spec\.memory: spec\.memory \(16Gi\) must not exceed spec\.maxMemory \(8Gi\)$/m);
  const good = spawnSync(bin, ['validate', '-f', '-'], { input: readFileSync(join(root, 'examples', 'demo', 'vmms.yaml'), 'utf8'), encoding: 'utf8' });
  assert.equal(good.status, 0, good.stdout + good.stderr);
  const usage = spawnSync(bin, ['validate', '--bogus'], { encoding: 'utf8' });
  assert.equal(usage.status, 2);
});

function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
