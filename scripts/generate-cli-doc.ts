// Writes docs/cli.md from the command table (src/cli/commands.ts), so the CLI reference cannot
// drift from the parser and `--help`. `--check` compares instead and exits 1 when it is stale
// (test/unit/cli-doc.test.ts does the same).
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cliReferenceMarkdown } from '../src/cli/help.ts';

const path = join(import.meta.dirname, '..', 'docs', 'cli.md');
const text = cliReferenceMarkdown();
if (process.argv.includes('--check')) {
  let current = '';
  try {
    current = readFileSync(path, 'utf8');
  } catch {
    // missing counts as stale
  }
  if (current !== text) {
    console.error(`stale: ${path} (run npm run generate)`);
    process.exitCode = 1;
  }
} else writeFileSync(path, text);
