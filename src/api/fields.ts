/**
 * Building blocks shared by the vmmem.io schemas. Each carries, in one
 * place, the TypeScript check (zod), the OpenAPI shape and the CEL rule the
 * API server evaluates, so `vmmem validate` and `kubectl apply` agree.
 */
import { z } from 'zod';
import { MAX_BYTES, MAX_INTEGER_BYTES, MAX_QUANTITY_LENGTH, parseQuantity, QUANTITY_PATTERN, QuantityError } from './quantity.ts';

/** A CEL rule as written into the CRD (x-kubernetes-validations). */
export interface CelRule {
  rule: string;
  message?: string;
  messageExpression?: string;
  fieldPath?: string;
  reason?: 'FieldValueInvalid' | 'FieldValueRequired' | 'FieldValueForbidden' | 'FieldValueDuplicate';
}

// CEL's isInteger() looks at how a quantity is written ("1.5Gi" is not an
// "integer" to it although it is 1610612736 bytes), so test the value: below
// 2^53 a double holds every whole number exactly, and above it no fraction of a
// byte is representable anyway (the controller checks those exactly).
const WHOLE_BYTES_STRING_CEL =
  "isQuantity(self) && quantity(self).compareTo(quantity('0')) >= 0 && (!quantity(self).isLessThan(quantity('8Pi')) || quantity(self).asApproximateFloat() == double(int(quantity(self).asApproximateFloat())))";

// Quantity fields are x-kubernetes-int-or-string, as every Kubernetes quantity is: in CEL `self`
// is then an int or a string, and each rule says which it handles. Integers above 2^53-1 are
// refused although int64 holds them: JSON numbers reach JavaScript (vmmem validate, the operator's
// own reads) as doubles, which would round them (src/api/quantity.ts says more).
const STRING_RULE = (rule: string) => `type(self) != string || (${rule})`;
// Kubernetes' quantity() holds arbitrarily large values exactly (inf.Dec), so this compares exactly.
const AT_MOST_INT64_CEL = `type(self) != string || !isQuantity(self) || quantity(self).compareTo(quantity('${MAX_BYTES}')) <= 0`;
const AT_MOST_INT64_MESSAGE = `must be at most 2^63-1 bytes (${MAX_BYTES})`;
const NON_NEGATIVE_INT_CEL = 'type(self) != int || self >= 0';
const EXACT_INT_CEL = `type(self) != int || self <= ${MAX_INTEGER_BYTES}`;
const WHOLE_BYTES_MESSAGE = 'must be a whole, non-negative number of bytes written as a quantity, e.g. 8Gi, 1536Mi, 4G, or as an integer, e.g. 4294967296';
const EXACT_INT_MESSAGE = `an integer must be at most 2^53-1 (${MAX_INTEGER_BYTES}): larger JSON numbers are not exact in JavaScript clients such as vmmem; write it as a quoted quantity string, e.g. "8Pi"`;

/** The structural-schema shape of an int-or-string quantity (what controller-gen emits for resource.Quantity). */
function intOrStringMeta(description: string, pattern: string, rules: CelRule[]) {
  return {
    description,
    anyOf: [{ type: 'integer' }, { type: 'string' }],
    'x-kubernetes-int-or-string': true,
    pattern,
    maxLength: MAX_QUANTITY_LENGTH,
    'x-kubernetes-validations': rules,
  };
}

/** zod's own union message is "Invalid input": say what is missing or what a quantity looks like. */
const intOrString = () =>
  z.union([z.number(), z.string()], {
    error: (issue) =>
      issue.input === undefined
        ? 'is required'
        : `must be a quantity such as "8Gi" or a whole number of bytes, got ${issue.input === null ? 'null' : Array.isArray(issue.input) ? 'a list' : typeof issue.input}`,
  });

const quantityMessage = (err: unknown) => (err instanceof QuantityError ? err.message.replace(/^value: /, '') : String(err));

/**
 * A memory quantity (e.g. "8Gi", or an integer number of bytes) that must be a whole, non-negative
 * number of bytes.
 */
export function quantityField(description: string, opts: { positive?: boolean } = {}) {
  const rules: CelRule[] = [
    { rule: STRING_RULE(WHOLE_BYTES_STRING_CEL), message: WHOLE_BYTES_MESSAGE },
    { rule: AT_MOST_INT64_CEL, message: AT_MOST_INT64_MESSAGE },
    { rule: NON_NEGATIVE_INT_CEL, message: WHOLE_BYTES_MESSAGE },
    { rule: EXACT_INT_CEL, message: EXACT_INT_MESSAGE },
  ];
  if (opts.positive) {
    rules.push({ rule: `type(self) == int ? self > 0 : (!isQuantity(self) || quantity(self).isGreaterThan(quantity('0')))`, message: 'must be greater than 0' });
  }
  return intOrString()
    .superRefine((value, ctx) => {
      try {
        const bytes = parseQuantity(value, 'value');
        if (opts.positive && bytes === 0n) ctx.addIssue({ code: 'custom', message: `${JSON.stringify(value)} must be greater than 0` });
      } catch (err) {
        ctx.addIssue({ code: 'custom', message: quantityMessage(err) });
      }
    })
    .meta(intOrStringMeta(description, QUANTITY_PATTERN, rules));
}

export const UNLIMITED = 'Unlimited';

/** A limit: a memory quantity, an integer number of bytes, or the literal "Unlimited". */
export function limitField(description: string) {
  return intOrString()
    .superRefine((value, ctx) => {
      if (value === UNLIMITED) return;
      try {
        parseQuantity(value, 'value');
      } catch (err) {
        ctx.addIssue({ code: 'custom', message: `${quantityMessage(err)}; or write "Unlimited"` });
      }
    })
    .meta(
      intOrStringMeta(description, `^Unlimited$|${QUANTITY_PATTERN}`, [
        {
          rule: STRING_RULE(`self == '${UNLIMITED}' || (${WHOLE_BYTES_STRING_CEL})`),
          message: `must be "${UNLIMITED}" or a whole, non-negative number of bytes, e.g. 16Gi or 17179869184`,
        },
        { rule: AT_MOST_INT64_CEL, message: AT_MOST_INT64_MESSAGE },
        { rule: NON_NEGATIVE_INT_CEL, message: `must be "${UNLIMITED}" or a whole, non-negative number of bytes, e.g. 16Gi or 17179869184` },
        { rule: EXACT_INT_CEL, message: EXACT_INT_MESSAGE },
      ]),
    );
}

/** DNS-1123 subdomain, the name rule for most Kubernetes objects. */
export const DNS1123_SUBDOMAIN = '^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$';

export function objectNameField(description: string) {
  return z
    .string()
    .min(1)
    .max(253)
    .regex(new RegExp(DNS1123_SUBDOMAIN), 'must be a lowercase DNS-1123 name (a-z, 0-9, "-", ".")')
    .meta({ description });
}

/** A local object reference, as Kubernetes writes them. */
export function localRef(description: string, nameDescription: string) {
  return z.strictObject({ name: objectNameField(nameDescription) }).meta({ description });
}
