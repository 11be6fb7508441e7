// Failure behavior: the daemon going away mid-call, peers that never answer,
// keepalive, garbage on the wire, event messages, bad URIs. A real libvirtd
// for the restart cases; a scripted peer (speaking libvirt's framing) where a
// real daemon cannot be made to misbehave.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startLibvirtd, tinyDomainXml } from '../../env/libvirtd.ts';
import type { Libvirtd } from '../../env/libvirtd.ts';
import { LibvirtClient, LibvirtError, Proc, RpcConnection, parseUri } from '../../../src/libvirt/index.ts';
import { redactLibvirtUri as redactUri } from '../../../src/libvirt/uri.ts';
import type { BalloonChangeEvent, LifecycleEvent } from '../../../src/libvirt/index.ts';
import { XdrWriter } from '../../../src/libvirt/xdr.ts';
import { writeDomain, writeRemoteError } from '../../../src/libvirt/procedures.ts';
import { rejectsWith } from '../../env/rejects.ts';

let d: Libvirtd;
let tmp: string;

before(async () => {
  d = await startLibvirtd();
  tmp = mkdtempSync(join(tmpdir(), 'vmmem-lv-fake-'));
});

after(async () => {
  await d?.stop();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

const rejects = (p: Promise<unknown>): Promise<LibvirtError> => rejectsWith(p, LibvirtError);

// ------------------------------------------------------------ scripted peer

interface Msg {
  prog: number;
  vers: number;
  proc: number;
  type: number;
  serial: number;
  status: number;
}

function frame(h: Msg, body?: (w: XdrWriter) => void): Buffer {
  const w = new XdrWriter();
  w.uint(0).uint(h.prog).uint(h.vers).int(h.proc).int(h.type).uint(h.serial).int(h.status);
  if (body) body(w);
  w.buf.writeUInt32BE(w.pos, 0);
  return w.toBuffer();
}

/** A unix-socket server that parses libvirt frames and lets the test answer them. */
async function scriptedPeer(onMsg: (m: Msg, sock: net.Socket) => void): Promise<{ path: string; server: net.Server; sockets: net.Socket[] }> {
  const path = join(tmp, `peer-${Math.random().toString(36).slice(2)}.sock`);
  const sockets: net.Socket[] = [];
  const server = net.createServer((sock) => {
    sockets.push(sock);
    let buf = Buffer.alloc(0);
    sock.on('data', (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      while (buf.length >= 4 && buf.length >= buf.readUInt32BE(0)) {
        const len = buf.readUInt32BE(0);
        const m: Msg = {
          prog: buf.readUInt32BE(4),
          vers: buf.readUInt32BE(8),
          proc: buf.readInt32BE(12),
          type: buf.readInt32BE(16),
          serial: buf.readUInt32BE(20),
          status: buf.readInt32BE(24),
        };
        buf = buf.subarray(len);
        onMsg(m, sock);
      }
    });
    sock.on('error', () => {});
  });
  await new Promise<void>((r) => server.listen(path, r));
  return { path, server, sockets };
}

const REMOTE = 0x20008086;
const KEEPALIVE = 0x6b656570;

describe('daemon restart mid-connection', () => {
  it('pending calls reject with reason closed, the client emits close, a new connection works', async () => {
    const c = await LibvirtClient.connect(d.uri('qemu'), { callTimeoutMs: 30_000 });
    const dom = await c.domainDefineXml(tinyDomainXml('restart1'));
    let closeErr: LibvirtError | undefined;
    const closed = new Promise<void>((r) =>
      c.once('close', (e: LibvirtError) => {
        closeErr = e;
        r();
      }),
    );
    // Freeze the daemon so the calls are certainly still in flight, then kill it.
    process.kill(d.pid, 'SIGSTOP');
    const pending = rejects(c.domainCreate(dom));
    const more = Promise.allSettled([c.getHostname(), c.domainGetInfo(dom)]);
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(c.rpc.inFlight, 3);
    await d.kill('SIGKILL');
    const e = await pending;
    assert.equal(e.reason, 'closed');
    assert.equal(e.procedure, 'REMOTE_PROC_DOMAIN_CREATE_WITH_FLAGS');
    assert.match(e.message, /closed|failed/);
    assert.match(e.message, /before the reply arrived/);
    await more;
    await closed;
    assert.ok(closeErr instanceof LibvirtError);
    assert.equal(c.closed, true);
    const after = await rejects(c.getType());
    assert.equal(after.reason, 'closed');
    assert.match(after.message, /not connected/);

    await d.restart();
    const c2 = await LibvirtClient.connect(d.uri('qemu'));
    try {
      assert.equal(await c2.getType(), 'QEMU');
      const again = await c2.lookupDomainByName('restart1');
      assert.equal(again.uuid, dom.uuid, 'persistent state survived the restart');
      if (await c2.domainIsActive(again)) await c2.domainDestroy(again);
      await c2.domainUndefine(again);
    } finally {
      await c2.close();
    }
  });

  it('a graceful daemon restart (SIGTERM) also closes the connection and reconnect works', async () => {
    const c = await LibvirtClient.connect(d.uri('test'));
    const closed = new Promise((r) => c.once('close', r));
    await d.restart();
    await closed;
    await rejects(c.getType());
    const c2 = await LibvirtClient.connect(d.uri('test'));
    assert.equal(await c2.getType(), 'TEST');
    await c2.close();
  });

  it('connecting to a socket nobody listens on fails fast and says why', async () => {
    const e = await rejects(LibvirtClient.connect(`qemu:///system?socket=${join(tmp, 'nobody.sock')}`));
    assert.equal(e.reason, 'connect');
    assert.match(e.message, /nobody\.sock/);
    assert.match(e.message, /ENOENT/);
    assert.match(e.message, /is the libvirt daemon running/);
  });
});

describe('timeouts', () => {
  it('a socket that accepts but never answers: connect times out, no hang', async () => {
    const peer = await scriptedPeer(() => {});
    try {
      const t0 = Date.now();
      const e = await rejects(LibvirtClient.connect(`qemu:///system?socket=${peer.path}`, { connectTimeoutMs: 300 }));
      const ms = Date.now() - t0;
      assert.equal(e.reason, 'timeout');
      assert.equal(e.procedure, 'REMOTE_PROC_AUTH_LIST');
      assert.equal(e.codeName, 'VIR_ERR_OPERATION_TIMEOUT');
      assert.ok(ms >= 290 && ms < 3000, `timed out after ${ms} ms`);
    } finally {
      peer.server.close();
    }
  });

  it('every call has its own deadline; a late reply is ignored; other calls still work', async () => {
    let held: Msg | undefined;
    const peer = await scriptedPeer((m, sock) => {
      if (m.proc === Proc.CONNECT_GET_HOSTNAME) {
        held = m; // never answered in time
        return;
      }
      sock.write(frame({ ...m, type: 1, status: 0 }, (w) => w.string('TEST')));
    });
    const sock = net.connect(peer.path);
    await new Promise((r) => sock.once('connect', r));
    const rpc = new RpcConnection(sock, { callTimeoutMs: 5000, peer: 'scripted' });
    try {
      const readStr = (r: { string(): string }) => r.string();
      const t0 = Date.now();
      const slow = rejects(rpc.call(Proc.CONNECT_GET_HOSTNAME, null, readStr, 150));
      assert.equal(await rpc.call(Proc.CONNECT_GET_TYPE, null, readStr), 'TEST');
      const e = await slow;
      assert.equal(e.reason, 'timeout');
      assert.equal(e.procedure, 'REMOTE_PROC_CONNECT_GET_HOSTNAME');
      assert.ok(Date.now() - t0 < 2000);
      // the reply arriving after the deadline is dropped, the stream stays in sync
      peer.sockets[0]!.write(frame({ ...held!, type: 1, status: 0 }, (w) => w.string('late')));
      assert.equal(await rpc.call(Proc.CONNECT_GET_TYPE, null, readStr), 'TEST');
      assert.equal(rpc.inFlight, 0);
    } finally {
      rpc.destroy();
      peer.server.close();
    }
  });

  it('keepalive: a silent peer is declared dead and pending calls fail', async () => {
    const peer = await scriptedPeer(() => {});
    const sock = net.connect(peer.path);
    await new Promise((r) => sock.once('connect', r));
    const rpc = new RpcConnection(sock, { callTimeoutMs: 0, keepaliveIntervalMs: 50, keepaliveCount: 2, peer: 'silent' });
    rpc.startKeepalive();
    const e = await rejects(rpc.call(Proc.CONNECT_GET_TYPE, null, null));
    assert.equal(e.reason, 'closed');
    assert.match(e.message, /no keepalive response/);
    peer.server.close();
  });

  it('keepalive with the real daemon: PINGs are answered, an idle connection stays up', async () => {
    const c = await LibvirtClient.connect(d.uri('test'), { keepaliveIntervalMs: 100, keepaliveCount: 3 });
    await new Promise((r) => setTimeout(r, 700));
    assert.equal(c.closed, false);
    assert.equal(await c.getType(), 'TEST');
    await c.close();
  });
});

describe('wire handling with a scripted peer', () => {
  it('answers the daemon\'s keepalive PING with PONG', async () => {
    let pong: Msg | undefined;
    const peer = await scriptedPeer((m) => {
      if (m.prog === KEEPALIVE) pong = m;
    });
    const sock = net.connect(peer.path);
    await new Promise((r) => sock.once('connect', r));
    const rpc = new RpcConnection(sock, { peer: 'scripted' });
    peer.sockets[0]!.write(frame({ prog: KEEPALIVE, vers: 1, proc: 1, type: 2, serial: 0, status: 0 }));
    for (let i = 0; i < 100 && !pong; i++) await new Promise((r) => setTimeout(r, 10));
    assert.deepEqual(pong, { prog: KEEPALIVE, vers: 1, proc: 2, type: 2, serial: 0, status: 0 });
    rpc.destroy();
    peer.server.close();
  });

  it('decodes lifecycle and balloon-change callback messages, even split across reads', async () => {
    const dom = { name: 'web-01', uuid: '8f095cd6-781a-4c2a-b62b-4d7ddb909080', id: 7 };
    const peer = await scriptedPeer((m, sock) => {
      // replies for the registration calls: callback ids 11 and 12
      if (m.proc === Proc.CONNECT_DOMAIN_EVENT_CALLBACK_REGISTER_ANY) {
        sock.write(frame({ ...m, type: 1, status: 0 }, (w) => w.int(m.serial === 4 ? 11 : 12)));
      } else if (m.proc === Proc.CONNECT_SUPPORTS_FEATURE) {
        sock.write(frame({ ...m, type: 1, status: 0 }, (w) => w.int(0)));
      } else if (m.proc === Proc.AUTH_LIST) {
        sock.write(frame({ ...m, type: 1, status: 0 }, (w) => w.array([0], (x, v) => x.int(v))));
      } else {
        sock.write(frame({ ...m, type: 1, status: 0 }));
      }
    });
    try {
      const c = await LibvirtClient.connect(`qemu:///system?socket=${peer.path}`);
      const life: LifecycleEvent[] = [];
      const balloon: BalloonChangeEvent[] = [];
      const s1 = await c.onLifecycle((e) => life.push(e));
      const s2 = await c.onBalloonChange((e) => balloon.push(e));
      assert.deepEqual([s1.callbackId, s2.callbackId], [11, 12]);
      const ev1 = frame({ prog: REMOTE, vers: 1, proc: Proc.DOMAIN_EVENT_CALLBACK_LIFECYCLE, type: 2, serial: 0, status: 0 }, (w) => {
        w.int(11);
        writeDomain(w, dom);
        w.int(5).int(1); // stopped, destroyed
      });
      const ev2 = frame({ prog: REMOTE, vers: 1, proc: Proc.DOMAIN_EVENT_CALLBACK_BALLOON_CHANGE, type: 2, serial: 0, status: 0 }, (w) => {
        w.int(12);
        writeDomain(w, dom);
        w.uhyper(6291456);
      });
      const both = Buffer.concat([ev1, ev2]);
      const s = peer.sockets[0]!;
      // one byte, then the rest of the first message plus half the second, then the tail
      s.write(both.subarray(0, 1));
      await new Promise((r) => setTimeout(r, 20));
      s.write(both.subarray(1, ev1.length + 10));
      await new Promise((r) => setTimeout(r, 20));
      s.write(both.subarray(ev1.length + 10));
      for (let i = 0; i < 100 && balloon.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
      assert.deepEqual(life, [{ kind: 'lifecycle', callbackId: 11, dom, event: 5, eventName: 'stopped', detail: 1 }]);
      assert.deepEqual(balloon, [{ kind: 'balloonChange', callbackId: 12, dom, actualKiB: 6291456 }]);
      await c.close();
    } finally {
      peer.server.close();
    }
  });

  it('an error reply becomes a LibvirtError with every field', async () => {
    const peer = await scriptedPeer((m, sock) => {
      sock.write(
        frame({ ...m, type: 1, status: 1 }, (w) =>
          writeRemoteError(w, { code: 74, domain: 12, message: "argument unsupported: parameter 'min_guarantee' not supported", level: 2, dom: null, str1: 'a', str2: 'b', str3: null, int1: 3, int2: -1 }),
        ),
      );
    });
    const sock = net.connect(peer.path);
    await new Promise((r) => sock.once('connect', r));
    const rpc = new RpcConnection(sock, { peer: 'scripted' });
    const e = await rejects(rpc.call(Proc.DOMAIN_SET_MEMORY_PARAMETERS, null, null));
    assert.equal(e.code, 74);
    assert.equal(e.domain, 12);
    assert.equal(e.codeName, 'VIR_ERR_ARGUMENT_UNSUPPORTED');
    assert.equal(e.domainName, 'VIR_FROM_TEST');
    assert.equal(e.procedure, 'REMOTE_PROC_DOMAIN_SET_MEMORY_PARAMETERS');
    assert.equal(e.str1, 'a');
    assert.equal(e.int1, 3);
    assert.equal(e.reason, 'remote');
    rpc.destroy();
    peer.server.close();
  });

  it('garbage on the wire closes the connection with a protocol error', async () => {
    const peer = await scriptedPeer((_m, sock) => sock.write(Buffer.from('HTTP/1.1 400 Bad Request\r\n\r\n')));
    const sock = net.connect(peer.path);
    await new Promise((r) => sock.once('connect', r));
    const rpc = new RpcConnection(sock, { peer: 'not-libvirt' });
    const e = await rejects(rpc.call(Proc.CONNECT_GET_TYPE, null, null));
    assert.equal(e.reason, 'protocol');
    assert.match(e.message, /invalid message length .* not a libvirt RPC stream/);
    assert.equal(rpc.closed, true);
    peer.server.close();
  });
});

describe('URIs', () => {
  it('parses the URIs libvirt accepts', () => {
    const cases: [string, Partial<ReturnType<typeof parseUri>>][] = [
      ['qemu:///system', { driver: 'qemu', transport: 'unix', path: '/system', name: 'qemu:///system', host: undefined }],
      ['qemu:///session', { driver: 'qemu', transport: 'unix', path: '/session', name: 'qemu:///session' }],
      ['xen:///system', { driver: 'xen', transport: 'unix', name: 'xen:///system' }],
      ['test:///default', { driver: 'test', transport: 'unix', name: 'test:///default' }],
      ['test+unix:///default?socket=/tmp/s', { driver: 'test', transport: 'unix', socket: '/tmp/s', name: 'test:///default' }],
      ['qemu+unix:///system?socket=/run/x/libvirt-sock', { transport: 'unix', socket: '/run/x/libvirt-sock', name: 'qemu:///system' }],
      ['qemu+tls://hv1.example.com/system', { transport: 'tls', host: 'hv1.example.com', port: undefined, name: 'qemu:///system' }],
      ['qemu://hv1/system', { transport: 'tls', host: 'hv1' }],
      ['qemu+tcp://10.0.0.5:16509/system', { transport: 'tcp', host: '10.0.0.5', port: 16509 }],
      ['qemu+tls://[fd00::1]:16514/system', { transport: 'tls', host: 'fd00::1', port: 16514 }],
      [
        'qemu+ssh://root@hv2:2222/system?socket=/var/run/libvirt/virtqemud-sock&proxy=netcat',
        { transport: 'ssh', user: 'root', host: 'hv2', port: 2222, socket: '/var/run/libvirt/virtqemud-sock', proxy: 'netcat', name: 'qemu:///system' },
      ],
      ['xen+ssh://admin@dom0/system', { driver: 'xen', transport: 'ssh', user: 'admin', host: 'dom0', name: 'xen:///system' }],
      ['qemu:///system?mode=direct', { mode: 'direct', name: 'qemu:///system' }],
    ];
    for (const [uri, want] of cases) {
      const got = parseUri(uri) as unknown as Record<string, unknown>;
      for (const [k, v] of Object.entries(want)) assert.deepEqual(got[k], v, `${uri}: ${k}`);
    }
  });

  it('bad URIs give a clear error naming the URI and the problem', async () => {
    const cases: [string, RegExp][] = [
      ['', /empty URI/],
      ['system', /missing scheme/],
      ['qemu:/system', /missing '\/\/'/],
      ['qemu+ftp://host/system', /unsupported transport 'ftp'/],
      ['qemu+libssh2://host/system', /use '\+ssh'/],
      ['kvm:///system', /unsupported hypervisor driver 'kvm'/],
      ['lxc:///system', /unsupported hypervisor driver 'lxc'/],
      ['esx://vcenter/', /client library/],
      ['qemu:///', /unexpected path '\/'/],
      ['qemu://', /missing path/],
      ['qemu:///sys', /unexpected path '\/sys'.*\/system or \/session/],
      ['test:///', /test driver path must be \/default/],
      ['qemu+unix://host/system', /unix transport is local and cannot have a host/],
      ['qemu+ssh:///system', /ssh transport needs a host/],
      ['qemu+tcp://host:99999/system', /port 99999 out of range/],
      ['qemu+tcp://host:abc/system', /invalid port 'abc'/],
      ['qemu+ssh://user:pw@host/system', /credentials in the URI are refused/],
      ['qemu:///system?socket=relative', /invalid socket 'relative'/],
      ['qemu+tls://h/system?no_verify=1', /no_verify= is refused: set spec.tls.insecureSkipVerify/],
      ['qemu+tls://h/system?socket=/x', /'socket' is not supported for the tls transport/],
      ['qemu:///system?auth=sasl', /auth= is refused/],
      ['qemu:///system?x=%zz', /query parameter 'x' is not supported/],
      ['qemu:///system?socket=/a%2F..%2Fb', /invalid socket/],
      ['qemu+ssh://h/system?command=/bin/sh', /command= is refused/],
      ['qemu+ssh://-oProxyCommand=x/system', /invalid host/],
      ['test+unix:///no/such/config.xml', /test driver path must be \/default/],
      ['qemu:///sys tem', /whitespace/],
    ];
    for (const [uri, re] of cases) {
      const e = (() => {
        try {
          parseUri(uri);
        } catch (err) {
          return err as LibvirtError;
        }
        assert.fail(`'${uri}' should be rejected`);
      })();
      assert.ok(e instanceof LibvirtError, uri);
      assert.equal(e.reason, 'uri');
      assert.match(e.message, re, uri);
      // named, redacted: a password or a refused parameter's value never appears
      if (uri !== '') assert.ok(e.message.includes(`'${redactUri(uri)}'`), `message names the URI: ${e.message}`);
      assert.ok(!e.message.includes(':pw@'), e.message);
    }
    // connect() rejects them the same way, before any I/O
    const e = await rejects(LibvirtClient.connect('qemu+ftp://host/system'));
    assert.equal(e.reason, 'uri');
  });
});
