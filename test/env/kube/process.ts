// Processes of the test environment, as envtest's pkg/internal/testing/process: each peer in its own
// process group with output appended to a log file, readiness polling that fails early when the
// process dies, free loopback ports, and a detached reaper that kills the peers and removes the
// temp directory if this Node process dies without calling stop().
import { spawn, type ChildProcess } from 'node:child_process';
import { openSync, closeSync, writeSync, readFileSync, accessSync, constants as fsConstants } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { request as httpRequest } from 'node:http';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';

export interface KubeResponse {
  status: number;
  body: string;
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Distinct free loopback ports: all listeners are held open together, then closed. */
export async function freePorts(n: number): Promise<number[]> {
  const servers: Server[] = [];
  try {
    const ports: number[] = [];
    for (let i = 0; i < n; i++) {
      const srv = createServer();
      servers.push(srv);
      await new Promise<void>((res, rej) => {
        srv.once('error', rej);
        srv.listen(0, '127.0.0.1', () => res());
      });
      const addr = srv.address();
      if (addr === null || typeof addr === 'string') throw new Error('unexpected listen address');
      ports.push(addr.port);
    }
    return ports;
  } finally {
    await Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
  }
}

export function pickTmpRoot(): string {
  try {
    accessSync('/dev/shm', fsConstants.W_OK);
    return '/dev/shm';
  } catch {
    return tmpdir();
  }
}

export function tailFile(path: string, lines: number): string {
  try {
    const all = readFileSync(path, 'utf8').split('\n');
    return all.slice(Math.max(0, all.length - lines - 1)).join('\n');
  } catch (e) {
    return `(no log at ${path}: ${(e as Error).message})`;
  }
}

/** A plain request used for health checks; never throws on HTTP status, only on transport. */
export function rawRequest(
  url: string,
  opts: { method?: string; ca?: string; cert?: string; key?: string; body?: string; timeoutMs?: number },
): Promise<KubeResponse> {
  return new Promise((res, rej) => {
    const u = new URL(url);
    const requestFn = u.protocol === 'https:' ? httpsRequest : httpRequest;
    const req = requestFn(
      u,
      {
        method: opts.method ?? 'GET',
        ca: opts.ca,
        cert: opts.cert,
        key: opts.key,
        headers: opts.body !== undefined ? { 'content-type': 'application/json' } : {},
        timeout: opts.timeoutMs ?? 5000,
      },
      (resp) => {
        const chunks: Buffer[] = [];
        resp.on('data', (c: Buffer) => chunks.push(c));
        resp.on('end', () => res({ status: resp.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
        resp.on('error', rej);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`timeout requesting ${url}`)));
    req.on('error', rej);
    if (opts.body !== undefined) req.write(opts.body);
    req.end();
  });
}

/** One peer process, run in its own process group with output appended to a log file. */
export class PeerProcess {
  readonly name: string;
  readonly bin: string;
  readonly args: string[];
  readonly logPath: string;
  readonly onPidsChanged: () => void;
  child: ChildProcess | undefined;
  exited: Promise<void> | undefined;
  exitInfo: string | undefined;

  constructor(name: string, bin: string, args: string[], logPath: string, onPidsChanged: () => void) {
    this.name = name;
    this.bin = bin;
    this.args = args;
    this.logPath = logPath;
    this.onPidsChanged = onPidsChanged;
  }

  get running(): boolean {
    return this.child !== undefined && this.exitInfo === undefined;
  }

  start(): void {
    if (this.running) throw new Error(`${this.name} is already running`);
    const fd = openSync(this.logPath, 'a');
    try {
      writeSync(fd, `\n===== ${new Date().toISOString()} starting ${this.bin} ${this.args.join(' ')}\n`);
      const child = spawn(this.bin, this.args, { detached: true, stdio: ['ignore', fd, fd], env: process.env });
      this.child = child;
      this.exitInfo = undefined;
      this.exited = new Promise<void>((res) => {
        child.once('exit', (code, signal) => {
          this.exitInfo = signal ? `killed by ${signal}` : `exited with code ${code}`;
          this.onPidsChanged();
          res();
        });
        child.once('error', (err) => {
          this.exitInfo = `failed to start: ${err.message}`;
          this.onPidsChanged();
          res();
        });
      });
    } finally {
      closeSync(fd);
    }
    this.onPidsChanged();
  }

  async stop(signal: 'SIGTERM' | 'SIGKILL' = 'SIGTERM', timeoutMs = 15_000): Promise<void> {
    const child = this.child;
    if (!child || this.exitInfo !== undefined) return;
    const kill = (sig: NodeJS.Signals) => {
      try {
        if (child.pid !== undefined) process.kill(-child.pid, sig);
      } catch {
        // already gone
      }
    };
    kill(signal);
    let timer: NodeJS.Timeout | undefined;
    const done = await Promise.race([
      this.exited!.then(() => true),
      new Promise<boolean>((r) => (timer = setTimeout(() => r(false), timeoutMs))),
    ]);
    clearTimeout(timer);
    if (!done) {
      kill('SIGKILL');
      await this.exited;
    }
    // Anything left in the group (there should be nothing) goes too.
    kill('SIGKILL');
  }

  /** Pid (= process group id) while running. */
  get pgid(): number | undefined {
    return this.running ? this.child?.pid : undefined;
  }
}

/** Poll `probe` until it returns true; fail early if the process dies. */
export async function waitReady(proc: PeerProcess, what: string, timeoutMs: number, probe: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  for (;;) {
    if (!proc.running) {
      throw new Error(
        `${proc.name} ${proc.exitInfo ?? 'is not running'} before ${what}; last log lines (${proc.logPath}):\n` +
          tailFile(proc.logPath, 40),
      );
    }
    try {
      if (await probe()) return;
    } catch (e) {
      last = (e as Error).message;
    }
    if (Date.now() > deadline) {
      throw new Error(
        `${proc.name} not ready (${what}) after ${timeoutMs} ms${last ? ` (last error: ${last})` : ''}; ` +
          `last log lines (${proc.logPath}):\n${tailFile(proc.logPath, 40)}`,
      );
    }
    await sleep(100);
  }
}

const REAPER = `
parent=$1; dir=$2; keep=$3
while kill -0 "$parent" 2>/dev/null; do sleep 1; done
if [ -f "$dir/pids" ]; then while read -r p; do [ -n "$p" ] && kill -KILL -- "-$p" 2>/dev/null; done < "$dir/pids"; fi
[ "$keep" = 1 ] || rm -rf "$dir"
`;

/**
 * A detached shell that waits for this Node process to exit, then SIGKILLs the process groups listed
 * in `dir`/pids and removes `dir` (unless `keep`). The caller writes the pids file and kills the
 * reaper in stop().
 */
export function startReaper(dir: string, keep: boolean): ChildProcess {
  const reaper = spawn('bash', ['-c', REAPER, 'vmmem-kube-reaper', String(process.pid), dir, keep ? '1' : '0'], {
    detached: true,
    stdio: 'ignore',
  });
  reaper.unref();
  return reaper;
}
