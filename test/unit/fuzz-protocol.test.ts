// Malformed peer replies: garbage and truncated input into the libvirt XDR decoders and RPC
// framing (src/libvirt/) and the vSphere SOAP response parser (src/vsphere/). Properties:
//   - the XDR decoders either decode or throw XdrError (readTypedParam: RangeError for an unknown
//     type tag, which the RPC layer wraps); never another error, never a hang, never an allocation
//     sized by an untrusted length;
//   - RpcConnection fed random bytes, random frames with valid headers and random payloads, or
//     truncated frames followed by end-of-stream: every pending call settles (resolves with a
//     decoded value or rejects with a LibvirtError) within its call timeout, and nothing escapes
//     as an uncaught exception;
//   - decodeResponse / parseUpdateSet / parseMemoryAllocation either return or throw a
//     VSphereError (VSphereProtocolError for garbage, VSphereFault for SOAP faults).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Duplex } from 'node:stream';
import fc from 'fast-check';
import { LibvirtError, RpcConnection, XdrError, XdrReader, XdrWriter } from '../../src/libvirt/index.ts';
import { MessageStatus, MessageType, REMOTE_PROGRAM, REMOTE_PROTOCOL_VERSION, STRING_MAX, readDomain, readRemoteError, readTypedParam } from '../../src/libvirt/procedures.ts';
import { parseMemoryAllocation, parseUpdateSet, VSphereError } from '../../src/vsphere/index.ts';
import { decodeResponse } from '../../src/vsphere/soap.ts';

// ---------------------------------------------------------------------------------------------
// XDR decoders

type Op = (r: XdrReader) => unknown;
const OPS: Record<string, Op> = {
  int: (r) => r.int(),
  uint: (r) => r.uint(),
  bool: (r) => r.bool(),
  hyper: (r) => r.hyper(),
  uhyper: (r) => r.uhyper(),
  hyperNumber: (r) => r.hyperNumber(),
  uhyperNumber: (r) => r.uhyperNumber(),
  double: (r) => r.double(),
  string: (r) => r.string(STRING_MAX),
  opaque: (r) => r.opaque(1 << 20),
  opaqueFixed: (r) => r.opaqueFixed(16),
  optionalString: (r) => r.optional((x) => x.string(64)),
  arrayOfInt: (r) => r.array((x) => x.int(), 1 << 16),
  arrayUnbounded: (r) => r.array((x) => x.string()),
  domain: (r) => readDomain(r),
  typedParam: (r) => readTypedParam(r),
  remoteError: (r) => readRemoteError(r),
  done: (r) => r.done(),
};

/** Bytes that look like XDR: big-endian words, some of them huge lengths or counts. */
const xdrish = fc.array(
  fc.oneof(
    fc.uint8Array({ maxLength: 12 }),
    fc.constantFrom(0, 1, 2, 3, 7, 16, 0x7fffffff, 0xffffffff, 0x80000000, 4194305).map((n) => {
      const b = new Uint8Array(4);
      new DataView(b.buffer).setUint32(0, n);
      return b;
    }),
  ),
  { maxLength: 24 },
).map((parts) => Buffer.concat(parts.map((p) => Buffer.from(p))));

test('fuzz: XDR decoders on garbage decode or throw XdrError, nothing else', () => {
  fc.assert(
    fc.property(xdrish, fc.array(fc.constantFrom(...Object.keys(OPS)), { minLength: 1, maxLength: 8 }), (buf, ops) => {
      const r = new XdrReader(buf);
      for (const op of ops) {
        try {
          OPS[op]!(r);
        } catch (e) {
          const typed = e instanceof XdrError || (op === 'typedParam' && e instanceof RangeError && /unknown type/.test((e as Error).message));
          assert.ok(typed, `${op} threw ${(e as Error)?.constructor?.name}: ${(e as Error)?.message}`);
          return;
        }
        assert.ok(r.pos <= r.end, 'reader ran past the end');
      }
    }),
    { numRuns: 3000, seed: 5 },
  );
});

test('XDR: an absurd string/opaque/array length is refused before allocating', () => {
  const w = new XdrWriter(16);
  w.uint(0xffffffff);
  const buf = w.toBuffer();
  assert.throws(() => new XdrReader(buf).string(), XdrError);
  assert.throws(() => new XdrReader(buf).opaque(), XdrError);
  assert.throws(() => new XdrReader(buf).array((r) => r.int()), XdrError);
});

