/**
 * Building blocks shared by the vmmem.io schemas. Each carries, in one
 * place, the TypeScript check (zod), the OpenAPI shape and the CEL rule the
 * API server evaluates, so `vmmem validate` and `kubectl apply` agree.
 */
import { z } from 'zod';
import { MAX_QUANTITY_LENGTH, parseQuantity, QUANTITY_PATTERN, QuantityError } from './quantity.ts';

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
const WHOLE_BYTES_CEL =
  "isQuantity(self) && quantity(self).compareTo(quantity('0')) >= 0 && (!quantity(self).isLessThan(quantity('8Pi')) || quantity(self).asApproximateFloat() == double(int(quantity(self).asApproximateFloat())))";

/** A memory quantity string (e.g. "8Gi") that must be a whole, non-negative number of bytes. */
export function quantityField(description: string, opts: { positive?: boolean } = {}) {
  const rules: CelRule[] = [{ rule: WHOLE_BYTES_CEL, message: 'must be a whole, non-negative number of bytes written as a quantity, e.g. 8Gi, 1536Mi, 4G' }];
  if (opts.positive) rules.push({ rule: `!isQuantity(self) || quantity(self).isGreaterThan(quantity('0'))`, message: 'must be greater than 0' });
  return z
    .string()
    .superRefine((value, ctx) => {
      try {
        const bytes = parseQuantity(value, 'value');
        if (opts.positive && bytes === 0n) ctx.addIssue({ code: 'custom', message: `${JSON.stringify(value)} must be greater than 0` });
      } catch (err) {
        ctx.addIssue({ code: 'custom', message: err instanceof QuantityError ? err.message.replace(/^value: /, '') : String(err) });
      }
    })
    .meta({ description, pattern: QUANTITY_PATTERN, maxLength: MAX_QUANTITY_LENGTH, 'x-kubernetes-validations': rules });
}

export const UNLIMITED = 'Unlimited';

/** A limit: a memory quantity or the literal "Unlimited". */
export function limitField(description: string) {
  return z
    .string()
    .superRefine((value, ctx) => {
      if (value === UNLIMITED) return;
      try {
        parseQuantity(value, 'value');
      } catch (err) {
        const why = err instanceof QuantityError ? err.message.replace(/^value: /, '') : String(err);
        ctx.addIssue({ code: 'custom', message: `${why}; or write "Unlimited"` });
      }
    })
    .meta({
      description,
      pattern: `^Unlimited$|${QUANTITY_PATTERN}`,
      maxLength: MAX_QUANTITY_LENGTH,
      'x-kubernetes-validations': [
        { rule: `self == '${UNLIMITED}' || (${WHOLE_BYTES_CEL})`, message: `must be "${UNLIMITED}" or a whole, non-negative number of bytes, e.g. 16Gi` },
      ],
    });
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
