// The real Kubernetes test environment (DESIGN §7), envtest-style: a real etcd and a real
// kube-apiserver, built from Go modules by test/peer/kube/setup.sh, started on free loopback ports
// with freshly generated certificates, RBAC authorization and an admin identity in system:masters.
//
//   const env = await startKube();            // in before()
//   env.kubeConfig.makeApiClient(k8s.CoreV1Api) ...
//   await env.installCrds('crds');            // apply CRDs, wait until Established and served
//   await env.restartApiServer();             // chaos: same port, same certs, same etcd data
//   await env.stop();                         // in after(): kills process groups, removes temp dir
//
// Everything lives in one temp directory (on tmpfs, /dev/shm, when available): certificates, the
// kubeconfig, etcd's data and both processes' logs. A detached reaper process kills the peers and
// removes that directory if this Node process dies without calling stop().
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { createHash, generateKeyPairSync, randomBytes } from 'node:crypto';
import { existsSync, openSync, closeSync, writeSync, writeFileSync, readFileSync, mkdtempSync, accessSync, constants as fsConstants } from 'node:fs';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { request as httpsRequest } from 'node:https';
import { request as httpRequest } from 'node:http';
import { createServer, type Server } from 'node:net';
import { homedir, tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import * as k8s from '@kubernetes/client-node';

const execFileP = promisify(execFile);

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
/** The Go module that pins kube-apiserver and etcd (test/env/go). */
export const KUBE_GO_MODULE_DIR = join(REPO_ROOT, 'test', 'env', 'go');
/** The script that builds the binaries into the cache. */
export const KUBE_SETUP_SCRIPT = join(REPO_ROOT, 'test', 'peer', 'kube', 'setup.sh');

// ---------------------------------------------------------------------------------------------
// Binaries (built by test/peer/kube/setup.sh; same key logic)
// ---------------------------------------------------------------------------------------------

export interface KubeBinaries {
  /** kubernetes-<ver>_etcd-<ver>_<hash>: changes whenever the Go module changes. */
  key: string;
  kubernetesVersion: string;
  etcdVersion: string;
  binDir: string;
  kubeApiServer: string;
  etcd: string;
}

/** The cache root: $VMMEM_CACHE or ~/.cache/vmmem. */
export function vmmemCacheDir(): string {
  return process.env.VMMEM_CACHE || join(homedir(), '.cache', 'vmmem');
}

/** The versions and cache key for the binaries, computed exactly as setup.sh does. */
export function kubeBinaryKey(): { key: string; kubernetesVersion: string; etcdVersion: string } {
  const files = ['go.mod', 'go.sum', join('etcd', 'main.go'), join('kube-apiserver', 'main.go')].map((f) =>
    join(KUBE_GO_MODULE_DIR, f),
  );
  const goMod = readFileSync(files[0]!, 'utf8');
  const version = (mod: string): string => {
    for (const line of goMod.split('\n')) {
      const [m, v] = line.trim().split(/\s+/);
      if (m === mod && v?.startsWith('v')) return v;
    }
    throw new Error(`cannot find the version of ${mod} in ${files[0]}`);
  };
  const kubernetesVersion = version('k8s.io/kubernetes');
  const etcdVersion = version('go.etcd.io/etcd/server/v3');
  const h = createHash('sha256');
  for (const f of files) h.update(readFileSync(f));
  const key = `kubernetes-${kubernetesVersion}_etcd-${etcdVersion}_${h.digest('hex').slice(0, 12)}`;
  return { key, kubernetesVersion, etcdVersion };
}

/**
 * Paths of the cached kube-apiserver and etcd. Throws, telling to run test/peer/kube/setup.sh,
 * when they are missing. $VMMEM_KUBE_BIN_DIR overrides the directory (for prebuilt binaries).
 */
export function kubeBinaries(): KubeBinaries {
  const { key, kubernetesVersion, etcdVersion } = kubeBinaryKey();
  const override = process.env.VMMEM_KUBE_BIN_DIR;
  const binDir = override || join(vmmemCacheDir(), 'kube', key, 'bin');
  const kubeApiServer = join(binDir, 'kube-apiserver');
  const etcd = join(binDir, 'etcd');
  const complete = override ? true : existsSync(join(binDir, '..', '.complete'));
  for (const bin of [kubeApiServer, etcd]) {
    let ok = complete;
    try {
      accessSync(bin, fsConstants.X_OK);
    } catch {
      ok = false;
    }
    if (!ok) {
      throw new Error(
        `kube test environment: ${bin} is missing or its build is incomplete (binaries for ${key}). ` +
          `Build them first: bash test/peer/kube/setup.sh (a cold build takes several minutes).`,
      );
    }
  }
  return { key, kubernetesVersion, etcdVersion, binDir, kubeApiServer, etcd };
}

// ---------------------------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------------------------

export interface StartKubeOptions {
  /** --authorization-mode; default ['Node', 'RBAC']. */
  authorizationModes?: string[];
  /** Extra kube-apiserver flags (`--name=value`), appended after the defaults (later wins). */
  apiServerArgs?: string[];
  /** Extra etcd flags, appended after the defaults. */
  etcdArgs?: string[];
  /** CRD files or directories to install (and wait for) before startKube resolves. */
  crds?: string[];
  /** How long each process may take to become ready; default 90 s (2-core CI machines). */
  startTimeoutMs?: number;
  /** Keep the temp directory (certs, logs, etcd data) after stop(); also $VMMEM_KUBE_KEEP=1. */
  keepDir?: boolean;
  /** Where to create the temp directory; default /dev/shm when writable, else os.tmpdir(). */
  tmpRoot?: string;
}

export interface KubeCertPaths {
  /** CA that signs the serving cert and the client certs; --client-ca-file. */
  caCert: string;
  caKey: string;
  servingCert: string;
  servingKey: string;
  /** Admin client certificate: CN=vmmem-admin, O=system:masters. */
  adminCert: string;
  adminKey: string;
  serviceAccountKey: string;
  serviceAccountPub: string;
}

export interface KubeUser {
  kubeConfig: k8s.KubeConfig;
  kubeconfigPath: string;
  certPath: string;
  keyPath: string;
}

export interface KubeResponse {
  status: number;
  body: string;
}

export interface KubeEnv {
  /** https://127.0.0.1:<port> */
  server: string;
  /** Self-contained kubeconfig (embedded CA and admin client cert). */
  kubeconfigPath: string;
  /** Loaded from kubeconfigPath; the admin identity. */
  kubeConfig: k8s.KubeConfig;
  /** Bearer token for the same admin identity (--token-auth-file; user vmmem-admin-token). */
  adminToken: string;
  certs: KubeCertPaths;
  /** http://127.0.0.1:<port> (plain HTTP, loopback only). */
  etcdUrl: string;
  /** The temp directory holding everything. */
  dir: string;
  logs: { apiServer: string; etcd: string };
  binaries: KubeBinaries;
  /** The full kube-apiserver command line (for debugging). */
  apiServerArgs: readonly string[];
  /** Apply every CustomResourceDefinition in these YAML/JSON files or directories (recursively),
   *  create-or-replace, and wait until each is Established and served by discovery. Returns names. */
  installCrds(...paths: string[]): Promise<string[]>;
  /** A client certificate identity signed by the cluster CA (for RBAC tests). */
  userKubeConfig(user: string, groups?: string[]): Promise<KubeUser>;
  /** A raw HTTPS request as admin; the body is sent as JSON when it is not a string. */
  request(method: string, path: string, body?: unknown): Promise<KubeResponse>;
  /** SIGTERM (graceful) or SIGKILL the kube-apiserver's process group and wait for it to exit. */
  stopApiServer(opts?: { signal?: 'SIGTERM' | 'SIGKILL' }): Promise<void>;
  /** Start kube-apiserver again (same port, certs and flags) and wait for /readyz. */
  startApiServer(): Promise<void>;
  restartApiServer(opts?: { signal?: 'SIGTERM' | 'SIGKILL' }): Promise<void>;
  stopEtcd(opts?: { signal?: 'SIGTERM' | 'SIGKILL' }): Promise<void>;
  /** Start etcd again on the same data dir and port; waits for /health. */
  startEtcd(): Promise<void>;
  restartEtcd(opts?: { signal?: 'SIGTERM' | 'SIGKILL' }): Promise<void>;
  /** The last `lines` lines of a process log. */
  logTail(which: 'apiServer' | 'etcd', lines?: number): string;
  /** Stop both processes (process groups), the reaper, and remove the temp directory. Idempotent. */
  stop(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Distinct free loopback ports: all listeners are held open together, then closed. */
async function freePorts(n: number): Promise<number[]> {
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

function pickTmpRoot(): string {
  try {
    accessSync('/dev/shm', fsConstants.W_OK);
    return '/dev/shm';
  } catch {
    return tmpdir();
  }
}

function tailFile(path: string, lines: number): string {
  try {
    const all = readFileSync(path, 'utf8').split('\n');
    return all.slice(Math.max(0, all.length - lines - 1)).join('\n');
  } catch (e) {
    return `(no log at ${path}: ${(e as Error).message})`;
  }
}

async function openssl(args: string[], cwd: string): Promise<void> {
  try {
    await execFileP('openssl', args, { cwd });
  } catch (e) {
    const err = e as Error & { stderr?: string };
    throw new Error(`openssl ${args.join(' ')} failed: ${err.stderr || err.message}`, { cause: e });
  }
}

interface CertSpec {
  cn: string;
  orgs?: string[];
  ca?: boolean;
  server?: boolean;
  sans?: string[];
}

/** Issue an EC P-256 cert with the openssl CLI: self-signed when `issuer` is absent. */
async function issueCert(dir: string, name: string, spec: CertSpec, issuer?: { cert: string; key: string }) {
  const cnf = [
    '[req]',
    'distinguished_name = dn',
    'prompt = no',
    'x509_extensions = ext',
    '[dn]',
    `CN = ${spec.cn}`,
    ...(spec.orgs ?? []).map((o, i) => `${i}.O = ${o}`),
    '[ext]',
    ...(spec.ca
      ? ['basicConstraints = critical,CA:TRUE', 'keyUsage = critical,keyCertSign,cRLSign,digitalSignature', 'subjectKeyIdentifier = hash']
      : [
          'basicConstraints = critical,CA:FALSE',
          'keyUsage = critical,digitalSignature,keyEncipherment',
          `extendedKeyUsage = ${spec.server ? 'serverAuth' : 'clientAuth'}`,
          'authorityKeyIdentifier = keyid',
        ]),
    ...(spec.sans?.length ? [`subjectAltName = ${spec.sans.join(',')}`] : []),
    '',
  ].join('\n');
  const cnfPath = join(dir, `${name}.cnf`);
  await writeFile(cnfPath, cnf);
  const cert = join(dir, `${name}.crt`);
  const key = join(dir, `${name}.key`);
  await openssl(
    [
      'req', '-x509', '-config', cnfPath, '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
      '-keyout', key, '-out', cert, '-days', '3650',
      ...(issuer ? ['-CA', issuer.cert, '-CAkey', issuer.key] : []),
    ],
    dir,
  );
  await rm(cnfPath, { force: true });
  return { cert, key };
}

function kubeconfigYaml(server: string, caPem: string, user: string, certPem: string, keyPem: string): string {
  const b64 = (s: string) => Buffer.from(s).toString('base64');
  return k8s.dumpYaml({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'vmmem-test', cluster: { server, 'certificate-authority-data': b64(caPem) } }],
    users: [{ name: user, user: { 'client-certificate-data': b64(certPem), 'client-key-data': b64(keyPem) } }],
    contexts: [{ name: 'vmmem-test', context: { cluster: 'vmmem-test', user } }],
    'current-context': 'vmmem-test',
  });
}

/** A plain request used for health checks; never throws on HTTP status, only on transport. */
function rawRequest(
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
class PeerProcess {
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
async function waitReady(proc: PeerProcess, what: string, timeoutMs: number, probe: () => Promise<boolean>): Promise<void> {
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

async function collectFiles(p: string): Promise<string[]> {
  const entries = await readdir(p, { withFileTypes: true }).catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOTDIR') return null;
    throw e;
  });
  if (entries === null) return [p];
  const out: string[] = [];
  for (const e of entries.sort((a, b) => a.name.localeCompare(b.name))) {
    const full = join(p, e.name);
    if (e.isDirectory()) out.push(...(await collectFiles(full)));
    else if (/\.(ya?ml|json)$/.test(e.name)) out.push(full);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// startKube
// ---------------------------------------------------------------------------------------------

const REAPER = `
parent=$1; dir=$2; keep=$3
while kill -0 "$parent" 2>/dev/null; do sleep 1; done
if [ -f "$dir/pids" ]; then while read -r p; do [ -n "$p" ] && kill -KILL -- "-$p" 2>/dev/null; done < "$dir/pids"; fi
[ "$keep" = 1 ] || rm -rf "$dir"
`;

/**
 * Start etcd + kube-apiserver; resolves when /readyz is ok (and the given CRDs are served).
 * Retries with new ports (up to 3 attempts) if another process grabbed a port between our probe
 * and the peer's bind.
 */
export async function startKube(opts: StartKubeOptions = {}): Promise<KubeEnv> {
  const binaries = kubeBinaries();
  for (let attempt = 1; ; attempt++) {
    try {
      return await startKubeOnce(opts, binaries);
    } catch (e) {
      if (attempt >= 3 || !/address already in use/.test((e as Error).message)) throw e;
    }
  }
}

async function startKubeOnce(opts: StartKubeOptions, binaries: KubeBinaries): Promise<KubeEnv> {
  const timeoutMs = opts.startTimeoutMs ?? 90_000;
  const keepDir = opts.keepDir ?? process.env.VMMEM_KUBE_KEEP === '1';
  const dir = mkdtempSync(join(opts.tmpRoot ?? pickTmpRoot(), 'vmmem-kube-'));
  const certDir = join(dir, 'certs');
  const etcdDataDir = join(dir, 'etcd-data');
  const logs = { apiServer: join(dir, 'kube-apiserver.log'), etcd: join(dir, 'etcd.log') };

  const procs: PeerProcess[] = [];
  const writePids = () => {
    const pids = procs.map((p) => p.pgid).filter((p): p is number => p !== undefined);
    try {
      writeFileSync(join(dir, 'pids'), pids.map((p) => `${p}\n`).join(''));
    } catch {
      // directory already removed
    }
  };
  const reaper = spawn('bash', ['-c', REAPER, 'vmmem-kube-reaper', String(process.pid), dir, keepDir ? '1' : '0'], {
    detached: true,
    stdio: 'ignore',
  });
  reaper.unref();

  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    // apiserver first (it holds etcd connections), then etcd.
    for (const p of [...procs].reverse()) await p.stop('SIGTERM', 10_000).catch(() => undefined);
    try {
      if (reaper.pid !== undefined) process.kill(reaper.pid, 'SIGKILL');
    } catch {
      // gone
    }
    if (!keepDir) await rm(dir, { recursive: true, force: true });
  };

  try {
    await mkdir(certDir, { recursive: true, mode: 0o700 });
    await mkdir(etcdDataDir, { recursive: true, mode: 0o700 });
    const [etcdPort, etcdPeerPort, apiPort] = (await freePorts(3)) as [number, number, number];
    const server = `https://127.0.0.1:${apiPort}`;
    const etcdUrl = `http://127.0.0.1:${etcdPort}`;
    const etcdPeerUrl = `http://127.0.0.1:${etcdPeerPort}`;

    // Certificates: one CA for serving and client certs; a separate key pair for service accounts.
    const ca = await issueCert(certDir, 'ca', { cn: 'vmmem-test-ca', ca: true });
    const [serving, admin] = await Promise.all([
      issueCert(
        certDir,
        'apiserver',
        {
          cn: 'kube-apiserver',
          server: true,
          sans: ['IP:127.0.0.1', 'DNS:localhost', 'IP:10.0.0.1', 'DNS:kubernetes', 'DNS:kubernetes.default', 'DNS:kubernetes.default.svc', 'DNS:kubernetes.default.svc.cluster.local'],
        },
        ca,
      ),
      issueCert(certDir, 'admin', { cn: 'vmmem-admin', orgs: ['system:masters'] }, ca),
    ]);
    const sa = generateKeyPairSync('rsa', {
      modulusLength: 2048,
      publicKeyEncoding: { type: 'spki', format: 'pem' },
      privateKeyEncoding: { type: 'pkcs1', format: 'pem' },
    });
    const certs: KubeCertPaths = {
      caCert: ca.cert,
      caKey: ca.key,
      servingCert: serving.cert,
      servingKey: serving.key,
      adminCert: admin.cert,
      adminKey: admin.key,
      serviceAccountKey: join(certDir, 'sa.key'),
      serviceAccountPub: join(certDir, 'sa.pub'),
    };
    await writeFile(certs.serviceAccountKey, sa.privateKey, { mode: 0o600 });
    await writeFile(certs.serviceAccountPub, sa.publicKey);
    const adminToken = randomBytes(24).toString('hex');
    const tokenFile = join(certDir, 'tokens.csv');
    await writeFile(tokenFile, `${adminToken},vmmem-admin-token,vmmem-admin-token,"system:masters"\n`, { mode: 0o600 });

    const caPem = await readFile(certs.caCert, 'utf8');
    const adminCertPem = await readFile(certs.adminCert, 'utf8');
    const adminKeyPem = await readFile(certs.adminKey, 'utf8');
    const kubeconfigPath = join(dir, 'kubeconfig');
    await writeFile(kubeconfigPath, kubeconfigYaml(server, caPem, 'vmmem-admin', adminCertPem, adminKeyPem), { mode: 0o600 });
    const kubeConfig = new k8s.KubeConfig();
    kubeConfig.loadFromFile(kubeconfigPath);

    // Flags as controller-runtime's envtest (pkg/internal/testing/controlplane/{etcd,apiserver}.go).
    const etcdArgs = [
      `--name=default`,
      `--data-dir=${etcdDataDir}`,
      `--listen-client-urls=${etcdUrl}`,
      `--advertise-client-urls=${etcdUrl}`,
      `--listen-peer-urls=${etcdPeerUrl}`,
      `--initial-advertise-peer-urls=${etcdPeerUrl}`,
      `--initial-cluster=default=${etcdPeerUrl}`,
      `--unsafe-no-fsync=true`,
      ...(opts.etcdArgs ?? []),
    ];
    const apiServerArgs = [
      `--etcd-servers=${etcdUrl}`,
      `--cert-dir=${certDir}`,
      `--tls-cert-file=${certs.servingCert}`,
      `--tls-private-key-file=${certs.servingKey}`,
      `--client-ca-file=${certs.caCert}`,
      `--token-auth-file=${tokenFile}`,
      `--secure-port=${apiPort}`,
      `--bind-address=127.0.0.1`,
      `--advertise-address=127.0.0.1`,
      // Since 1.37 the lease endpoint reconciler rejects a loopback advertise address; nothing here
      // needs the default/kubernetes Service endpoints, so don't reconcile them.
      `--endpoint-reconciler-type=none`,
      `--service-cluster-ip-range=10.0.0.0/24`,
      `--allow-privileged=true`,
      // As envtest: no controller-manager creates the default ServiceAccount, so don't require it.
      `--disable-admission-plugins=ServiceAccount`,
      `--authorization-mode=${(opts.authorizationModes ?? ['Node', 'RBAC']).join(',')}`,
      `--service-account-issuer=${server}/`,
      `--service-account-key-file=${certs.serviceAccountPub}`,
      `--service-account-signing-key-file=${certs.serviceAccountKey}`,
      ...(opts.apiServerArgs ?? []),
    ];

    const etcd = new PeerProcess('etcd', binaries.etcd, etcdArgs, logs.etcd, writePids);
    const apiServer = new PeerProcess('kube-apiserver', binaries.kubeApiServer, apiServerArgs, logs.apiServer, writePids);
    procs.push(etcd, apiServer);

    const adminTls = { ca: caPem, cert: adminCertPem, key: adminKeyPem };
    const request = async (method: string, path: string, body?: unknown): Promise<KubeResponse> =>
      rawRequest(server + path, {
        method,
        ...adminTls,
        ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
        timeoutMs: 30_000,
      });

    const startEtcd = async () => {
      etcd.start();
      await waitReady(etcd, `${etcdUrl}/health`, timeoutMs, async () => {
        const r = await rawRequest(`${etcdUrl}/health`, { timeoutMs: 2000 });
        return r.status === 200 && /"health"\s*:\s*"true"/.test(r.body);
      });
    };
    let lastReadyz = '';
    const startApiServer = async () => {
      apiServer.start();
      try {
        await waitReady(apiServer, `${server}/readyz`, timeoutMs, async () => {
          const r = await rawRequest(`${server}/readyz?verbose`, { ...adminTls, timeoutMs: 5000 });
          lastReadyz = r.body;
          return r.status === 200;
        });
      } catch (e) {
        const readyz = lastReadyz ? `\nlast /readyz?verbose:\n${lastReadyz}` : '';
        throw new Error(`${(e as Error).message}${readyz}`, { cause: e });
      }
    };

    await startEtcd();
    await startApiServer();

    const env: KubeEnv = {
      server,
      kubeconfigPath,
      kubeConfig,
      adminToken,
      certs,
      etcdUrl,
      dir,
      logs,
      binaries,
      apiServerArgs: [binaries.kubeApiServer, ...apiServerArgs],
      request,
      installCrds: (...paths: string[]) => installCrds(kubeConfig, request, paths, timeoutMs),
      userKubeConfig: async (user: string, groups: string[] = []): Promise<KubeUser> => {
        const safe = user.replace(/[^A-Za-z0-9_.-]/g, '_');
        const c = await issueCert(certDir, `user-${safe}`, { cn: user, orgs: groups }, ca);
        const path = join(dir, `kubeconfig-${safe}`);
        await writeFile(
          path,
          kubeconfigYaml(server, caPem, user, await readFile(c.cert, 'utf8'), await readFile(c.key, 'utf8')),
          { mode: 0o600 },
        );
        const kc = new k8s.KubeConfig();
        kc.loadFromFile(path);
        return { kubeConfig: kc, kubeconfigPath: path, certPath: c.cert, keyPath: c.key };
      },
      stopApiServer: async (o) => apiServer.stop(o?.signal),
      startApiServer,
      restartApiServer: async (o) => {
        await apiServer.stop(o?.signal);
        await startApiServer();
      },
      stopEtcd: async (o) => etcd.stop(o?.signal),
      startEtcd,
      restartEtcd: async (o) => {
        await etcd.stop(o?.signal);
        await startEtcd();
      },
      logTail: (which, lines = 40) => tailFile(logs[which], lines),
      stop,
      [Symbol.asyncDispose]: stop,
    };
    if (opts.crds?.length) await env.installCrds(...opts.crds);
    return env;
  } catch (e) {
    const msg = (e as Error).message;
    await stop();
    throw new Error(
      `kube test environment failed to start (${binaries.key}): ${msg}` +
        (keepDir ? `\n(kept ${dir})` : '\n(set VMMEM_KUBE_KEEP=1 to keep certs, logs and etcd data)'),
      { cause: e },
    );
  }
}

// ---------------------------------------------------------------------------------------------
// CRDs
// ---------------------------------------------------------------------------------------------

async function installCrds(
  kubeConfig: k8s.KubeConfig,
  request: (method: string, path: string, body?: unknown) => Promise<KubeResponse>,
  paths: string[],
  timeoutMs: number,
): Promise<string[]> {
  const api = kubeConfig.makeApiClient(k8s.ApiextensionsV1Api);
  const crds: k8s.V1CustomResourceDefinition[] = [];
  for (const p of paths) {
    for (const file of await collectFiles(p)) {
      const text = await readFile(file, 'utf8');
      const docs: unknown[] = file.endsWith('.json') ? [JSON.parse(text)] : k8s.loadAllYaml(text);
      for (const doc of docs) {
        const d = doc as { kind?: string; apiVersion?: string } | null;
        if (d?.kind === 'CustomResourceDefinition' && d.apiVersion === 'apiextensions.k8s.io/v1') {
          crds.push(doc as k8s.V1CustomResourceDefinition);
        }
      }
    }
  }
  if (crds.length === 0) throw new Error(`installCrds: no apiextensions.k8s.io/v1 CustomResourceDefinition in ${paths.join(', ')}`);

  for (const crd of crds) {
    const name = crd.metadata?.name;
    if (!name) throw new Error('installCrds: a CRD without metadata.name');
    try {
      await api.createCustomResourceDefinition({ body: crd });
    } catch (e) {
      if (!(e instanceof k8s.ApiException) || e.code !== 409) throw new Error(`installCrds: create ${name}: ${describe(e)}`, { cause: e });
      const existing = await api.readCustomResourceDefinition({ name });
      const body = { ...crd, metadata: { ...crd.metadata, resourceVersion: existing.metadata?.resourceVersion } };
      await api.replaceCustomResourceDefinition({ name, body }).catch((e2: unknown) => {
        throw new Error(`installCrds: replace ${name}: ${describe(e2)}`, { cause: e2 });
      });
    }
  }

  const deadline = Date.now() + timeoutMs;
  for (const crd of crds) {
    const name = crd.metadata!.name!;
    let conds: k8s.V1CustomResourceDefinitionCondition[] = [];
    for (;;) {
      const cur = await api.readCustomResourceDefinition({ name });
      conds = cur.status?.conditions ?? [];
      const cond = (t: string) => conds.find((c) => c.type === t);
      if (cond('NamesAccepted')?.status === 'False') {
        throw new Error(`installCrds: ${name} names not accepted: ${cond('NamesAccepted')?.message}`);
      }
      if (cond('Established')?.status === 'True') break;
      if (Date.now() > deadline) throw new Error(`installCrds: ${name} not Established: ${JSON.stringify(conds)}`);
      await sleep(100);
    }
    // Established means the handler is installed; also wait until discovery serves every version.
    for (const v of crd.spec.versions.filter((v) => v.served)) {
      const path = `/apis/${crd.spec.group}/${v.name}`;
      for (;;) {
        const r = await request('GET', path);
        if (r.status === 200) {
          const list = JSON.parse(r.body) as { resources?: { name: string }[] };
          if (list.resources?.some((res) => res.name === crd.spec.names.plural)) break;
        }
        if (Date.now() > deadline) throw new Error(`installCrds: ${crd.spec.names.plural} not in discovery ${path}: ${r.status} ${r.body}`);
        await sleep(100);
      }
    }
  }
  return crds.map((c) => c.metadata!.name!);
}

/** Readable text for a client-node error (ApiException carries the Status body). */
export function describe(e: unknown): string {
  if (e instanceof k8s.ApiException) {
    const body = e.body as unknown;
    let msg: string;
    if (typeof body === 'string') {
      try {
        msg = (JSON.parse(body) as { message?: string }).message ?? body;
      } catch {
        msg = body;
      }
    } else msg = (body as { message?: string } | undefined)?.message ?? JSON.stringify(body);
    return `HTTP ${e.code}: ${msg}`;
  }
  return e instanceof Error ? e.message : String(e);
}
