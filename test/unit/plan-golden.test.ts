/**
 * `vmmem plan` for pull requests (issue #15.3), on the simulator, in-process through main():
 * the Markdown a CI bot posts (golden files in test/golden/plan/; VMMEM_UPDATE_GOLDEN=1
 * rewrites them, and the diff is then reviewed like code), --detailed-exitcode, and a plan from
 * a saved state (--observed) equal to the live plan of the same state — on the demo and on a
 * small host where guest use and host capacity hold changes.
 *
 * The sim keeps one in-memory host per inventory file for the process: `run --once` converges
 * it, a live plan afterwards observes the converged VMs, which is exactly what `run --once`
 * saved. resetSimHosts() starts a test from the inventory files again.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, beforeEach, test } from 'node:test';
import { promisify } from 'node:util';
import { vmmemInProcess as vmmem } from '../env/cli.ts';
import type { PlanReport } from '../../src/cli/plan.ts';
import { resetSimHosts } from '../../src/drivers/sim/index.ts';

const root = join(import.meta.dirname, '..', '..');
const golden = join(root, 'test', 'golden', 'plan');
const fixtures = join(root, 'test', 'fixtures', 'plan');
const demo = join(root, 'examples', 'demo');
const demoHypervisors = join(demo, 'hypervisors.yaml');
const tmp = mkdtempSync(join(tmpdir(), 'vmmem-plan-golden-'));
after(() => rmSync(tmp, { recursive: true, force: true }));
beforeEach(() => resetSimHosts());


/** `vmmem run --once -o yaml` over these manifests, saved to a file: what a CI job keeps. */
async function saveState(name: string, ...manifests: string[]): Promise<string> {
  const r = await vmmem('run', ...manifests.flatMap((m) => ['--manifests', m]), '--once', '-o', 'yaml', '--log-level', 'silent');
  assert.ok(r.code === 0 || r.code === 3, `run --once: ${r.code} ${r.err}`);
  const path = join(tmp, `${name}.yaml`);
  writeFileSync(path, r.out);
  return path;
}

function assertGolden(name: string, actual: string): void {
  const path = join(golden, name);
  if (process.env.VMMEM_UPDATE_GOLDEN === '1') writeFileSync(path, actual + '\n');
  assert.equal(actual + '\n', readFileSync(path, 'utf8'), `${name} differs from the golden file (VMMEM_UPDATE_GOLDEN=1 rewrites it; review the diff)`);
}

const reportsOf = (r: { out: string }) => JSON.parse(r.out) as PlanReport[];
const verdictOf = (reports: PlanReport[], vmm: string, field: string) => reports.find((r) => r.object === `default/${vmm}`)?.verdicts?.find((v) => v.field === field);

test('-o markdown on examples/demo (live sim): the golden table; exit 3 because legacy-01 and numa-01 are stalled', async () => {
  const r = await vmmem('plan', '-f', demo, '-o', 'markdown');
  assert.equal(r.code, 3, r.err);
  assertGolden('demo.md', r.out);
});

test('--detailed-exitcode: 0 nothing to change, 2 changes, 3 stalled beats changes, 1 an error beats both; without it 0/0/3/1', async () => {
  const cases: [string, number, number][] = [
    ['no-change.yaml', 0, 0],
    ['change.yaml', 2, 0],
    ['stalled.yaml', 3, 3],
    ['error.yaml', 1, 1],
  ];
  for (const [file, detailed, plain] of cases) {
    const f = join(fixtures, 'exit', file);
    const d = await vmmem('plan', '-f', demoHypervisors, '-f', f, '--detailed-exitcode', '-o', 'json');
    assert.equal(d.code, detailed, `${file} --detailed-exitcode: ${d.err}`);
    const p = await vmmem('plan', '-f', demoHypervisors, '-f', f, '-o', 'json');
    assert.equal(p.code, plain, `${file}: ${p.err}`);
  }
  // The change fixture really has a step, the no-change one really has none (the codes are not luck).
  assert.ok((reportsOf(await vmmem('plan', '-f', demoHypervisors, '-f', join(fixtures, 'exit', 'change.yaml'), '-o', 'json'))[0]?.steps?.length ?? 0) > 0);
  assert.deepEqual(reportsOf(await vmmem('plan', '-f', demoHypervisors, '-f', join(fixtures, 'exit', 'no-change.yaml'), '-o', 'json'))[0]?.steps, []);
});

