// --metrics-cert-dir (src/kube/metrics-tls.ts certDirSource) behind the real health server: the
// mounted pair is served, a renewed pair written in place reaches new connections without a
// restart (cert-manager renews the Secret, the kubelet rewrites the files), a bad renewal is
// logged and the current pair kept, and a mismatched or missing pair is refused at start.
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import { startHealthServer } from '../../src/controller/health.ts';
import type { Logger } from '../../src/controller/ports.ts';
import { certDirSource } from '../../src/kube/metrics-tls.ts';
import { selfSignedCertificate } from '../../src/kube/self-signed.ts';

function recordingLogger(lines: string[]): Logger {
  const rec = (level: string) => (obj: object | string, msg?: string) => lines.push(`${level} ${msg ?? ''} ${JSON.stringify(obj)}`);
  const log: Logger = { info: rec('info'), warn: rec('warn'), error: rec('error'), debug: rec('debug'), child: () => log };
  return log;
}

/** The CN of the certificate a fresh connection is served (trusting any: the test compares names). */
function servedCn(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request(`${url}/metrics`, { rejectUnauthorized: false, agent: false }, (res) => {
      resolve(String((res.socket as TLSSocket).getPeerCertificate().subject.CN));
      res.resume();
    });
    req.on('error', reject);
    req.end();
  });
}

async function until(what: string, check: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

void describe('--metrics-cert-dir', () => {
  const dirs: string[] = [];
  const dirWith = (pair: { key: string; cert: string }) => {
    const dir = mkdtempSync(join(tmpdir(), 'vmmem-metrics-tls-'));
    dirs.push(dir);
    writeFileSync(join(dir, 'tls.crt'), pair.cert);
    writeFileSync(join(dir, 'tls.key'), pair.key);
    return dir;
  };
  after(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  void it('serves the mounted pair, then a renewal written in place, and keeps it when the next renewal is broken', async () => {
    const dir = dirWith(selfSignedCertificate('vmmem-metrics-a', ['localhost']));
    const lines: string[] = [];
    const server = await startHealthServer({
      metricsAddress: '127.0.0.1:0',
      probeAddress: '0',
      metrics: { text: () => Promise.resolve('up 1\n'), contentType: 'text/plain; version=0.0.4' },
      metricsTls: certDirSource(dir, recordingLogger(lines), 50),
    });
    try {
      assert.equal(await servedCn(server.metricsUrl!), 'vmmem-metrics-a');
      const b = selfSignedCertificate('vmmem-metrics-b', ['localhost']);
      writeFileSync(join(dir, 'tls.key'), b.key);
      writeFileSync(join(dir, 'tls.crt'), b.cert);
      await until('the renewed certificate', async () => (await servedCn(server.metricsUrl!)) === 'vmmem-metrics-b');
      assert.ok(lines.some((l) => l.startsWith('info metrics: renewed certificate loaded') && l.includes('CN=vmmem-metrics-b')), lines.join('\n'));
      // A certificate without its key: refused, logged, the current pair stays.
      const before = lines.length;
      writeFileSync(join(dir, 'tls.crt'), selfSignedCertificate('vmmem-metrics-c', ['localhost']).cert);
      await until('the refusal to be logged', () => Promise.resolve(lines.slice(before).some((l) => l.startsWith('warn metrics: certificate not reloaded') && l.includes('not a usable pair'))));
      assert.equal(await servedCn(server.metricsUrl!), 'vmmem-metrics-b');
      assert.ok(!lines.some((l) => l.includes('PRIVATE KEY')), 'a key reached the log');
    } finally {
      await server.close();
    }
  });

  void it('refuses at start a certificate and key that do not belong together, or a missing file', () => {
    const a = selfSignedCertificate('vmmem-metrics-a', ['localhost']);
    const b = selfSignedCertificate('vmmem-metrics-b', ['localhost']);
    const mismatched = dirWith({ cert: a.cert, key: b.key });
    assert.throws(() => certDirSource(mismatched, recordingLogger([])), /tls\.crt and tls\.key are not a usable pair/);
    const missing = mkdtempSync(join(tmpdir(), 'vmmem-metrics-tls-'));
    dirs.push(missing);
    assert.throws(() => certDirSource(missing, recordingLogger([])), /--metrics-cert-dir: cannot read .*tls\.crt/);
  });
});
