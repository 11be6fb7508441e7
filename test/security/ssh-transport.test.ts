/**
 * Issue #12 items 1 and 7: the ssh transport against a real OpenSSH server (test/env/sshd.ts, on a
 * loopback port, as a child of this test) relaying to a real libvirtd (its test driver). Here the
 * "remote host" is this machine, so anything a hostile URI made either side run would leave the
 * marker file behind, and sshd's own log says whether a connection reached it at all.
 *
 * - an allowed test+ssh URI reaches sshd, logs in with the Secret's key only, checks the host key
 *   strictly, and speaks libvirt through `nc -U`;
 * - hostile ssh URIs (command=, netcat=, keyfile=, known_hosts=, sshauth=, an option as user name,
 *   a quoted socket path) given to `vmmem plan` and `vmmem run --once` execute nothing and never
 *   connect: sshd logs no connection;
 * - defence in depth: values that reach the remote shell (socket=, the libvirt URI name) are quoted,
 *   so even a LibvirtUri built without parseUri, carrying `'$(touch marker)'`, runs nothing on the
 *   real sshd's shell (which did run the relay: sshd accepted the login).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { LibvirtClient } from '../../src/libvirt/index.ts';
import { openTransport } from '../../src/libvirt/transport.ts';
import type { LibvirtUri } from '../../src/libvirt/uri.ts';
import { startLibvirtd } from '../env/libvirtd.ts';
import type { Libvirtd } from '../env/libvirtd.ts';
import { startSshd } from '../env/sshd.ts';
import type { Sshd } from '../env/sshd.ts';
import { vmmemProcess } from '../env/cli.ts';

const vmmem = (...args: string[]) => vmmemProcess(args);
const user = userInfo().username;
const work = mkdtempSync(join(tmpdir(), 'vmmem-sec-ssh-'));
const marker = join(work, 'executed');
const keyfile = join(work, 'id');
const knownHosts = join(work, 'known_hosts');

let sshd: Sshd;
let d: Libvirtd;
let holder: LibvirtClient;

before(async () => {
  sshd = await startSshd();
  d = await startLibvirtd();
  // The test driver's state lives while a connection holds it.
  holder = await LibvirtClient.connect(`test+unix:///default?socket=${d.socketPath}`);
  writeFileSync(keyfile, sshd.clientKey, { mode: 0o600 });
  writeFileSync(knownHosts, sshd.knownHosts, { mode: 0o600 });
});

after(async () => {
  await holder?.close();
  await d?.stop();
  await sshd?.stop();
  rmSync(work, { recursive: true, force: true });
});


const goodUri = () => `test+ssh://${user}@127.0.0.1:${sshd.port}/default?socket=${d.socketPath}&proxy=netcat`;

/** Hostile URIs aimed at the real sshd; each payload would create the marker file. */
function hostileUris(): Record<string, string> {
  const at = `127.0.0.1:${sshd.port}`;
  const touch = encodeURIComponent(`touch ${marker}`);
  return {
    'command= with a -c user (the issue\'s exploit)': `qemu+ssh://-c@${at}/system?command=/bin/sh&keyfile=${touch}`,
    'command=': `qemu+ssh://${user}@${at}/system?command=/bin/sh`,
    'netcat= (a remote command)': `qemu+ssh://${user}@${at}/system?netcat=${touch}%3B`,
    'keyfile= (the operator\'s token)': `qemu+ssh://${user}@${at}/system?keyfile=/var/run/secrets/kubernetes.io/serviceaccount/token`,
    'known_hosts=': `qemu+ssh://${user}@${at}/system?known_hosts=/etc/passwd`,
    'sshauth=': `qemu+ssh://${user}@${at}/system?sshauth=agent`,
    'an ssh option as user name': `qemu+ssh://-oProxyCommand=${touch}@${at}/system`,
    'a quoted socket path': `test+ssh://${user}@${at}/default?socket=${encodeURIComponent(`/tmp/x'; touch ${marker}; '`)}`,
  };
}

function manifests(dir: string, uris: Record<string, string>): string {
  mkdirSync(dir, { recursive: true });
  const docs: unknown[] = [
    { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'ssh', namespace: 'default' }, stringData: { 'ssh-privatekey': sshd.clientKey, known_hosts: sshd.knownHosts } },
  ];
  Object.values(uris).forEach((uri, i) => {
    docs.push({ apiVersion: 'vmmem.io/v1alpha1', kind: 'Hypervisor', metadata: { name: `hv-${i}`, namespace: 'default' }, spec: { uri, credentialsSecretRef: { name: 'ssh' } } });
    docs.push({ apiVersion: 'vmmem.io/v1alpha1', kind: 'VirtualMachineMemory', metadata: { name: `vm-${i}`, namespace: 'default' }, spec: { hypervisorRef: { name: `hv-${i}` }, vm: { name: 'test' }, maxMemory: '8Gi' } });
  });
  writeFileSync(join(dir, 'objects.yaml'), docs.map((o) => stringify(o)).join('---\n'));
  return dir;
}

