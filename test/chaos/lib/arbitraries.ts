// fast-check generators for vmmem manifests, valid and invalid, shared by the fuzz tests
// (test/unit/fuzz*.test.ts, test/peer/kube/fuzz*.test.ts) and the chaos suite.
//
// The generators aim at the edges the validators must hold: quantities that are huge, negative,
// fractional, in exponent form, full-width unicode digits, too long, of the wrong JSON type; names
// that are not DNS-1123; vm refs with both or neither of name/uuid; unknown keys; deep nesting.
import fc from 'fast-check';

const SUFFIXES = ['', 'Ki', 'Mi', 'Gi', 'Ti', 'Pi', 'Ei', 'k', 'M', 'G', 'T', 'P', 'E', 'm', 'n', 'u'];

/** A string that is (mostly) a Kubernetes quantity: the part both validators must agree on. */
export const quantityText: fc.Arbitrary<string> = fc.oneof(
  // ordinary, mostly valid
  { weight: 6, arbitrary: fc.tuple(fc.integer({ min: 1, max: 64 }), fc.constantFrom('Ki', 'Mi', 'Gi')).map(([n, s]) => `${n}${s}`) },
  // any digits, any suffix
  { weight: 4, arbitrary: fc.tuple(fc.bigInt({ min: 0n, max: 10n ** 30n }), fc.constantFrom(...SUFFIXES)).map(([n, s]) => `${n}${s}`) },
  // signs, fractions, exponents
  {
    weight: 4,
    arbitrary: fc
      .tuple(fc.constantFrom('', '+', '-'), fc.nat({ max: 99999 }), fc.option(fc.nat({ max: 999 }), { nil: undefined }), fc.constantFrom(...SUFFIXES, 'e3', 'e-3', 'E+9', 'e18', 'e19', 'e400', 'e-400'))
      .map(([sign, n, frac, s]) => `${sign}${n}${frac === undefined ? '' : `.${frac}`}${s}`),
  },
  // edges
  {
    weight: 3,
    arbitrary: fc.constantFrom(
      '0', '0Gi', '1', '8Gi', '8GB', '8gi', 'Unlimited', 'unlimited', '', ' ', ' 8Gi', '8Gi ', '1.5Gi', '.5Gi', '1.Gi', '0.5',
      '1500m', '9223372036854775807', '9223372036854775808', '8Ei', '7Ei', '16Ei', '99999999999999999999999999Ei',
      '1e1000', '８Gi', '8\u00a0Gi', '8Gi\n', '٨Gi', '1_024Mi', '0x10', 'NaN', 'Infinity', '1.2.3Gi', '--1Gi', '+1Gi',
      '1'.repeat(65), '1'.repeat(64), `${'1'.repeat(62)}Ki`,
    ),
  },
  // anything
  { weight: 1, arbitrary: fc.string({ maxLength: 20, unit: 'grapheme' }) },
);

/** A value of any JSON type, nested a little. */
const wrongType: fc.Arbitrary<unknown> = fc.oneof(
  fc.integer(),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.boolean(),
  fc.constant(null),
  fc.array(fc.string({ maxLength: 5 }), { maxLength: 3 }),
  fc.dictionary(fc.string({ minLength: 1, maxLength: 5 }), fc.string({ maxLength: 5 }), { maxKeys: 3 }),
);

/**
 * A quantity written as a JSON/YAML number, as Kubernetes quantity fields (int-or-string) allow:
 * ordinary byte counts, zero and negatives, and integers at and beyond 2^53 (where a double stops
 * being exact, so both validators must refuse them), up to and past int64.
 */
export const quantityInteger: fc.Arbitrary<number> = fc.oneof(
  { weight: 4, arbitrary: fc.integer({ min: 1, max: 64 }).map((n) => n * 2 ** 30) },
  { weight: 2, arbitrary: fc.maxSafeNat() },
  { weight: 1, arbitrary: fc.integer({ min: -(2 ** 31), max: 0 }) },
  {
    weight: 2,
    arbitrary: fc.constantFrom(0, 1, 2 ** 53 - 1, 2 ** 53, 2 ** 53 + 2, 2 ** 62, 2 ** 63, 2 ** 64, 1e20, -(2 ** 53)),
  },
);

export const quantityValue: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 12, arbitrary: quantityText },
  { weight: 3, arbitrary: quantityInteger },
  { weight: 1, arbitrary: wrongType },
);

export const dnsName: fc.Arbitrary<string> = fc
  .tuple(fc.constantFrom('a', 'b', 'web', 'db', 'x9'), fc.nat({ max: 999 }))
  .map(([p, n]) => `${p}-${n}`);

const badName: fc.Arbitrary<unknown> = fc.oneof(
  fc.constantFrom('', 'Upper', 'under_score', '-lead', 'trail-', 'ünï', 'a'.repeat(254), 'a..b', 'a b'),
  fc.string({ maxLength: 12, unit: 'grapheme' }),
  wrongType,
);

const uuid: fc.Arbitrary<string> = fc.oneof(
  fc.uuid(),
  fc.uuid().map((u) => u.toUpperCase()),
  fc.uuid().map((u) => u.replaceAll('-', '')),
  fc.constantFrom('not-a-uuid', '5f0c', '', 'zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz'),
);

