/**
 * One wording for a spec problem (issue #19.3): the reconcilers' InvalidSpec/InvalidURI message
 * (parseSpec, used by standalone `run` and the operator) says, field by field, what
 * `vmmem validate` says — never zod's own "Unrecognized key" / "expected string, received number".
 * Checked over every invalid fixture whose problem is in a spec.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { z } from 'zod';
import { HypervisorSpecSchema } from '../../src/api/hypervisor.ts';
import { withoutNulls } from '../../src/api/objects.ts';
import { schemaProblems } from '../../src/util/schema-problems.ts';
import { VMMSpecSchema } from '../../src/api/vmm.ts';
import { parseSpec } from '../../src/controller/reconcile-support.ts';
import { loadManifestFile } from '../../src/manifests/load.ts';
import { validateManifestObject } from '../../src/manifests/validate.ts';

const fixtures = join(import.meta.dirname, '..', 'fixtures', 'invalid');
const ZOD_WORDING = /Unrecognized key|Invalid input|expected \w+, received/;

const specFixtures = readdirSync(fixtures)
  .filter((f) => f.endsWith('.yaml'))
  .flatMap((f) => {
    let loaded;
    try {
      loaded = loadManifestFile(join(fixtures, f));
    } catch {
      return [];
    }
    return loaded.objects.map((mo) => ({ file: f, mo }));
  })
  .filter(({ mo }) => validateManifestObject(mo).some((p) => p.path === 'spec' || p.path.startsWith('spec.')));

test('enough fixtures have a spec problem to make the comparison mean something', () => {
  assert.ok(specFixtures.length >= 20, `only ${specFixtures.length}`);
});

for (const { file, mo } of specFixtures) {
  test(`${file}: the status message names each field with validate's words, and the reason is the documented one`, () => {
    const obj = withoutNulls(mo.object);
    const schema: z.ZodType = obj.kind === 'Hypervisor' ? HypervisorSpecSchema : VMMSpecSchema;
    const parsed = parseSpec(schema, obj.spec);
    assert.equal(parsed.ok, false, 'the fixture is invalid');
    if (parsed.ok) return;
    const fromValidate = validateManifestObject(mo).filter((p) => p.path === 'spec' || p.path.startsWith('spec.'));
    for (const p of fromValidate) assert.ok(parsed.message.includes(`${p.path}: ${p.message}`), `missing "${p.path}: ${p.message}" in:\n  ${parsed.message}`);
    assert.doesNotMatch(parsed.message, ZOD_WORDING);
    const onlyUri = fromValidate.every((p) => p.path === 'spec.uri');
    assert.equal(parsed.reason, onlyUri ? 'InvalidURI' : 'InvalidSpec', 'docs/conditions.md: InvalidURI for a URI problem, InvalidSpec for anything else');
  });
}

test('schemaProblems: unknown keys one by one with a suggestion, a wrong type quotes the value', () => {
  const spec = { hypervisorRef: { name: 'hv' }, vm: { name: 5 }, maxMemory: '4Gi', memroy: '3Gi', zzzzzzzz: 1 };
  const r = VMMSpecSchema.safeParse(spec);
  assert.equal(r.success, false);
  if (r.success) return;
  const problems = schemaProblems(VMMSpecSchema, spec, r.error);
  assert.deepEqual(
    problems.map((p) => [p.path.join('.'), p.message]).sort(),
    [
      ['memroy', 'unknown field (did you mean "memory"?)'],
      ['vm.name', 'must be a string, got number 5'],
      ['zzzzzzzz', 'unknown field'],
    ],
  );
});

test('parseSpec: a Hypervisor whose only problem is its URI is InvalidURI; with another problem too, InvalidSpec', () => {
  const uriOnly = parseSpec(HypervisorSpecSchema, { uri: 'ftp://x' });
  assert.equal(uriOnly.ok ? 'ok' : uriOnly.reason, 'InvalidURI');
  const both = parseSpec(HypervisorSpecSchema, { uri: 'ftp://x', syncIntervall: '30s' });
  assert.equal(both.ok ? 'ok' : both.reason, 'InvalidSpec');
  assert.match(both.ok ? '' : both.message, /spec\.syncIntervall: unknown field \(did you mean "syncInterval"\?\)/);
});
