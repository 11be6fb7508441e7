/**
 * What the scale benchmarks share about their operator child processes: a request/response
 * channel over Node's IPC, the child's own CPU seconds and memory from /proc, and the Node flags
 * the Deployment gives the operator (so a child runs under the same heap bound as in a cluster).
 */
import type { ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

/** Requests carry an id; the child answers `{ id, body }`, and `{ id: 0 }` once it has started. */
export class ChildHandle<Req extends { id: number }> {
  private next = 1;
  private readonly waiters = new Map<number, (v: unknown) => void>();
  readonly proc: ChildProcess;
  readonly started: Promise<void>;
  constructor(proc: ChildProcess) {
    this.proc = proc;
    let ok: () => void = () => {};
    this.started = new Promise<void>((r) => (ok = r));
    proc.on('message', (m) => {
      const { id, body } = m as { id: number; body: unknown };
      if (id === 0) return ok();
      this.waiters.get(id)?.(body);
      this.waiters.delete(id);
    });
  }
  ask<T>(req: Omit<Req, 'id'>): Promise<T> {
    const id = this.next++;
    return new Promise<T>((resolve) => {
      this.waiters.set(id, resolve as (v: unknown) => void);
      this.proc.send({ ...req, id });
    });
  }
  send(msg: unknown): void {
    this.proc.send(msg as object);
  }
  get pid(): number {
    return this.proc.pid as number;
  }
}

const TICKS = 100; // USER_HZ on Linux

/** User + system CPU seconds of `pid` (fields 14 and 15 of /proc/<pid>/stat). */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / TICKS;
}

export function statusKiB(pid: number, key: 'VmHWM' | 'VmRSS' | 'RssAnon' | 'RssFile'): number {
  const m = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m?.[1] ?? 0);
}

/** The Node flags the Deployment gives the operator (NODE_OPTIONS in deploy/base/deployment.yaml). */
export async function deploymentNodeOptions(repo: string): Promise<string[]> {
  const { parseAllDocuments } = await import('yaml');
  interface Container {
    name?: string;
    env?: { name?: string; value?: string }[];
  }
  const docs = parseAllDocuments(readFileSync(join(repo, 'deploy', 'base', 'deployment.yaml'), 'utf8')).map((d) => d.toJS() as { kind?: string; spec?: { template?: { spec?: { containers?: Container[] } } } });
  const containers = docs.find((d) => d?.kind === 'Deployment')?.spec?.template?.spec?.containers ?? [];
  const value = containers.find((c) => c.name === 'vmmem')?.env?.find((e) => e.name === 'NODE_OPTIONS')?.value;
  return value ? value.split(/\s+/).filter(Boolean) : [];
}
