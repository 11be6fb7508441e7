// Bad-input fuzzing of `vmmem validate` (src/cli/validate.ts): fast-check generates manifests,
// valid and invalid (huge/negative/fractional/unicode quantities, wrong JSON types, unknown keys,
// non-DNS names, deep nesting, truncated and corrupted YAML, random text), writes each to a file
// and runs validateCommand on it. Properties:
//   - it never throws; the exit code is 0 or 1 (2 is for usage errors only);
//   - every output line is `<file>:<line>: ...` with a line inside the file;
//   - exit 1 comes with at least one such line, exit 0 with none;
//   - for a faithfully serialized vmmem object, exit 0 exactly when the zod schema accepts it,
//     and each rejection names the object and a field (`Kind/name: spec.maxMemory: ...`).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { stringify } from 'yaml';
import { validateCommand } from '../../src/cli/validate.ts';
import { HypervisorSchema, VirtualMachineMemorySchema, withoutNulls } from '../../src/api/objects.ts';
import { deepValue, dnsName, hypervisorSpec, vmmSpec } from '../chaos/lib/arbitraries.ts';

let dir = '';
let n = 0;
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'vmmem-fuzz-validate-'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

function run(text: string): { code: number; out: string[]; err: string[]; file: string } {
  const file = join(dir, `m${++n}.yaml`);
  writeFileSync(file, text);
  const out: string[] = [];
  const err: string[] = [];
  let code: number;
  try {
    code = validateCommand([file], { out: (l) => out.push(l), err: (l) => err.push(l) });
  } catch (e) {
    assert.fail(`validateCommand threw on:\n${text.slice(0, 2000)}\n${(e as Error).stack}`);
  }
  return { code, out, err, file };
}

function checkShape(text: string, r: { code: number; out: string[]; file: string }): void {
  assert.ok(r.code === 0 || r.code === 1, `exit ${r.code} for:\n${text.slice(0, 500)}`);
  const lines = text.split('\n').length;
  const prefix = `${r.file}:`;
  for (const l of r.out) {
    assert.ok(l.startsWith(prefix), `line without file: ${l}`);
    const m = /^(\d+): /.exec(l.slice(prefix.length));
    assert.ok(m, `line without a line number: ${l}`);
    const line = Number(m[1]);
    assert.ok(line >= 1 && line <= lines + 1, `line ${line} outside the file (${lines} lines): ${l}`);
  }
  if (r.code === 1) assert.ok(r.out.length > 0, 'exit 1 without a problem line');
  else assert.deepEqual(r.out, []);
}

const metaName = fc.oneof({ weight: 8, arbitrary: dnsName }, { weight: 1, arbitrary: fc.constantFrom('Bad_Name', '', 'ä') });

const vmmDoc = fc.record({
  apiVersion: fc.constant('vmmem.io/v1alpha1'),
  kind: fc.constant('VirtualMachineMemory'),
  metadata: metaName.map((name) => ({ name, namespace: 'default' })),
  spec: fc.oneof({ weight: 10, arbitrary: vmmSpec() }, { weight: 1, arbitrary: deepValue }, { weight: 1, arbitrary: fc.constantFrom(null, 42, 'spec', []) }),
});
const hvDoc = fc.record({
  apiVersion: fc.constant('vmmem.io/v1alpha1'),
  kind: fc.constant('Hypervisor'),
  metadata: metaName.map((name) => ({ name })),
  spec: hypervisorSpec,
});

const FIELD_LINE = /^\d+: (VirtualMachineMemory|Hypervisor)\/[^:]*: (spec|metadata|apiVersion|kind)[^:\s]*: \S/;

