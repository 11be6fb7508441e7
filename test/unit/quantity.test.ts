import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { formatQuantity, parseQuantity, QuantityError, roundUp, QUANTITY_PATTERN } from '../../src/api/quantity.ts';

// Cases follow k8s.io/apimachinery/pkg/api/resource quantity_test.go, restricted
// to what is a whole number of bytes (vmmem refuses what Kubernetes would round).
const valid: [string, bigint][] = [
  ['0', 0n],
  ['-0', 0n],
  ['+0', 0n],
  ['1', 1n],
  ['+5', 5n],
  ['5.', 5n],
  ['1000m', 1n],
  ['5000m', 5n],
  ['1k', 1000n],
  ['1Ki', 1024n],
  ['.5Ki', 512n],
  ['0.5Ki', 512n],
  ['1.5Gi', 1610612736n],
  ['1536Mi', 1610612736n],
  ['8Gi', 8n << 30n],
  ['4G', 4_000_000_000n],
  ['1M', 1_000_000n],
  ['1T', 10n ** 12n],
  ['1P', 10n ** 15n],
  ['1E', 10n ** 18n],
  ['7Ei', 7n << 60n],
  ['1e3', 1000n],
  ['1E3', 1000n],
  ['1e+3', 1000n],
  ['12e-1', undefined as unknown as bigint], // placeholder replaced below
  ['1.5e9', 1_500_000_000n],
  ['100e-2', 1n],
  ['0.001k', 1n],
  ['1.000Gi', 1n << 30n],
  ['9223372036854775807', (1n << 63n) - 1n],
];
valid.splice(valid.findIndex(([s]) => s === '12e-1'), 1);

test('parses Kubernetes quantities to exact bytes', () => {
  for (const [text, bytes] of valid) assert.equal(parseQuantity(text, 'spec.maxMemory'), bytes, text);
});

const invalid: [unknown, RegExp][] = [
  ['8GB', /unknown suffix "GB"/],
  ['eight', /not a quantity/],
  ['1.2.3Gi', /unknown suffix/],
  ['', /not a quantity/],
  [' 8Gi', /not a quantity/],
  ['8 Gi', /unknown suffix/],
  ['-1Gi', /must not be negative/],
  ['-1', /must not be negative/],
  ['0.5', /not a whole number of bytes/],
  ['1500m', /not a whole number of bytes/],
  ['1m', /not a whole number of bytes/],
  ['1e-1', /not a whole number of bytes/],
  ['1.1Ki', /not a whole number of bytes/],
  ['8gi', /unknown suffix/],
  ['8KI', /unknown suffix/],
  ['8Ki8', /unknown suffix/],
  ['9223372036854775808', /too large/],
  ['16Ei', /too large/],
  ['1e400', /out of range/],
  ['1'.repeat(65), /longer than 64/],
  [null, /must be a quantity such as "8Gi" or a whole number of bytes/],
  [{ a: 1 }, /must be a quantity such as "8Gi" or a whole number of bytes/],
  [true, /must be a quantity such as/],
  // Integers, as JSON/YAML numbers: whole, non-negative, and exact in a double.
  [-1, /must not be negative/],
  [1.5, /not a whole number of bytes/],
  [Number.NaN, /not a quantity/],
  [Number.POSITIVE_INFINITY, /not a quantity/],
  [2 ** 53, /above 2\^53-1 \(9007199254740991\).*stop being exact.*quoted quantity string/],
  // eslint-disable-next-line no-loss-of-precision -- the point: 2^53+1 written in a file reads as 2^53
  [9007199254740993, /^spec.memory: 9007199254740992 is an integer above .*the file may say something else/],
  [1e20, /above 2\^53-1/],
  ['.', /not a quantity/],
  ['+', /not a quantity/],
  ['e3', /not a quantity/],
];

test('integers are bytes, as in every Kubernetes quantity field, up to 2^53-1 (exact in a double)', () => {
  assert.equal(parseQuantity(4294967296, 'spec.maxMemory'), 4n << 30n);
  assert.equal(parseQuantity(0, 'spec.reservation'), 0n);
  assert.equal(parseQuantity(-0, 'spec.reservation'), 0n);
  assert.equal(parseQuantity(Number.MAX_SAFE_INTEGER, 'spec.maxMemory'), 9007199254740991n);
  // The same value written as a string is exact at any size up to 2^63-1.
  assert.equal(parseQuantity('9007199254740993', 'spec.maxMemory'), 9007199254740993n);
});

test('rejects what is not a whole, non-negative number of bytes, naming the field', () => {
  for (const [text, why] of invalid) {
    assert.throws(
      () => parseQuantity(text, 'spec.memory'),
      (err: unknown) => err instanceof QuantityError && err.field === 'spec.memory' && err.message.startsWith('spec.memory: ') && why.test(err.message),
      `${JSON.stringify(text)} should fail with ${why}`,
    );
  }
});

test('formats canonically', () => {
  assert.equal(formatQuantity(0n), '0');
  assert.equal(formatQuantity(1n), '1');
  assert.equal(formatQuantity(1024n), '1Ki');
  assert.equal(formatQuantity(1536n << 20n), '1536Mi');
  assert.equal(formatQuantity(8n << 30n), '8Gi');
  assert.equal(formatQuantity(4_000_000_000n), '4G');
  assert.equal(formatQuantity(1500n), '1500');
  assert.equal(formatQuantity(1000n), '1k');
  assert.throws(() => formatQuantity(-1n), RangeError);
});

test('parse(format(b)) === b for every byte count, and the format matches Kubernetes\' own pattern', () => {
  const pattern = new RegExp(QUANTITY_PATTERN);
  fc.assert(
    fc.property(fc.bigInt({ min: 0n, max: (1n << 63n) - 1n }), (b) => {
      const text = formatQuantity(b);
      return parseQuantity(text, 'f') === b && pattern.test(text);
    }),
    { numRuns: 5000 },
  );
  // Byte counts with structure (multiples of units) exercise every suffix.
  fc.assert(
    fc.property(fc.bigInt({ min: 0n, max: 1n << 20n }), fc.constantFrom(1n, 1000n, 1024n, 10n ** 6n, 1n << 20n, 1n << 30n), (n, unit) => {
      return parseQuantity(formatQuantity(n * unit), 'f') === n * unit;
    }),
    { numRuns: 2000 },
  );
});

test('every valid quantity also matches the Kubernetes OpenAPI pattern', () => {
  const pattern = new RegExp(QUANTITY_PATTERN);
  for (const [text] of valid) assert.ok(pattern.test(text), text);
});

test('roundUp rounds to granularity', () => {
  assert.equal(roundUp(1n, 1024n), 1024n);
  assert.equal(roundUp(1024n, 1024n), 1024n);
  assert.equal(roundUp(1025n, 1024n), 2048n);
  assert.equal(roundUp(0n, 4n << 20n), 0n);
});
