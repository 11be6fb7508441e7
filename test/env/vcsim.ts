// Starts VMware's vSphere simulator (vcsim, built by test/peer/vsphere/setup.sh) on a free
// loopback port with TLS, using a certificate we generate (a throwaway CA + a leaf for 127.0.0.1),
// so clients can verify it for real.
import { execFile, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const execFileP = promisify(execFile);
const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

export interface VcsimOptions {
  /** Simulate a standalone ESXi host (`-esx`) instead of vCenter. */
  esx?: boolean;
  username?: string;
  password?: string;
  /** Extra vcsim flags, e.g. ['-vm', '3']. */
  args?: string[];
  /** Give up starting after this long. Default 60 s (a cold build of vcsim is not included: see setup). */
  startTimeoutMs?: number;
  /** Serve vcsim's built-in certificate (not ours): for "untrusted certificate" tests. */
  builtinCert?: boolean;
}

export interface Vcsim {
  /** https://127.0.0.1:<port>/sdk (no user info). */
  url: string;
  username: string;
  password: string;
  /** PEM of the CA that signed the served certificate (trust this to verify vcsim). */
  caPem: string;
  /** PEM of the served leaf certificate. */
  certPem: string;
  /** Directory with govc and vcsim. */
  binDir: string;
  /** Runs govc against this vcsim (GOVC_URL etc. set; server verified with the CA). */
  govc(...args: string[]): Promise<string>;
  stop(): Promise<void>;
}

let setupOnce: Promise<string> | undefined;

/** Runs setup.sh (idempotent, cached) and returns the bin directory. */
export function ensureVcsimBuilt(): Promise<string> {
  setupOnce ??= (async () => {
    const script = path.join(repoRoot, 'test', 'peer', 'vsphere', 'setup.sh');
    try {
      const { stdout } = await execFileP('bash', [script], { maxBuffer: 16 * 1024 * 1024, timeout: 20 * 60_000 });
      const lines = stdout.trim().split('\n');
      const bin = lines[lines.length - 1];
      if (!bin) throw new Error('setup.sh printed no bin directory');
      return bin;
    } catch (e) {
      const err = e as { stderr?: string; message: string };
      throw new Error(`cannot build vcsim (test/peer/vsphere/setup.sh): ${err.message}\n${err.stderr ?? ''}`, { cause: e });
    }
  })();
  return setupOnce;
}

async function makeCerts(dir: string): Promise<{ caPem: string; certPem: string; certFile: string; keyFile: string }> {
  const p = (f: string) => path.join(dir, f);
  const ossl = (...args: string[]) => execFileP('openssl', args, { cwd: dir });
  await ossl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', p('ca.key'), '-out', p('ca.crt'), '-days', '2', '-subj', '/CN=vmmem vcsim test CA',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign');
  await ossl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', p('tls.key'), '-out', p('tls.csr'), '-subj', '/CN=127.0.0.1');
  await writeFile(p('ext.cnf'),
    'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=critical,CA:FALSE\n' +
    'keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n');
  await ossl('x509', '-req', '-in', p('tls.csr'), '-CA', p('ca.crt'), '-CAkey', p('ca.key'), '-CAcreateserial',
    '-out', p('tls.crt'), '-days', '2', '-extfile', p('ext.cnf'));
  return {
    caPem: await readFile(p('ca.crt'), 'utf8'),
    certPem: await readFile(p('tls.crt'), 'utf8'),
    certFile: p('tls.crt'),
    keyFile: p('tls.key'),
  };
}

