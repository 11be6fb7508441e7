/**
 * `vmmem`: the composition root. Each subcommand lives in its own file; the
 * command table (commands.ts) defines its flags. This file only parses the
 * command line, prints help, and turns errors into exit codes
 * (docs/cli.md#exit-codes): usage errors 2, everything else 1.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseCommandArgs, suggestCommand, UsageError } from './args.ts';
import type { ParsedValues } from './args.ts';
import { commandNamed } from './commands.ts';
import { commandHelp, topHelp } from './help.ts';
import { processIO } from './io.ts';
import type { CommandIO } from './io.ts';

const VERSION = (JSON.parse(readFileSync(join(import.meta.dirname, '..', '..', 'package.json'), 'utf8')) as { version: string }).version;

type Handler = (values: ParsedValues, io: CommandIO) => Promise<number> | number;

// Loaded on demand: `vmmem validate` never loads the operator or the Kubernetes client.
const handlers: Record<string, Handler> = {
  async validate(values, io) {
    const { validateCommand } = await import('./validate.ts');
    return validateCommand((values.filename as string[] | undefined) ?? [], io);
  },
  async plan(values, io) {
    const { planCommand } = await import('./plan.ts');
    return planCommand(values, io);
  },
  async run(values, io) {
    const { runCommand } = await import('./run.ts');
    return runCommand(values, io);
  },
  async get(values, io) {
    const { getCommand } = await import('./get.ts');
    return getCommand(values, io);
  },
  async demo(values, io) {
    const { demoCommand } = await import('./demo.ts');
    return demoCommand(values, io);
  },
  version(_values, io) {
    io.out(`vmmem ${VERSION} (vmmem.io/v1alpha1)`);
    return 0;
  },
};

export async function main(argv: readonly string[], io: CommandIO = processIO): Promise<number> {
  const [name, ...rest] = argv;
  if (name === '--version' || name === '-v') return handlers.version!({}, io);
  if (!name || name === '-h' || name === '--help' || name === 'help') {
    const topic = name === 'help' && rest[0] ? commandNamed(rest[0]) : undefined;
    (name ? io.out : io.err)(topic ? commandHelp(topic) : topHelp(VERSION));
    return name ? 0 : 2;
  }
  const spec = commandNamed(name);
  const handler = handlers[name];
  if (!spec || !handler) {
    const hint = suggestCommand(name);
    io.err(`vmmem: unknown command ${JSON.stringify(name)}${hint ? ` (did you mean ${hint}?)` : ''}; see vmmem --help`);
    return 2;
  }
  try {
    const parsed = parseCommandArgs(spec, rest);
    if (parsed.help) {
      io.out(commandHelp(spec));
      return 0;
    }
    return await handler(parsed.values, io);
  } catch (err) {
    if (err instanceof UsageError) {
      io.err(`vmmem ${name}: ${err.message}`);
      return 2;
    }
    io.err(`vmmem ${name}: ${(err as Error).message ?? String(err)}`);
    return 1;
  }
}

if (import.meta.main) process.exitCode = await main(process.argv.slice(2));
