// XDR codec and libvirt struct codecs: round trips and exact wire bytes.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { XdrError, XdrReader, XdrWriter } from '../../src/libvirt/xdr.ts';
import {
  MEMORY_PARAM_UNLIMITED,
  readDomain,
  readRemoteError,
  readTypedParam,
  uuidToBytes,
  uuidToString,
  writeDomain,
  writeRemoteError,
  writeTypedParam,
} from '../../src/libvirt/procedures.ts';
import type { TypedParam } from '../../src/libvirt/procedures.ts';
import { parseDomainXml, toKiB } from '../../src/libvirt/domxml.ts';

const hex = (w: XdrWriter) => w.view().toString('hex');
const reader = (w: XdrWriter) => new XdrReader(w.toBuffer());

describe('XDR primitives', () => {
  it('int/uint are 4 bytes big-endian', () => {
    const w = new XdrWriter(1);
    w.int(-2).uint(0xdeadbeef).int(0x7fffffff).int(-0x80000000);
    assert.equal(hex(w), 'fffffffe' + 'deadbeef' + '7fffffff' + '80000000');
    const r = reader(w);
    assert.deepEqual([r.int(), r.uint(), r.int(), r.int()], [-2, 0xdeadbeef, 0x7fffffff, -0x80000000]);
    r.done();
  });

  it('rejects out-of-range and non-integer values', () => {
    const w = new XdrWriter();
    assert.throws(() => w.int(2 ** 31), XdrError);
    assert.throws(() => w.uint(-1), XdrError);
    assert.throws(() => w.int(1.5), XdrError);
    assert.throws(() => w.uhyper(-1), XdrError);
    assert.throws(() => w.hyper(2 ** 53), XdrError);
    assert.throws(() => w.uhyper(1n << 64n), XdrError);
  });

  it('hyper/uhyper round-trip as number and bigint', () => {
    const w = new XdrWriter();
    w.hyper(-1).hyper(-(2 ** 53) + 1).uhyper(2 ** 53 - 1).uhyper(0xffff_ffff_ffff_ffffn).hyper(-(1n << 63n)).uhyper(4294967296);
    assert.equal(w.pos, 48);
    const r = reader(w);
    assert.equal(r.hyperNumber(), -1);
    assert.equal(r.hyperNumber(), -(2 ** 53) + 1);
    assert.equal(r.uhyperNumber(), 2 ** 53 - 1);
    assert.equal(r.uhyper(), 0xffff_ffff_ffff_ffffn);
    assert.equal(r.hyper(), -(1n << 63n));
    assert.equal(r.uhyperNumber(), 4294967296);
    r.done();
    // a number form refuses values it cannot represent exactly
    const big = new XdrWriter().uhyper(1n << 60n);
    assert.throws(() => reader(big).uhyperNumber(), /safe integer/);
  });

  it('writes 0x0000000100000002 for 4294967298', () => {
    assert.equal(hex(new XdrWriter().uhyper(4294967298)), '0000000100000002');
    assert.equal(hex(new XdrWriter().hyper(-4294967298)), 'fffffffefffffffe');
  });

  it('bool, double', () => {
    const w = new XdrWriter().bool(true).bool(false).double(1.5);
    assert.equal(hex(w), '00000001' + '00000000' + '3ff8000000000000');
    const r = reader(w);
    assert.equal(r.bool(), true);
    assert.equal(r.bool(), false);
    assert.equal(r.double(), 1.5);
    assert.throws(() => new XdrReader(Buffer.from('00000002', 'hex')).bool(), /bool/);
  });

  it('strings are length-prefixed, UTF-8, padded to 4', () => {
    for (const s of ['', 'a', 'ab', 'abc', 'abcd', 'abcde', 'héllo ☃ 𝄞']) {
      const w = new XdrWriter(2).string(s);
      const n = Buffer.byteLength(s);
      assert.equal(w.pos, 4 + n + ((4 - (n % 4)) % 4), s);
      assert.equal(w.buf.readUInt32BE(0), n);
      const r = reader(w);
      assert.equal(r.string(), s);
      r.done();
    }
    assert.equal(hex(new XdrWriter().string('abcde')), '00000005' + '6162636465' + '000000');
  });

  it('opaque fixed and variable', () => {
    const w = new XdrWriter().opaqueFixed(Buffer.from([1, 2, 3]), 3).opaque(Buffer.from([9, 8, 7, 6, 5]));
    assert.equal(hex(w), '01020300' + '00000005' + '0908070605' + '000000');
    const r = reader(w);
    assert.deepEqual([...r.opaqueFixed(3)], [1, 2, 3]);
    assert.deepEqual([...r.opaque()], [9, 8, 7, 6, 5]);
    r.done();
    assert.throws(() => new XdrWriter().opaqueFixed(Buffer.from([1]), 2), XdrError);
  });

  it('optional, arrays, fixed arrays', () => {
    const w = new XdrWriter();
    w.optional<string>(null, (x, v) => x.string(v)).optional('x', (x, v) => x.string(v));
    w.array([1, 2, 3], (x, v) => x.int(v)).fixedArray([7, 8], 2, (x, v) => x.uint(v));
    const r = reader(w);
    assert.equal(r.optional((x) => x.string()), null);
    assert.equal(r.optional((x) => x.string()), 'x');
    assert.deepEqual(r.array((x) => x.int()), [1, 2, 3]);
    assert.deepEqual(r.fixedArray(2, (x) => x.uint()), [7, 8]);
    r.done();
  });

  it('enforces limits and detects truncation and trailing bytes', () => {
    assert.throws(() => new XdrWriter().string('abcdef', 4), /longer than 4/);
    assert.throws(() => new XdrWriter().array([1, 2], (x, v) => x.int(v), 1), /longer than 1/);
    const s = new XdrWriter().string('abcdef').toBuffer();
    assert.throws(() => new XdrReader(s).string(4), /exceeds limit/);
    assert.throws(() => new XdrReader(s.subarray(0, 6)).string(), /truncated/);
    assert.throws(() => new XdrReader(Buffer.from('7fffffff', 'hex')).array((x) => x.int()), /exceeds the data left/);
    const r = new XdrReader(Buffer.alloc(8));
    r.int();
    assert.throws(() => r.done('test'), /4 unexpected trailing bytes after test/);
  });

  it('reuses its buffer after reset and grows as needed', () => {
    const w = new XdrWriter(4);
    w.string('x'.repeat(1000));
    assert.ok(w.buf.length >= 1004);
    w.reset().int(5);
    assert.equal(hex(w), '00000005');
  });
});

