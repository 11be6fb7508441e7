/**
 * `vmmem validate -f <file|dir|->...`: checks every vmmem object in the
 * manifests and prints `<file>:<line>: <Kind>/<name>: <field>: <message>`
 * per problem. Exit 0 all valid, 1 problems, 2 usage errors.
 */
import { expandPaths, loadManifestFile } from '../manifests/load.ts';
import { validateManifestObject } from '../manifests/validate.ts';
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
  let problems = 0;
  let checked = 0;
  for (const file of paths) {
    let loaded;
    try {
      loaded = loadManifestFile(file);
    } catch (err) {
      io.out(`${file}:1: cannot read: ${(err as Error).message}`);
      problems++;
      continue;
    }
    for (const p of loaded.problems) {
      io.out(`${p.file}:${p.line}: ${p.message}`);
      problems++;
    }
    for (const mo of loaded.objects) {
      const found = validateManifestObject(mo);
      if (mo.object.apiVersion && String(mo.object.apiVersion).startsWith('vmmem.io/')) checked++;
      for (const p of found) {
        io.out(`${p.file}:${p.line}: ${p.object}: ${p.path}: ${p.message}`);
        problems++;
      }
    }
  }
  io.err(problems === 0 ? `vmmem validate: ${checked} vmmem object(s) valid in ${paths.length} file(s)` : `vmmem validate: ${problems} problem(s)`);
  return problems === 0 ? 0 : 1;
}
