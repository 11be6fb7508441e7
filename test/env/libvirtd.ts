// A real, isolated libvirtd (+ virtlogd) for tests and benchmarks.
//
// Debian's libvirtd runs in its own mount namespace (`unshare -m`), with
// /run/libvirt, /var/lib/libvirt, /var/log/libvirt and /etc/libvirt
// bind-mounted from a fresh temp directory (and /var/cache/libvirt from a
// shared capabilities cache, see cacheDir), so it never sees or
// touches another libvirtd's state. Because the directories are host
// directories, the daemon's unix socket (<dir>/run/libvirt-sock) is reachable
// from outside the namespace, and state survives restart().
//
// qemu.conf: user/group root, no security driver, no cgroup controllers, no
// namespaces, no remember_owner: what QEMU needs to run in this container.
// The test driver is served by the same daemon (`test+unix:///default?socket=`).

import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, openSync, closeSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { ErrorCode, LibvirtError } from '../../src/libvirt/index.ts';
import type { LibvirtClient } from '../../src/libvirt/index.ts';

export interface LibvirtdOptions {
  /** qemu.conf cgroup_controllers (default []: libvirt does not touch cgroups). */
  cgroupControllers?: string[];
  /** libvirtd.conf max_client_requests (libvirt's default is 5). */
  maxClientRequests?: number;
  /** Seconds to wait for the socket (default 30). */
  startTimeoutS?: number;
  /**
   * Also listen on 127.0.0.1 (libvirtd --listen): TLS on `tls.port` with the
   * given PEM files (client certificates required and verified, auth none),
   * and/or plain TCP on `tcpPort` (auth none). Ports: pick free ones (freePort()).
   */
  tls?: { port: number; caFile: string; certFile: string; keyFile: string };
  tcpPort?: number;
  /**
   * Directory bind-mounted over /var/cache/libvirt. Default: ~/.cache/vmmem/libvirt-cache,
   * shared by all harnesses, so libvirt's QEMU capabilities probe (several seconds,
   * blocking virConnectGetVersion on a fresh daemon) runs once per machine, not per daemon.
   */
  cacheDir?: string;
}

/** A free loopback TCP port (listen on port 0, close, return it). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

export interface Libvirtd {
  /** The daemon's read-write unix socket. */
  readonly socketPath: string;
  /** The temp directory holding run/, lib/, cache/, log/, etc/. */
  readonly dir: string;
  /** `qemu:///system?socket=...` or `test+unix:///default?socket=...`. */
  uri(driver: 'qemu' | 'test'): string;
  /** libvirtd's pid (changes on restart). */
  readonly pid: number;
  /** Kill QEMU processes, libvirtd and virtlogd, remove the directory. */
  stop(): Promise<void>;
  /** Stop libvirtd only (domains keep running) and start it again on the same state. */
  restart(): Promise<void>;
  /** Stop libvirtd only (for tests of a daemon going away). */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** Last lines of libvirtd's log, for failure messages. */
  logTail(lines?: number): string;
}

const BINARIES = ['/usr/sbin/libvirtd', '/usr/sbin/virtlogd', '/usr/bin/qemu-system-x86_64', '/usr/bin/unshare'];

function preflight(): void {
  const missing = BINARIES.filter((b) => !existsSync(b));
  if (missing.length) {
    throw new Error(`libvirt peer not installed: missing ${missing.join(', ')}. Run: bash test/peer/libvirt/setup.sh`);
  }
  for (const [kind, name] of [['passwd', 'libvirt-qemu'], ['group', 'kvm']] as const) {
    const r = spawnSync('getent', [kind, name]);
    if (r.status !== 0) throw new Error(`libvirt peer: ${kind === 'passwd' ? 'user' : 'group'} '${name}' missing. Run: bash test/peer/libvirt/setup.sh`);
  }
}

