/**
 * Issue #12 items 2 and 4: hostile files cannot take the operator down or leak through status.
 * Every run is the real CLI under --max-old-space-size=256 (the Deployment's heap is smaller
 * still). A 50 MB manifest, /dev/zero, a FIFO and an endless stdin are refused at once with a
 * clear error; a sim: Hypervisor naming /dev/zero, a FIFO, a huge file or a file holding a
 * secret is refused without hanging and without echoing the file's contents; an oversized
 * domain XML is refused before the XML parser sees it.
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { DOMAIN_XML_MAX_BYTES, parseDomainXml } from '../../src/libvirt/domxml.ts';
import { MANIFEST_FILE_MAX_BYTES, MANIFEST_TOTAL_MAX_BYTES } from '../../src/manifests/load.ts';
import { SIM_INVENTORY_MAX_BYTES } from '../../src/drivers/sim/inventory.ts';

const root = join(import.meta.dirname, '..', '..');
const main = join(root, 'src', 'cli', 'main.ts');
const work = mkdtempSync(join(tmpdir(), 'vmmem-sec-bounded-'));
const SECRET = 'hunter2-file-secret';
after(() => rmSync(work, { recursive: true, force: true }));

interface Result { code: number; out: string; stdout: string }

/** The real CLI with a 256 MiB heap; `stdin` is streamed when given. */
function vmmem(args: string[], stdin?: (s: NodeJS.WritableStream) => void): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = stdin
      ? spawn(process.execPath, ['--max-old-space-size=256', main, ...args], { cwd: root, stdio: ['pipe', 'pipe', 'pipe'] })
      : execFile(process.execPath, ['--max-old-space-size=256', main, ...args], { cwd: root, timeout: 120_000, maxBuffer: 16 << 20 });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, out: stdout + stderr, stdout }));
    if (stdin) stdin(child.stdin!);
  });
}

function sparse(path: string, bytes: number): string {
  writeFileSync(path, '');
  truncateSync(path, bytes);
  return path;
}

describe('manifests are bounded', () => {
  it('a 50 MB manifest is refused before parsing, quickly and within a 256 MiB heap', async () => {
    const big = sparse(join(work, 'big.yaml'), 50 * 1024 * 1024);
    const r = await vmmem(['validate', '-f', big]);
    assert.equal(r.code, 2, r.out);
    assert.match(r.out, new RegExp(`total 52428800 bytes, over the ${MANIFEST_TOTAL_MAX_BYTES}-byte cap`));
    const run = await vmmem(['run', '--manifests', big, '--once', '-o', 'json']);
    assert.match(run.out, /over the \d+-byte cap/, run.out);
    assert.doesNotMatch(run.out, /heap out of memory|FATAL ERROR/);
  });

  it('one file over the per-file cap is a problem naming the file; the others are still checked', async () => {
    const dir = join(work, 'perfile');
    mkdirSync(dir);
    writeFileSync(join(dir, 'a.yaml'), `# padding\n${'#'.repeat(MANIFEST_FILE_MAX_BYTES)}\n`);
    writeFileSync(join(dir, 'b.yaml'), stringify({ apiVersion: 'vmmem.io/v1alpha1', kind: 'Hypervisor', metadata: { name: 'x' }, spec: { uri: 'qemu+ssh://h/system?command=/bin/sh' } }));
    const r = await vmmem(['validate', '-f', dir]);
    assert.equal(r.code, 1, r.out);
    assert.match(r.out, new RegExp(`a\\.yaml:1: over the ${MANIFEST_FILE_MAX_BYTES}-byte cap for one manifest file`));
    assert.match(r.out, /b\.yaml:\d+: Hypervisor\/x: spec\.uri: /);
  });

  it('/dev/zero and a FIFO are refused at once (not read), and endless stdin stops at the cap', async () => {
    const fifo = join(work, 'fifo.yaml');
    execFileSync('mkfifo', [fifo]);
    for (const f of ['/dev/zero', fifo]) {
      const r = await vmmem(['validate', '-f', f]);
      assert.equal(r.code, 1, r.out);
      assert.match(r.out, /not a regular file/, f);
    }
    const chunk = Buffer.alloc(1 << 20, 'a');
    const r = await vmmem(['validate', '-f', '-'], (s) => {
      const pump = () => {
        while (s.write(chunk));
        s.once('drain', pump);
      };
      s.on('error', () => undefined); // the CLI stops reading: EPIPE is the expected end
      pump();
    });
    assert.equal(r.code, 1, r.out);
    assert.match(r.out, /over the \d+-byte cap for one manifest file/);
  });
});

