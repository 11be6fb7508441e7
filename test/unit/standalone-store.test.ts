import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '../../src/controller/log.ts';
import { ManifestStore } from '../../src/standalone/store.ts';
import type { ChangeType, ObjectKey, ResourceKind } from '../../src/controller/ports.ts';

const vmm = (memory: string) => `apiVersion: vmmem.io/v1alpha1
kind: VirtualMachineMemory
metadata: {name: web-01}
spec: {hypervisorRef: {name: h}, vm: {name: web-01}, maxMemory: 4Gi, memory: ${memory}}
`;

async function until(what: string, fn: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!fn()) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

test('standalone store: objects from a directory, generation bumps on spec change, watch reports add/update/delete', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'vmmem-store-'));
  const changes: [ResourceKind, string, ChangeType][] = [];
  const store = new ManifestStore(dir, { log: silentLogger(), watch: true });
  try {
    writeFileSync(join(dir, 'vmm.yaml'), vmm('3Gi'));
    writeFileSync(join(dir, 'secret.yaml'), 'apiVersion: v1\nkind: Secret\nmetadata: {name: creds}\ndata: {password: c2VjcmV0}\nstringData: {username: admin}\n');
    await store.start({ onChange: (kind, key: ObjectKey, change) => changes.push([kind, key.name, change]) });
    assert.deepEqual(changes, [['VirtualMachineMemory', 'web-01', 'add']]);
    const key = { namespace: 'default', name: 'web-01' };
    assert.equal(store.get('VirtualMachineMemory', key)?.metadata.generation, 1);
    assert.deepEqual(await store.getSecret({ namespace: 'default', name: 'creds' }), { password: 'secret', username: 'admin' });

    await store.updateStatus('VirtualMachineMemory', key, () => ({ observedGeneration: 1 }));
    writeFileSync(join(dir, 'vmm.yaml'), vmm('2Gi'));
    await until('update seen', () => changes.some((c) => c[2] === 'update'));
    const updated = store.get('VirtualMachineMemory', key);
    assert.equal(updated?.metadata.generation, 2);
    assert.deepEqual(updated?.status, { observedGeneration: 1 }, 'status survives a reload');

    unlinkSync(join(dir, 'vmm.yaml'));
    await until('delete seen', () => changes.some((c) => c[2] === 'delete'));
    assert.equal(store.get('VirtualMachineMemory', key), undefined);
  } finally {
    await store.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('standalone store: a file with a YAML error is reported and skipped, the rest loads', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'vmmem-store-'));
  const errors: string[] = [];
  const log = { ...silentLogger(), error: (o: object) => errors.push(JSON.stringify(o)) } as unknown as ReturnType<typeof silentLogger>;
  const store = new ManifestStore(dir, { log, watch: false });
  try {
    writeFileSync(join(dir, 'a.yaml'), vmm('3Gi'));
    writeFileSync(join(dir, 'b.yaml'), 'spec: [unclosed\n');
    await store.start({ onChange: () => undefined });
    assert.equal(store.list('VirtualMachineMemory').length, 1);
    assert.ok(errors.some((e) => e.includes('b.yaml') && e.includes('YAML syntax error')), errors.join('\n'));
  } finally {
    await store.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('standalone store --watch: a file written slowly in pieces is applied only whole, never the half-written value', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'vmmem-store-'));
  const store = new ManifestStore(dir, { log: silentLogger(), watch: true });
  const seen: string[] = [];
  const memory = () => String((store.get('VirtualMachineMemory', { namespace: 'default', name: 'web-01' })?.spec as { memory?: string } | undefined)?.memory);
  try {
    const file = join(dir, 'vmm.yaml');
    writeFileSync(file, vmm('3Gi'));
    await store.start({ onChange: () => seen.push(memory()) });
    const full = vmm('2Gi');
    const cut = full.indexOf('2G') + 2; // "memory: 2G" is itself a valid quantity: applying it would be wrong
    writeFileSync(file, full.slice(0, cut) + '}\n');
    // Slower than the 200 ms burst debounce, faster than the stability window: the old watch applied 2G here.
    await new Promise((r) => setTimeout(r, 260));
    writeFileSync(file, full);
    await until('the whole file is applied', () => memory() === '2Gi');
    await new Promise((r) => setTimeout(r, 600));
    assert.deepEqual(seen.filter((m) => m !== '3Gi'), ['2Gi'], `applied along the way: ${seen.join(', ')}`);
  } finally {
    await store.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('standalone store --watch: a later YAML error changes nothing (objects stay, no delete)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'vmmem-store-'));
  const store = new ManifestStore(dir, { log: silentLogger(), watch: true });
  const changes: string[] = [];
  try {
    const file = join(dir, 'vmm.yaml');
    writeFileSync(file, vmm('3Gi'));
    await store.start({ onChange: (_k, key, change) => changes.push(`${change} ${key.name}`) });
    writeFileSync(file, 'apiVersion: vmmem.io/v1alpha1\nkind: VirtualMachineMemory\nspec: [unclosed\n');
    await until('the reload saw the problem', () => store.problems.length > 0);
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(store.list('VirtualMachineMemory').length, 1);
    assert.deepEqual(changes, ['add web-01']);
  } finally {
    await store.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});
