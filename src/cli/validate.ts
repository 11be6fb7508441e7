/**
 * `vmmem validate -f <file|dir|->...`: checks every vmmem object in the
 * manifests and prints `<file>:<line>: <Kind>/<name>: <field>: <message>`
 * per problem. Exit 0 all valid, 1 problems, 2 usage errors.
 */
import { expandPaths } from '../manifests/load.ts';
import { manifestProblemLines } from '../manifests/validate.ts';
import type { CommandIO } from './io.ts';

export function validateCommand(files: string[], io: CommandIO): number {
  if (files.length === 0) {
    io.err('vmmem validate: no input: give -f <file|dir|-> (repeatable)');
    return 2;
  }
  let paths: string[];
  try {
    paths = expandPaths(files);
  } catch (err) {
    io.err(`vmmem validate: ${(err as Error).message}`);
    return 2;
  }
  const { lines, checked } = manifestProblemLines(paths);
  for (const line of lines) io.out(line);
  const problems = lines.length;
  io.err(problems === 0 ? `vmmem validate: ${checked} vmmem object(s) valid in ${paths.length} file(s)` : `vmmem validate: ${problems} problem(s)`);
  return problems === 0 ? 0 : 1;
}