describe('libvirt structs', () => {
  it('remote_nonnull_domain: name, 16-byte uuid, id', () => {
    const dom = { name: 'web', uuid: '8f095cd6-781a-4c2a-b62b-4d7ddb909080', id: 3 };
    const w = new XdrWriter();
    writeDomain(w, dom);
    assert.equal(hex(w), '00000003' + '77656200' + '8f095cd6781a4c2ab62b4d7ddb909080' + '00000003');
    const r = reader(w);
    assert.deepEqual(readDomain(r), dom);
    r.done();
    assert.throws(() => writeDomain(new XdrWriter(), { name: 'x', uuid: 'not-a-uuid-at-all-xxxxxxxxxxxxxxxxxx', id: -1 }), /invalid UUID/);
  });

  it('uuid helpers', () => {
    const u = '00112233-4455-6677-8899-aabbccddeeff';
    assert.equal(uuidToString(uuidToBytes(u)), u);
    assert.equal(uuidToString(uuidToBytes(u.replace(/-/g, '').toUpperCase())), u);
    assert.throws(() => uuidToBytes('xyz'), /invalid UUID 'xyz'/);
  });

  it('remote_typed_param: every union arm round-trips', () => {
    const params: TypedParam[] = [
      { field: 'i', value: { type: 'int', value: -5 } },
      { field: 'ui', value: { type: 'uint', value: 5 } },
      { field: 'l', value: { type: 'llong', value: -(1n << 40n) } },
      { field: 'hard_limit', value: { type: 'ullong', value: BigInt(MEMORY_PARAM_UNLIMITED) } },
      { field: 'd', value: { type: 'double', value: 0.25 } },
      { field: 'b', value: { type: 'boolean', value: true } },
      { field: 's', value: { type: 'string', value: 'hello' } },
    ];
    const w = new XdrWriter();
    w.array(params, writeTypedParam);
    const r = reader(w);
    assert.deepEqual(r.array(readTypedParam), params);
    r.done();
    // ullong arm: discriminant 4 then 8 bytes
    const one = new XdrWriter();
    writeTypedParam(one, { field: 'x', value: { type: 'ullong', value: 1048576n } });
    assert.equal(hex(one), '00000001' + '78000000' + '00000004' + '0000000000100000');
    assert.throws(() => readTypedParam(new XdrReader(Buffer.from('000000017800000000000009', 'hex'))), /unknown type 9/);
  });

  it('remote_error round-trips with optional fields', () => {
    const e = {
      code: 55,
      domain: 10,
      message: 'Requested operation is not valid: cannot resize the maximum memory on an active domain',
      level: 2,
      dom: null,
      str1: 'Requested operation is not valid: %s',
      str2: 'cannot resize the maximum memory on an active domain',
      str3: null,
      int1: -1,
      int2: -1,
    };
    const w = new XdrWriter();
    writeRemoteError(w, e);
    const r = reader(w);
    assert.deepEqual(readRemoteError(r), e);
    r.done();
  });
});

