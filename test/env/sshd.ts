// A real OpenSSH server for tests (test/peer/ssh/setup.sh installs it): /usr/sbin/sshd as a child
// process on a free loopback port, with its own host key, one authorized client key, and a config
// of its own (no PAM, no passwords, no system config). Its log (-e, LogLevel VERBOSE) says which
// connections arrived and which were accepted, so a test can prove that something never reached it.

import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { freePort } from './libvirtd.ts';

export const SSHD = '/usr/sbin/sshd';

export interface Sshd {
  port: number;
  /** The private key the server accepts (PEM text), for a Secret's ssh-privatekey. */
  clientKey: string;
  /** A known_hosts line for [127.0.0.1]:port, for a Secret's known_hosts. */
  knownHosts: string;
  /** Everything sshd logged so far. */
  log(): string;
  /** Log lines "Connection from ..." so far: one per TCP connection that reached sshd. */
  connections(): number;
  /** Log lines "Accepted publickey for ..." so far. */
  accepted(): number;
  stop(): Promise<void>;
}

function keygen(path: string): void {
  const r = spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'vmmem-test', '-f', path], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`ssh-keygen -f ${path} failed: ${r.stderr}`);
}

async function waitForPort(port: number, child: ChildProcess, log: () => string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`sshd exited with ${child.exitCode}: ${log()}`);
    const up = await new Promise<boolean>((resolve) => {
      const s = net.connect({ host: '127.0.0.1', port }, () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (up) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`sshd did not listen on 127.0.0.1:${port} within ${timeoutMs} ms: ${log()}`);
}

/** Starts sshd; fails (never skips) when OpenSSH's server is not installed. */
export async function startSshd(): Promise<Sshd> {
  if (!existsSync(SSHD)) throw new Error(`${SSHD} missing: run test/peer/ssh/setup.sh (Debian openssh-server)`);
  const dir = mkdtempSync(join(tmpdir(), 'vmmem-sshd-'));
  keygen(join(dir, 'host_key'));
  keygen(join(dir, 'client_key'));
  writeFileSync(join(dir, 'authorized_keys'), readFileSync(join(dir, 'client_key.pub')));
  const port = await freePort();
  const user = userInfo().username;
  writeFileSync(
    join(dir, 'sshd_config'),
    [
      `Port ${port}`,
      'ListenAddress 127.0.0.1',
      `HostKey ${join(dir, 'host_key')}`,
      `PidFile ${join(dir, 'sshd.pid')}`,
      `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`,
      'StrictModes no', // the temp directory's modes are the test's business
      'UsePAM no',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'PubkeyAuthentication yes',
      'PermitRootLogin prohibit-password',
      `AllowUsers ${user}`,
      'LogLevel VERBOSE',
      '',
    ].join('\n'),
  );
  // Privilege separation directory that Debian's sshd insists on.
  mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
  let out = '';
  const child = spawn(SSHD, ['-D', '-e', '-f', join(dir, 'sshd_config')], { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const log = () => out;
  try {
    await waitForPort(port, child, log);
  } catch (err) {
    child.kill();
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  const hostPub = readFileSync(join(dir, 'host_key.pub'), 'utf8').trim().split(/\s+/).slice(0, 2).join(' ');
  const count = (re: RegExp) => out.split('\n').filter((l) => re.test(l)).length;
  return {
    port,
    clientKey: readFileSync(join(dir, 'client_key'), 'utf8'),
    knownHosts: `[127.0.0.1]:${port} ${hostPub}\n`,
    log,
    // The readiness probe above is one of them: compare counts before and after, not with zero.
    connections: () => count(/Connection from 127\.0\.0\.1/),
    accepted: () => count(/Accepted publickey for /),
    stop: async () => {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
