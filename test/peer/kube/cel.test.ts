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