// ---------------------------------------------------------------------------------------------
// RPC framing

/** A Duplex whose readable side we feed by hand; what the client writes is discarded. */
function fakePeer(): Duplex {
  return new Duplex({
    read() {},
    write(_chunk, _enc, cb) {
      cb();
    },
  });
}

function frame(serial: number, opts: { prog?: number; vers?: number; type?: number; status?: number; proc?: number; payload: Buffer; lenDelta?: number }): Buffer {
  const b = Buffer.alloc(28);
  b.writeUInt32BE(28 + opts.payload.length + (opts.lenDelta ?? 0), 0);
  b.writeUInt32BE(opts.prog ?? REMOTE_PROGRAM, 4);
  b.writeUInt32BE(opts.vers ?? REMOTE_PROTOCOL_VERSION, 8);
  b.writeInt32BE(opts.proc ?? 1, 12);
  b.writeInt32BE(opts.type ?? MessageType.REPLY, 16);
  b.writeUInt32BE(serial >>> 0, 20);
  b.writeInt32BE(opts.status ?? MessageStatus.OK, 24);
  return Buffer.concat([b, opts.payload]);
}

const streamInput = fc.oneof(
  // raw garbage
  fc.uint8Array({ maxLength: 200 }).map((a) => ({ chunks: [Buffer.from(a)], end: true })),
  // frames with a valid header (right serial or not, any status/type) and a random payload, chunked
  fc
    .record({
      serial: fc.oneof(fc.constant(1), fc.nat()),
      status: fc.constantFrom(MessageStatus.OK, MessageStatus.ERROR, MessageStatus.CONTINUE, 7),
      type: fc.constantFrom(MessageType.REPLY, MessageType.MESSAGE, MessageType.REPLY_WITH_FDS, 99),
      prog: fc.oneof({ weight: 5, arbitrary: fc.constant(REMOTE_PROGRAM) }, { weight: 1, arbitrary: fc.nat() }),
      payload: xdrish,
      lenDelta: fc.oneof({ weight: 5, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: -40, max: 40 }) }),
      cuts: fc.array(fc.nat({ max: 300 }), { maxLength: 4 }),
      end: fc.boolean(),
    })
    .map((f) => {
      const buf = frame(f.serial, f);
      const cuts = [...new Set(f.cuts.map((c) => c % (buf.length + 1)))].sort((a, b) => a - b);
      const chunks: Buffer[] = [];
      let at = 0;
      for (const c of cuts) {
        chunks.push(buf.subarray(at, c));
        at = c;
      }
      chunks.push(buf.subarray(at));
      return { chunks: chunks.filter((c) => c.length > 0), end: f.end };
    }),
);

test('fuzz: RPC framing on garbage, bad headers and truncated frames — every call settles with a LibvirtError or a value, in time', async () => {
  const escaped: unknown[] = [];
  const onUncaught = (e: unknown) => escaped.push(e);
  process.on('uncaughtException', onUncaught);
  try {
    await fc.assert(
      fc.asyncProperty(streamInput, async ({ chunks, end }) => {
        const peer = fakePeer();
        const conn = new RpcConnection(peer, { callTimeoutMs: 150, keepaliveIntervalMs: 0, peer: 'fuzz' });
        conn.on('eventError', () => {});
        conn.onMessage(1, (r) => void r.string(64));
        const started = Date.now();
        const call = conn.call(1, null, (r) => ({ s: r.string(1024), n: r.int() }));
        for (const c of chunks) peer.push(c);
        if (end) peer.push(null);
        const outcome = await call.then(
          (v) => ({ ok: true as const, v }),
          (e: unknown) => ({ ok: false as const, e }),
        );
        const took = Date.now() - started;
        assert.ok(took < 1500, `call took ${took} ms to settle`);
        if (!outcome.ok) assert.ok(outcome.e instanceof LibvirtError, `rejected with ${(outcome.e as Error)?.constructor?.name}: ${(outcome.e as Error)?.message}`);
        peer.destroy();
        await Promise.race([conn.whenClosed(), new Promise((r) => setTimeout(r, 500))]);
      }),
      { numRuns: 250, seed: 9 },
    );
  } finally {
    process.off('uncaughtException', onUncaught);
  }
  assert.deepEqual(escaped, []);
});

