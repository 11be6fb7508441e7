/**
 * Issue #12 item 1: a Hypervisor URI is an allowlist, enforced in three places that agree.
 * Every hostile URI class is refused by `vmmem validate` (exit 1, naming spec.uri), by the real
 * kube-apiserver on create (CEL generated from src/api/uri-policy.ts), and by the libvirt
 * transport (parseUri); `plan` and `run --once` execute nothing (a marker file the payloads would
 * create stays absent) and print no credential. Good URIs pass all three, and a mutation corpus
 * shows zod, the API server and parseUri give the same verdict.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { HypervisorSpecSchema } from '../../src/api/hypervisor.ts';
import { LIBVIRT_DRIVER_PATHS, LIBVIRT_PARAMS, REFUSED_PARAMS, redactUri, uriProblems } from '../../src/api/uri-policy.ts';
import { LibvirtClient, LibvirtError, parseUri } from '../../src/libvirt/index.ts';
import { CLIENT_DRIVER_PATHS, CLIENT_PARAMS, REFUSED_CLIENT_PARAMS } from '../../src/libvirt/uri.ts';
import { startKube } from '../env/kube.ts';
import type { KubeEnv } from '../env/kube.ts';
import { GOOD_URIS, hostileUris } from './uri-corpus.ts';
import { vmmemProcess } from '../env/cli.ts';

const root = join(import.meta.dirname, '..', '..');
const vmmem = (...args: string[]) => vmmemProcess(args);

const NS = 'tenant-a';


const isLibvirtScheme = (uri: string) => /^(qemu|xen|test|lxc)(\+[a-z0-9]+)?:/.test(uri);

const work = mkdtempSync(join(tmpdir(), 'vmmem-sec-uri-'));
const marker = join(work, 'executed');
const classes = hostileUris(marker);
const all = Object.entries(classes).flatMap(([cls, list]) => list.map((h, i) => ({ cls, name: `evil-${Object.keys(classes).indexOf(cls)}-${i}`, ...h })));

let kube: KubeEnv;

before(async () => {
  kube = await startKube({ crds: [join(root, 'crds')] });
  await kube.request('POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: NS } });
  const docs: unknown[] = [];
  for (const h of all) {
    docs.push({ apiVersion: 'vmmem.io/v1alpha1', kind: 'Hypervisor', metadata: { name: h.name, namespace: NS }, spec: { uri: h.uri } });
    docs.push({
      apiVersion: 'vmmem.io/v1alpha1',
      kind: 'VirtualMachineMemory',
      metadata: { name: `${h.name}-vm`, namespace: NS },
      spec: { hypervisorRef: { name: h.name }, vm: { name: 'web-01' }, maxMemory: '1Gi' },
    });
  }
  writeFileSync(join(work, 'hostile.yaml'), docs.map((d) => stringify(d)).join('---\n'));
});

after(async () => {
  await kube?.stop();
  rmSync(work, { recursive: true, force: true });
});

async function apiCreate(uri: string, name: string, dryRun = true) {
  const body = { apiVersion: 'vmmem.io/v1alpha1', kind: 'Hypervisor', metadata: { name, namespace: NS }, spec: { uri } };
  return kube.request('POST', `/apis/vmmem.io/v1alpha1/namespaces/${NS}/hypervisors?fieldValidation=Strict${dryRun ? '&dryRun=All' : ''}`, body);
}

function noCredential(text: string) {
  assert.ok(!text.includes('hunter2-secret'), `a credential from a URI was printed: ${text}`);
}

describe('every hostile URI class', () => {
  for (const [cls, list] of Object.entries(classes)) {
    it(`${cls}: refused by zod, by parseUri (libvirt) and by the real kube-apiserver, naming spec.uri`, async () => {
      for (const h of list) {
        const zod = HypervisorSpecSchema.safeParse({ uri: h.uri });
        assert.equal(zod.success, false, `zod accepted ${h.uri}`);
        const zmsg = zod.error!.issues.map((i) => i.message).join('\n');
        assert.match(zmsg, h.says, h.uri);
        noCredential(zmsg);
        if (h.libvirt) {
          assert.throws(() => parseUri(h.uri), (e: unknown) => e instanceof LibvirtError && e.reason === 'uri' && h.says.test(e.message) && (noCredential(e.message), true), h.uri);
        }
        const r = await apiCreate(h.uri, 'probe', false);
        assert.equal(r.status, 422, `the API server accepted ${h.uri}: ${r.status} ${r.body}`);
        assert.match(r.body, /spec\.uri/, r.body);
        // (the API server's answer echoes the value to whoever sent it: that is Kubernetes, not a log)
      }
    });
  }

  it('vmmem validate exits 1 and names spec.uri of every hostile Hypervisor, without printing a credential', async () => {
    const r = await vmmem('validate', '-f', work);
    assert.equal(r.code, 1, r.out);
    for (const h of all) assert.match(r.out, new RegExp(`Hypervisor/${h.name}: spec\\.uri: `), `${h.uri} not reported:\n${r.out}`);
    noCredential(r.out);
  });

  it('vmmem plan and vmmem run --once execute nothing and print no credential', async () => {
    const plan = await vmmem('plan', '-f', work, '-o', 'json');
    assert.notEqual(plan.code, 0, plan.out);
    noCredential(plan.out);
    const run = await vmmem('run', '--manifests', work, '--once', '-o', 'json');
    assert.notEqual(run.code, 0, run.out);
    // The printed objects echo their own spec (like kubectl get -o json); nothing else may carry it.
    noCredential(all.reduce((text, h) => text.replaceAll(`"uri": ${JSON.stringify(h.uri)}`, '"uri": <spec>'), run.out));
    const list = JSON.parse(run.stdout) as { items: { kind: string; metadata: { name: string }; status?: { conditions?: { type: string; status: string; reason: string }[] } }[] };
    for (const item of list.items) {
      const ready = item.status?.conditions?.find((c) => c.type === 'Ready');
      assert.equal(ready?.status, 'False', `${item.kind}/${item.metadata.name} is not refused`);
    }
    // plan --hypervisor goes through the same schema
    const override = await vmmem('plan', '-f', work, '--hypervisor', `qemu+ssh://root@127.0.0.1/system?command=/bin/sh`);
    assert.equal(override.code, 2, override.out);
    assert.match(override.out, /--hypervisor: .*program/);
    assert.equal(existsSync(marker), false, 'a payload ran: the marker file exists');
  });

  it('the transport refuses them before any I/O, even when called directly', async () => {
    for (const h of all.filter((x) => x.libvirt)) {
      await assert.rejects(LibvirtClient.connect(h.uri, { connectTimeoutMs: 2000 }), (e: unknown) => e instanceof LibvirtError && e.reason === 'uri', h.uri);
    }
    assert.equal(existsSync(marker), false);
  });
});

describe('the three places agree', () => {
  it('the libvirt client has the same table as the schema (a copy: the layer rules keep src/libvirt free of src/api)', () => {
    const values = (t: Record<string, Record<string, { value: string }>>) =>
      Object.fromEntries(Object.entries(t).map(([tr, ps]) => [tr, Object.fromEntries(Object.entries(ps).map(([k, r]) => [k, r.value]))]));
    assert.deepEqual(values(CLIENT_PARAMS), values(LIBVIRT_PARAMS));
    assert.deepEqual(CLIENT_DRIVER_PATHS, LIBVIRT_DRIVER_PATHS);
    assert.deepEqual(Object.keys(REFUSED_CLIENT_PARAMS).sort(), Object.keys(REFUSED_PARAMS).sort());
  });

  it('good URIs pass zod, parseUri and the API server', async () => {
    for (const uri of GOOD_URIS) {
      assert.deepEqual(uriProblems(uri), [], uri);
      if (isLibvirtScheme(uri)) assert.doesNotThrow(() => parseUri(uri), uri);
      const r = await apiCreate(uri, 'good');
      assert.equal(r.status, 201, `${uri}: ${r.body}`);
    }
  });

  it('on a mutation corpus, zod, parseUri and the API server give the same verdict', async () => {
    // Deterministic mutations of the good URIs: insert, replace or delete one character from an
    // alphabet of the characters that matter (delimiters, '-', '%', ':', '@', '=', '&', '.', '/').
    const alphabet = ['-', '%', ':', '@', '=', '&', '?', '#', '.', '/', '[', ']', 'a', '0', '_', '+', ' ', '\\'];
    let seed = 12;
    const rand = (n: number) => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    const corpus = new Set<string>();
    while (corpus.size < 150) {
      const base = GOOD_URIS[rand(GOOD_URIS.length)]!;
      const at = rand(base.length + 1);
      const ch = alphabet[rand(alphabet.length)]!;
      const op = rand(3);
      corpus.add(op === 0 ? base.slice(0, at) + ch + base.slice(at) : op === 1 ? base.slice(0, at) + ch + base.slice(at + 1) : base.slice(0, at) + base.slice(at + 1));
    }
    let accepted = 0;
    for (const uri of corpus) {
      if (uri === '') continue;
      const zodOk = uriProblems(uri).length === 0;
      if (zodOk) accepted++;
      if (isLibvirtScheme(uri)) {
        let parseOk = true;
        try {
          parseUri(uri);
        } catch {
          parseOk = false;
        }
        assert.equal(parseOk, zodOk, `zod says ${zodOk}, parseUri says ${parseOk} for ${JSON.stringify(uri)}`);
      }
      const r = await apiCreate(uri, 'mutant');
      assert.equal(r.status === 201, zodOk, `zod says ${zodOk}, the API server ${r.status} for ${JSON.stringify(uri)}: ${r.body.slice(0, 300)}`);
    }
    assert.ok(accepted > 10 && accepted < corpus.size - 10, `the corpus should hold both verdicts (accepted ${accepted} of ${corpus.size})`);
  });

  it('URIs are redacted in messages: password and refused parameter values never appear', () => {
    assert.equal(redactUri('https://admin:hunter2-secret@vc/sdk'), 'https://admin:***@vc/sdk');
    assert.equal(redactUri('qemu+ssh://h/system?command=/bin/sh&socket=/run/s'), 'qemu+ssh://h/system?command=***&socket=/run/s');
  });
});