export async function startVcsim(opts: VcsimOptions = {}): Promise<Vcsim> {
  const binDir = await ensureVcsimBuilt();
  const username = opts.username ?? 'vmmem-admin';
  const password = opts.password ?? `pw-${Math.random().toString(36).slice(2)}<&>`;
  const dir = await mkdtemp(path.join(tmpdir(), 'vmmem-vcsim-'));
  let child: ChildProcess | undefined;
  const cleanup = async () => {
    if (child?.pid !== undefined && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise<void>((r) => child!.once('exit', () => r()));
      try {
        process.kill(-child.pid, 'SIGTERM');
      } catch {
        // already gone
      }
      const t = setTimeout(() => {
        try {
          process.kill(-child!.pid!, 'SIGKILL');
        } catch {
          // already gone
        }
      }, 3000);
      await exited;
      clearTimeout(t);
    }
    await rm(dir, { recursive: true, force: true });
  };
  try {
    const certs = await makeCerts(dir);
    // The password goes through a file (vcsim reads a flag value that names a file), not argv.
    const pwFile = path.join(dir, 'password');
    await writeFile(pwFile, password, { mode: 0o600 });
    const args = ['-l', '127.0.0.1:0', '-username', username, '-password', pwFile];
    if (!opts.builtinCert) args.push('-tlscert', certs.certFile, '-tlskey', certs.keyFile);
    if (opts.esx) args.push('-esx');
    args.push(...(opts.args ?? []));
    child = spawn(path.join(binDir, 'vcsim'), args, { cwd: dir, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    const proc = child;
    let stderr = '';
    proc.stderr!.on('data', (d: Buffer) => {
      stderr = (stderr + d.toString()).slice(-8192);
    });
    const timeoutMs = opts.startTimeoutMs ?? 60_000;
    const port = await new Promise<number>((resolve, reject) => {
      let out = '';
      const timer = setTimeout(() => reject(new Error(`vcsim did not report its URL within ${timeoutMs} ms; stderr: ${stderr}`)), timeoutMs);
      proc.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        // vcsim prints: export GOVC_URL=https://user:pass@127.0.0.1:PORT/sdk GOVC_SIM_PID=N
        const m = /GOVC_URL=\S*?@?127\.0\.0\.1:(\d+)\/sdk/.exec(out);
        if (m) {
          clearTimeout(timer);
          resolve(Number(m[1]));
        }
      });
      proc.once('error', (e) => {
        clearTimeout(timer);
        reject(new Error(`cannot start vcsim: ${e.message}`));
      });
      proc.once('exit', (code, sig) => {
        clearTimeout(timer);
        reject(new Error(`vcsim exited (${code ?? sig}) before it was ready; stderr: ${stderr}`));
      });
    });
    proc.stdout!.resume();
    const url = `https://127.0.0.1:${port}/sdk`;
    let caPem = certs.caPem;
    let certPem = certs.certPem;
    if (opts.builtinCert) {
      // Nothing of ours is served: caPem/certPem are then whatever vcsim serves (self-made).
      const { stdout } = await execFileP('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-showcerts'], { timeout: 10_000 }).catch(
        (e: { stdout?: string }) => ({ stdout: e.stdout ?? '' }),
      );
      const m = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/.exec(stdout);
      caPem = m ? m[0] : '';
      certPem = caPem;
    }
    const govcEnv = {
      ...process.env,
      GOVC_URL: url,
      GOVC_USERNAME: username,
      GOVC_PASSWORD: password,
      GOVC_TLS_CA_CERTS: path.join(dir, opts.builtinCert ? 'none' : 'ca.crt'),
      GOVC_INSECURE: opts.builtinCert ? '1' : '0',
    };
    return {
      url,
      username,
      password,
      caPem,
      certPem,
      binDir,
      async govc(...a: string[]) {
        try {
          const { stdout } = await execFileP(path.join(binDir, 'govc'), a, { env: govcEnv, timeout: 60_000 });
          return stdout;
        } catch (e) {
          const err = e as { stderr?: string; message: string };
          throw new Error(`govc ${a[0] ?? ''} failed: ${err.stderr ?? err.message}`, { cause: e });
        }
      },
      stop: cleanup,
    };
  } catch (e) {
    await cleanup();
    throw e;
  }
}