describe('hostile sim: inventories (standalone, where sim: is allowed)', () => {
  it('/dev/zero, a FIFO, a huge file and a file holding a secret: refused, nothing echoed, no hang', async () => {
    const dir = join(work, 'sim');
    mkdirSync(dir);
    const fifo = join(work, 'inventory-fifo');
    execFileSync('mkfifo', [fifo]);
    const huge = sparse(join(work, 'huge-inventory.yaml'), SIM_INVENTORY_MAX_BYTES + 1);
    const secretYaml = join(work, 'secret.yaml');
    writeFileSync(secretYaml, `password: ${SECRET}\ntoken: [${SECRET}\n`); // broken YAML quoting the secret
    const secretMap = join(work, 'secret-map.yaml');
    writeFileSync(secretMap, `${SECRET}: 1\n`);
    const targets = { zero: '/dev/zero', fifo, huge, secretyaml: secretYaml, secretmap: secretMap };
    const docs = Object.entries(targets).flatMap(([name, path]) => [
      { apiVersion: 'vmmem.io/v1alpha1', kind: 'Hypervisor', metadata: { name, namespace: 'default' }, spec: { uri: `sim://${path}` } },
      { apiVersion: 'vmmem.io/v1alpha1', kind: 'VirtualMachineMemory', metadata: { name: `${name}-vm`, namespace: 'default' }, spec: { hypervisorRef: { name }, vm: { name: 'web-01' }, maxMemory: '1Gi' } },
    ]);
    writeFileSync(join(dir, 'objects.yaml'), docs.map((d) => stringify(d)).join('---\n'));
    const r = await vmmem(['run', '--manifests', dir, '--once', '-o', 'json']);
    assert.notEqual(r.code, 0, r.out);
    assert.ok(!r.out.includes(SECRET), `a file's content reached the output:\n${r.out}`);
    const items = (JSON.parse(r.stdout) as { items: { kind: string; metadata: { name: string }; status?: { conditions?: { type: string; status: string; message: string }[] } }[] }).items;
    const says: Record<string, RegExp> = {
      zero: /not a regular file/, fifo: /not a regular file/, huge: new RegExp(`over the ${SIM_INVENTORY_MAX_BYTES}-byte cap`), secretyaml: /secret\.yaml:\d+: YAML: YAML syntax error/, secretmap: /unknown field \(not shown\)/,
    };
    for (const [name, re] of Object.entries(says)) {
      const ready = items.find((i) => i.kind === 'Hypervisor' && i.metadata.name === name)?.status?.conditions?.find((c) => c.type === 'Ready');
      assert.equal(ready?.status, 'False', name);
      assert.match(ready!.message, re, name);
    }
  });
});

describe('libvirt domain XML is bounded', () => {
  it('XML over the cap is refused before parsing; a normal domain parses', () => {
    const big = `<domain type="kvm">${'<a/>'.repeat(DOMAIN_XML_MAX_BYTES / 4)}</domain>`;
    assert.throws(() => parseDomainXml(big), /exceeds vmmem's 1048576-byte cap/);
    assert.equal(parseDomainXml('<domain type="kvm"><name>web-01</name><memory unit="KiB">1048576</memory></domain>').name, 'web-01');
  });
});
