// TLS and TCP transports against a real libvirtd listening on loopback:
// certificates made here with openssl (CA, server cert for 127.0.0.1, client
// cert), server verification on by default, client certificates required by
// the daemon.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { DriverError } from '../../../src/drivers/driver.ts';
import { LibvirtDriver } from '../../../src/drivers/libvirt/index.ts';
import { LibvirtClient, LibvirtError } from '../../../src/libvirt/index.ts';
import { freePort, startLibvirtd } from '../../env/libvirtd.ts';
import type { Libvirtd } from '../../env/libvirtd.ts';
import { rejectsWith } from '../../env/rejects.ts';

let d: Libvirtd;
let dir: string;
let tlsPort: number;
let tcpPort: number;
let pem: { ca: string; cert: string; key: string; otherCa: string };

function openssl(args: string[], cwd: string): void {
  const r = spawnSync('openssl', args, { cwd, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`openssl ${args.join(' ')} failed: ${r.stderr}`);
}

/** A CA and a leaf signed by it, with the extensions libvirt insists on. */
function makePki(cwd: string): void {
  writeFileSync(join(cwd, 'ca.ext'), 'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n');
  writeFileSync(
    join(cwd, 'server.ext'),
    'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1\n',
  );
  writeFileSync(join(cwd, 'client.ext'), 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n');
  for (const ca of ['ca', 'other-ca']) {
    openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${ca}-key.pem`, '-out', `${ca}.pem`, '-days', '2', '-subj', `/CN=vmmem test ${ca}`, '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'], cwd);
  }
  for (const leaf of ['server', 'client']) {
    openssl(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${leaf}-key.pem`, '-out', `${leaf}.csr`, '-subj', `/CN=${leaf === 'server' ? '127.0.0.1' : 'vmmem'}`], cwd);
    openssl(['x509', '-req', '-in', `${leaf}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca-key.pem', '-CAcreateserial', '-out', `${leaf}.pem`, '-days', '2', '-extfile', `${leaf}.ext`], cwd);
  }
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'vmmem-lv-pki-'));
  makePki(dir);
  tlsPort = await freePort();
  tcpPort = await freePort();
  d = await startLibvirtd({
    tls: { port: tlsPort, caFile: join(dir, 'ca.pem'), certFile: join(dir, 'server.pem'), keyFile: join(dir, 'server-key.pem') },
    tcpPort,
  });
  const r = (f: string) => readFileSync(join(dir, f), 'utf8');
  pem = { ca: r('ca.pem'), cert: r('client.pem'), key: r('client-key.pem'), otherCa: r('other-ca.pem') };
});

after(async () => {
  await d?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const rejects = (p: Promise<unknown>): Promise<LibvirtError> => rejectsWith(p, LibvirtError);

describe('TLS', () => {
  it('connects with a client certificate and verifies the server against the CA', async () => {
    const c = await LibvirtClient.connect(`qemu+tls://127.0.0.1:${tlsPort}/system`, { tls: { ca: pem.ca, cert: pem.cert, key: pem.key } });
    try {
      assert.equal(await c.getType(), 'QEMU');
      assert.equal(await c.getUri(), 'qemu:///system');
    } finally {
      await c.close();
    }
  });

  it('refuses pkipath= (a local directory from a URI): certificates come only from the Secret', async () => {
    const e = await rejects(LibvirtClient.connect(`qemu+tls://127.0.0.1:${tlsPort}/system?pkipath=/etc/pki`));
    assert.equal(e.reason, 'uri');
    assert.match(e.message, /pkipath= is refused/);
  });

  it('refuses a server whose certificate does not chain to our CA (verification is on by default)', async () => {
    const e = await rejects(LibvirtClient.connect(`qemu+tls://127.0.0.1:${tlsPort}/system`, { tls: { ca: pem.otherCa, cert: pem.cert, key: pem.key } }));
    assert.equal(e.reason, 'connect');
    assert.match(e.message, /127\.0\.0\.1:\d+ \(TLS\)/);
    assert.match(e.message, /certificate/i);
    // the driver reports it as a TLS problem
    const driver = new LibvirtDriver({ uri: `qemu+tls://127.0.0.1:${tlsPort}/system`, credentials: { caCert: pem.otherCa, clientCert: pem.cert, clientKey: pem.key } });
    await assert.rejects(driver.connect(), (err: unknown) => err instanceof DriverError && err.code === 'TLS' && err.op === 'virConnectOpen');
  });

  it('insecureSkipVerify (only when asked) connects despite the unknown CA', async () => {
    const c = await LibvirtClient.connect(`qemu+tls://127.0.0.1:${tlsPort}/system`, { tls: { ca: pem.otherCa, cert: pem.cert, key: pem.key, insecureSkipVerify: true } });
    assert.equal(await c.getType(), 'QEMU');
    await c.close();
    // no_verify=1 in the URI is refused: the only switch is spec.tls.insecureSkipVerify (which warns)
    const e2 = await rejects(LibvirtClient.connect(`qemu+tls://127.0.0.1:${tlsPort}/system?no_verify=1`, { tls: { cert: pem.cert, key: pem.key, ca: pem.otherCa } }));
    assert.equal(e2.reason, 'uri');
    assert.match(e2.message, /spec\.tls\.insecureSkipVerify/);
  });

  it('checks the server name: a certificate for 127.0.0.1 is not valid for localhost', async () => {
    const e = await rejects(LibvirtClient.connect(`qemu+tls://localhost:${tlsPort}/system`, { tls: { ca: pem.ca, cert: pem.cert, key: pem.key } }));
    assert.equal(e.reason, 'connect');
    assert.match(e.message, /localhost|altnames|Hostname/i);
  });

  it('the daemon refuses a client without a certificate, and we say so', async () => {
    const e = await rejects(LibvirtClient.connect(`qemu+tls://127.0.0.1:${tlsPort}/system`, { tls: { ca: pem.ca }, connectTimeoutMs: 5000 }));
    assert.ok(e.reason === 'connect' || e.reason === 'closed', e.message);
    assert.match(e.message, /certificate|TLS|closed/i);
  });

  it('keeps many calls in flight over TLS (one message per TLS record)', async () => {
    // libvirtd 9.0 reads one message out of a TLS record and does not look for more
    // until the socket is readable again: calls batched in one record would stall.
    const c = await LibvirtClient.connect(`test+tls://127.0.0.1:${tlsPort}/default`, { tls: { ca: pem.ca, cert: pem.cert, key: pem.key }, callTimeoutMs: 20_000 });
    try {
      const dom = await c.lookupDomainByName('test');
      const all = await Promise.all(Array.from({ length: 300 }, (_, i) => (i % 2 ? c.getType() : c.domainGetInfo(dom).then((x) => x.stateName))));
      assert.equal(all.length, 300);
      assert.ok(all.every((x, i) => x === (i % 2 ? 'TEST' : 'running')));
    } finally {
      await c.close();
    }
  });

  it('the libvirt driver connects over TLS with credentials from a Secret', async () => {
    // 60 s: virConnectGetVersion waits for libvirt's QEMU capabilities probe on a fresh cache.
    const driver = new LibvirtDriver({ uri: `qemu+tls://127.0.0.1:${tlsPort}/system`, credentials: { caCert: pem.ca, clientCert: pem.cert, clientKey: pem.key }, timeoutMs: 60_000 });
    await driver.connect();
    try {
      const id = await driver.identify();
      assert.equal(id.type, 'qemu');
      assert.match(id.version, /^QEMU \d+\.\d+\.\d+ \(libvirt \d+\.\d+\.\d+\)$/);
      assert.ok(id.hostMemory && id.hostMemory > 0n);
    } finally {
      await driver.close();
    }
  });
});

describe('TCP', () => {
  it('connects over plain TCP (qemu+tcp://)', async () => {
    const c = await LibvirtClient.connect(`qemu+tcp://127.0.0.1:${tcpPort}/system`);
    assert.equal(await c.getType(), 'QEMU');
    await c.close();
  });

  it('a closed port fails with reason connect, naming host and port', async () => {
    const port = await freePort();
    const e = await rejects(LibvirtClient.connect(`qemu+tcp://127.0.0.1:${port}/system`));
    assert.equal(e.reason, 'connect');
    assert.match(e.message, new RegExp(`127\\.0\\.0\\.1:${port} \\(TCP\\)`));
    assert.match(e.message, /ECONNREFUSED/);
  });
});
