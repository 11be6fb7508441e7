/**
 * Exact Kubernetes resource quantities for memory, as integer bytes.
 *
 * Grammar (k8s.io/apimachinery/pkg/api/resource):
 *   quantity ::= sign? number suffix
 *   number   ::= digits | digits "." digits? | "." digits
 *   suffix   ::= "" | binarySI (Ki Mi Gi Ti Pi Ei) | decimalSI (m k M G T P E)
 *              | ("e" | "E") sign? digits
 * Kubernetes rounds fractional values up to the nearest unit; for memory we
 * refuse them instead, because silently rounding "0.5" or "1500m" to a byte
 * hides a mistake. No floating point anywhere: numbers are scaled bigints.
 *
 * Like every Kubernetes quantity field (x-kubernetes-int-or-string), a plain
 * integer is accepted too: `maxMemory: 4294967296` means 4Gi. JSON and YAML
 * parsers hand integers to JavaScript as doubles, which hold every integer only
 * up to 2^53-1; beyond that `9007199254740993` arrives as ...992. We cannot tell
 * a rounded integer from an exact one, so integers above MAX_INTEGER_BYTES are
 * refused with a message that says to quote them (a string is parsed exactly).
 * The CRD refuses the same integers (src/api/fields.ts), so `kubectl apply` and
 * `vmmem validate` agree, and the operator never reads a rounded value back.
 */

export class QuantityError extends Error {
  readonly field: string;
  readonly value: unknown;
  constructor(field: string, value: unknown, reason: string) {
    super(`${field}: ${JSON.stringify(value)} ${reason}`);
    this.name = 'QuantityError';
    this.field = field;
    this.value = value;
  }
}

const BINARY: Record<string, bigint> = {
  Ki: 1n << 10n,
  Mi: 1n << 20n,
  Gi: 1n << 30n,
  Ti: 1n << 40n,
  Pi: 1n << 50n,
  Ei: 1n << 60n,
};
const DECIMAL_EXPONENT: Record<string, number> = { m: -3, '': 0, k: 3, M: 6, G: 9, T: 12, P: 15, E: 18 };

/** Anything past 2^63-1 bytes (Kubernetes' int64 limit) is not memory any hypervisor has. */
export const MAX_BYTES = (1n << 63n) - 1n;
/** Largest integer (JSON/YAML number) taken as bytes: 2^53-1, the last one a double holds exactly. */
export const MAX_INTEGER_BYTES = Number.MAX_SAFE_INTEGER;

/** Longest quantity string we accept; also bounds the CRD's CEL cost. */
export const MAX_QUANTITY_LENGTH = 64;

const NUMBER_RE = /^([+-]?)(\d+(?:\.\d*)?|\.\d+)(.*)$/;
const EXPONENT_RE = /^[eE]([+-]?\d+)$/;

/** The OpenAPI pattern Kubernetes itself uses for quantities. */
export const QUANTITY_PATTERN =
  '^(\\+|-)?(([0-9]+(\\.[0-9]*)?)|(\\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\\+|-)?(([0-9]+(\\.[0-9]*)?)|(\\.[0-9]+))))?$';

/**
 * Parses a memory quantity to bytes. `field` names the field in every error
 * (e.g. "spec.maxMemory") so callers can pass errors straight to users.
 */