function writeConfigs(dir: string, o: LibvirtdOptions): void {
  const etc = join(dir, 'etc');
  // Start from the stock client configs (libvirt.conf, ...) then write ours.
  if (existsSync('/etc/libvirt')) cpSync('/etc/libvirt', etc, { recursive: true });
  mkdirSync(etc, { recursive: true });
  writeFileSync(
    join(etc, 'libvirtd.conf'),
    [
      'unix_sock_group = "root"',
      'unix_sock_ro_perms = "0777"',
      'unix_sock_rw_perms = "0770"',
      'auth_unix_ro = "none"',
      'auth_unix_rw = "none"',
      'log_outputs = "3:file:/var/log/libvirt/libvirtd.log"',
      `max_client_requests = ${o.maxClientRequests ?? 5}`,
      'listen_addr = "127.0.0.1"',
      `listen_tls = ${o.tls ? 1 : 0}`,
      `listen_tcp = ${o.tcpPort ? 1 : 0}`,
      ...(o.tls
        ? [`tls_port = "${o.tls.port}"`, `ca_file = "${o.tls.caFile}"`, `cert_file = "${o.tls.certFile}"`, `key_file = "${o.tls.keyFile}"`, 'auth_tls = "none"', 'tls_no_verify_certificate = 0']
        : []),
      ...(o.tcpPort ? [`tcp_port = "${o.tcpPort}"`, 'auth_tcp = "none"'] : []),
      '',
    ].join('\n'),
  );
  const cg = (o.cgroupControllers ?? []).map((c) => `"${c}"`).join(', ');
  writeFileSync(
    join(etc, 'qemu.conf'),
    ['user = "root"', 'group = "root"', 'security_driver = "none"', `cgroup_controllers = [ ${cg} ]`, 'namespaces = [ ]', 'remember_owner = 0', ''].join('\n'),
  );
  writeFileSync(join(etc, 'virtlogd.conf'), 'log_outputs = "3:file:/var/log/libvirt/virtlogd.log"\n');
}

function startScript(dir: string, listen: boolean, cacheDir: string): string {
  const m = (src: string, dst: string) => `mkdir -p ${dst} && mount --bind ${src.startsWith('/') ? src : join(dir, src)} ${dst}`;
  return [
    'set -e',
    m('run', '/run/libvirt'),
    m('lib', '/var/lib/libvirt'),
    m(cacheDir, '/var/cache/libvirt'),
    m('log', '/var/log/libvirt'),
    m('etc', '/etc/libvirt'),
    // virtlogd survives libvirtd restarts (QEMU keeps its log pipes).
    // Root daemons keep their pid files in /run by default: keep them inside the bind-mounted dir.
    'if ! kill -0 "$(cat /run/libvirt/virtlogd.pid 2>/dev/null)" 2>/dev/null; then virtlogd -d -p /run/libvirt/virtlogd.pid; fi',
    `exec libvirtd -p /run/libvirt/libvirtd.pid${listen ? ' --listen' : ''}`,
  ].join('\n');
}

/**
 * True once the daemon answers an RPC (REMOTE_PROC_AUTH_LIST) on `path`: a
 * socket that accepts is not enough, libvirtd accepts before its drivers are up.
 */
function answersRpc(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ path });
    const done = (ok: boolean) => {
      clearTimeout(timer);
      s.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), 2000);
    s.once('connect', () => {
      const h = Buffer.alloc(28);
      h.writeUInt32BE(28, 0);
      h.writeUInt32BE(0x20008086, 4); // REMOTE_PROGRAM
      h.writeUInt32BE(1, 8);
      h.writeInt32BE(66, 12); // REMOTE_PROC_AUTH_LIST
      h.writeInt32BE(0, 16); // CALL
      h.writeUInt32BE(1, 20);
      h.writeInt32BE(0, 24);
      s.write(h);
    });
    let got = 0;
    s.on('data', (d: Buffer) => {
      got += d.length;
      if (got >= 28) done(true);
    });
    s.once('error', () => done(false));
    s.once('close', () => done(false));
  });
}