describe('domain XML reader', () => {
  it('units follow libvirt (KiB default, KB decimal, rounded up)', () => {
    assert.equal(toKiB('1024', undefined), 1024);
    assert.equal(toKiB('1', 'MiB'), 1024);
    assert.equal(toKiB('1', 'M'), 1024);
    assert.equal(toKiB('1', 'MB'), 977); // 1e6 bytes = 976.5625 KiB, rounded up
    assert.equal(toKiB('1', 'G'), 1048576);
    assert.equal(toKiB('1025', 'bytes'), 2);
    assert.equal(toKiB('2', 'KB'), 2); // 2000 bytes -> 1.95 KiB -> 2
    assert.throws(() => toKiB('1.5', 'GiB', 'memory'), /memory '1.5'/);
    assert.throws(() => toKiB('1', 'parsecs'), /unknown unit/);
  });

  it('reads memory, currentMemory, maxMemory, memtune, numa, memballoon', () => {
    const x = parseDomainXml(`<domain type='kvm' id='4'>
      <name>web-01</name><uuid>8f095cd6-781a-4c2a-b62b-4d7ddb909080</uuid>
      <maxMemory slots='16' unit='KiB'>16777216</maxMemory>
      <memory unit='GiB'>8</memory>
      <currentMemory unit='KiB'>6291456</currentMemory>
      <memtune><hard_limit unit='KiB'>9437184</hard_limit><soft_limit unit='M'>100</soft_limit><min_guarantee>1024</min_guarantee></memtune>
      <cpu><numa><cell id='0' cpus='0-1' memory='4194304' unit='KiB'/><cell id='1' cpus='2-3' memory='4' unit='GiB'/></numa></cpu>
      <devices><disk type='file'/><memballoon model='virtio'><stats period='5'/></memballoon></devices>
    </domain>`);
    assert.deepEqual(x, {
      type: 'kvm',
      id: 4,
      name: 'web-01',
      uuid: '8f095cd6-781a-4c2a-b62b-4d7ddb909080',
      memoryKiB: 8388608,
      currentMemoryKiB: 6291456,
      maxMemory: { kib: 16777216, slots: 16 },
      memtune: { hardLimitKiB: 9437184, softLimitKiB: 102400, minGuaranteeKiB: 1024 },
      numaCells: [
        { id: 0, memoryKiB: 4194304, cpus: '0-1' },
        { id: 1, memoryKiB: 4194304, cpus: '2-3' },
      ],
      memballoonModel: 'virtio',
      memoryDevices: [],
    });
  });

  it('absent elements are undefined; bad XML is a clear error', () => {
    const x = parseDomainXml(`<domain type='qemu'><name>a</name><memory>1024</memory></domain>`);
    assert.equal(x.currentMemoryKiB, undefined);
    assert.equal(x.memballoonModel, undefined);
    assert.deepEqual(x.numaCells, []);
    assert.deepEqual(x.memtune, {});
    assert.throws(() => parseDomainXml('<network/>'), /no <domain> root/);
  });
});
