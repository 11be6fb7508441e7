// Writes crds/*.yaml from the zod schemas in src/api (the single source of truth).
// `--check` compares instead of writing and exits 1 when crds/ is stale.
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { renderCrds } from '../src/api/crd-yaml.ts';

const dir = join(import.meta.dirname, '..', 'crds');
const check = process.argv.includes('--check');
let stale = 0;
mkdirSync(dir, { recursive: true });
for (const [file, text] of Object.entries(renderCrds())) {
  const path = join(dir, file);
  if (check) {
    let current = '';
    try { current = readFileSync(path, 'utf8'); } catch { /* missing counts as stale */ }
    if (current !== text) { console.error(`stale: ${path} (run npm run generate)`); stale++; }
  } else {
    writeFileSync(path, text);
    console.log(`wrote ${path}`);
  }
}
process.exit(stale ? 1 : 0);
