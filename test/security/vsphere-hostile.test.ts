// A hostile vSphere endpoint (a Hypervisor's spec.uri is tenant input) answers with 60 MiB, announced
// or streamed, before or after a normal login. The operator's vSphere client must refuse the body
// once it passes its cap (8 MiB, src/vsphere/transport.ts), close the connection, and report a
// DriverError naming the call, while a 256 MiB heap stays enough. The client runs in a child
// process under --max-old-space-size=256 so running out of memory would show as a crash there.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import type http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';

const execFileP = promisify(execFile);
const HUGE = 60 * 1024 * 1024;
const CAP = 8 * 1024 * 1024;
const CHILD = path.join(import.meta.dirname, 'vsphere-hostile-child.ts');

type Mode = 'announced' | 'streamed' | 'after-login';
let dir: string;
let cert: { key: string; cert: string };

before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'vmmem-hostile-'));
  await execFileP('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
    '-keyout', path.join(dir, 'k.pem'), '-out', path.join(dir, 'c.pem'), '-subj', '/CN=127.0.0.1',
    '-addext', 'subjectAltName=IP:127.0.0.1', '-addext', 'basicConstraints=critical,CA:TRUE',
  ]);
  cert = { key: await readFile(path.join(dir, 'k.pem'), 'utf8'), cert: await readFile(path.join(dir, 'c.pem'), 'utf8') };
});

after(async () => {
  await rm(dir, { recursive: true, force: true });
});

const envelope = (inner: string) =>
  `<?xml version="1.0"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body>${inner}</soapenv:Body></soapenv:Envelope>`;

const SERVICE_CONTENT = envelope(
  '<RetrieveServiceContentResponse xmlns="urn:vim25"><returnval>' +
    '<rootFolder type="Folder">group-d1</rootFolder><propertyCollector type="PropertyCollector">propertyCollector</propertyCollector>' +
    '<viewManager type="ViewManager">ViewManager</viewManager><about><apiVersion>8.0.1.0</apiVersion><apiType>VirtualCenter</apiType></about>' +
    '<sessionManager type="SessionManager">SessionManager</sessionManager><searchIndex type="SearchIndex">SearchIndex</searchIndex>' +
    '</returnval></RetrieveServiceContentResponse>',
);
const LOGIN = envelope('<LoginResponse xmlns="urn:vim25"><returnval><key>s1</key><userName>u</userName></returnval></LoginResponse>');
const MOREF = (m: string, t: string) => envelope(`<${m}Response xmlns="urn:vim25"><returnval type="${t}">${t}-1</returnval></${m}Response>`);

/** Streams `total` bytes of plausible XML (an endless propSet) as fast as the client reads. */
function streamHuge(res: http.ServerResponse, total: number, counter: { sent: number }): void {
  res.writeHead(200, { 'Content-Type': 'text/xml; charset=utf-8' });
  const chunk = Buffer.from('<propSet><name>x</name><val>' + 'A'.repeat(64 * 1024 - 40) + '</val></propSet>');
  const pump = () => {
    while (counter.sent < total && !res.destroyed) {
      counter.sent += chunk.length;
      if (!res.write(chunk)) return void res.once('drain', pump);
    }
    res.end();
  };
  res.socket?.on('close', () => res.destroy());
  res.write(envelope('').slice(0, -'</soapenv:Body></soapenv:Envelope>'.length) + '<RetrievePropertiesExResponse xmlns="urn:vim25"><returnval><objects>');
  pump();
}

