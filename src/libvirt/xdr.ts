// XDR (RFC 4506) encoder and decoder, as used by libvirt's remote protocol.
//
// Everything is big-endian and padded to 4 bytes. `hyper`/`unsigned hyper`
// are 64-bit: the writer accepts a number (must be a safe integer) or a bigint;
// the reader offers both a bigint form and a number form that refuses values
// a double cannot hold exactly (memory sizes in KiB always fit).
//
// The writer owns one growable buffer that callers reset and reuse, so the
// RPC hot path does not allocate per field.

export class XdrError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'XdrError';
  }
}

const TWO_32 = 0x1_0000_0000;
const INT64_MIN = -(1n << 63n);
const INT64_MAX = (1n << 63n) - 1n;
const UINT64_MAX = (1n << 64n) - 1n;

export class XdrWriter {
  buf: Buffer;
  pos = 0;

  constructor(initialSize = 256) {
    this.buf = Buffer.allocUnsafe(initialSize);
  }

  reset(): this {
    this.pos = 0;
    return this;
  }

  /** The bytes written so far, as a view (valid until the next write/reset). */
  view(): Buffer {
    return this.buf.subarray(0, this.pos);
  }

  /** A copy of the bytes written so far. */
  toBuffer(): Buffer {
    const out = Buffer.allocUnsafe(this.pos);
    this.buf.copy(out, 0, 0, this.pos);
    return out;
  }

  ensure(n: number): void {
    const need = this.pos + n;
    if (need <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < need) size *= 2;
    const next = Buffer.allocUnsafe(size);
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }

  int(v: number): this {
    if (!Number.isInteger(v) || v < -0x8000_0000 || v > 0x7fff_ffff) {
      throw new XdrError(`int out of range: ${v}`);
    }
    this.ensure(4);
    this.buf.writeInt32BE(v, this.pos);
    this.pos += 4;
    return this;
  }

  uint(v: number): this {
    if (!Number.isInteger(v) || v < 0 || v > 0xffff_ffff) {
      throw new XdrError(`unsigned int out of range: ${v}`);
    }
    this.ensure(4);
    this.buf.writeUInt32BE(v, this.pos);
    this.pos += 4;
    return this;
  }

  bool(v: boolean): this {
    return this.int(v ? 1 : 0);
  }

  hyper(v: number | bigint): this {
    this.ensure(8);
    if (typeof v === 'number') {
      if (!Number.isSafeInteger(v)) throw new XdrError(`hyper not a safe integer: ${v}`);
      const hi = Math.floor(v / TWO_32);
      this.buf.writeInt32BE(hi, this.pos);
      this.buf.writeUInt32BE(v - hi * TWO_32, this.pos + 4);
    } else {
      if (v < INT64_MIN || v > INT64_MAX) throw new XdrError(`hyper out of range: ${v}`);
      this.buf.writeBigInt64BE(v, this.pos);
    }
    this.pos += 8;
    return this;
  }

  uhyper(v: number | bigint): this {
    this.ensure(8);
    if (typeof v === 'number') {
      if (!Number.isSafeInteger(v) || v < 0) throw new XdrError(`unsigned hyper out of range: ${v}`);
      const hi = Math.floor(v / TWO_32);
      this.buf.writeUInt32BE(hi, this.pos);
      this.buf.writeUInt32BE(v - hi * TWO_32, this.pos + 4);
    } else {
      if (v < 0n || v > UINT64_MAX) throw new XdrError(`unsigned hyper out of range: ${v}`);
      this.buf.writeBigUInt64BE(v, this.pos);
    }
    this.pos += 8;
    return this;
  }

  double(v: number): this {
    this.ensure(8);
    this.buf.writeDoubleBE(v, this.pos);
    this.pos += 8;
    return this;
  }

  private pad(len: number): void {
    const p = (4 - (len & 3)) & 3;
    for (let i = 0; i < p; i++) this.buf[this.pos++] = 0;
  }

  /** Fixed-length opaque: exactly `len` bytes, padded. */
  opaqueFixed(data: Uint8Array, len: number): this {
    if (data.length !== len) throw new XdrError(`fixed opaque needs ${len} bytes, got ${data.length}`);
    this.ensure(len + 3);
    this.buf.set(data, this.pos);
    this.pos += len;
    this.pad(len);
    return this;
  }

  /** Variable-length opaque: length word, bytes, padding. */
  opaque(data: Uint8Array, max = Infinity): this {
    if (data.length > max) throw new XdrError(`opaque longer than ${max}: ${data.length}`);
    this.uint(data.length);
    this.ensure(data.length + 3);
    this.buf.set(data, this.pos);
    this.pos += data.length;
    this.pad(data.length);
    return this;
  }

  string(s: string, max = Infinity): this {
    // Reserve the worst case (3 bytes per UTF-16 unit), write in place.
    this.ensure(4 + s.length * 3 + 3);
    const start = this.pos + 4;
    const n = this.buf.write(s, start, 'utf8');
    if (n > max) throw new XdrError(`string longer than ${max} bytes: ${n}`);
    this.buf.writeUInt32BE(n, this.pos);
    this.pos = start + n;
    this.pad(n);
    return this;
  }

  /** Optional data (`T *x`): a bool then the value when present. */
  optional<T>(v: T | null | undefined, enc: (w: XdrWriter, v: T) => void): this {
    if (v === null || v === undefined) return this.int(0);
    this.int(1);
    enc(this, v);
    return this;
  }

