/**
 * The CRDs in crds/ on a real kube-apiserver: the API server itself rejects
 * the invalid fixtures (structural schema, CEL x-kubernetes-validations,
 * strict field validation) with messages that name the field, and accepts
 * every example. Same fixtures as `vmmem validate` (test/unit/validate.test.ts).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { startKube } from '../../env/kube.ts';
import type { KubeEnv } from '../../env/kube.ts';

const root = join(import.meta.dirname, '..', '..', '..');
const fixtures = join(root, 'test', 'fixtures', 'invalid');
const expectations = JSON.parse(readFileSync(join(fixtures, 'expectations.json'), 'utf8')) as Record<string, { path: string | null; apiServer: boolean }>;

/** What the API server itself must say for the rules that live in CEL (our own words, from src/api). */
const CEL_MESSAGES: Record<string, RegExp> = {
  'memory-over-max.yaml': /spec\.memory \(16Gi\) must not exceed spec\.maxMemory \(8Gi\)/,
  'reservation-over-memory.yaml': /spec\.reservation \(6Gi\) must not exceed spec\.memory \(4Gi\)/,
  'reservation-over-default-memory.yaml': /spec\.reservation \(9Gi\) must not exceed spec\.memory \(8Gi, from spec\.maxMemory\)/,
  'limit-below-reservation.yaml': /spec\.limit \(2Gi\) must not be below spec\.reservation \(4Gi\)/,
  'vm-both-name-and-uuid.yaml': /spec\.vm: set exactly one of name or uuid/,
  'vm-neither-name-nor-uuid.yaml': /spec\.vm: set exactly one of name or uuid/,
  'quantity-fractional-bytes.yaml': /whole, non-negative number of bytes/,
  'quantity-negative.yaml': /whole, non-negative number of bytes/,
  'quantity-zero-max.yaml': /must be greater than 0/,
  'quantity-integer-beyond-2p53.yaml': /an integer must be at most 2\^53-1 \(9007199254740991\)/,
  'typo-maxmemroy.yaml': /unknown field "spec\.maxMemroy"/,
  'typo-in-vm.yaml': /unknown field "spec\.vm\.nmae"/,
  'hypervisor-typo-tls.yaml': /unknown field "spec\.tls\.insecureSkipVerfy"/,
};

let env: KubeEnv;

before(async () => {
  env = await startKube({ crds: [join(root, 'crds')] });
  for (const ns of ['vms']) await env.request('POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } });
});

after(async () => {
  await env?.stop();
});

function pathFor(obj: { apiVersion: string; kind: string; metadata?: { namespace?: string } }): string {
  const plural = obj.kind === 'Hypervisor' ? 'hypervisors' : 'virtualmachinememories';
  return `/apis/${obj.apiVersion}/namespaces/${obj.metadata?.namespace ?? 'default'}/${plural}`;
}

async function create(obj: Record<string, unknown>, dryRun = false) {
  const query = `?fieldValidation=Strict${dryRun ? '&dryRun=All' : ''}`;
  return env.request('POST', pathFor(obj as never) + query, obj);
}

for (const [file, want] of Object.entries(expectations)) {
  if (!want.apiServer) continue;
  test(`the API server rejects ${file}${want.path ? `, naming ${want.path}` : ''}`, async () => {
    const [doc] = parseAllDocuments(readFileSync(join(fixtures, file), 'utf8'));
    const obj = doc?.toJS() as Record<string, unknown>;
    const res = await create(obj, true);
    assert.ok(res.status === 422 || res.status === 400, `expected a rejection, got ${res.status}: ${res.body}`);
    const message = (JSON.parse(res.body) as { message: string }).message;
    if (want.path) assert.ok(message.includes(want.path), `message should name ${want.path}: ${message}`);
    const cel = CEL_MESSAGES[file];
    if (cel) assert.match(message, cel);
  });
}

test('every vmmem object in examples/ is accepted by the API server', async () => {
  let accepted = 0;
  const walk = (dir: string): string[] =>
    readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(join(dir, e.name)) : e.name.endsWith('.yaml') ? [join(dir, e.name)] : []));
  for (const file of walk(join(root, 'examples'))) {
    for (const doc of parseAllDocuments(readFileSync(file, 'utf8'))) {
      const obj = doc.toJS() as { apiVersion?: string } | null;
      if (!obj?.apiVersion?.startsWith('vmmem.io/')) continue;
      const res = await create(obj as Record<string, unknown>, true);
      assert.equal(res.status, 201, `${file}: ${res.body}`);
      accepted++;
    }
  }
  assert.ok(accepted >= 10, `only ${accepted} objects checked`);
});

test('kubectl explain shows the field descriptions', async () => {
  const { execFileSync } = await import('node:child_process');
  const out = execFileSync('kubectl', ['--kubeconfig', env.kubeconfigPath, 'explain', 'virtualmachinememory.spec.maxMemory'], { encoding: 'utf8' });
  assert.match(out, /Guest-visible physical memory/);
  const short = execFileSync('kubectl', ['--kubeconfig', env.kubeconfigPath, 'api-resources', '--api-group=vmmem.io', '-o', 'wide'], { encoding: 'utf8' });
  assert.match(short, /vmm,vmmem/);
  assert.match(short, /hv/);
});

