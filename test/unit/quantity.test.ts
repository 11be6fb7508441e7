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
  [8589934592, /quote plain numbers/],
  [null, /must be a quantity string/],
  [{ a: 1 }, /must be a quantity string/],
  ['.', /not a quantity/],
  ['+', /not a quantity/],
  ['e3', /not a quantity/],
];

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
