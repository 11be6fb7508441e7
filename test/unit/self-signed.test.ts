// The metrics listener's self-signed certificate (src/kube/self-signed.ts) as node's X.509 parser
// and a real TLS handshake see it, and the bounded verdict cache of src/kube/metrics-auth.ts.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { createServer, connect, type TLSSocket } from 'node:tls';
import type { AddressInfo } from 'node:net';
import { selfSignedCertificate } from '../../src/kube/self-signed.ts';
import { BoundedTtlCache } from '../../src/kube/metrics-auth.ts';

/** Handshake with a server holding `tls`, trusting only its certificate; resolves to the error or undefined. */
async function handshake(tls: { key: string; cert: string }, servername: string): Promise<Error | undefined> {
  const server = createServer(tls, (s) => s.end());
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  try {
    const { port } = server.address() as AddressInfo;
    return await new Promise((resolve) => {
      const socket: TLSSocket = connect({ host: '127.0.0.1', port, ca: tls.cert, servername }, () => {
        socket.end();
        resolve(undefined);
      });
      socket.on('error', (err) => resolve(err));
    });
  } finally {
    server.close();
  }
}

void describe('self-signed metrics certificate', () => {
  const now = new Date('2026-12-04T21:00:00Z');
  const tls = selfSignedCertificate('vmmem-metrics', ['localhost', 'vmmem-metrics.vmmem-system.svc'], 365, now);

  void it('is a v3 certificate for the names given, valid from an hour before now for the days asked', () => {
    const x = new X509Certificate(tls.cert);
    assert.equal(x.subject, 'CN=vmmem-metrics');
    assert.equal(x.issuer, x.subject);
    assert.equal(x.subjectAltName, 'DNS:localhost, DNS:vmmem-metrics.vmmem-system.svc');
    assert.equal(new Date(x.validFrom).getTime(), now.getTime() - 3600_000);
    assert.equal(new Date(x.validTo).getTime(), now.getTime() + 365 * 86_400_000);
    assert.ok(x.checkPrivateKey(createPrivateKey(tls.key)), 'the key is the certificate’s');
  });

  void it('dates from 2050 on are GeneralizedTime (RFC 5280) and still parse', () => {
    const x = new X509Certificate(selfSignedCertificate('vmmem-metrics', ['localhost'], 40 * 365, now).cert);
    assert.ok(new Date(x.validTo).getUTCFullYear() >= 2066, x.validTo);
  });

  void it('a TLS client trusting it connects for a name in it and refuses another name', async () => {
    const fresh = selfSignedCertificate('vmmem-metrics', ['localhost']);
    assert.equal(await handshake(fresh, 'localhost'), undefined);
    const wrong = await handshake(fresh, 'elsewhere.example');
    assert.match(String(wrong), /altnames|Hostname/i);
  });

  void it('refuses names that are not DNS names before making anything', () => {
    assert.throws(() => selfSignedCertificate('vmmem metrics', []), /invalid common name/);
    assert.throws(() => selfSignedCertificate('vmmem-metrics', ['a/b']), /invalid DNS name/);
  });
});

void describe('BoundedTtlCache (metrics verdicts)', () => {
  void it('keeps an entry until its own deadline', () => {
    const c = new BoundedTtlCache<string>(10);
    c.set('a', 'allow', 60_000, 0);
    c.set('d', 'deny', 10_000, 0);
    assert.equal(c.get('a', 59_999), 'allow');
    assert.equal(c.get('d', 9_999), 'deny');
    assert.equal(c.get('d', 10_000), undefined);
    assert.equal(c.get('a', 60_000), undefined);
    assert.equal(c.size, 0, 'expired entries are dropped on read');
  });

  void it('holds at most max entries, dropping the oldest insert', () => {
    const c = new BoundedTtlCache<number>(3);
    for (let i = 0; i < 1000; i++) c.set(`t${i}`, i, 60_000, 0);
    assert.equal(c.size, 3);
    assert.deepEqual([c.get('t996', 1), c.get('t997', 1), c.get('t998', 1), c.get('t999', 1)], [undefined, 997, 998, 999]);
  });
});