test('the API server and vmmem validate agree on which quantities are whole bytes', async () => {
  const { parseQuantity } = await import('../../../src/api/quantity.ts');
  const cases = ['8.5Gi', '1.5Gi', '0.5Ki', '1.25Mi', '1e3', '1.5e9', '1000m', '2000m', '8Gi', '1500m', '0.5', '3.5', '1e-1', '-1Gi'];
  for (const value of cases) {
    let zodAccepts = true;
    try {
      parseQuantity(value, 'spec.maxMemory');
    } catch {
      zodAccepts = false;
    }
    const obj = { apiVersion: 'vmmem.io/v1alpha1', kind: 'VirtualMachineMemory', metadata: { name: 'q', namespace: 'default' }, spec: { hypervisorRef: { name: 'h' }, vm: { name: 'a' }, maxMemory: value } };
    const res = await create(obj, true);
    assert.equal(res.status === 201, zodAccepts, `${value}: API server ${res.status}, vmmem ${zodAccepts ? 'accepts' : 'rejects'}: ${res.body.slice(0, 200)}`);
  }
});

/** vmmem validate on a one-object manifest whose spec is written as raw text (numbers exactly as given). */
async function validateText(text: string): Promise<{ code: number; out: string[] }> {
  const { mkdtempSync, writeFileSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { validateCommand } = await import('../../../src/cli/validate.ts');
  const dir = mkdtempSync(join(tmpdir(), 'vmmem-cel-int-'));
  try {
    const file = join(dir, 'm.json');
    writeFileSync(file, text);
    const out: string[] = [];
    const code = validateCommand([file], { out: (l) => out.push(l), err: () => {} });
    return { code, out };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// Integers as Kubernetes quantities have them (int-or-string). The object goes to the API server as
// raw JSON text, so a literal beyond 2^53 reaches it exactly as written (JSON.stringify of a JS
// number could not say 9007199254740993), and vmmem validate reads the very same text.
test('integer quantities: the API server and vmmem validate accept and refuse the same JSON numbers', async () => {
  const literals = [
    '4294967296', '0', '1', '-1', '-4294967296', '9007199254740991', '9007199254740992', '9007199254740993',
    '9223372036854775807', '9223372036854775808', '18446744073709551616', '100000000000000000000',
  ];
  const disagreements: string[] = [];
  for (const [i, lit] of literals.entries()) {
    for (const field of ['maxMemory', 'reservation', 'limit']) {
      const spec = field === 'maxMemory' ? `"maxMemory": ${lit}` : `"maxMemory": "7Ei", "memory": "7Ei", "${field}": ${lit}`;
      const text = `{"apiVersion": "vmmem.io/v1alpha1", "kind": "VirtualMachineMemory", "metadata": {"name": "int-${i}-${field.toLowerCase()}", "namespace": "default"}, "spec": {"hypervisorRef": {"name": "h"}, "vm": {"name": "a"}, ${spec}}}`;
      const res = await env.request('POST', `/apis/vmmem.io/v1alpha1/namespaces/default/virtualmachinememories?fieldValidation=Strict&dryRun=All`, text);
      const v = await validateText(text);
      assert.ok(res.status === 201 || res.status === 422 || res.status === 400, `${field}: ${lit}: API server ${res.status}: ${res.body.slice(0, 300)}`);
      if ((res.status === 201) !== (v.code === 0)) {
        disagreements.push(`${field}: ${lit}: API server ${res.status} ${res.body.slice(0, 200)}; vmmem validate exit ${v.code} ${v.out.join(' ')}`);
      }
      // Refusals say why, in our words, on both sides.
      if (res.status !== 201 && BigInt(lit) > 9007199254740991n && BigInt(lit) <= 9223372036854775807n) {
        assert.match(res.body, /at most 2\^53-1/, `${field}: ${lit}`);
        assert.match(v.out.join('\n'), /above 2\^53-1/, `${field}: ${lit}`);
      }
    }
  }
  assert.deepEqual(disagreements, []);
});

test('maxMemory: 4294967296 (YAML, unquoted) is stored as the integer and validates; status keeps canonical strings', async () => {
  const obj = { apiVersion: 'vmmem.io/v1alpha1', kind: 'VirtualMachineMemory', metadata: { name: 'plain-int', namespace: 'default' }, spec: { hypervisorRef: { name: 'h' }, vm: { name: 'a' }, maxMemory: 4294967296, memory: '2Gi' } };
  const res = await create(obj);
  assert.equal(res.status, 201, res.body);
  assert.equal((JSON.parse(res.body) as { spec: { maxMemory: unknown } }).spec.maxMemory, 4294967296);
  // The CEL cross-field rules compare an integer with a string quantity.
  const over = await create({ ...obj, metadata: { name: 'plain-int-over', namespace: 'default' }, spec: { ...obj.spec, memory: 4294967297 } }, true);
  assert.equal(over.status, 422, over.body);
  assert.match(over.body, /spec\.memory \(4294967297\) must not exceed spec\.maxMemory \(4294967296\)/);
  const v = await validateText(JSON.stringify({ ...obj, spec: { ...obj.spec, memory: 4294967297 } }));
  assert.equal(v.code, 1);
  assert.match(v.out.join('\n'), /spec\.memory \(4294967297\) must not exceed spec\.maxMemory \(4294967296\)/);
  // Status is written as canonical strings, also when the spec says an integer.
  const { formatQuantity, parseQuantity } = await import('../../../src/api/quantity.ts');
  assert.equal(formatQuantity(parseQuantity(4294967296, 'spec.maxMemory')), '4Gi');
});