test('--detailed-exitcode through bin/vmmem: the process exits 2 for a pending change', async () => {
  const bin = join(root, 'bin', 'vmmem');
  const err = await promisify(execFile)(bin, ['plan', '-f', demoHypervisors, '-f', join(fixtures, 'exit', 'change.yaml'), '--detailed-exitcode'], { cwd: root }).then(
    () => undefined,
    (e: { code: number; stdout: string }) => e,
  );
  assert.equal(err?.code, 2);
  assert.match(err?.stdout ?? '', /memory\s+live\s+4Gi → 3Gi/);
});

test('the demo: a plan from the state `run --once` saved equals the live plan of that state, for the demo and for a pull request on it', async () => {
  const saved = await saveState('demo', demo);
  for (const desired of [[demo], [demoHypervisors, join(fixtures, 'demo-pr.yaml')]]) {
    const f = desired.flatMap((d) => ['-f', d]);
    const live = await vmmem('plan', ...f, '-o', 'json');
    const offline = await vmmem('plan', ...f, '--observed', saved, '-o', 'json');
    assert.equal(offline.code, live.code, offline.err);
    assert.deepEqual(reportsOf(offline), reportsOf(live));
    assert.ok(reportsOf(live).every((r) => r.error === undefined), live.out);
  }
  // After convergence the demo itself has nothing left to send; the pull request has.
  assert.equal((await vmmem('plan', '-f', demo, '--observed', saved, '--detailed-exitcode')).code, 3, 'legacy-01 and numa-01 stay stalled');
  const pr = reportsOf(await vmmem('plan', '-f', demoHypervisors, '-f', join(fixtures, 'demo-pr.yaml'), '--observed', saved, '-o', 'json'));
  assert.ok(pr.some((r) => (r.steps?.length ?? 0) > 0));
});

test('guest use and host capacity: offline equals live; tiny-01 does not fit after small-01 took the last GiB, busy-01 keeps what its guest uses', async () => {
  const dir = join(fixtures, 'safety');
  const saved = await saveState('safety', join(dir, 'hypervisors.yaml'), join(dir, 'current.yaml'));
  const f = ['-f', join(dir, 'hypervisors.yaml'), '-f', join(dir, 'pr.yaml')];
  const live = await vmmem('plan', ...f, '-o', 'json');
  const offline = await vmmem('plan', ...f, '--observed', saved, '-o', 'json');
  assert.deepEqual(reportsOf(offline), reportsOf(live));
  const reports = reportsOf(offline);
  assert.equal(verdictOf(reports, 'tiny-01', 'maxMemory')?.reason, 'HostCapacityExceeded');
  assert.match(verdictOf(reports, 'tiny-01', 'maxMemory')?.message ?? '', /budget of 16Gi/);
  assert.deepEqual(reports.find((r) => r.object === 'default/tiny-01')?.steps, [], 'nothing sent for tiny-01');
  assert.equal(verdictOf(reports, 'small-01', 'maxMemory')?.verdict, 'RestartRequired', 'small-01 fits: its config is raised');
  assert.equal(verdictOf(reports, 'busy-01', 'memory')?.reason, 'GuestMemoryInUse');
  assert.match(reports.find((r) => r.object === 'default/big-01')?.shrink?.message ?? '', /not guarded/);
  const md = await vmmem('plan', ...f, '--observed', saved, '-o', 'markdown', '--detailed-exitcode');
  assert.equal(md.code, 3);
  assertGolden('safety.md', md.out);
});