test('fuzz: faithful vmmem objects — exit code agrees with the zod schema, each problem names file:line and field', () => {
  fc.assert(
    fc.property(fc.oneof(vmmDoc, hvDoc), fc.boolean(), (doc, asJson) => {
      const text = asJson ? JSON.stringify(doc, null, 2) : stringify(doc, { aliasDuplicateObjects: false });
      const r = run(text);
      checkShape(text, r);
      const schema = doc.kind === 'Hypervisor' ? HypervisorSchema : VirtualMachineMemorySchema;
      const ok = schema.safeParse(withoutNulls(doc)).success; // null = absent, as the API server reads it
      assert.equal(r.code, ok ? 0 : 1, `schema says ${ok ? 'valid' : 'invalid'}, validate exit ${r.code}:\n${text}\n${r.out.join('\n')}`);
      if (!ok) assert.ok(r.out.some((l) => FIELD_LINE.test(l.slice(r.file.length + 1))), `no line naming a field:\n${r.out.join('\n')}\n---\n${text}`);
    }),
    { numRuns: 600, seed: 20261127 },
  );
});

/** Corruptions of a YAML text: truncation, byte insertion, indentation breaks, tab characters. */
const corrupted = fc
  .tuple(fc.oneof(vmmDoc, hvDoc), fc.nat(), fc.constantFrom('truncate', 'insert', 'dedent', 'tab', 'duplicate', 'anchor'), fc.string({ minLength: 1, maxLength: 4, unit: 'binary' }))
  .map(([doc, at, how, junk]) => {
    const text = stringify(doc, { aliasDuplicateObjects: false });
    const i = at % Math.max(1, text.length);
    switch (how) {
      case 'truncate':
        return text.slice(0, i);
      case 'insert':
        return text.slice(0, i) + junk + text.slice(i);
      case 'dedent':
        return text.replace(/\n {2}/g, (m, off: number) => (off > i ? '\n' : m));
      case 'tab':
        return text.replace(/\n {2}/, '\n\t');
      case 'duplicate':
        return `${text}${text.split('\n').slice(1, 3).join('\n')}\n`;
      default:
        return `a: &x [${'*x,'.repeat(3)}]\n---\n${text}`;
    }
  });

const randomText = fc.oneof(
  fc.string({ maxLength: 300, unit: 'binary' }),
  fc.string({ maxLength: 300, unit: 'grapheme' }),
  fc.constantFrom('---\n---\n', '- a\n- b\n', '"just a string"', '{', ']]', 'kind: VirtualMachineMemoryList\napiVersion: v1\nitems: [1, "x", null]\n', '\u0000\u0001\u0002', 'a: !!binary AAAA\n', 'x: !unknown-tag y\n', '%YAML 9.9\n---\na: 1\n'),
  // a billion-laughs shape: aliases of aliases
  fc.nat({ max: 8 }).map((k) => {
    let t = 'a0: &a0 [lol]\n';
    for (let i = 1; i <= k; i++) t += `a${i}: &a${i} [${Array(9).fill(`*a${i - 1}`).join(', ')}]\n`;
    return t;
  }),
  deepValue.map((v) => JSON.stringify({ apiVersion: 'vmmem.io/v1alpha1', kind: 'VirtualMachineMemory', metadata: { name: 'deep' }, spec: v })),
  fc.nat({ max: 3000 }).map((d) => `${'['.repeat(d)}${']'.repeat(d)}`),
);

test('fuzz: corrupted YAML and random text — never a throw, exit 0/1, every line names file:line', () => {
  fc.assert(
    fc.property(fc.oneof(corrupted, randomText), (text) => {
      const r = run(text);
      checkShape(text, r);
    }),
    { numRuns: 700, seed: 7 },
  );
});

test('fuzz: several documents and List items in one file — each bad object reported on its own line', () => {
  fc.assert(
    fc.property(fc.array(vmmDoc, { minLength: 1, maxLength: 5 }), fc.boolean(), (docs, asList) => {
      const text = asList
        ? stringify({ apiVersion: 'v1', kind: 'List', items: docs }, { aliasDuplicateObjects: false })
        : docs.map((d) => stringify(d, { aliasDuplicateObjects: false })).join('---\n');
      const r = run(text);
      checkShape(text, r);
      const bad = docs.filter((d) => !VirtualMachineMemorySchema.safeParse(withoutNulls(d)).success).length;
      assert.equal(r.code, bad ? 1 : 0);
      assert.ok(r.out.length >= bad, `${bad} invalid objects, ${r.out.length} lines`);
    }),
    { numRuns: 200, seed: 3 },
  );
});