export function parseQuantity(value: unknown, field: string): bigint {
  if (typeof value === 'number') return integerBytes(value, field);
  if (typeof value !== 'string') throw new QuantityError(field, value, 'must be a quantity such as "8Gi" or a whole number of bytes');
  const text = value.trim();
  if (text !== value || text === '') throw new QuantityError(field, value, 'is not a quantity (expected e.g. "8Gi", "1536Mi", "4G")');
  if (text.length > MAX_QUANTITY_LENGTH) throw new QuantityError(field, value, `is longer than ${MAX_QUANTITY_LENGTH} characters`);

  const m = NUMBER_RE.exec(text);
  if (!m) throw new QuantityError(field, value, 'is not a quantity (expected e.g. "8Gi", "1536Mi", "4G")');
  const [, sign, number, suffix] = m as unknown as [string, string, string, string];

  const [intPart, fracPart = ''] = number.split('.') as [string, string?];
  const digits = BigInt((intPart || '0') + fracPart);
  // value = digits / 10^fracLen * multiplier, multiplier = 2^k or 10^e.
  let numerator = digits;
  let denominator = 10n ** BigInt(fracPart.length);

  if (suffix in BINARY) {
    numerator *= BINARY[suffix] as bigint;
  } else if (suffix in DECIMAL_EXPONENT) {
    numerator = scaleDecimal(numerator, DECIMAL_EXPONENT[suffix] as number, (d) => (denominator *= d));
  } else {
    const e = EXPONENT_RE.exec(suffix);
    if (!e) throw new QuantityError(field, value, `has an unknown suffix "${suffix}" (use Ki, Mi, Gi, Ti, Pi, Ei, k, M, G, T, P, E or an exponent like e9)`);
    const exponent = Number(e[1]);
    if (Math.abs(exponent) > 40) throw new QuantityError(field, value, 'is out of range');
    numerator = scaleDecimal(numerator, exponent, (d) => (denominator *= d));
  }

  if (sign === '-' && numerator !== 0n) throw new QuantityError(field, value, 'must not be negative');
  if (numerator % denominator !== 0n) throw new QuantityError(field, value, 'is not a whole number of bytes');
  const bytes = numerator / denominator;
  if (bytes > MAX_BYTES) throw new QuantityError(field, value, 'is too large (more than 2^63-1 bytes)');
  return bytes;
}

/** A JSON/YAML number as bytes: a whole, non-negative integer a double holds exactly. */
function integerBytes(value: number, field: string): bigint {
  if (!Number.isFinite(value)) throw new QuantityError(field, value, 'is not a quantity (expected e.g. "8Gi", "1536Mi", 4294967296)');
  if (!Number.isInteger(value)) throw new QuantityError(field, value, 'is not a whole number of bytes');
  if (value < 0) throw new QuantityError(field, value, 'must not be negative');
  if (value > MAX_INTEGER_BYTES) {
    // The digits shown are the double's, not necessarily what the file says: say so.
    throw new QuantityError(
      field,
      value,
      `is an integer above 2^53-1 (${MAX_INTEGER_BYTES}), where JSON and YAML numbers stop being exact (the file may say something else): write it as a quoted quantity string instead, e.g. "9007199254740993" or "8Pi"`,
    );
  }
  return BigInt(value);
}

function scaleDecimal(n: bigint, exponent: number, divide: (d: bigint) => void): bigint {
  if (exponent >= 0) return n * 10n ** BigInt(exponent);
  divide(10n ** BigInt(-exponent));
  return n;
}

/** True when `value` parses; never throws. */
export function isQuantity(value: unknown): boolean {
  try {
    parseQuantity(value, 'value');
    return true;
  } catch {
    return false;
  }
}

const UNITS: [string, bigint][] = [
  ...Object.entries(BINARY),
  ['k', 10n ** 3n],
  ['M', 10n ** 6n],
  ['G', 10n ** 9n],
  ['T', 10n ** 12n],
  ['P', 10n ** 15n],
  ['E', 10n ** 18n],
];
const UNITS_DESC = UNITS.sort(([, a], [, b]) => (a > b ? -1 : 1));

/**
 * Canonical memory formatting: the largest unit (binary or decimal) that
 * divides the value exactly, so 8Gi stays "8Gi" and 4G stays "4G"; plain
 * bytes otherwise. Always round-trips: parseQuantity(formatQuantity(b)) === b.
 */
export function formatQuantity(bytes: bigint): string {
  if (bytes < 0n) throw new RangeError(`formatQuantity: negative byte count ${bytes}`);
  if (bytes === 0n) return '0';
  for (const [suffix, unit] of UNITS_DESC) if (bytes % unit === 0n) return `${bytes / unit}${suffix}`;
  return bytes.toString();
}

/** Formats a limit that may be unlimited, as users write it in a spec. */
export function formatLimit(limit: bigint | 'unlimited'): string {
  return limit === 'unlimited' ? 'Unlimited' : formatQuantity(limit);
}

/** Rounds bytes up to a multiple of `granularity` (KiB for libvirt, MiB / 4 MiB for vSphere). */
export function roundUp(bytes: bigint, granularity: bigint): bigint {
  const rest = bytes % granularity;
  return rest === 0n ? bytes : bytes + granularity - rest;
}
