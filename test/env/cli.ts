// Running the vmmem CLI from tests: in-process through main() (fast, output captured by line),
// or as the real bin/vmmem process (its exit code, argv and environment as a user gets them).
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { main } from '../../src/cli/main.ts';

const root = join(import.meta.dirname, '..', '..');
const bin = join(root, 'bin', 'vmmem');
const execFileP = promisify(execFile);

/** main(args) with stdout/stderr lines joined. */
export async function vmmemInProcess(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(args, { out: (l) => out.push(l), err: (l) => err.push(l) });
  return { code, out: out.join('\n'), err: err.join('\n') };
}

export interface ProcessRun {
  code: number;
  stdout: string;
  stderr: string;
  /** stdout + stderr. */
  out: string;
  /** Killed at the timeout (a hung CLI). */
  killed: boolean;
}

/** bin/vmmem with `args` from the repository root; a non-zero exit is a result, not a throw. */
export async function vmmemProcess(args: readonly string[], opts: { timeoutMs?: number } = {}): Promise<ProcessRun> {
  try {
    const { stdout, stderr } = await execFileP(bin, args, { cwd: root, maxBuffer: 16 << 20, timeout: opts.timeoutMs ?? 120_000 });
    return { code: 0, stdout, stderr, out: stdout + stderr, killed: false };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string; killed?: boolean };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr, out: e.stdout + e.stderr, killed: e.killed === true };
  }
}
