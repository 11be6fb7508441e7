/**
 * The exit-code table of docs/cli.md, end to end through bin/vmmem: stdin, missing and unreadable
 * paths, parse errors, partial input, unknown apiVersions, duplicates. No failure exits 0.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const root = join(import.meta.dirname, '..', '..');
const bin = join(root, 'bin', 'vmmem');
const demo = join(root, 'examples', 'demo');

function run(args: string[], opts: { cwd?: string; stdin?: string } = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(bin, args, { cwd: opts.cwd ?? root, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
    child.stdin?.end(opts.stdin ?? '');
  });
}

const demoText = () =>
  readdirSync(demo)
    .filter((f) => f.endsWith('.yaml'))
    .sort()
    .map((f) => readFileSync(join(demo, f), 'utf8'))
    .join('\n---\n');

const HV = 'apiVersion: vmmem.io/v1alpha1\nkind: Hypervisor\nmetadata: {name: sim-kvm, namespace: default}\nspec: {uri: "sim:///examples/sim/kvm.yaml"}\n';
const VMM = (name: string, memory = '3Gi', apiVersion = 'vmmem.io/v1alpha1') =>
  `apiVersion: ${apiVersion}\nkind: VirtualMachineMemory\nmetadata: {name: ${name}, namespace: default}\nspec: {hypervisorRef: {name: sim-kvm}, vm: {name: web-01}, maxMemory: 4Gi, memory: ${memory}}\n`;

test('stdin: `cat examples/demo/*.yaml | vmmem plan -f -` shows the same plan as -f examples/demo (stdin was read twice: [])', async () => {
  const fromDir = await run(['plan', '-f', 'examples/demo', '-o', 'json']);
  const fromStdin = await run(['plan', '-f', '-', '-o', 'json'], { stdin: demoText() });
  assert.equal(fromStdin.code, fromDir.code, fromStdin.stderr);
  assert.ok((JSON.parse(fromStdin.stdout) as unknown[]).length === 8, fromStdin.stdout);
  assert.deepEqual(JSON.parse(fromStdin.stdout), JSON.parse(fromDir.stdout));
  const validate = await run(['validate', '-f', '-'], { stdin: demoText() });
  assert.equal(validate.code, 0, validate.stderr);
  assert.match(validate.stderr, /11 vmmem object\(s\) valid/);
});

test('run --once from another directory converges like from the repository root (sim: paths found from the manifest file)', async () => {
  const elsewhere = mkdtempSync(join(tmpdir(), 'vmmem-cwd-'));
  try {
    const here = await run(['run', '--manifests', 'examples/demo', '--once', '-o', 'json']);
    const there = await run(['run', '--manifests', demo, '--once', '-o', 'json'], { cwd: elsewhere });
    assert.equal(there.code, here.code, there.stderr);
    const reasons = (out: string) =>
      (JSON.parse(out) as { items: { kind: string; metadata: { name: string }; status?: { conditions?: { type: string; reason: string }[] } }[] }).items
        .map((i) => `${i.kind}/${i.metadata.name}=${i.status?.conditions?.find((c) => c.type === 'Ready')?.reason}`)
        .sort();
    assert.deepEqual(reasons(there.stdout), reasons(here.stdout));
    assert.ok(!reasons(there.stdout).some((r) => r.includes('Unreachable')), reasons(there.stdout).join(' '));
  } finally {
    rmSync(elsewhere, { recursive: true, force: true });
  }
});

test('run --once -o table: the demo columns, and the reason of every object that is not Ready', async () => {
  const r = await run(['run', '--manifests', 'examples/demo', '--once', '-o', 'table']);
  assert.equal(r.code, 3, r.stderr);
  assert.match(r.stdout, /NAME\s+HYPERVISOR\s+READY\s+REASON\s+POWER\s+MAX\s+MEMORY\s+ACTUAL\s+PENDING/);
  assert.match(r.stdout, /db-01\s+sim-kvm\s+False\s+RestartRequired\s+Running\s+8Gi.*maxMemory=16Gi/);
  for (const reason of ['Unsupported', 'UnsafeLimit', 'RestartRequired', 'AwaitingPowerOff']) assert.match(r.stdout, new RegExp(`: ${reason}: `), reason);
  assert.ok(!r.stdout.includes('\u001b['), 'no colors when stdout is not a terminal');
});

test('missing paths are usage errors (2); unreadable files, YAML errors, unknown apiVersions and duplicates exit 1', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'vmmem-exit-'));
  const w = (name: string, text: string) => {
    const sub = mkdtempSync(join(dir, 'case-'));
    writeFileSync(join(sub, name), text);
    return sub;
  };
  try {
    for (const args of [['validate', '-f', 'no/such'], ['plan', '-f', 'no/such'], ['run', '--manifests', 'no/such', '--once']]) {
      const r = await run(args);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, /no\/such/);
    }
    // A file that exists but cannot be read (root reads any mode bits, /proc/self/mem fails with EIO).
    for (const args of [['validate', '-f', '/proc/self/mem'], ['run', '--manifests', '/proc/self/mem', '--once']]) {
      const r = await run(args);
      assert.equal(r.code, 1, `${args.join(' ')}: ${r.stdout}${r.stderr}`);
    }
    // Partial input: one good VMM, one file with a YAML error. What parses is applied; the exit says not everything was.
    const partial = w('good.yaml', HV + '---\n' + VMM('web-01'));
    writeFileSync(join(partial, 'broken.yaml'), 'apiVersion: vmmem.io/v1alpha1\nkind: VirtualMachineMemory\nspec: [unclosed\n');
    const once = await run(['run', '--manifests', partial, '--once', '-o', 'json']);
    assert.equal(once.code, 1, once.stderr);
    assert.match(once.stderr, /broken\.yaml:\d+: YAML syntax error/);
    assert.equal((JSON.parse(once.stdout) as { items: unknown[] }).items.length, 2, 'the good file is still reconciled and shown');
    assert.equal((await run(['validate', '-f', partial])).code, 1);

    // vmmem.io/v1 is not a version this vmmem serves: an error, never applied.
    const v1 = w('v1.yaml', HV + '---\n' + VMM('web-01', '3Gi', 'vmmem.io/v1'));
    const v1Once = await run(['run', '--manifests', v1, '--once', '-o', 'json']);
    assert.equal(v1Once.code, 1, v1Once.stderr);
    assert.match(v1Once.stderr, /vmmem\.io\/v1 VirtualMachineMemory is not served by this vmmem/);
    assert.equal((JSON.parse(v1Once.stdout) as { items: { kind: string }[] }).items.filter((i) => i.kind === 'VirtualMachineMemory').length, 0);
    const v1Validate = await run(['validate', '-f', v1]);
    assert.equal(v1Validate.code, 1);
    assert.match(v1Validate.stdout, /apiVersion: unsupported version "vmmem\.io\/v1"/);

    // Two objects with one kind/namespace/name: validate says duplicate, run applies neither.
    const dup = w('a.yaml', HV + '---\n' + VMM('web-01', '3Gi'));
    writeFileSync(join(dup, 'b.yaml'), VMM('web-01', '2Gi'));
    const dupValidate = await run(['validate', '-f', dup]);
    assert.equal(dupValidate.code, 1);
    assert.match(dupValidate.stdout, /b\.yaml:1: VirtualMachineMemory\/web-01: metadata\.name: duplicate: .*a\.yaml:\d+/);
    const dupOnce = await run(['run', '--manifests', dup, '--once', '-o', 'json']);
    assert.equal(dupOnce.code, 1, dupOnce.stderr);
    assert.match(dupOnce.stderr, /duplicate of .*a\.yaml:\d+; neither is applied/);
    assert.equal((JSON.parse(dupOnce.stdout) as { items: { kind: string }[] }).items.filter((i) => i.kind === 'VirtualMachineMemory').length, 0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('--status-file: refused when it is a manifest or would be read back as one; vmmem get shows what run wrote', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'vmmem-status-'));
  try {
    const asManifest = await run(['run', '--manifests', 'examples/demo', '--once', '--status-file', 'examples/demo/vmms.yaml']);
    assert.equal(asManifest.code, 2);
    assert.match(asManifest.stderr, /is one of the manifests; vmmem never overwrites manifests/);
    const inside = await run(['run', '--manifests', 'examples/demo', '--once', '--status-file', 'examples/demo/status.yaml']);
    assert.equal(inside.code, 2);
    assert.match(inside.stderr, /would be read back as a manifest/);
    const file = join(dir, 'status.yaml');
    const r = await run(['run', '--manifests', 'examples/demo', '--once', '--status-file', file]);
    assert.equal(r.code, 3, r.stderr);
    const get = await run(['get', '-f', file]);
    assert.equal(get.code, 0, get.stderr);
    assert.match(get.stdout, /numa-01\s+sim-kvm\s+False\s+UnsafeLimit/);
    assert.equal((await run(['get', '-f', join(dir, 'missing.yaml')])).code, 1);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('run --once reports a bad spec with validate\'s words (not zod\'s), and InvalidURI for a URI problem', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'vmmem-badspec-'));
  try {
    const badVmm = 'apiVersion: vmmem.io/v1alpha1\nkind: VirtualMachineMemory\nmetadata: {name: web-01, namespace: default}\nspec:\n  hypervisorRef: {name: sim-kvm}\n  vm: {name: 5}\n  maxMemory: 4Gi\n  memroy: 3Gi\n';
    const badUri = 'apiVersion: vmmem.io/v1alpha1\nkind: Hypervisor\nmetadata: {name: bad-uri, namespace: default}\nspec: {uri: "ftp://x"}\n';
    writeFileSync(join(dir, 'bad.yaml'), [HV, badVmm, badUri].join('---\n'));
    const validate = await run(['validate', '-f', dir]);
    assert.equal(validate.code, 1, validate.stderr);
    // "<file>:<line>: <Kind>/<name>: <path>: <message>" → what the status must say for that object.
    const said = new Map<string, string[]>();
    for (const line of validate.stdout.trim().split('\n')) {
      const m = /^[^:]+:\d+: (\w+)\/([\w.-]+): (.*)$/.exec(line);
      assert.ok(m, `unexpected validate line ${line}`);
      const id = `${m[1]}/${m[2]}`;
      said.set(id, [...(said.get(id) ?? []), m[3] as string]);
    }
    assert.deepEqual([...said.keys()].sort(), ['Hypervisor/bad-uri', 'VirtualMachineMemory/web-01']);

    const once = await run(['run', '--manifests', dir, '--once', '-o', 'json']);
    assert.equal(once.code, 3, `an invalid spec is Stalled: exit 3\n${once.stderr}`);
    const items = (JSON.parse(once.stdout) as { items: { kind: string; metadata: { name: string }; status?: { conditions?: { type: string; status: string; reason: string; message: string }[] } }[] }).items;
    const stalled = (id: string) => items.find((i) => `${i.kind}/${i.metadata.name}` === id)?.status?.conditions?.find((c) => c.type === 'Stalled');
    for (const [id, lines] of said) {
      const c = stalled(id);
      assert.equal(c?.status, 'True', `${id}: ${JSON.stringify(c)}`);
      for (const l of lines) assert.ok(c.message.includes(l), `${id}: run's message lacks validate's "${l}":\n  ${c.message}`);
      assert.doesNotMatch(c.message, /Unrecognized key|Invalid input|expected \w+, received/);
    }
    assert.equal(stalled('VirtualMachineMemory/web-01')?.reason, 'InvalidSpec');
    assert.equal(stalled('Hypervisor/bad-uri')?.reason, 'InvalidURI');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('run --once exit codes of docs/gitops.md "What done means": converged 0, waiting on a restart 0, on a power-off 0, stalled 3', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'vmmem-done-'));
  const hv = (name: string, inventory: string) =>
    `apiVersion: vmmem.io/v1alpha1\nkind: Hypervisor\nmetadata: {name: ${name}, namespace: default}\nspec: {uri: "sim://${join(root, 'examples', 'sim', inventory)}", balloonTimeout: 20s}\n`;
  const vmmOn = (hypervisor: string, vm: string, spec: string) =>
    `apiVersion: vmmem.io/v1alpha1\nkind: VirtualMachineMemory\nmetadata: {name: ${vm}, namespace: default}\nspec: {hypervisorRef: {name: ${hypervisor}}, vm: {name: ${vm}}, ${spec}}\n`;
  const cases = [
    // The demo's objects, one per directory (examples/demo/vmms.yaml says what each shows).
    { state: 'converged', yaml: vmmOn('sim-kvm', 'web-01', 'maxMemory: 4Gi'), code: 0, reason: 'Converged' },
    { state: 'waiting on a restart', yaml: vmmOn('sim-kvm', 'db-01', 'maxMemory: 16Gi, memory: 8Gi, limit: 17Gi'), code: 0, reason: 'RestartRequired' },
    { state: 'waiting on a power-off', yaml: vmmOn('sim-esx', 'win-01', 'maxMemory: 12Gi, memory: 12Gi, reservation: 2Gi'), code: 0, reason: 'AwaitingPowerOff' },
    { state: 'stalled', yaml: vmmOn('sim-kvm', 'numa-01', 'maxMemory: 16Gi, limit: 16Gi'), code: 3, reason: 'UnsafeLimit' },
  ];
  try {
    const results = await Promise.all(
      cases.map(async (c, i) => {
        const sub = join(dir, `case-${i}`);
        mkdirSync(sub);
        writeFileSync(join(sub, 'all.yaml'), [hv('sim-kvm', 'kvm.yaml'), hv('sim-esx', 'esx.yaml'), c.yaml].join('---\n'));
        const r = await run(['run', '--manifests', sub, '--once', '-o', 'json']);
        const items = (JSON.parse(r.stdout || '{"items":[]}') as { items: { kind: string; status?: { conditions?: { type: string; reason: string }[] } }[] }).items;
        const ready = items.find((o) => o.kind === 'VirtualMachineMemory')?.status?.conditions?.find((x) => x.type === 'Ready');
        return { state: c.state, code: r.code, reason: ready?.reason };
      }),
    );
    assert.deepEqual(results, cases.map((c) => ({ state: c.state, code: c.code, reason: c.reason })));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
