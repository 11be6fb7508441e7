/**
 * Structured logging: pino, one JSON object per line on stdout, and Secret values never logged.
 *
 * Three layers keep secrets out of the output:
 * 1. pino `redact` paths (REDACT_PATHS) censor well-known secret fields by path;
 * 2. every logged object (and child binding) is walked: any key named like a secret
 *    (SECRET_KEYS, any depth, case-insensitive) is censored, and strings are scrubbed by (3);
 * 3. `registerSecret(value)` remembers secret values seen at runtime (a password read from a
 *    Secret, a session token), and `redactText()` replaces them in free text: messages, error
 *    messages and stacks, strings inside logged objects.
 */
import { Buffer } from 'node:buffer';
import pino from 'pino';
import type { DestinationStream, Level, Logger as PinoLogger, LoggerOptions as PinoOptions } from 'pino';

export const CENSOR = '[REDACTED]';

/** pino redact paths (fast-redact syntax: `*.x` is one level deep). */
export const REDACT_PATHS: readonly string[] = [
  'password',
  '*.password',
  'token',
  '*.token',
  'credentials',
  '*.credentials',
  'tls.key',
  '*["tls.key"]',
  '["tls.key"]',
  '["ssh-privatekey"]',
  '*["ssh-privatekey"]',
  'data',
  'stringData',
  '*.stringData',
  'authorization',
  '*.authorization',
  'cookie',
  '*.cookie',
  '*.headers.authorization',
  '*.headers.cookie',
  '*.headers["set-cookie"]',
];

/** Keys censored at any depth (compared lower-cased). */
export const SECRET_KEYS: ReadonlySet<string> = new Set([
  'password',
  'passwd',
  'passphrase',
  'token',
  'bearertoken',
  'accesstoken',
  'refreshtoken',
  'apikey',
  'credentials',
  'secret',
  'privatekey',
  'ssh-privatekey',
  'tls.key',
  'client-key',
  'client-key-data',
  'stringdata',
  'authorization',
  'proxy-authorization',
  'cookie',
  'set-cookie',
]);

/** Registered values shorter than this are ignored: scrubbing them would mangle every line. */
export const MIN_SECRET_LENGTH = 4;

const secrets = new Set<string>();
let secretPattern: RegExp | undefined;

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

function rebuild(): void {
  secretPattern =
    secrets.size === 0
      ? undefined
      : new RegExp(
          [...secrets]
            .sort((a, b) => b.length - a.length)
            .map(escapeRegExp)
            .join('|'),
          'g',
        );
}

function variants(value: string): string[] {
  const out = [value];
  const uri = encodeURIComponent(value);
  if (uri !== value) out.push(uri);
  out.push(Buffer.from(value, 'utf8').toString('base64'));
  return out.filter((v) => v.length >= MIN_SECRET_LENGTH);
}

/**
 * Remembers a secret value (and its URI-encoded and base64 forms) so `redactText` and every
 * logger scrub it from text. Values shorter than MIN_SECRET_LENGTH are ignored.
 */
export function registerSecret(value: string | Buffer | undefined | null): void {
  if (value === undefined || value === null) return;
  const text = typeof value === 'string' ? value : value.toString('utf8');
  if (text.length < MIN_SECRET_LENGTH) return;
  let changed = false;
  for (const v of variants(text)) {
    if (!secrets.has(v)) {
      secrets.add(v);
      changed = true;
    }
  }
  if (changed) rebuild();
}

/** Forgets a value registered with `registerSecret` (e.g. after a credential rotation). */
export function unregisterSecret(value: string): void {
  let changed = false;
  for (const v of variants(value)) changed = secrets.delete(v) || changed;
  if (changed) rebuild();
}

/** Forgets every registered secret (tests). */
export function clearSecrets(): void {
  secrets.clear();
  rebuild();
}

/** Replaces every registered secret value in `s` with `[REDACTED]`. */
export function redactText(s: string): string {
  if (secretPattern === undefined || s.length === 0) return s;
  secretPattern.lastIndex = 0;
  return s.replace(secretPattern, CENSOR);
}

const MAX_DEPTH = 10;

