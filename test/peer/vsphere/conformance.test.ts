// The driver conformance suite (test/conformance/) for the vSphere driver against vcsim.
// VMs are shaped behind the driver's back with govc and the SOAP client. Connections go through
// a loopback TCP relay, so dropConnections() can cut them for real (vcsim's in-memory inventory
// survives). Capabilities declare only what vcsim itself enforces (docs/vsphere.md): no
// power-state, hot-add, 4 MiB or reservation-vs-limit refusals.
import net from 'node:net';
import type { Driver } from '../../../src/drivers/driver.ts';
import { VSphereDriver } from '../../../src/drivers/vsphere/index.ts';
import { VSphereClient } from '../../../src/vsphere/index.ts';
import type { ConformanceCapabilities, ConformanceFixture, VMSpec } from '../../conformance/fixture.ts';
import { runConformance } from '../../conformance/suite.ts';
import type { Vcsim } from '../../env/vcsim.ts';
import { startVcsim } from '../../env/vcsim.ts';

const Mi = 1n << 20n;

/** A TCP relay 127.0.0.1:<port> → vcsim; close() cuts every connection and stops listening. */
class Relay {
  readonly #server: net.Server;
  readonly #sockets = new Set<net.Socket>();
  port = 0;
  constructor(target: number) {
    this.#server = net.createServer((client) => {
      const upstream = net.connect(target, '127.0.0.1');
      for (const s of [client, upstream]) {
        this.#sockets.add(s);
        s.on('close', () => this.#sockets.delete(s));
        s.on('error', () => s.destroy());
      }
      client.pipe(upstream).pipe(client);
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
    });
  }
  async listen(): Promise<this> {
    await new Promise<void>((r) => this.#server.listen(0, '127.0.0.1', r));
    this.port = (this.#server.address() as net.AddressInfo).port;
    return this;
  }
  async close(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    await new Promise<void>((r) => this.#server.close(() => r()));
  }
}

const capabilities: ConformanceCapabilities = {
  type: 'esx',
  granularity: 4n * Mi,
  singleConfig: true,
  create: { shutOff: true, transient: false, withoutBalloon: false, numa: false, hotAdd: true },
  applies: [
    { field: 'maxMemory', world: 'config', power: 'ShutOff' },
    { field: 'maxMemory', world: 'config', power: 'Running', hotAdd: true },
    { field: 'reservation', world: 'config', power: 'Running' },
    { field: 'reservation', world: 'config', power: 'ShutOff' },
    { field: 'limit', world: 'config', power: 'Running' },
    { field: 'limit', world: 'config', power: 'ShutOff' },
  ],
  // The driver itself refuses a `memory` step; every other ESX rule is the planner's (vcsim accepts).
  refusals: ['memoryKnobAbsent'],
  balloonActual: 'unreported',
  lifecycleEvents: true,
};

let sim: Vcsim;
let admin: VSphereClient;
let relay: Relay;
const drivers: Driver[] = [];

const fixture: ConformanceFixture = {
  capabilities,
  async setup() {
    sim = await startVcsim();
    admin = await VSphereClient.connect({ url: sim.url, username: sim.username, password: sim.password, caPem: sim.caPem });
    relay = await new Relay(Number(new URL(sim.url).port)).listen();
  },
  async teardown() {
    await Promise.all(drivers.map((d) => d.close().catch(() => undefined)));
    await relay?.close();
    await admin?.close();
    await sim?.stop();
  },
  async connect() {
    const d = new VSphereDriver(
      {
        uri: `https://127.0.0.1:${relay.port}/sdk`,
        credentials: { username: sim.username, password: sim.password, caCert: sim.caPem },
        timeoutMs: 10_000,
      },
      { watch: { maxWaitSeconds: 2, retryMinMs: 100, retryMaxMs: 1000 } },
    );
    await d.connect();
    drivers.push(d);
    return d;
  },
  async createVM(spec: VMSpec) {
    const mb = String(spec.maxMemory / Mi);
    await sim.govc('vm.create', '-host', 'DC0_H0', '-net', 'VM Network', '-m', mb, '-c', '1', `-on=${spec.powerState === 'Running'}`, spec.name);
    const vm = await admin.lookupVm({ name: spec.name });
    if (spec.hotAdd) await sim.govc('vm.change', '-vm', spec.name, `-memory-hot-add-enabled=${spec.hotAdd.enabled}`);
    if (spec.hotAdd?.limit !== undefined || spec.hotAdd?.increment !== undefined) {
      throw new Error('vcsim cannot set hotPlugMemoryLimit/IncrementSize (ESX computes them)');
    }
    if (spec.limit !== undefined) {
      await admin.reconfigureVm(vm, {
        memoryAllocation: { reservation: 0, limit: spec.limit === 'unlimited' ? -1 : Number(spec.limit / Mi), shares: { level: 'normal', shares: 0 } },
      });
    }
    const info = await admin.getVmMemory(vm);
    return { name: info.name, uuid: info.uuid ?? '' };
  },
  async removeVM(name) {
    const [vm] = await admin.findVmsByName(name);
    if (!vm) return;
    await sim.govc('vm.destroy', name);
  },
  async powerOff(name) {
    await admin.powerOffVm(await admin.lookupVm({ name }));
  },
  async powerOn(name) {
    await admin.powerOnVm(await admin.lookupVm({ name }));
  },
  async dropConnections() {
    // Cut every relayed connection and stop listening; later connect()s get a new relay.
    const old = relay;
    relay = await new Relay(Number(new URL(sim.url).port)).listen();
    await old.close();
  },
};

runConformance('vsphere (vcsim)', fixture);
