/**
 * Issue #12.6 on a real libvirtd + QEMU: when the QEMU process of a domain dies (the kernel's OOM
 * killer does this to a QEMU over its memtune hard_limit; here the test sends SIGKILL, since the
 * harness's libvirtd runs without cgroup controllers and enforces no hard_limit), libvirt reports
 * the domain shut off with reason crashed, and the libvirt driver says so (ObservedVM.stopReason),
 * in observe() and in observeAll(). A domain stopped with virDomainDestroy has no such reason.
 * The VMM reconciler turns stopReason into StoppedAfterChange (test/unit/reconciler-stopped.test.ts).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { LibvirtDriver } from '../../../src/drivers/libvirt/index.ts';
import { LibvirtClient } from '../../../src/libvirt/index.ts';
import { removeDomain, startLibvirtd, tinyDomainXml } from '../../env/libvirtd.ts';
import type { Libvirtd } from '../../env/libvirtd.ts';

let d: Libvirtd;
let qemu: LibvirtClient;
let drv: LibvirtDriver;
const NAME = 'crash-0';

before(async () => {
  d = await startLibvirtd();
  qemu = await LibvirtClient.connect(d.uri('qemu'));
  drv = new LibvirtDriver({ uri: d.uri('qemu'), timeoutMs: 60_000 });
  await drv.connect();
});

after(async () => {
  await drv?.close();
  if (qemu) await removeDomain(qemu, NAME).catch(() => undefined);
  await qemu?.close();
  await d?.stop();
});

async function waitShutOff(): Promise<void> {
  const deadline = Date.now() + 30_000;
  const dom = await qemu.lookupDomainByName(NAME);
  while (await qemu.domainIsActive(dom)) {
    if (Date.now() > deadline) throw new Error(`${NAME} still running 30 s after its QEMU was killed:\n${d.logTail()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

it('a domain whose QEMU died is ShutOff with stopReason Crashed; one destroyed by libvirt has none', async () => {
  const dom = await qemu.domainDefineXml(tinyDomainXml(NAME, { maxMiB: 128 }));
  await qemu.domainCreate(dom);
  const vm = await drv.lookup({ name: NAME });
  assert.equal((await drv.observe(vm)).powerState, 'Running');

  // QEMU's pid file lives in the harness's bind-mounted run directory; this domain is ours.
  const pid = Number(readFileSync(join(d.dir, 'run', 'qemu', `${NAME}.pid`), 'utf8').trim());
  assert.ok(pid > 0, 'QEMU pid');
  process.kill(pid, 'SIGKILL');
  await waitShutOff();
  const state = await qemu.domainGetState(await qemu.lookupDomainByName(NAME));
  assert.deepEqual([state.stateName, state.reason], ['shutoff', 3], 'libvirt itself: shutoff, reason crashed');
  const fresh = await drv.observe(vm);
  assert.equal(fresh.powerState, 'ShutOff');
  assert.equal(fresh.stopReason, 'Crashed');
  const all = await drv.observeAll();
  assert.equal(all.vms.find((v) => v.name === NAME)?.stopReason, 'Crashed', 'the bulk path (state.reason) says so too');

  // Started again and stopped by libvirt: no crash reason.
  await qemu.domainCreate(await qemu.lookupDomainByName(NAME));
  assert.equal((await drv.observe(vm)).stopReason, undefined, 'running');
  await qemu.domainDestroy(await qemu.lookupDomainByName(NAME));
  const destroyed = await drv.observe(vm);
  assert.equal(destroyed.powerState, 'ShutOff');
  assert.equal(destroyed.stopReason, undefined);
  assert.equal((await drv.observeAll()).vms.find((v) => v.name === NAME)?.stopReason, undefined);
});