  /** Variable-length array (`T x<max>`). */
  array<T>(items: readonly T[], enc: (w: XdrWriter, v: T) => void, max = Infinity): this {
    if (items.length > max) throw new XdrError(`array longer than ${max}: ${items.length}`);
    this.uint(items.length);
    for (const it of items) enc(this, it);
    return this;
  }

  /** Fixed-length array (`T x[n]`). */
  fixedArray<T>(items: readonly T[], n: number, enc: (w: XdrWriter, v: T) => void): this {
    if (items.length !== n) throw new XdrError(`fixed array needs ${n} items, got ${items.length}`);
    for (const it of items) enc(this, it);
    return this;
  }
}

export class XdrReader {
  buf: Buffer;
  pos: number;
  end: number;

  constructor(buf: Buffer, start = 0, end = buf.length) {
    this.buf = buf;
    this.pos = start;
    this.end = end;
  }

  get remaining(): number {
    return this.end - this.pos;
  }

  private need(n: number, what: string): void {
    if (this.pos + n > this.end) {
      throw new XdrError(`truncated XDR data reading ${what}: need ${n} bytes at offset ${this.pos}, have ${this.end - this.pos}`);
    }
  }

  int(): number {
    this.need(4, 'int');
    const v = this.buf.readInt32BE(this.pos);
    this.pos += 4;
    return v;
  }

  uint(): number {
    this.need(4, 'unsigned int');
    const v = this.buf.readUInt32BE(this.pos);
    this.pos += 4;
    return v;
  }

  bool(): boolean {
    const v = this.int();
    if (v !== 0 && v !== 1) throw new XdrError(`invalid XDR bool ${v}`);
    return v === 1;
  }

  hyper(): bigint {
    this.need(8, 'hyper');
    const v = this.buf.readBigInt64BE(this.pos);
    this.pos += 8;
    return v;
  }

  uhyper(): bigint {
    this.need(8, 'unsigned hyper');
    const v = this.buf.readBigUInt64BE(this.pos);
    this.pos += 8;
    return v;
  }

  /** Signed 64-bit as a number; throws when not exactly representable. */
  hyperNumber(): number {
    this.need(8, 'hyper');
    const hi = this.buf.readInt32BE(this.pos);
    const lo = this.buf.readUInt32BE(this.pos + 4);
    this.pos += 8;
    const v = hi * TWO_32 + lo;
    if (!Number.isSafeInteger(v)) throw new XdrError(`hyper ${this.buf.readBigInt64BE(this.pos - 8)} does not fit a safe integer`);
    return v;
  }

  /** Unsigned 64-bit as a number; throws when not exactly representable. */
  uhyperNumber(): number {
    this.need(8, 'unsigned hyper');
    const hi = this.buf.readUInt32BE(this.pos);
    const lo = this.buf.readUInt32BE(this.pos + 4);
    this.pos += 8;
    const v = hi * TWO_32 + lo;
    if (!Number.isSafeInteger(v)) throw new XdrError(`unsigned hyper ${this.buf.readBigUInt64BE(this.pos - 8)} does not fit a safe integer`);
    return v;
  }

  double(): number {
    this.need(8, 'double');
    const v = this.buf.readDoubleBE(this.pos);
    this.pos += 8;
    return v;
  }

  private skipPad(len: number): void {
    const p = (4 - (len & 3)) & 3;
    this.need(p, 'padding');
    this.pos += p;
  }

  /** Fixed-length opaque, returned as a copy. */
  opaqueFixed(len: number): Buffer {
    this.need(len, 'fixed opaque');
    const out = Buffer.from(this.buf.subarray(this.pos, this.pos + len));
    this.pos += len;
    this.skipPad(len);
    return out;
  }

  opaque(max = Infinity): Buffer {
    const len = this.uint();
    if (len > max) throw new XdrError(`opaque length ${len} exceeds limit ${max}`);
    this.need(len, 'opaque');
    const out = Buffer.from(this.buf.subarray(this.pos, this.pos + len));
    this.pos += len;
    this.skipPad(len);
    return out;
  }

  string(max = Infinity): string {
    const len = this.uint();
    if (len > max) throw new XdrError(`string length ${len} exceeds limit ${max}`);
    this.need(len, 'string');
    const s = this.buf.toString('utf8', this.pos, this.pos + len);
    this.pos += len;
    this.skipPad(len);
    return s;
  }

  optional<T>(dec: (r: XdrReader) => T): T | null {
    return this.bool() ? dec(this) : null;
  }

  array<T>(dec: (r: XdrReader) => T, max = Infinity): T[] {
    const n = this.uint();
    if (n > max) throw new XdrError(`array length ${n} exceeds limit ${max}`);
    // Each element takes at least 4 bytes: refuse absurd counts before allocating.
    if (n * 4 > this.end - this.pos) throw new XdrError(`array length ${n} exceeds the data left (${this.end - this.pos} bytes)`);
    const out = new Array<T>(n);
    for (let i = 0; i < n; i++) out[i] = dec(this);
    return out;
  }

  fixedArray<T>(n: number, dec: (r: XdrReader) => T): T[] {
    const out = new Array<T>(n);
    for (let i = 0; i < n; i++) out[i] = dec(this);
    return out;
  }

  /** Throws unless every byte was consumed (catches layout mistakes). */
  done(what = 'message'): void {
    if (this.pos !== this.end) throw new XdrError(`${this.end - this.pos} unexpected trailing bytes after ${what}`);
  }
}
