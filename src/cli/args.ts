/**
 * Parses a subcommand's arguments from its entry in the command table, with
 * node:util parseArgs (strict: unknown flags and stray arguments are errors).
 * Every failure is a UsageError in our own words (exit 2), with a "did you
 * mean" when a flag or command is one typo away from a real one.
 */
import { parseArgs } from 'node:util';
import type { CommandSpec, FlagSpec } from './commands.ts';
import { COMMANDS, HELP_FLAG } from './commands.ts';
import { closest } from '../util/closest.ts';

export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

export type ParsedValues = Record<string, string | boolean | string[] | undefined>;

export type Parsed = { help: true } | { help: false; values: ParsedValues };

/** Old flag names still accepted, rewritten to the table's name before parsing. */
function normalizeAliases(spec: CommandSpec, args: readonly string[]): string[] {
  const aliases = new Map<string, string>();
  for (const f of spec.flags) for (const a of f.aliases ?? []) aliases.set(`--${a}`, `--${f.name}`);
  return args.map((arg) => {
    const [head, ...rest] = arg.split('=');
    const to = head ? aliases.get(head) : undefined;
    return to ? [to, ...rest].join('=') : arg;
  });
}

export type ParseArgsOptions = Record<string, { type: 'string' | 'boolean'; short?: string; multiple?: boolean }>;

/** A command's flags as node:util parseArgs options (also used by tests that check deploy/ args). */
export function parseArgsOptions(spec: CommandSpec): ParseArgsOptions {
  const options: ParseArgsOptions = {};
  for (const f of [...spec.flags, HELP_FLAG]) options[f.name] = { type: f.type, ...(f.short ? { short: f.short } : {}), ...(f.multiple ? { multiple: true } : {}) };
  return options;
}

export function parseCommandArgs(spec: CommandSpec, args: readonly string[]): Parsed {
  const options = parseArgsOptions(spec);
  let values: ParsedValues;
  try {
    values = parseArgs({ args: normalizeAliases(spec, args), options, allowPositionals: false, strict: true }).values as ParsedValues;
  } catch (err) {
    throw translateParseError(spec, err as { code?: string; message: string });
  }
  if (values.help) return { help: true };
  for (const f of spec.flags) checkValue(f, values[f.name]);
  return { help: false, values };
}

function checkValue(flag: FlagSpec, value: ParsedValues[string]): void {
  if (!flag.values || value === undefined) return;
  for (const v of Array.isArray(value) ? value : [value]) {
    if (typeof v === 'string' && !flag.values.includes(v)) {
      const hint = closest(v, flag.values);
      throw new UsageError(`--${flag.name} must be one of ${flag.values.join(', ')}, got ${JSON.stringify(v)}${hint ? ` (did you mean ${hint}?)` : ''}`);
    }
  }
}

function translateParseError(spec: CommandSpec, err: { code?: string; message: string }): Error {
  const flags = [...spec.flags, HELP_FLAG];
  const names = flags.map((f) => `--${f.name}`);
  const quoted = /'([^']+)'/.exec(err.message)?.[1];
  switch (err.code) {
    case 'ERR_PARSE_ARGS_UNKNOWN_OPTION': {
      const flag = (quoted ?? '').split('=')[0] ?? '';
      const hint = flag.startsWith('--') ? closest(flag, names) : undefined;
      return new UsageError(`unknown flag ${flag}${hint ? ` (did you mean ${hint}?)` : ''}; see vmmem ${spec.name} --help`);
    }
    case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE': {
      const flag = flags.find((f) => quoted?.includes(`--${f.name}`));
      if (flag?.type === 'boolean') return new UsageError(`--${flag.name} is a switch and takes no value`);
      return new UsageError(`${flag ? `--${flag.name}` : (quoted ?? 'a flag')} needs a value${flag?.placeholder ? ` <${flag.placeholder}>` : ''}`);
    }
    case 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL':
      return new UsageError(`unexpected argument ${JSON.stringify(quoted ?? '')}: vmmem ${spec.name} takes only flags; see vmmem ${spec.name} --help`);
    default:
      return new UsageError(err.message);
  }
}

export function suggestCommand(name: string): string | undefined {
  return closest(name, COMMANDS.map((c) => c.name));
}
