// RPC framing over a unix socket read into one reused buffer (transport.ts
// rawReadSocket + rpc.ts onData): messages larger than the read buffer, many
// replies in one read, replies split at every byte boundary, and the one-write
// batching of calls issued in the same tick.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { RpcConnection } from '../../src/libvirt/rpc.ts';
import { openTransport } from '../../src/libvirt/transport.ts';
import { parseUri } from '../../src/libvirt/uri.ts';
import { XdrWriter } from '../../src/libvirt/xdr.ts';

const REMOTE = 0x20008086;

interface Peer {
  path: string;
  server: net.Server;
  /** Number of 'data' chunks the peer received. */
  chunks: number;
  /** How the peer sends its replies. */
  mode: 'whole' | 'bytewise';
}

function reply(serial: number, proc: number, body: Buffer): Buffer {
  const w = new XdrWriter(64);
  w.pos = 4;
  w.uint(REMOTE).uint(1).int(proc).int(1).uint(serial).int(0);
  w.opaque(body);
  w.buf.writeUInt32BE(w.pos, 0);
  return w.toBuffer();
}

let dir: string;
let peer: Peer;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'vmmem-framing-'));
  const p: Peer = { path: join(dir, 'sock'), server: net.createServer(), chunks: 0, mode: 'whole' };
  p.server.on('connection', (s) => {
    let buf = Buffer.alloc(0);
    s.on('data', (d: Buffer) => {
      p.chunks++;
      buf = Buffer.concat([buf, d]);
      const out: Buffer[] = [];
      while (buf.length >= 4 && buf.length >= buf.readUInt32BE(0)) {
        const len = buf.readUInt32BE(0);
        const proc = buf.readInt32BE(12);
        const serial = buf.readUInt32BE(20);
        // the call's argument is the size of the opaque to send back
        const size = buf.readUInt32BE(28);
        out.push(reply(serial, proc, Buffer.alloc(size, serial & 0xff)));
        buf = buf.subarray(len);
      }
      const all = Buffer.concat(out);
      if (p.mode === 'whole') s.write(all);
      else for (let i = 0; i < all.length; i++) s.write(all.subarray(i, i + 1));
    });
  });
  await new Promise<void>((r) => p.server.listen(p.path, r));
  peer = p;
});

after(() => {
  peer.server.close();
  rmSync(dir, { recursive: true, force: true });
});

async function connect(): Promise<RpcConnection> {
  const stream = await openTransport(parseUri(`qemu:///system?socket=${peer.path}`));
  return new RpcConnection(stream, { peer: 'framing', keepaliveIntervalMs: 0 });
}

function callSized(rpc: RpcConnection, size: number): Promise<Buffer> {
  return rpc.call(7, (w) => w.uint(size), (r) => r.opaque());
}

describe('libvirt RPC framing over the reused read buffer', () => {
  it('a reply larger than the read buffer (several reads) arrives intact', async () => {
    peer.mode = 'whole';
    const rpc = await connect();
    const got = await callSized(rpc, 300_000);
    assert.equal(got.length, 300_000);
    assert.ok(got.every((b) => b === got[0]));
    rpc.destroy();
  });

  it('many pipelined calls: replies in one read and across reads, each to its caller', async () => {
    peer.mode = 'whole';
    const rpc = await connect();
    const sizes = Array.from({ length: 200 }, (_, i) => (i * 997) % 5000);
    const got = await Promise.all(sizes.map((n) => callSized(rpc, n)));
    assert.deepEqual(got.map((b) => b.length), sizes);
    // decoded values are copies: they survive later reads into the shared buffer
    for (const b of got) if (b.length > 0) assert.ok(b.every((x) => x === b[0]));
    assert.deepEqual(new Set(got.filter((b) => b.length > 0).map((b) => b[0])).size > 1, true);
    rpc.destroy();
  });

  it('replies split at every byte boundary', async () => {
    peer.mode = 'bytewise';
    const rpc = await connect();
    const got = await Promise.all([callSized(rpc, 5), callSized(rpc, 0), callSized(rpc, 70)]);
    assert.deepEqual(got.map((b) => b.length), [5, 0, 70]);
    rpc.destroy();
    peer.mode = 'whole';
  });

  it('calls issued in the same tick leave in one write; a lone call in its own', async () => {
    peer.mode = 'whole';
    const rpc = await connect();
    await callSized(rpc, 1); // settle the connection
    const before = peer.chunks;
    await Promise.all(Array.from({ length: 20 }, () => callSized(rpc, 1)));
    assert.equal(peer.chunks - before, 1, 'one chunk for 20 calls of one tick');
    await callSized(rpc, 1);
    assert.equal(peer.chunks - before, 2);
    rpc.destroy();
  });

  it('openTransport sockets still emit data for plain stream users', async () => {
    const stream = await openTransport(parseUri(`qemu:///system?socket=${peer.path}`));
    const w = new XdrWriter(64);
    w.pos = 4;
    w.uint(REMOTE).uint(1).int(7).int(0).uint(9).int(0).uint(3);
    w.buf.writeUInt32BE(w.pos, 0);
    const data = new Promise<Buffer>((r) => stream.once('data', r));
    stream.write(w.toBuffer());
    const d = await data;
    assert.equal(d.readUInt32BE(20), 9);
    stream.destroy();
  });
});
