// The libvirt client against a real libvirtd 9.0 + QEMU 7.2 (TCG) and the
// daemon's test driver. One isolated daemon for this file.
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startLibvirtd, tinyDomainXml } from '../../env/libvirtd.ts';
import type { Libvirtd } from '../../env/libvirtd.ts';
import {
  DomainMemFlags,
  DomainXmlFlags,
  ErrorCode,
  ErrorDomain,
  LibvirtClient,
  LibvirtError,
  MEMORY_PARAM_UNLIMITED,
  parseDomainXml,
} from '../../../src/libvirt/index.ts';
import type { BalloonChangeEvent, DomainRef, LifecycleEvent } from '../../../src/libvirt/index.ts';
import { rejectsWith } from '../../env/rejects.ts';

let d: Libvirtd;
let c: LibvirtClient;

const rejects = (p: Promise<unknown>): Promise<LibvirtError> => rejectsWith(p, LibvirtError);

async function waitFor<T>(what: string, f: () => T | undefined, ms = 10_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = f();
    if (v !== undefined) return v;
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

before(async () => {
  d = await startLibvirtd();
  c = await LibvirtClient.connect(d.uri('qemu'), { callTimeoutMs: 30_000 });
});

after(async () => {
  await c?.close();
  await d?.stop();
});

describe('connection', () => {
  it('opens, reports type, versions, hostname, URI and node info', async () => {
    assert.equal(await c.getType(), 'QEMU');
    const v = await c.getVersion();
    assert.ok(v >= 7_002_000, `QEMU version ${v}`);
    assert.ok((await c.getLibVersion()) >= 9_000_000);
    assert.ok((await c.getHostname()).length > 0);
    assert.equal(await c.getUri(), 'qemu:///system');
    const ni = await c.nodeGetInfo();
    assert.ok(ni.memoryKiB > 1024 * 1024, JSON.stringify(ni));
    assert.ok(ni.cpus >= 1);
    assert.match(ni.model, /^[\w-]+$/);
    const ms = await c.nodeGetMemoryStats();
    assert.ok(ms.total !== undefined && ms.free !== undefined, JSON.stringify(ms));
    assert.ok((await c.nodeGetFreeMemory()) > 0);
  });

  it('closes cleanly; calls after close fail with reason closed', async () => {
    const c2 = await LibvirtClient.connect(d.uri('qemu'));
    let closeErr: unknown = 'not emitted';
    c2.on('close', (e) => (closeErr = e));
    await c2.close();
    assert.equal(c2.closed, true);
    assert.equal(closeErr, undefined, 'a requested close carries no error');
    const e = await rejects(c2.getType());
    assert.equal(e.reason, 'closed');
    assert.equal(e.procedure, 'REMOTE_PROC_CONNECT_GET_TYPE');
    await c2.close(); // idempotent
  });

  it('a read-only connection can read but not write', async () => {
    const ro = await LibvirtClient.connect(d.uri('qemu'), { readOnly: true });
    try {
      assert.equal(await ro.getType(), 'QEMU');
      const e = await rejects(ro.domainDefineXml(tinyDomainXml('ro-denied')));
      assert.equal(e.code, ErrorCode.OPERATION_DENIED, e.message);
    } finally {
      await ro.close();
    }
  });

  it('a driver vmmem does not manage is refused before any I/O', async () => {
    const sock = d.socketPath;
    const e = await rejects(LibvirtClient.connect(`lxc:///system?socket=${sock}`));
    assert.equal(e.reason, 'uri');
    assert.match(e.message, /unsupported hypervisor driver 'lxc'/);
  });
});

describe('QEMU domain memory', () => {
  let dom: DomainRef;
  const uuid = '6b1f0c4e-3b1d-4c59-9a5e-1d2f3a4b5c6d';

  before(async () => {
    dom = await c.domainDefineXml(tinyDomainXml('mem1', { maxMiB: 256, uuid }));
  });

  it('define: persistent, inactive, lookups by name and uuid agree', async () => {
    assert.equal(dom.name, 'mem1');
    assert.equal(dom.uuid, uuid);
    assert.equal(dom.id, -1);
    assert.equal(await c.domainIsPersistent(dom), true);
    assert.equal(await c.domainIsActive(dom), false);
    assert.deepEqual(await c.lookupDomainByName('mem1'), dom);
    assert.deepEqual(await c.lookupDomainByUuid(uuid.toUpperCase()), dom);
    const st = await c.domainGetState(dom);
    assert.equal(st.stateName, 'shutoff');
    const miss = await rejects(c.lookupDomainByName('no-such-vm'));
    assert.equal(miss.code, ErrorCode.NO_DOMAIN);
    assert.equal(miss.codeName, 'VIR_ERR_NO_DOMAIN');
    assert.match(miss.message, /no-such-vm/);
    const missU = await rejects(c.lookupDomainByUuid('00000000-0000-0000-0000-000000000001'));
    assert.equal(missU.code, ErrorCode.NO_DOMAIN);
    await assert.rejects(c.lookupDomainByUuid('nope'), /invalid UUID 'nope'/);
  });

  it('a shut-off domain accepts config changes and refuses live ones', async () => {
    await c.domainSetMemoryFlags(dom, 200 * 1024, DomainMemFlags.CONFIG);
    const x = parseDomainXml(await c.domainGetXmlDesc(dom, DomainXmlFlags.INACTIVE));
    assert.equal(x.currentMemoryKiB, 200 * 1024);
    const e = await rejects(c.domainSetMemoryFlags(dom, 100 * 1024, DomainMemFlags.LIVE));
    assert.equal(e.code, ErrorCode.OPERATION_INVALID);
    assert.match(e.libvirtMessage, /domain is not running/);
    await c.domainSetMemoryFlags(dom, 256 * 1024, DomainMemFlags.CONFIG);
  });

  it('starts under TCG with lifecycle events; info and live XML agree', async () => {
    const events: LifecycleEvent[] = [];
    const sub = await c.onLifecycle((ev) => events.push(ev), dom);
    const t0 = Date.now();
    dom = await c.domainCreate(dom);
    const startMs = Date.now() - t0;
    assert.ok(dom.id > 0, `running domain has an id (${dom.id})`);
    assert.ok(startMs < 10_000, `started in ${startMs} ms`);
    assert.equal(await c.domainIsActive(dom), true);
    const info = await c.domainGetInfo(dom);
    assert.equal(info.stateName, 'running');
    assert.equal(info.maxMemKiB, 256 * 1024);
    assert.equal(info.nrVirtCpu, 1);
    const live = parseDomainXml(await c.domainGetXmlDesc(dom));
    assert.equal(live.memoryKiB, 256 * 1024);
    assert.equal(live.memballoonModel, 'virtio');
    assert.equal(live.uuid, uuid);
    const started = await waitFor('started event', () => events.find((e) => e.eventName === 'started'));
    assert.equal(started.dom.name, 'mem1');
    assert.equal(started.callbackId, sub.callbackId);
    await sub.close();
  });

  it('sets the balloon target live; memory stats report actual and rss', async () => {
    await c.domainSetMemoryFlags(dom, 200 * 1024, DomainMemFlags.LIVE);
    // The live XML's currentMemory is the balloon's actual size, not the target: with no guest
    // balloon driver (no OS here) QEMU accepts the target and nothing moves (design §2).
    const live = parseDomainXml(await c.domainGetXmlDesc(dom));
    assert.equal(live.currentMemoryKiB, 256 * 1024);
    const stats = await c.domainMemoryStats(dom);
    assert.ok(stats.actual !== undefined && stats.actual > 0, JSON.stringify(stats));
    assert.ok(stats.rss !== undefined && stats.rss > 0, JSON.stringify(stats));
    assert.equal(stats.actual, 256 * 1024);
    // memory above the maximum is refused by libvirt
    const e = await rejects(c.domainSetMemoryFlags(dom, 512 * 1024, DomainMemFlags.LIVE));
    assert.equal(e.code, ErrorCode.INVALID_ARG, e.message);
    await c.domainSetMemoryFlags(dom, 256 * 1024, DomainMemFlags.LIVE);
  });

  it('live maxMemory fails with libvirt\'s exact error, code and domain', async () => {
    const e = await rejects(c.domainSetMemoryFlags(dom, 300 * 1024, DomainMemFlags.LIVE | DomainMemFlags.MAXIMUM));
    assert.equal(e.reason, 'remote');
    assert.equal(e.code, ErrorCode.OPERATION_INVALID);
    assert.equal(e.domain, ErrorDomain.QEMU);
    assert.equal(e.codeName, 'VIR_ERR_OPERATION_INVALID');
    assert.equal(e.domainName, 'VIR_FROM_QEMU');
    assert.equal(e.level, 2);
    assert.equal(e.procedure, 'REMOTE_PROC_DOMAIN_SET_MEMORY_FLAGS');
    assert.equal(e.libvirtMessage, 'Requested operation is not valid: cannot resize the maximum memory on an active domain');
    assert.equal(e.message, `REMOTE_PROC_DOMAIN_SET_MEMORY_FLAGS: ${e.libvirtMessage}`);
  });

  it('config-only maxMemory on a running domain: live unchanged, next boot uses it', async () => {
    await c.domainSetMemoryFlags(dom, 384 * 1024, DomainMemFlags.CONFIG | DomainMemFlags.MAXIMUM);
    const cfg = parseDomainXml(await c.domainGetXmlDesc(dom, DomainXmlFlags.INACTIVE));
    const live = parseDomainXml(await c.domainGetXmlDesc(dom));
    assert.equal(cfg.memoryKiB, 384 * 1024);
    assert.equal(live.memoryKiB, 256 * 1024);
    assert.equal((await c.domainGetInfo(dom)).maxMemKiB, 256 * 1024);
    // lowering the maximum below currentMemory lowers currentMemory too (config)
    await c.domainSetMemoryFlags(dom, 128 * 1024, DomainMemFlags.CONFIG | DomainMemFlags.MAXIMUM);
    const low = parseDomainXml(await c.domainGetXmlDesc(dom, DomainXmlFlags.INACTIVE));
    assert.equal(low.memoryKiB, 128 * 1024);
    assert.equal(low.currentMemoryKiB, 128 * 1024);
    await c.domainSetMemoryFlags(dom, 256 * 1024, DomainMemFlags.CONFIG | DomainMemFlags.MAXIMUM);
    await c.domainSetMemoryFlags(dom, 256 * 1024, DomainMemFlags.CONFIG);
  });

  it('memtune: the cgroup memory controller is not available to this daemon (clear error)', async () => {
    // qemu.conf here has cgroup_controllers = [] (the container gives libvirt no cgroup it may use).
    const g = await rejects(c.domainGetMemoryParameters(dom));
    assert.equal(g.code, ErrorCode.OPERATION_INVALID);
    assert.match(g.libvirtMessage, /cgroup memory controller is not mounted/);
    const s = await rejects(c.domainSetMemoryParameters(dom, { hard_limit: 1024 * 1024 }, DomainMemFlags.LIVE));
    assert.match(s.libvirtMessage, /cgroup memory controller is not mounted/);
    // config memtune does not need cgroups
    await c.domainSetMemoryParameters(dom, { hard_limit: 1024 * 1024, soft_limit: 'unlimited' }, DomainMemFlags.CONFIG);
    const cfg = await c.domainGetMemoryParameters(dom, DomainMemFlags.CONFIG);
    assert.equal(cfg.hard_limit, 1024 * 1024);
    assert.equal(cfg.soft_limit, MEMORY_PARAM_UNLIMITED);
    const x = parseDomainXml(await c.domainGetXmlDesc(dom, DomainXmlFlags.INACTIVE));
    assert.equal(x.memtune.hardLimitKiB, 1024 * 1024);
    await c.domainSetMemoryParameters(dom, { hard_limit: 'unlimited' }, DomainMemFlags.CONFIG);
    assert.equal((await c.domainGetMemoryParameters(dom, DomainMemFlags.CONFIG)).hard_limit, MEMORY_PARAM_UNLIMITED);
    // min_guarantee is not a QEMU tunable
    const m = await rejects(c.domainSetMemoryParameters(dom, { min_guarantee: 1024 }, DomainMemFlags.CONFIG));
    assert.equal(m.code, ErrorCode.ARGUMENT_UNSUPPORTED);
    assert.match(m.libvirtMessage, /parameter 'min_guarantee' not supported/);
  });

  it('balloon-change events can be registered and deregistered', async () => {
    const got: BalloonChangeEvent[] = [];
    const sub = await c.onBalloonChange((ev) => got.push(ev), dom);
    assert.ok(Number.isInteger(sub.callbackId));
    await c.domainSetMemoryFlags(dom, 220 * 1024, DomainMemFlags.LIVE);
    await new Promise((r) => setTimeout(r, 300));
    // Without a guest balloon driver QEMU never reports a new `actual`, so no event arrives
    // (the decoding of the message is covered with a scripted peer in resilience.test.ts).
    assert.deepEqual(got, []);
    await sub.close();
    await c.domainSetMemoryFlags(dom, 256 * 1024, DomainMemFlags.LIVE);
  });

  it('destroy and start again emit stopped/started; undefine removes it', async () => {
    const events: LifecycleEvent[] = [];
    const sub = await c.onLifecycle((ev) => events.push(ev)); // all domains
    await c.domainDestroy(dom);
    const stopped = await waitFor('stopped event', () => events.find((e) => e.eventName === 'stopped'));
    assert.equal(stopped.dom.uuid, uuid);
    assert.equal(stopped.detail, 1, 'VIR_DOMAIN_EVENT_STOPPED_DESTROYED');
    assert.equal((await c.domainGetInfo(dom)).stateName, 'shutoff');
    dom = await c.domainCreate(dom);
    await waitFor('started event', () => events.find((e) => e.eventName === 'started'));
    await c.domainDestroy(dom);
    await c.domainUndefine(dom);
    await waitFor('undefined event', () => events.find((e) => e.eventName === 'undefined'));
    const e = await rejects(c.lookupDomainByName('mem1'));
    assert.equal(e.code, ErrorCode.NO_DOMAIN);
    await sub.close();
  });

  it('transient domains (create XML) have no config', async () => {
    const t = await c.domainCreateXml(tinyDomainXml('transient1', { maxMiB: 128 }));
    try {
      assert.equal(await c.domainIsPersistent(t), false);
      assert.equal(await c.domainIsActive(t), true);
      const e = await rejects(c.domainSetMemoryFlags(t, 100 * 1024, DomainMemFlags.CONFIG));
      assert.match(e.libvirtMessage, /transient domains do not have any persistent config/);
      await c.domainSetMemoryFlags(t, 100 * 1024, DomainMemFlags.LIVE);
    } finally {
      await c.domainDestroy(t);
    }
    assert.equal((await rejects(c.lookupDomainByName('transient1'))).code, ErrorCode.NO_DOMAIN);
  });

  it('a domain with NUMA cells refuses maxMemory changes through this API', async () => {
    const n = await c.domainDefineXml(tinyDomainXml('numa1', { maxMiB: 256, numa: true }));
    try {
      assert.equal(parseDomainXml(await c.domainGetXmlDesc(n)).numaCells.length, 1);
      const e = await rejects(c.domainSetMemoryFlags(n, 512 * 1024, DomainMemFlags.CONFIG | DomainMemFlags.MAXIMUM));
      assert.equal(e.reason, 'remote');
      assert.match(e.libvirtMessage, /NUMA/i);
    } finally {
      await c.domainUndefine(n);
    }
  });
});

describe('test driver', () => {
  it('serves test:///default through the daemon and enforces its rules', async () => {
    const t = await LibvirtClient.connect(d.uri('test'));
    try {
      assert.equal(await t.getType(), 'TEST');
      const dom = await t.lookupDomainByName('test');
      assert.equal((await t.domainGetInfo(dom)).stateName, 'running');
      const all = await t.listAllDomains();
      assert.ok(all.some((x) => x.name === 'test'));
      const mg = await rejects(t.domainSetMemoryParameters(dom, { min_guarantee: 1024 }, DomainMemFlags.LIVE));
      assert.equal(mg.code, ErrorCode.ARGUMENT_UNSUPPORTED);
      assert.equal(mg.codeName, 'VIR_ERR_ARGUMENT_UNSUPPORTED');
      assert.match(mg.libvirtMessage, /parameter 'min_guarantee' not supported/);
      const mx = await rejects(t.domainSetMemoryFlags(dom, 1024, DomainMemFlags.LIVE | DomainMemFlags.MAXIMUM));
      assert.match(mx.libvirtMessage, /cannot resize the maximum memory on an active domain/);
      const both = await rejects(t.domainSetMemoryFlags(dom, 1024 * 1024, DomainMemFlags.LIVE | DomainMemFlags.CONFIG));
      assert.equal(both.reason, 'remote');
      const max = (await t.domainGetInfo(dom)).maxMemKiB;
      const over = await rejects(t.domainSetMemoryFlags(dom, max + 1, DomainMemFlags.LIVE));
      assert.equal(over.code, ErrorCode.INVALID_ARG);
      await t.domainSetMemoryFlags(dom, 1024 * 1024, DomainMemFlags.LIVE);
      assert.equal((await t.domainGetInfo(dom)).memoryKiB, 1024 * 1024);
    } finally {
      await t.close();
    }
    // state lives per connection: a new connection sees the default again
    const t2 = await LibvirtClient.connect(d.uri('test'));
    try {
      const dom = await t2.lookupDomainByName('test');
      assert.notEqual((await t2.domainGetInfo(dom)).memoryKiB, 1024 * 1024);
    } finally {
      await t2.close();
    }
  });

  it('keeps many calls in flight and matches every reply to its call', async () => {
    const t = await LibvirtClient.connect(d.uri('test'));
    try {
      const names: string[] = [];
      for (let i = 0; i < 20; i++) {
        const name = `par${i}`;
        names.push(name);
        await t.domainDefineXml(`<domain type='test'><name>${name}</name><memory>${(i + 1) * 1024}</memory><os><type>hvm</type></os></domain>`);
      }
      const calls: Promise<unknown>[] = [];
      for (let round = 0; round < 10; round++) {
        for (let i = 0; i < names.length; i++) {
          calls.push(
            t.lookupDomainByName(names[i]!).then(async (dom) => {
              assert.equal(dom.name, names[i]);
              const info = await t.domainGetInfo(dom);
              assert.equal(info.maxMemKiB, (i + 1) * 1024);
            }),
          );
        }
        calls.push(assert.rejects(t.lookupDomainByName(`missing${round}`), (e: LibvirtError) => e.code === ErrorCode.NO_DOMAIN));
      }
      await Promise.all(calls);
      assert.equal(t.rpc.inFlight, 0);
    } finally {
      await t.close();
    }
  });
});

describe('ssh transport', () => {
  it('speaks the protocol over ssh stdio to virt-ssh-helper on the "remote" host', async () => {
    // A stand-in for the ssh client: it runs the remote command inside the
    // daemon's mount namespace, where /run/libvirt/libvirt-sock is the daemon's
    // socket, exactly as sshd would run it on the hypervisor host.
    const dir = mkdtempSync(join(tmpdir(), 'vmmem-fake-ssh-'));
    const fake = join(dir, 'ssh');
    const argsLog = join(dir, 'args');
    writeFileSync(
      fake,
      `#!/bin/sh
printf '%s\\n' "$@" > ${argsLog}
while [ "$1" != "--" ]; do shift; done
shift; host="$1"; shift
exec nsenter -t ${d.pid} -m -- sh -c "$*"
`,
    );
    chmodSync(fake, 0o755);
    try {
      const s = await LibvirtClient.connect('qemu+ssh://admin@hv1:2222/system', { ssh: { command: fake, keyfile: '/k/id_ed25519', knownHostsFile: '/k/known_hosts' } });
      try {
        assert.equal(await s.getType(), 'QEMU');
        assert.equal(await s.getUri(), 'qemu:///system');
      } finally {
        await s.close();
      }
      const { readFileSync } = await import('node:fs');
      const args = readFileSync(argsLog, 'utf8').split('\n');
      for (const a of ['-p', '2222', '-l', 'admin', '-i', '/k/id_ed25519', 'UserKnownHostsFile=/k/known_hosts', 'StrictHostKeyChecking=yes', 'IdentitiesOnly=yes', 'BatchMode=yes', 'hv1']) {
        assert.ok(args.includes(a), `ssh args include ${a}: ${args.join(' ')}`);
      }
      assert.ok(args.some((a) => a.startsWith('sh -c ') && a.includes('virt-ssh-helper') && a.includes('qemu:///system')), args.join(' '));
      // ssh failing (here: a command that exits 255 with a message) surfaces its stderr
      const bad = join(dir, 'ssh-fail');
      writeFileSync(bad, '#!/bin/sh\necho "ssh: connect to host hv1 port 22: Connection refused" >&2\nexit 255\n');
      chmodSync(bad, 0o755);
      const e = await rejects(LibvirtClient.connect('qemu+ssh://hv1/system', { connectTimeoutMs: 5000, ssh: { command: bad, keyfile: '/k/id', knownHostsFile: '/k/kh' } }));
      assert.equal(e.reason, 'closed');
      assert.match(e.message, /Connection refused/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
