/**
 * Renders the command table as terminal help (`vmmem <cmd> --help`) and as
 * the Markdown reference docs/cli.md, from the same definitions.
 */
import type { CommandSpec, FlagSpec } from './commands.ts';
import { COMMANDS, HELP_FLAG } from './commands.ts';

function flagLabel(f: FlagSpec): string {
  const long = `--${f.name}${f.type === 'string' ? ` <${f.placeholder ?? 'value'}>` : ''}`;
  return f.short ? `-${f.short}, ${long}` : `    ${long}`;
}

function flagNotes(f: FlagSpec): string {
  const notes: string[] = [];
  if (f.values) notes.push(`one of: ${f.values.join(', ')}`);
  if (f.default !== undefined) notes.push(`default: ${f.default}`);
  return notes.length ? ` (${notes.join('; ')})` : '';
}

export function commandHelp(spec: CommandSpec): string {
  const flags = [...spec.flags, HELP_FLAG];
  const width = Math.max(...flags.map((f) => flagLabel(f).length));
  const lines = [`Usage: ${spec.usage}`, '', wrap(spec.description, 78), '', 'Flags:'];
  for (const f of flags) lines.push(`  ${flagLabel(f).padEnd(width)}  ${f.description}${flagNotes(f)}`);
  lines.push('', 'Exit codes:');
  for (const [code, meaning] of spec.exitCodes) lines.push(`  ${code}  ${meaning}`);
  return lines.join('\n');
}

export function topHelp(version: string): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  return [
    `vmmem ${version} — keeps virtual machines' memory where their owners declare it`,
    '',
    'Usage: vmmem <command> [flags]',
    '',
    'Commands:',
    ...COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    '',
    'Run `vmmem <command> --help` for its flags. `vmmem --version` prints the version.',
  ].join('\n');
}

function wrap(text: string, width: number): string {
  const out: string[] = [];
  let line = '';
  for (const word of text.split(/\s+/)) {
    if (line && line.length + 1 + word.length > width) {
      out.push(line);
      line = word;
    } else line = line ? `${line} ${word}` : word;
  }
  if (line) out.push(line);
  return out.join('\n');
}

const cell = (s: string) => s.replace(/\|/g, '\\|');

/** docs/cli.md. `node scripts/generate-cli-doc.ts` writes it; test/unit/cli-doc.test.ts checks it is current. */
export function cliReferenceMarkdown(): string {
  const lines = [
    '# CLI reference',
    '',
    '<!-- Generated from src/cli/commands.ts by `node scripts/generate-cli-doc.ts`; test/unit/cli-doc.test.ts fails when it is out of date. Edit the table, not this file. -->',
    '',
    'Every command takes `-h`/`--help`. Flags take `--flag value` or `--flag=value`; a mistyped flag or',
    'command gets a "did you mean", and a value outside a flag\'s allowed list is a usage error (exit 2).',
    'Where kubectl has a flag for the same thing, vmmem uses its name (`-f/--filename`, `-n/--namespace`,',
    '`--kubeconfig`, `--context`, `-o/--output`).',
    '',
    '## Exit codes',
    '',
    '| code | validate | plan | plan --detailed-exitcode | run --once | run |',
    '|---|---|---|---|---|---|',
    '| 0 | all valid | plan shown, everything can be applied | nothing would change | every object Ready, or waiting only on a restart / power-off | stopped by SIGTERM/SIGINT |',
    '| 1 | problems found (unreadable file, YAML error, unknown apiVersion, duplicate, invalid field) | a VM could not be observed, invalid manifests, or an unusable `--observed` state | same as plan | an object failed, a manifest could not be read or parsed, a duplicate, or `--timeout` passed | fatal error (kubeconfig, lost leadership) |',
    '| 2 | usage error (unknown flag, bad flag value, missing `-f`, no such path) | usage error | changes to send — or a usage error (then nothing is printed on stdout) | usage error | usage error |',
    '| 3 | — | some field is Unsupported, Unsafe or Invalid | same as plan | some object is Stalled (its spec needs its owner) | — |',
    '',
    '`--detailed-exitcode` is terraform\'s convention for a pull-request check: the most severe outcome',
    'wins (1, then 3, then 2), so 2 means every VMM could be planned, none is stalled and some would',
    'change. Usage errors keep exit 2, as everywhere; a script tells them apart by the empty stdout.',
    '',
    'No failure exits 0: a path that does not exist is exit 2 before anything runs; a file that exists',
    'but cannot be read or parsed is exit 1, and `run --once` then applies nothing from it.',
    '',
  ];
  for (const spec of COMMANDS) {
    lines.push(`## vmmem ${spec.name}`, '', spec.summary.charAt(0).toUpperCase() + spec.summary.slice(1) + '.', '', '```', spec.usage, '```', '', spec.description, '');
    if (spec.flags.length) {
      lines.push('| flag | default | values | meaning |', '|---|---|---|---|');
      for (const f of spec.flags) {
        const name = `${f.short ? `\`-${f.short}\`, ` : ''}\`--${f.name}${f.type === 'string' ? ` <${f.placeholder ?? 'value'}>` : ''}\``;
        lines.push(`| ${cell(name)} | ${f.default !== undefined ? `\`${f.default}\`` : '—'} | ${f.values ? f.values.map((v) => `\`${v}\``).join(', ') : f.type === 'boolean' ? 'switch' : '—'} | ${cell(f.description)}${f.multiple ? ' (repeatable)' : ''} |`);
      }
      lines.push('');
    }
    lines.push('Exit codes: ' + spec.exitCodes.map(([c, m]) => `**${c}** ${m}`).join('; ') + '.', '');
  }
  return lines.join('\n');
}