async function hostile(mode: Mode): Promise<{ url: string; counter: { sent: number }; close: () => Promise<void> }> {
  const counter = { sent: 0 };
  const server = https.createServer(cert, (req, res) => {
    const action = String(req.headers.soapaction ?? '');
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      const method = /<(\w+) xmlns="urn:vim25"/.exec(body)?.[1] ?? '';
      if (mode === 'announced') {
        res.writeHead(200, { 'Content-Type': 'text/xml', 'Content-Length': HUGE });
        res.write('<'); // then nothing: the announced length alone must be refused
        return;
      }
      if (mode === 'after-login' && action !== '' && method === 'RetrieveServiceContent') return void res.end(SERVICE_CONTENT);
      if (mode === 'after-login' && method === 'Login') {
        res.setHeader('Set-Cookie', 'vmware_soap_session="abc"; Path=/; HttpOnly; Secure');
        return void res.end(LOGIN);
      }
      if (mode === 'after-login' && method === 'CreatePropertyCollector') return void res.end(MOREF(method, 'PropertyCollector'));
      if (mode === 'after-login' && method === 'CreateContainerView') return void res.end(MOREF(method, 'ContainerView'));
      if (mode === 'after-login' && (method === 'CreateFilter' || method.startsWith('Destroy') || method === 'Logout')) {
        return void res.end(envelope(`<${method}Response xmlns="urn:vim25"></${method}Response>`));
      }
      streamHuge(res, HUGE, counter);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `https://127.0.0.1:${port}/sdk`,
    counter,
    close: () => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }),
  };
}

interface ChildReport {
  connect: { ok?: true; code?: string; op?: string; message?: string };
  observeAll?: { ok?: true; code?: string; op?: string; message?: string };
  identify?: { ok?: true; code?: string; op?: string; message?: string };
  peakRssMiB: number;
}

async function runChild(url: string): Promise<ChildReport> {
  const { stdout } = await execFileP(process.execPath, ['--max-old-space-size=256', CHILD], {
    env: { ...process.env, HOSTILE_URL: url, HOSTILE_CA: cert.cert },
    timeout: 120_000,
  });
  return JSON.parse(stdout.trim().split('\n').at(-1)!) as ChildReport;
}

describe('a hostile vSphere endpoint cannot take the operator down', () => {
  it('a 60 MiB Content-Length is refused before reading: Protocol error on the first call', async () => {
    const h = await hostile('announced');
    try {
      const r = await runChild(h.url);
      assert.equal(r.connect.code, 'Protocol', JSON.stringify(r));
      assert.match(r.connect.message!, new RegExp(`RetrieveServiceContent: response from 127\\.0\\.0\\.1:\\d+ larger than ${CAP} bytes`));
      assert.ok(r.peakRssMiB < 200, `peak RSS ${r.peakRssMiB} MiB`);
    } finally {
      await h.close();
    }
  });

  it('a streamed 60 MiB body is cut off past the cap; the child survives a 256 MiB heap', async () => {
    const h = await hostile('streamed');
    try {
      const r = await runChild(h.url);
      assert.equal(r.connect.code, 'Protocol', JSON.stringify(r));
      assert.match(r.connect.message!, /larger than 8388608 bytes \(refused; the connection is closed\)/);
      // The client closed the connection: the server could not push the whole 60 MiB (socket buffers aside).
      assert.ok(h.counter.sent < HUGE / 2, `server sent ${h.counter.sent} bytes`);
      assert.ok(r.peakRssMiB < 200, `peak RSS ${r.peakRssMiB} MiB`);
    } finally {
      await h.close();
    }
  });

  it('after a normal login, a 60 MiB property answer fails observeAll and identify with a clear DriverError', async () => {
    const h = await hostile('after-login');
    try {
      const r = await runChild(h.url);
      assert.deepEqual(r.connect, { ok: true }, JSON.stringify(r));
      assert.equal(r.observeAll?.code, 'Protocol', JSON.stringify(r));
      assert.match(r.observeAll!.message!, /WaitForUpdatesEx: response from .* larger than 8388608 bytes/);
      assert.equal(r.identify?.code, 'Protocol', JSON.stringify(r));
      assert.match(r.identify!.message!, /RetrievePropertiesEx: response from .* larger than 8388608 bytes/);
      assert.ok(r.peakRssMiB < 200, `peak RSS ${r.peakRssMiB} MiB`);
    } finally {
      await h.close();
    }
  });
});