export const vmRef: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ name: fc.oneof(dnsName, fc.string({ minLength: 0, maxLength: 12, unit: 'grapheme' }), fc.constant('v'.repeat(256))) }) },
  { weight: 3, arbitrary: fc.record({ uuid }) },
  { weight: 1, arbitrary: fc.record({ name: dnsName, uuid }) },
  { weight: 1, arbitrary: fc.constant({}) },
  { weight: 1, arbitrary: fc.record({ name: dnsName, typo: fc.string({ maxLength: 4 }) }) },
  { weight: 1, arbitrary: wrongType },
);

const SPEC_KEYS = ['hypervisorRef', 'vm', 'maxMemory', 'memory', 'reservation', 'limit', 'allowUnsafeLimit'] as const;

export interface SpecOptions {
  /** Hypervisor name for valid refs (default "hv"). */
  hypervisor?: string;
  /** VM names to pick from for valid refs. */
  vmNames?: readonly string[];
}

/** A VMM spec: each field valid, invalid, missing, or of the wrong type; sometimes an unknown key. */
export function vmmSpec(opts: SpecOptions = {}): fc.Arbitrary<Record<string, unknown>> {
  const hv = opts.hypervisor ?? 'hv';
  const goodRef = opts.vmNames?.length ? fc.constantFrom(...opts.vmNames).map((name) => ({ name })) : fc.constant({ name: 'vm-1' });
  return fc
    .record(
      {
        hypervisorRef: fc.oneof({ weight: 10, arbitrary: fc.constant({ name: hv }) }, { weight: 1, arbitrary: badName.map((name) => ({ name })) }, { weight: 1, arbitrary: wrongType }),
        vm: fc.oneof({ weight: 6, arbitrary: goodRef }, { weight: 3, arbitrary: vmRef }),
        maxMemory: quantityValue,
        memory: quantityValue,
        reservation: quantityValue,
        limit: fc.oneof(quantityValue, fc.constant('Unlimited')),
        allowUnsafeLimit: fc.oneof({ weight: 4, arbitrary: fc.boolean() }, { weight: 1, arbitrary: wrongType }),
        extra: fc.constantFrom('maxMemroy', 'memoryLimit', 'x', 'ünicode'),
      },
      { requiredKeys: ['hypervisorRef', 'vm'] },
    )
    .map((r) => {
      // `extra` stands for an unknown key: rename it to the chosen name.
      const { extra, ...rest } = r as Record<string, unknown> & { extra?: string };
      const out: Record<string, unknown> = { ...rest };
      if (extra !== undefined) out[extra] = '1Gi';
      return out;
    });
}

/** A whole VMM object (apiVersion/kind/metadata + spec). */
export function vmmObject(name: string, spec: unknown, namespace?: string): Record<string, unknown> {
  return {
    apiVersion: 'vmmem.io/v1alpha1',
    kind: 'VirtualMachineMemory',
    metadata: { name, ...(namespace ? { namespace } : {}) },
    spec,
  };
}

/** Deeply nested garbage (a YAML/JSON bomb in small). */
export const deepValue: fc.Arbitrary<unknown> = fc.nat({ max: 400 }).map((depth) => {
  let v: unknown = 'leaf';
  for (let i = 0; i < depth; i++) v = i % 2 ? [v] : { k: v };
  return v;
});

export { SPEC_KEYS };

/** A Hypervisor spec, valid or not. */
export const hypervisorSpec: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 6, arbitrary: fc.record({
    uri: fc.oneof(fc.constantFrom('qemu:///system', 'qemu+ssh://root@h/system', 'https://vc/sdk', 'sim:///x/inv.yaml', 'xen:///system', 'test+unix:///default', 'vmware://x', '', 'qemu:///sys tem', 'https://'), fc.string({ maxLength: 20, unit: 'grapheme' })),
    syncInterval: fc.oneof(fc.constantFrom('5m', '30s', '1h', '0s', '5', '5 m', '-1m', '1y', '9999999999h'), fc.string({ maxLength: 6 })),
    tls: fc.oneof(fc.record({ insecureSkipVerify: fc.oneof(fc.boolean(), fc.constant('yes')) }), fc.constant({ insecureSkipVerfy: true })),
  }, { requiredKeys: [] }) },
  { weight: 1, arbitrary: wrongType },
  { weight: 1, arbitrary: deepValue },
);

/** A spec the schema accepts: maxMemory 1..16 GiB in 256 MiB steps, memory ≤ maxMemory, optional limit. */
export function validSpec(opts: SpecOptions = {}): fc.Arbitrary<Record<string, unknown>> {
  const names = opts.vmNames?.length ? opts.vmNames : ['vm-1'];
  return fc
    .record({
      vm: fc.constantFrom(...names),
      max: fc.integer({ min: 4, max: 64 }),
      mem: fc.option(fc.integer({ min: 1, max: 64 }), { nil: undefined }),
      limit: fc.option(fc.oneof(fc.constant('Unlimited'), fc.integer({ min: 1, max: 96 })), { nil: undefined }),
    })
    .map(({ vm, max, mem, limit }) => {
      const spec: Record<string, unknown> = { hypervisorRef: { name: opts.hypervisor ?? 'hv' }, vm: { name: vm }, maxMemory: `${max * 256}Mi` };
      if (mem !== undefined) spec.memory = `${Math.min(mem, max) * 256}Mi`;
      if (limit !== undefined) spec.limit = limit === 'Unlimited' ? limit : `${(limit as number) * 256}Mi`;
      return spec;
    });
}
