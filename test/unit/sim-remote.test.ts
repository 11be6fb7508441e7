// The remote sim (server.ts + remote.ts): the same Driver semantics as the in-process sim,
// across a unix socket, so several operator processes can share one simulated host.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DriverError } from '../../src/drivers/driver.ts';
import { RemoteSimDriver, parseRemoteSimURI } from '../../src/drivers/sim/remote.ts';
import { startSimServer, type SimServer } from '../../src/drivers/sim/server.ts';
import { simHost } from '../../src/drivers/sim/index.ts';

const GiB = 1024n ** 3n;
let dir: string;
let server: SimServer;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'vmmem-simsrv-'));
  writeFileSync(join(dir, 'host-a.yaml'), 'type: qemu\nhostMemory: 64Gi\nvms:\n  - {name: web-01, type: qemu, maxMemory: 8Gi, memory: 4Gi}\n  - {name: web-02, type: qemu, maxMemory: 8Gi, memory: 8Gi}\n');
  server = await startSimServer({ socketPath: join(dir, 'sim.sock'), inventoryDir: dir });
});
after(async () => {
  await server.close();
  rmSync(dir, { recursive: true, force: true });
});

test('URI: only sim+unix with an absolute socket and an inventory name', () => {
  assert.deepEqual(parseRemoteSimURI('sim+unix:///run/x.sock?inventory=host-a'), { socketPath: '/run/x.sock', inventory: 'host-a' });
  for (const bad of ['sim+unix://host/x.sock?inventory=a', 'sim+unix:///x.sock?inventory=../etc', 'sim+unix:///x.sock?inventory=a&command=sh', 'sim+unix:///x.sock', 'sim:///x.yaml']) {
    assert.throws(() => parseRemoteSimURI(bad), (e: unknown) => e instanceof DriverError && e.code === 'InvalidURI', bad);
  }
});

test('observe, observeAll, apply and events go through to the served host', async () => {
  const d = new RemoteSimDriver({ uri: `sim+unix://${server.socketPath}?inventory=host-a`, timeoutMs: 5000 });
  await d.connect();
  const events: string[] = [];
  await d.events((e) => events.push(e.kind));
  const id = await d.identify();
  assert.equal(id.type, 'qemu');
  const all = await d.observeAll();
  assert.equal(all.vms.length, 2);
  const vm = await d.lookup({ name: 'web-01' });
  const o = await d.observe(vm);
  assert.equal(o.config?.memory, 4n * GiB);
  await d.apply(vm, [{ field: 'memory', world: 'config', from: 4n * GiB, to: 6n * GiB }]);
  const host = simHost(server.inventoryPath('host-a'));
  assert.equal(host.vm('web-01')?.config?.memory, 6n * GiB, 'the server-side host holds the change');
  const refused = await d.apply(vm, [{ field: 'maxMemory', world: 'live', from: 8n * GiB, to: 16n * GiB }]).catch((e: unknown) => e);
  assert.ok(refused instanceof DriverError && refused.code === 'Refused', String(refused));
  host.setLive('web-01', { memory: 2n * GiB });
  for (let i = 0; i < 50 && !events.includes('balloon'); i++) await new Promise((r) => setTimeout(r, 20));
  assert.ok(events.includes('balloon'), `events seen: ${events.join(',')}`);
  await d.close();
});

test('a name that is not an inventory is refused without opening anything', async () => {
  const d = new RemoteSimDriver({ uri: `sim+unix://${server.socketPath}?inventory=nope`, timeoutMs: 5000 });
  await assert.rejects(d.connect(), /nope/);
  await d.close();
});
