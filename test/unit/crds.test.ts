import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { renderCrds } from '../../src/api/crd-yaml.ts';

const crdDir = join(import.meta.dirname, '..', '..', 'crds');

test('crds/ is byte-identical to freshly generated CRDs (run `npm run generate` if not)', () => {
  for (const [file, text] of Object.entries(renderCrds())) {
    assert.equal(readFileSync(join(crdDir, file), 'utf8'), text, `crds/${file} is stale: run npm run generate`);
  }
});

type Schema = { 'x-kubernetes-int-or-string'?: boolean; type?: string; properties?: Record<string, Schema>; items?: Schema; description?: string; anyOf?: unknown; additionalProperties?: unknown };

test('CRD schemas are structural, and every field has a description for kubectl explain', () => {
  for (const [file, text] of Object.entries(renderCrds())) {
    const crd = parse(text) as { spec: { versions: { schema: { openAPIV3Schema: Schema } }[] } };
    const walk = (s: Schema, path: string) => {
      if (s['x-kubernetes-int-or-string'] === true) {
        // The one anyOf a structural schema allows: int-or-string, as Kubernetes quantities are.
        assert.equal(s.type, undefined, `${file}: ${path}: int-or-string with a type`);
        assert.deepEqual(s.anyOf, [{ type: 'integer' }, { type: 'string' }], `${file}: ${path}: int-or-string anyOf`);
      } else {
        assert.ok(s.type, `${file}: ${path} has no type (not structural)`);
        assert.equal(s.anyOf, undefined, `${file}: ${path} uses anyOf`);
      }
      assert.notEqual(s.additionalProperties, false, `${file}: ${path} has additionalProperties: false`);
      if (!['.apiVersion', '.kind', '.metadata'].includes(path)) assert.ok(s.description, `${file}: ${path} has no description`);
      for (const [k, v] of Object.entries(s.properties ?? {})) walk(v, `${path}.${k}`);
      if (s.items) walk(s.items, `${path}[]`);
    };
    const root = crd.spec.versions[0]?.schema.openAPIV3Schema as Schema;
    for (const [k, v] of Object.entries(root.properties ?? {})) walk(v, `.${k}`);
  }
});

test('the VMM CRD carries the CEL rules, printer columns and short names DESIGN §4 asks for', () => {
  const text = renderCrds()['vmmem.io_virtualmachinememories.yaml'] as string;
  const crd = parse(text);
  const version = crd.spec.versions[0];
  assert.deepEqual(crd.spec.names.shortNames, ['vmm', 'vmmem']);
  assert.deepEqual(version.subresources, { status: {} });
  assert.deepEqual(
    version.additionalPrinterColumns.map((c: { name: string }) => c.name),
    ['Ready', 'VM', 'Max', 'Memory', 'Actual', 'Pending', 'Guest', 'Reason', 'Age'],
  );
  const spec = version.schema.openAPIV3Schema.properties.spec;
  const rules = spec['x-kubernetes-validations'].map((r: { fieldPath: string }) => r.fieldPath);
  assert.deepEqual(rules, ['.memory', '.reservation', '.limit']);
  // Every quantity field is int-or-string with the same pattern and the same rules on each type.
  for (const f of ['maxMemory', 'memory', 'reservation', 'limit']) {
    const field = spec.properties[f];
    assert.equal(field['x-kubernetes-int-or-string'], true, f);
    assert.match(field.pattern, f === 'limit' ? /^\^Unlimited\$\|/ : /^\^\(\\\+\|-\)\?/, f);
    const rules = field['x-kubernetes-validations'].map((r: { rule: string }) => r.rule).join('\n');
    assert.match(rules, /type\(self\) != int \|\| self >= 0/, f);
    assert.match(rules, /type\(self\) != int \|\| self <= 9007199254740991/, f);
  }
  assert.equal(spec.properties.vm['x-kubernetes-validations'][0].rule, 'has(self.name) != has(self.uuid)');
  const conditions = version.schema.openAPIV3Schema.properties.status.properties.conditions;
  assert.equal(conditions['x-kubernetes-list-type'], 'map');
  assert.deepEqual(conditions['x-kubernetes-list-map-keys'], ['type']);
});