test('RPC: a length word beyond MESSAGE_MAX closes the connection with a protocol error at once', async () => {
  const peer = fakePeer();
  const conn = new RpcConnection(peer, { callTimeoutMs: 5000, keepaliveIntervalMs: 0 });
  const call = conn.call(1, null, null);
  const b = Buffer.alloc(4);
  b.writeUInt32BE(0xffffffff);
  peer.push(b);
  await assert.rejects(call, (e: unknown) => e instanceof LibvirtError && /invalid message length|closed|protocol/i.test(e.message));
  peer.destroy();
});

// ---------------------------------------------------------------------------------------------
// vSphere SOAP

const xmlJunk = fc.oneof(
  fc.string({ maxLength: 200, unit: 'binary' }),
  fc.constantFrom('', '<', '<a>', '</a>', '<?xml version="1.0"?>', '<!DOCTYPE x [<!ENTITY e "&e;&e;">]><x>&e;</x>', '<a><b></a></b>', '<soapenv:Envelope', '&#xFFFFFFFF;', '<![CDATA[', '\u0000'),
);

const envelope = fc
  .record({
    method: fc.constantFrom('RetrievePropertiesEx', 'WaitForUpdatesEx', 'ReconfigVM_Task'),
    inner: fc.oneof(
      xmlJunk,
      fc.constantFrom(
        '<soapenv:Fault><faultcode>ServerFaultCode</faultcode><faultstring>x</faultstring></soapenv:Fault>',
        '<soapenv:Fault><faultcode>x</faultcode><detail><InvalidArgumentFault xsi:type="InvalidArgument"><invalidProperty>y</invalidProperty></InvalidArgumentFault></detail></soapenv:Fault>',
        '<soapenv:Fault/>',
      ),
      fc
        .record({
          kind: fc.constantFrom('enter', 'modify', 'leave', 'bogus', ''),
          op: fc.constantFrom('assign', 'add', 'nope'),
          obj: fc.constantFrom('<obj type="VirtualMachine">vm-1</obj>', '<obj>vm-1</obj>', '<obj type="VirtualMachine"></obj>', ''),
          res: fc.constantFrom('1024', '-1', '1e3', '99999999999999999999', '', 'x'),
          lim: fc.constantFrom('-1', '2048', 'NaN', ' 12 '),
          level: fc.constantFrom('normal', 'custom', 'weird'),
          junk: xmlJunk,
        })
        .map((p) => `<returnval><filterSet><objectSet>${p.obj}<kind>${p.kind}</kind><changeSet><name>config.memoryAllocation</name><op>${p.op}</op><val><reservation>${p.res}</reservation><limit>${p.lim}</limit><shares><level>${p.level}</level><shares>x</shares></shares>${p.junk}</val></changeSet></objectSet></filterSet></returnval>`),
    ),
    wrapResponse: fc.boolean(),
    status: fc.constantFrom(200, 500, 404, 302),
    contentType: fc.constantFrom('text/xml; charset=utf-8', 'text/html', ''),
    cut: fc.option(fc.nat(), { nil: undefined }),
  })
  .map((e) => {
    const body = e.wrapResponse ? `<${e.method}Response xmlns="urn:vim25">${e.inner}</${e.method}Response>` : e.inner;
    let doc = `<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body>${body}</soapenv:Body></soapenv:Envelope>`;
    if (e.cut !== undefined) doc = doc.slice(0, e.cut % (doc.length + 1));
    return { ...e, doc };
  });

test('fuzz: SOAP responses (garbage, truncated, faults, odd values) → a node or a VSphereError', () => {
  fc.assert(
    fc.property(fc.oneof(envelope, xmlJunk.map((doc) => ({ method: 'RetrievePropertiesEx', doc, status: 200, contentType: 'text/xml' }))), (e) => {
      const started = Date.now();
      try {
        const node = decodeResponse(e.method, e.status, e.contentType, e.doc);
        for (const rv of node.children) {
          parseUpdateSet(rv, e.method);
          for (const fs of rv.children) for (const os of fs.children) for (const cs of os.children) for (const val of cs.children) parseMemoryAllocation(val, e.method);
        }
      } catch (err) {
        assert.ok(err instanceof VSphereError, `threw ${(err as Error)?.constructor?.name}: ${(err as Error)?.message}\n${e.doc.slice(0, 400)}`);
      }
      assert.ok(Date.now() - started < 1000, 'parsing took over a second');
    }),
    { numRuns: 1500, seed: 13 },
  );
});
