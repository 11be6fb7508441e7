/**
 * The layer rules of docs/design.md §5 live in eslint.config.js as
 * no-restricted-imports / no-restricted-syntax per src/ folder. These tests
 * lint source text as if it stood at a path in src/ (nothing is written) with
 * the repository's own config, and require each wrong import to be refused
 * and each allowed one to pass, so a rule that silently stopped matching
 * (a typo in a regex, an override that shadows it) fails here.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ESLint } from 'eslint';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const LAYER_RULES = new Set(['no-restricted-imports', 'no-restricted-syntax']);

// Only the layer rules run, without type information: the probe file is not on disk, so the
// type-aware project service (which the other rules need) could not find it.
const eslint = new ESLint({
  cwd: ROOT,
  overrideConfig: { languageOptions: { parserOptions: { projectService: false, project: null } } },
  ruleFilter: ({ ruleId }) => LAYER_RULES.has(ruleId),
});

async function layerErrors(path: string, code: string): Promise<string[]> {
  const [result] = await eslint.lintText(code, { filePath: join(ROOT, path) });
  assert.ok(result, `eslint returned no result for ${path}`);
  return result.messages.filter((m) => m.ruleId && LAYER_RULES.has(m.ruleId)).map((m) => `${m.ruleId}: ${m.message}`);
}

async function refused(path: string, code: string, why: RegExp): Promise<void> {
  const errors = await layerErrors(path, code);
  assert.ok(errors.length > 0, `${path}: expected the layer rules to refuse\n  ${code}`);
  assert.ok(errors.some((e) => why.test(e)), `${path}: refused, but not for ${why}: ${errors.join('; ')}`);
}

async function allowed(path: string, code: string): Promise<void> {
  assert.deepEqual(await layerErrors(path, code), [], `${path}: expected the layer rules to allow\n  ${code}`);
}

describe('layer rules (docs/design.md §5) refuse wrong imports', () => {
  test('the planner is pure: model and api only, no I/O', async () => {
    await allowed('src/planner/probe.ts', "import { FIELDS } from '../model/memory.ts';\nexport const f = FIELDS;\n");
    await refused('src/planner/probe.ts', "import { createDriver } from '../drivers/registry.ts';\nexport const c = createDriver;\n", /planner is pure/);
    await refused('src/planner/probe.ts', "import type { Logger } from '../controller/ports.ts';\nexport type L = Logger;\n", /planner is pure/);
    await refused('src/planner/probe.ts', "import { readFileSync } from 'node:fs';\nexport const r = readFileSync;\n", /no I\/O/);
  });

  test('api imports nothing of src; model only api', async () => {
    await refused('src/api/probe.ts', "import { FIELDS } from '../model/memory.ts';\nexport const f = FIELDS;\n", /src\/api is the bottom layer/);
    await allowed('src/model/probe.ts', "import { parseQuantity } from '../api/quantity.ts';\nexport const p = parseQuantity;\n");
    await refused('src/model/probe.ts', "import { plan } from '../planner/plan.ts';\nexport const p = plan;\n", /src\/model imports only src\/api/);
  });

  test('protocol clients import nothing of src', async () => {
    await refused('src/libvirt/probe.ts', "import type { ObservedVM } from '../model/memory.ts';\nexport type O = ObservedVM;\n", /libvirt protocol client/);
    await refused('src/vsphere/probe.ts', "import { DriverError } from '../drivers/driver.ts';\nexport const e = DriverError;\n", /vSphere protocol client/);
    await allowed('src/libvirt/probe.ts', "import { connect } from 'node:net';\nexport const c = connect;\n");
  });

  test('drivers: model, api and protocol clients, never the controller or kube', async () => {
    await allowed('src/drivers/libvirt/probe.ts', "import { LibvirtClient } from '../../libvirt/index.ts';\nexport const c = LibvirtClient;\n");
    await allowed('src/drivers/sim/probe.ts', "import type { Driver } from '../driver.ts';\nexport type D = Driver;\n");
    await refused('src/drivers/vsphere/probe.ts', "import { keyString } from '../../controller/ports.ts';\nexport const k = keyString;\n", /drivers import only/);
    await refused('src/drivers/probe.ts', "export { KubeStore } from '../kube/store.ts';\n", /drivers import only/);
  });

  test('the controller owns the ports: it does not import kube, standalone or cli', async () => {
    await allowed('src/controller/probe.ts', "import { plan } from '../planner/plan.ts';\nexport const p = plan;\n");
    await refused('src/controller/probe.ts', "import { KubeStore } from '../kube/store.ts';\nexport const k = KubeStore;\n", /controller owns the store ports/);
    await refused('src/controller/probe.ts', "export async function f() { return import('../standalone/store.ts'); }\n", /controller owns the store ports/);
    await refused('src/controller/probe.ts', "import * as k8s from '@kubernetes/client-node';\nexport const x = k8s;\n", /only src\/kube imports @kubernetes\/client-node/);
  });

  test('kube and standalone implement the ports: no planner, drivers or cli', async () => {
    await allowed('src/kube/probe.ts', "import type { ObjectStore } from '../controller/ports.ts';\nexport type S = ObjectStore;\n");
    await refused('src/kube/probe.ts', "import { plan } from '../planner/plan.ts';\nexport const p = plan;\n", /src\/kube implements the controller's ports/);
    await refused('src/standalone/probe.ts', "import { main } from '../cli/main.ts';\nexport const m = main;\n", /src\/standalone implements/);
  });

  test('src/util is a leaf every impure layer may use; the pure planner and model may not', async () => {
    await allowed('src/kube/probe.ts', "import { sleep } from '../util/sleep.ts';\nexport const s = sleep;\n");
    await allowed('src/drivers/sim/probe.ts', "import { sleep } from '../../util/sleep.ts';\nexport const s = sleep;\n");
    await refused('src/util/probe.ts', "import { parseQuantity } from '../api/quantity.ts';\nexport const p = parseQuantity;\n", /src\/util is a leaf/);
    await refused('src/planner/probe.ts', "import { sleep } from '../util/sleep.ts';\nexport const s = sleep;\n", /planner is pure/);
    await refused('src/model/probe.ts', "import { Backoff } from '../util/backoff.ts';\nexport const b = Backoff;\n", /src\/model imports only src\/api/);
  });

  test('import() takes a literal path everywhere in src, the composition root included', async () => {
    await refused('src/drivers/probe.ts', "const where = './libvirt/index.ts';\nexport async function f() { return import(where); }\n", /literal path/);
    await refused('src/cli/probe.ts', "export async function f(m: string) { return import(`../${m}.ts`); }\n", /literal path/);
    await allowed('src/cli/probe.ts', "export async function f() { return import('../kube/store.ts'); }\n");
  });
});

// That today's tree obeys the rules is `eslint .` in `npm test`, with the full config.