function isPlainObject(v: object): boolean {
  const proto: unknown = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

/** Copies `value` with secret keys censored and registered secret values scrubbed from strings. */
export function scrub(value: unknown, depth = 0, seen: WeakSet<object> = new WeakSet()): unknown {
  if (typeof value === 'string') return redactText(value);
  if (typeof value !== 'object' || value === null) return value;
  if (seen.has(value)) return '[Circular]';
  if (depth >= MAX_DEPTH) return '[Object]';
  seen.add(value);
  try {
    if (value instanceof Error) return scrub(pino.stdSerializers.err(value), depth + 1, seen);
    if (Array.isArray(value)) return value.map((v: unknown) => scrub(v, depth + 1, seen));
    if (Buffer.isBuffer(value) || ArrayBuffer.isView(value)) return `[${value.constructor.name} ${value.byteLength} bytes]`;
    if (value instanceof Map) return scrub(Object.fromEntries(value), depth + 1, seen);
    if (!isPlainObject(value)) {
      // Class instances: serialise what JSON would see, scrubbed.
      if (typeof (value as { toJSON?: unknown }).toJSON === 'function') {
        return scrub((value as { toJSON(): unknown }).toJSON(), depth + 1, seen);
      }
    }
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      out[k] = SECRET_KEYS.has(k.toLowerCase()) && v !== undefined && v !== null ? CENSOR : scrub(v, depth + 1, seen);
    }
    return out;
  } finally {
    seen.delete(value);
  }
}

export interface LoggerOptions {
  /** Minimum level: fatal, error, warn, info (default), debug, trace, silent. */
  level?: Level | 'silent' | string;
  /** Where lines go; default stdout (synchronous writes, so nothing is lost on exit). */
  stream?: DestinationStream | NodeJS.WritableStream;
  /** Bound to every line as `name` (e.g. "vmmem"). */
  name?: string;
  /** Extra fields bound to every line. */
  base?: Record<string, unknown>;
}

/** The pino options vmmem uses; exported so other entry points build identical loggers. */
export function loggerOptions(opts: Omit<LoggerOptions, 'stream'> = {}): PinoOptions {
  return {
    level: opts.level ?? 'info',
    ...(opts.name !== undefined ? { name: opts.name } : {}),
    base: { pid: process.pid, ...opts.base },
    timestamp: pino.stdTimeFunctions.isoTime,
    redact: { paths: [...REDACT_PATHS], censor: CENSOR },
    serializers: {
      err: (e: unknown) => scrub(e instanceof Error ? pino.stdSerializers.err(e) : e),
    },
    formatters: {
      level: (label) => ({ level: label }),
      bindings: (b) => scrub(b) as Record<string, unknown>,
      log: (o) => {
        // Leave the `err` Error to its serializer (which scrubs it); scrub everything else.
        const out: Record<string, unknown> = {};
        for (const [k, v] of Object.entries(o)) {
          if (k === 'err' && v instanceof Error) out[k] = v;
          else out[k] = SECRET_KEYS.has(k.toLowerCase()) && v !== undefined && v !== null ? CENSOR : scrub(v);
        }
        return out;
      },
    },
    hooks: {
      logMethod(args, method) {
        const scrubbed: unknown[] = args.map((a: unknown) => (typeof a === 'string' ? redactText(a) : a));
        // Without a message pino uses the error's message: supply it, scrubbed.
        const first = scrubbed[0];
        if (scrubbed.length === 1 && typeof first === 'object' && first !== null) {
          const err = first instanceof Error ? first : (first as { err?: unknown }).err;
          if (err instanceof Error) scrubbed.push(redactText(err.message));
        }
        method.apply(this, scrubbed as Parameters<typeof method>);
      },
    },
  };
}

/** A pino logger writing JSON lines, with vmmem's redaction (it satisfies the controller's Logger port). */
export function createLogger(opts: LoggerOptions = {}): PinoLogger {
  const stream = opts.stream ?? pino.destination({ dest: 1, sync: true });
  return pino(loggerOptions(opts), stream as DestinationStream);
}

/** A logger that writes nothing (tests, library defaults). */
export function silentLogger(): PinoLogger {
  return pino({ level: 'silent' });
}