type Item = { kind: string; metadata: { name: string }; status?: { conditions?: { type: string; status: string; reason: string; message: string }[] } };
const readyOf = (items: Item[], name: string) => items.find((i) => i.kind === 'Hypervisor' && i.metadata.name === name)?.status?.conditions?.find((c) => c.type === 'Ready');

describe('an allowed URI over the real sshd', () => {
  it('reaches sshd, logs in with the given key only, and speaks libvirt through nc -U', async () => {
    const before = sshd.accepted();
    const connections = sshd.connections();
    const c = await LibvirtClient.connect(goodUri(), { ssh: { keyfile, knownHostsFile: knownHosts } });
    try {
      assert.equal(await c.getType(), 'TEST');
    } finally {
      await c.close();
    }
    assert.equal(sshd.accepted(), before + 1, sshd.log());
    assert.equal(sshd.connections(), connections + 1, 'the connection counter the hostile test relies on sees a real connection');
  });

  it('a host key not in known_hosts is refused by ssh (strict checking): no login', async () => {
    const other = join(work, 'other_known_hosts');
    writeFileSync(other, `[127.0.0.1]:${sshd.port} ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHVtbWVtLXRlc3Qtbm90LXRoZS1zZXJ2ZXJzLWtleQ\n`, { mode: 0o600 });
    const before = sshd.accepted();
    await assert.rejects(async () => {
      const c = await LibvirtClient.connect(goodUri(), { ssh: { keyfile, knownHostsFile: other }, connectTimeoutMs: 20_000 });
      await c.close();
    }, /Host key verification failed|REMOTE HOST IDENTIFICATION HAS CHANGED|host key/i);
    assert.equal(sshd.accepted(), before);
  });

  it('vmmem run --once with the Secret: the Hypervisor is Connected through sshd', async () => {
    const dir = manifests(join(work, 'good'), { good: goodUri() });
    const before = sshd.accepted();
    const r = await vmmem('run', '--manifests', dir, '--once', '-o', 'json');
    const ready = readyOf((JSON.parse(r.stdout) as { items: Item[] }).items, 'hv-0');
    assert.equal(ready?.status, 'True', r.out);
    assert.ok(sshd.accepted() > before, `sshd logged no login:\n${sshd.log()}`);
    assert.ok(!r.out.includes('PRIVATE KEY'), 'the key reached the output');
  });
});

describe('hostile ssh URIs at the real sshd', () => {
  it('vmmem plan and vmmem run --once execute nothing and never connect to sshd', async () => {
    const uris = hostileUris();
    const dir = manifests(join(work, 'hostile'), uris);
    const connections = sshd.connections();
    const plan = await vmmem('plan', '-f', dir);
    assert.notEqual(plan.code, 0, plan.out);
    const run = await vmmem('run', '--manifests', dir, '--once', '-o', 'json');
    assert.notEqual(run.code, 0, run.out);
    const items = (JSON.parse(run.stdout) as { items: Item[] }).items;
    Object.keys(uris).forEach((what, i) => {
      const ready = readyOf(items, `hv-${i}`);
      assert.equal(ready?.status, 'False', what);
      assert.equal(ready?.reason, 'InvalidURI', `${what}: ${ready?.message}`);
    });
    assert.equal(existsSync(marker), false, 'a payload ran');
    assert.equal(sshd.connections(), connections, `a hostile URI reached sshd:\n${sshd.log()}`);
  });

  it('what reaches the remote shell is quoted: a hostile socket or URI name, bypassing parseUri, runs nothing there', async () => {
    // A command substitution: expanded before the relay's `exec`, if the quoting ever let it out.
    const evil = `'$(touch ${marker})'`;
    const base: LibvirtUri = {
      uri: 'test+ssh://user@127.0.0.1/default', driver: 'test', transport: 'ssh', user, host: '127.0.0.1', port: sshd.port,
      path: '/default', params: {}, name: 'test:///default', socket: undefined, proxy: 'auto', mode: 'auto',
    };
    const cases: LibvirtUri[] = [
      { ...base, socket: `/tmp/x${evil}`, proxy: 'netcat' },
      { ...base, name: `test:///default${evil}`, proxy: 'native' },
      { ...base, socket: `/tmp/x${evil}`, name: `test:///default${evil}`, proxy: 'auto' },
    ];
    for (const u of cases) {
      const before = sshd.accepted();
      const stream = await openTransport(u, { ssh: { keyfile, knownHostsFile: knownHosts }, connectTimeoutMs: 20_000 });
      // The relay fails on the remote side (no such socket / daemon): wait until ssh has exited.
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 30_000);
        const done = () => {
          clearTimeout(timer);
          resolve();
        };
        stream.once('close', done);
        stream.once('error', done);
        stream.resume();
      });
      stream.destroy();
      assert.equal(sshd.accepted(), before + 1, `the remote command did not run at all (proxy ${u.proxy}):\n${sshd.log()}`);
      assert.equal(existsSync(marker), false, `the remote shell ran the payload (proxy ${u.proxy})`);
    }
  });
});
