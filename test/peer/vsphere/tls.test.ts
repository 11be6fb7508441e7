// TLS against vcsim serving a certificate signed by a throwaway CA (test/env/vcsim.ts):
// verification is on by default, the CA makes it pass, insecureSkipVerify only when set.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { VSphereClient, VSphereTransportError } from '../../../src/vsphere/index.ts';
import type { Vcsim } from '../../env/vcsim.ts';
import { startVcsim } from '../../env/vcsim.ts';

let sim: Vcsim;
let otherCaPem: string;

before(async () => {
  sim = await startVcsim();
  const dir = await mkdtemp(path.join(tmpdir(), 'vmmem-otherca-'));
  try {
    await promisify(execFile)('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1',
      '-nodes', '-keyout', path.join(dir, 'k'), '-out', path.join(dir, 'c'), '-days', '1', '-subj', '/CN=other CA',
      '-addext', 'basicConstraints=critical,CA:TRUE']);
    otherCaPem = await readFile(path.join(dir, 'c'), 'utf8');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

after(async () => {
  await sim?.stop();
});

function opts(extra: object) {
  return { url: sim.url, username: sim.username, password: sim.password, requestTimeoutMs: 10_000, ...extra };
}

function tlsRefused(e: unknown): boolean {
  assert.ok(e instanceof VSphereTransportError, `expected VSphereTransportError, got ${String(e)}`);
  assert.match(e.message, /TLS verification of 127\.0\.0\.1:\d+ failed/);
  assert.ok(!e.message.includes(sim.password));
  return true;
}

describe('TLS', () => {
  it('an untrusted certificate is refused by default (system roots only)', async () => {
    await assert.rejects(VSphereClient.connect(opts({})), tlsRefused);
  });

  it('a certificate from another CA is refused', async () => {
    await assert.rejects(VSphereClient.connect(opts({ caPem: otherCaPem })), tlsRefused);
  });

  it('is accepted with the CA that signed it', async () => {
    const c = await VSphereClient.connect(opts({ caPem: sim.caPem }));
    assert.equal((await c.about()).apiType, 'VirtualCenter');
    await c.close();
  });

  it('checks the name: the right CA but another server name is refused', async () => {
    await assert.rejects(VSphereClient.connect(opts({ caPem: sim.caPem, serverName: 'vcenter.example.com' })), (e: unknown) => {
      assert.ok(e instanceof VSphereTransportError);
      assert.equal(e.code, 'ERR_TLS_CERT_ALTNAME_INVALID');
      return true;
    });
    // localhost is in the certificate's SAN.
    const c = await VSphereClient.connect(opts({ url: sim.url.replace('127.0.0.1', 'localhost'), caPem: sim.caPem }));
    await c.close();
  });

  it('is accepted without verification only with insecureSkipVerify: true', async () => {
    await assert.rejects(VSphereClient.connect(opts({ insecureSkipVerify: false })), tlsRefused);
    const c = await VSphereClient.connect(opts({ insecureSkipVerify: true }));
    assert.ok(c.session?.key);
    await c.close();
  });

  it('many calls in a row over the keep-alive agent', async () => {
    const c = await VSphereClient.connect(opts({ caPem: sim.caPem }));
    const vm = await c.lookupVm({ name: 'DC0_H0_VM0' });
    for (let i = 0; i < 20; i++) await c.getVmMemory(vm);
    await c.close();
  });
});
