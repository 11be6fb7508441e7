/**
 * `vmmem get -f <status-file>`: the status a standalone `vmmem run
 * --status-file` wrote, as the demo's table (or YAML/JSON), like `kubectl get`.
 */
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import type { StoredObject } from '../controller/ports.ts';
import { UsageError } from './args.ts';
import type { ParsedValues } from './args.ts';
import { painterFor, statusTables } from './console.ts';
import type { CommandIO } from './io.ts';
import { formatObjects } from './status-file.ts';

export function getCommand(values: ParsedValues, io: CommandIO): number {
  const file = values.filename;
  if (typeof file !== 'string') throw new UsageError('no input: give -f <status-file> (written by vmmem run --manifests <dir> --status-file <path>)');
  let list: { kind?: unknown; items?: unknown };
  try {
    list = parse(readFileSync(file, 'utf8')) as typeof list;
  } catch (err) {
    io.err(`vmmem get: ${file}: ${(err as Error).message}`);
    return 1;
  }
  if (!list || list.kind !== 'List' || !Array.isArray(list.items)) {
    io.err(`vmmem get: ${file}: not a status file (expected a v1 List as vmmem run --status-file writes)`);
    return 1;
  }
  const objects = list.items as StoredObject[];
  const output = (values.output as string | undefined) ?? 'table';
  io.out(output === 'table' ? statusTables(painterFor(process.stdout), objects) : formatObjects(objects, output as 'yaml' | 'json'));
  return 0;
}