function readPid(file: string): number | undefined {
  try {
    const n = Number(readFileSync(file, 'utf8').trim());
    return Number.isInteger(n) && n > 0 ? n : undefined;
  } catch {
    return undefined;
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    // a zombie still answers kill 0; check /proc
    const st = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/^\d+ \(.*\) Z/.test(st);
  } catch {
    return false;
  }
}

async function waitGone(pid: number, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (!alive(pid)) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return !alive(pid);
}

async function killPid(pid: number | undefined, ms = 5000): Promise<void> {
  if (pid === undefined || !alive(pid)) return;
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return;
  }
  if (await waitGone(pid, ms)) return;
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    /* gone */
  }
  await waitGone(pid, 2000);
}

export async function startLibvirtd(o: LibvirtdOptions = {}): Promise<Libvirtd> {
  preflight();
  const dir = mkdtempSync(join(tmpdir(), 'vmmem-libvirtd-'));
  for (const d of ['run', 'lib', 'log']) mkdirSync(join(dir, d), { recursive: true });
  const cacheDir = o.cacheDir ?? join(homedir(), '.cache', 'vmmem', 'libvirt-cache');
  mkdirSync(cacheDir, { recursive: true });
  writeConfigs(dir, o);
  const socketPath = join(dir, 'run', 'libvirt-sock');
  const logFile = join(dir, 'log', 'libvirtd.log');
  const outFile = join(dir, 'daemon.out');
  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();

  const logTail = (lines = 30): string => {
    const parts: string[] = [];
    for (const f of [outFile, logFile]) {
      try {
        parts.push(readFileSync(f, 'utf8').trimEnd().split('\n').slice(-lines).join('\n'));
      } catch {
        /* not there yet */
      }
    }
    return parts.filter(Boolean).join('\n');
  };

  const launch = async (): Promise<void> => {
    const fd = openSync(outFile, 'a');
    const c = spawn('unshare', ['-m', '--propagation', 'private', '--', 'sh', '-c', startScript(dir, Boolean(o.tls || o.tcpPort), cacheDir)], {
      stdio: ['ignore', fd, fd],
    });
    closeSync(fd);
    child = c;
    let exitInfo: string | undefined;
    exited = new Promise((resolve) => {
      c.once('exit', (code, sig) => {
        exitInfo = code !== null ? `exit code ${code}` : `signal ${sig}`;
        resolve();
      });
      c.once('error', (err) => {
        exitInfo = `spawn error: ${err.message}`;
        resolve();
      });
    });
    const deadline = Date.now() + (o.startTimeoutS ?? 30) * 1000;
    for (;;) {
      if (exitInfo !== undefined) throw new Error(`libvirtd exited during startup (${exitInfo}):\n${logTail()}`);
      if (existsSync(socketPath) && (await answersRpc(socketPath))) return;
      if (Date.now() > deadline) throw new Error(`libvirtd did not open ${socketPath} within ${o.startTimeoutS ?? 30}s:\n${logTail()}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };

  const stopDaemon = async (signal: NodeJS.Signals = 'SIGTERM'): Promise<void> => {
    const c = child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    c.kill(signal);
    const t = setTimeout(() => c.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(t);
  };

  const qemuPids = (): number[] => {
    const qdir = join(dir, 'run', 'qemu');
    if (!existsSync(qdir)) return [];
    return readdirSync(qdir)
      .filter((f) => f.endsWith('.pid'))
      .map((f) => readPid(join(qdir, f)))
      .filter((p): p is number => p !== undefined);
  };

  try {
    await launch();
  } catch (e) {
    await stopDaemon('SIGKILL');
    await killPid(readPid(join(dir, 'run', 'virtlogd.pid')));
    if (!process.env.VMMEM_KEEP_LIBVIRTD) rmSync(dir, { recursive: true, force: true });
    throw e;
  }

  let stopped = false;
  const h: Libvirtd = {
    socketPath,
    dir,
    uri: (driver) => (driver === 'qemu' ? `qemu:///system?socket=${socketPath}` : `test+unix:///default?socket=${socketPath}`),
    get pid() {
      return child?.pid ?? -1;
    },
    logTail,
    kill: (signal) => stopDaemon(signal ?? 'SIGTERM'),
    restart: async () => {
      await stopDaemon();
      await launch();
    },
    stop: async () => {
      if (stopped) return;
      stopped = true;
      const qemus = qemuPids();
      await stopDaemon();
      await Promise.all(qemus.map((p) => killPid(p)));
      await killPid(readPid(join(dir, 'run', 'virtlogd.pid')));
      if (!process.env.VMMEM_KEEP_LIBVIRTD) rmSync(dir, { recursive: true, force: true });
    },
  };
  return h;
}

export interface TinyDomainOptions {
  /** `<memory>` in MiB (default 256). */
  maxMiB?: number;
  /** `<currentMemory>` in MiB (default = maxMiB). */
  currentMiB?: number;
  uuid?: string;
  /** memballoon model (default virtio). */
  balloon?: 'virtio' | 'none';
  /** Add one NUMA cell holding all memory. */
  numa?: boolean;
  /** `<maxMemory slots>` hotplug ceiling in MiB. */
  maxMemoryMiB?: number;
}

/** A diskless `<domain type='qemu'>` that boots under TCG in about half a second. */
export function tinyDomainXml(name: string, o: TinyDomainOptions = {}): string {
  const max = o.maxMiB ?? 256;
  const cur = o.currentMiB ?? max;
  return [
    `<domain type='qemu'>`,
    `  <name>${name}</name>`,
    o.uuid ? `  <uuid>${o.uuid}</uuid>` : '',
    o.maxMemoryMiB ? `  <maxMemory slots='2' unit='MiB'>${o.maxMemoryMiB}</maxMemory>` : '',
    `  <memory unit='MiB'>${max}</memory>`,
    `  <currentMemory unit='MiB'>${cur}</currentMemory>`,
    `  <vcpu>1</vcpu>`,
    `  <os><type arch='x86_64' machine='pc'>hvm</type></os>`,
    o.numa ? `  <cpu><numa><cell id='0' cpus='0' memory='${max}' unit='MiB'/></numa></cpu>` : '',
    `  <on_poweroff>destroy</on_poweroff><on_reboot>destroy</on_reboot><on_crash>destroy</on_crash>`,
    `  <devices>`,
    `    <emulator>/usr/bin/qemu-system-x86_64</emulator>`,
    `    <memballoon model='${o.balloon ?? 'virtio'}'/>`,
    `  </devices>`,
    `</domain>`,
  ]
    .filter(Boolean)
    .join('\n');
}

/** Destroys (if running) and undefines (if persistent) a domain; a domain already gone is fine. */
export async function removeDomain(c: LibvirtClient, name: string): Promise<void> {
  try {
    const dom = await c.lookupDomainByName(name);
    // The domain may stop between the check and the destroy (a daemon restart, its own
    // on_poweroff): "domain is not running" then means the destroy is already done.
    if (await c.domainIsActive(dom)) await c.domainDestroy(dom).catch(ignoreNotRunning);
    if (await c.domainIsPersistent(dom)) await c.domainUndefine(dom);
  } catch (e) {
    if (!(e instanceof LibvirtError && e.code === ErrorCode.NO_DOMAIN)) throw e;
  }
}

function ignoreNotRunning(e: unknown): void {
  if (!(e instanceof LibvirtError && e.code === ErrorCode.OPERATION_INVALID)) throw e;
}

/** Hard power-off, as `virsh destroy` does. */
export async function powerOffDomain(c: LibvirtClient, name: string): Promise<void> {
  await c.domainDestroy(await c.lookupDomainByName(name));
}

/** Starts a defined domain, as `virsh start` does. */
export async function powerOnDomain(c: LibvirtClient, name: string): Promise<void> {
  await c.domainCreate(await c.lookupDomainByName(name));
}
