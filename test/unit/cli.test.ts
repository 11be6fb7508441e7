/** The `vmmem` command as a user runs it, on the examples and the simulator. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';

const root = join(import.meta.dirname, '..', '..');
const bin = join(root, 'bin', 'vmmem');
const run = async (...args: string[]) => {
  try {
    const { stdout, stderr } = await promisify(execFile)(bin, args, { cwd: root, maxBuffer: 16 << 20 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
};

type Item = { kind: string; metadata: { name: string }; status?: { conditions?: { type: string; status: string; reason: string }[]; pending?: { field: string; reason: string }[] } };
const ready = (i: Item) => i.status?.conditions?.find((c) => c.type === 'Ready');

test('run --once on the demo: a v1 List with every object and its status; exit 3 because some specs are Stalled', async () => {
  const r = await run('run', '--manifests', 'examples/demo', '--once', '-o', 'json');
  assert.equal(r.code, 3, r.stderr);
  const list = JSON.parse(r.stdout) as { apiVersion: string; kind: string; items: Item[] };
  assert.equal(list.apiVersion, 'v1');
  assert.equal(list.kind, 'List');
  const by = Object.fromEntries(list.items.map((i) => [`${i.kind}/${i.metadata.name}`, i]));
  assert.equal(ready(by['VirtualMachineMemory/web-01'] as Item)?.status, 'True');
  assert.equal(ready(by['VirtualMachineMemory/db-01'] as Item)?.reason, 'RestartRequired');
  assert.equal(ready(by['VirtualMachineMemory/win-01'] as Item)?.reason, 'AwaitingPowerOff');
  assert.equal(ready(by['VirtualMachineMemory/legacy-01'] as Item)?.reason, 'Unsupported');
  assert.equal(ready(by['VirtualMachineMemory/numa-01'] as Item)?.reason, 'UnsafeLimit');
  assert.equal(ready(by['Hypervisor/sim-esx'] as Item)?.status, 'True');
});

test('run --once exits 0 when everything is Ready or only waits on a restart / power-off', async () => {
  const r = await run('run', '--manifests', 'examples/demo/hypervisors.yaml', '--manifests', join(root, 'test', 'fixtures', 'cli', 'waiting.yaml'), '--once');
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /kind: List/);
});

test('plan shows steps and verdicts and changes nothing; exit 3 when a field cannot be applied', async () => {
  const r = await run('plan', '-f', 'examples/demo', '-o', 'json');
  assert.equal(r.code, 3, r.stderr);
  const reports = JSON.parse(r.stdout) as { object: string; steps: { field: string; world: string }[]; verdicts: { field: string; verdict: string }[] }[];
  const db = reports.find((x) => x.object === 'default/db-01');
  assert.deepEqual(db?.steps[0], { field: 'maxMemory', world: 'config', from: '8Gi', to: '16Gi' });
  assert.equal(db?.verdicts.find((v) => v.field === 'maxMemory')?.verdict, 'RestartRequired');
  assert.equal(db?.verdicts.find((v) => v.field === 'memory')?.verdict, 'Applied');
  assert.ok(db?.steps.some((s) => s.field === 'memory' && s.world === 'live'), 'memory applied live');
  assert.equal(reports.find((x) => x.object === 'default/win-01')?.verdicts.find((v) => v.field === 'maxMemory')?.verdict, 'AwaitingPowerOff');
  assert.equal(reports.find((x) => x.object === 'default/legacy-01')?.verdicts.find((v) => v.field === 'reservation')?.verdict, 'Unsupported');
  assert.equal(reports.find((x) => x.object === 'default/numa-01')?.verdicts.find((v) => v.field === 'limit')?.verdict, 'Unsafe');
  const table = await run('plan', '-f', 'examples/demo');
  assert.match(table.stdout, /1\. maxMemory\s+config 8Gi → 16Gi/);
});

test('usage errors exit 2 with a clear message', async () => {
  for (const args of [['run', '--once'], ['run', '--manifests', 'x', '--once', '-o', 'xml'], ['plan'], ['plan', '-f', 'examples', '--hypervisor', 'ftp://x'], ['bogus']]) {
    const r = await run(...args);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.ok(r.stderr.trim().length > 0, `${args.join(' ')} says why`);
  }
});
