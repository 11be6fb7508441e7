// The client against a deliberately broken local HTTP server: garbage, truncation, silence,
// oversized bodies and resets give typed errors within the deadline, never a hang or a crash,
// and the password never shows up in an error.
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import {
  VSphereClient,
  VSphereFault,
  VSphereProtocolError,
  VSphereTimeoutError,
  VSphereTransportError,
} from '../../src/vsphere/index.ts';

const PASSWORD = 'top-secret-<&>-pw';
let server: http.Server;
let base: string;
let requests: { path: string; body: string; cookie: string | undefined }[] = [];

const SC = `<?xml version="1.0"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body>
<RetrieveServiceContentResponse xmlns="urn:vim25"><returnval><rootFolder type="Folder">group-d1</rootFolder>
<propertyCollector type="PropertyCollector">propertyCollector</propertyCollector><viewManager type="ViewManager">ViewManager</viewManager>
<about><name>x</name><apiType>VirtualCenter</apiType><apiVersion>8.0.2.0</apiVersion><version>8.0.2</version></about>
<sessionManager type="SessionManager">SessionManager</sessionManager><searchIndex type="SearchIndex">SearchIndex</searchIndex>
</returnval></RetrieveServiceContentResponse></soapenv:Body></soapenv:Envelope>`;

const LOGIN = `<?xml version="1.0"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body>
<LoginResponse xmlns="urn:vim25"><returnval><key>k1</key><userName>u</userName></returnval></LoginResponse></soapenv:Body></soapenv:Envelope>`;

const env = (b: string) => `<?xml version="1.0"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body>${b}</soapenv:Body></soapenv:Envelope>`;

// Path /<mode>/sdk selects the misbehavior for calls after Login.
function handler(req: http.IncomingMessage, res: http.ServerResponse) {
  let body = '';
  req.on('data', (d: Buffer) => (body += d.toString()));
  req.on('end', () => {
    requests.push({ path: req.url ?? '', body, cookie: req.headers.cookie });
    const mode = (req.url ?? '').split('/')[1];
    if (body.includes('<RetrieveServiceContent')) return void res.end(SC);
    if (body.includes('<Login ')) {
      res.setHeader('Set-Cookie', 'vmware_soap_session="abc123"; Path=/; HttpOnly; Secure');
      return void res.end(LOGIN);
    }
    switch (mode) {
      case 'garbage': return void res.end('\u0000\u0001 not xml at all <<<');
      case 'html': res.statusCode = 503; return void res.end('<html><body>Service Unavailable</body></html>');
      case 'truncated': return void res.end(SC.slice(0, 120));
      case 'silent': return; // never answers
      case 'slowdrip': res.write('<?xml version="1.0"?>'); return; // starts, never ends
      case 'reset': return void req.socket.destroy();
      case 'huge': {
        res.write('<?xml version="1.0"?><x>');
        const chunk = 'a'.repeat(64 * 1024);
        let n = 0;
        const pump = () => {
          while (n++ < 64) if (!res.write(chunk)) return void res.once('drain', pump);
          res.end('</x>');
        };
        return void pump();
      }
      case 'fault500': res.statusCode = 500; return void res.end('');
      case 'stale': {
        // Like a server whose idle keep-alive timer fired: drop reused sockets without answering.
        const sock = req.socket as typeof req.socket & { served?: number };
        sock.served = (sock.served ?? 0) + 1;
        if (sock.served > 1) return void sock.destroy();
        return void res.end(env('<FindByUuidResponse xmlns="urn:vim25"><returnval type="VirtualMachine">vm-7</returnval></FindByUuidResponse>'));
      }
      default: res.statusCode = 500; return void res.end('<x/>');
    }
  });
}

before(async () => {
  server = http.createServer(handler);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

after(async () => {
  server.closeAllConnections();
  await new Promise<void>((r) => server.close(() => r()));
});

async function client(mode: string, extra: object = {}) {
  return await VSphereClient.connect({
    url: `${base}/${mode}/sdk`, username: 'u', password: PASSWORD, requestTimeoutMs: 500, maxResponseBytes: 1024 * 1024, ...extra,
  });
}

function noSecret(e: unknown) {
  const err = e as Error;
  const all = `${err.message}\n${err.stack}\n${JSON.stringify(err)}`;
  assert.ok(!all.includes(PASSWORD) && !all.includes('top-secret'), `password leaked: ${all}`);
}

describe('transport robustness', () => {
  it('sends the escaped password and then the session cookie exactly as the server set it', async () => {
    requests = [];
    const c = await client('garbage');
    assert.ok(requests.some((r) => r.body.includes('<password>top-secret-&lt;&amp;&gt;-pw</password>')));
    await assert.rejects(c.findVmByUuid('x'));
    assert.equal(requests.at(-1)!.cookie, 'vmware_soap_session="abc123"');
    await c.close();
  });

  const cases: [string, (e: unknown) => boolean][] = [
    ['garbage', (e) => e instanceof VSphereProtocolError],
    ['html', (e) => e instanceof VSphereProtocolError && e.httpStatus === 503],
    ['truncated', (e) => e instanceof VSphereProtocolError],
    ['silent', (e) => e instanceof VSphereTimeoutError && e.timeoutMs === 500],
    ['slowdrip', (e) => e instanceof VSphereTimeoutError],
    ['reset', (e) => e instanceof VSphereTransportError && e.code === 'ECONNRESET'],
    ['huge', (e) => e instanceof VSphereProtocolError && /larger than/.test(e.message)],
    ['fault500', (e) => e instanceof VSphereProtocolError && e.httpStatus === 500],
  ];
  for (const [mode, check] of cases) {
    it(`${mode}: a typed error, quickly, without the password`, async () => {
      const c = await client(mode);
      const t0 = Date.now();
      await assert.rejects(c.findVmByUuid('4211-xyz'), (e: unknown) => {
        assert.ok(check(e), `unexpected error: ${String(e)}`);
        assert.ok(!(e instanceof VSphereFault));
        noSecret(e);
        return true;
      });
      assert.ok(Date.now() - t0 < 3000);
      await c.close();
    });
  }

  it('a refused connection is a VSphereTransportError', async () => {
    const s = http.createServer();
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
    const port = (s.address() as AddressInfo).port;
    await new Promise<void>((r) => s.close(() => r()));
    await assert.rejects(
      VSphereClient.connect({ url: `http://127.0.0.1:${port}/sdk`, username: 'u', password: PASSWORD }),
      (e: unknown) => e instanceof VSphereTransportError && e.code === 'ECONNREFUSED' && (noSecret(e), true),
    );
  });

  it('user info in the URL is refused, without showing it', async () => {
    await assert.rejects(
      VSphereClient.connect({ url: `${base.replace('http://', `http://u:${encodeURIComponent(PASSWORD)}@`)}/silent/sdk`, username: 'u', password: PASSWORD, requestTimeoutMs: 300 }),
      (e: unknown) => e instanceof VSphereTransportError && /credentialsSecretRef/.test(e.message) && (noSecret(e), true),
    );
  });

  it('a keep-alive socket closed by the server is retried once on a fresh connection', async () => {
    const c = await client('stale');
    for (let i = 0; i < 5; i++) assert.deepEqual(await c.findVmByUuid('x'), { type: 'VirtualMachine', value: 'vm-7' });
    await c.close();
  });

  it('a closed client refuses calls with a typed error', async () => {
    const c = await client('garbage');
    await c.close();
    await assert.rejects(c.findVmByUuid('x'), VSphereTransportError);
  });
});
