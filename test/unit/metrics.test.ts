import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Metrics, timeDriverCall } from '../../src/controller/metrics.ts';
import { Controller } from '../../src/controller/runner.ts';
import { startHealthServer } from '../../src/controller/health.ts';
import type { HealthServer } from '../../src/controller/health.ts';
import { silentLogger } from '../../src/controller/log.ts';

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Parses the Prometheus text format into TYPE declarations and samples. */
function parseExposition(text: string): { types: Map<string, string>; samples: Sample[] } {
  const types = new Map<string, string>();
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const t = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (t !== null) {
      types.set(t[1] as string, t[2] as string);
      continue;
    }
    if (line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m, `unparseable sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      labels[l[1] as string] = l[2] as string;
    }
    samples.push({ name: m[1] as string, labels, value: Number(m[3]) });
  }
  return { types, samples };
}

function find(samples: Sample[], name: string, labels: Record<string, string> = {}): Sample | undefined {
  return samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
}

describe('metrics over HTTP', () => {
  const metrics = new Metrics();
  let server: HealthServer;
  let controller: Controller;

  before(async () => {
    server = await startHealthServer({ metricsAddress: '127.0.0.1:0', probeAddress: '127.0.0.1:0', metrics });
    let n = 0;
    controller = new Controller({
      name: 'virtualmachinememory',
      logger: silentLogger(),
      metrics,
      concurrency: 3,
      reconcile: async () => {
        n++;
        if (n === 1) throw new Error('first fails');
        return n === 2 ? { requeue: true } : {};
      },
    });
    controller.start();
    controller.enqueue('ns/vm1');
    // error (5 ms backoff) → requeue (10 ms) → success
    const deadline = Date.now() + 5000;
    while ((n < 3 || controller.queue.processing() > 0) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 2));
    await controller.stop();
    await metrics.timeDriverCall('libvirt', 'observe', () => 42);
    await assert.rejects(
      timeDriverCall(
        'vsphere',
        'apply',
        () => {
          throw new Error('task failed');
        },
        metrics,
      ),
    );
    metrics.setVMsManaged({ Ready: 3, Stalled: 1 });
    metrics.setLeader('vmmem-leader', true);
  });

  after(async () => {
    await server.close();
  });

  test('exposes every metric with the controller-runtime names, types and labels', async () => {
    const res = await fetch(`${server.metricsUrl}/metrics`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
    const { types, samples } = parseExposition(await res.text());
    const expected: [string, string][] = [
      ['controller_runtime_reconcile_total', 'counter'],
      ['controller_runtime_reconcile_errors_total', 'counter'],
      ['controller_runtime_terminal_reconcile_errors_total', 'counter'],
      ['controller_runtime_reconcile_time_seconds', 'histogram'],
      ['controller_runtime_max_concurrent_reconciles', 'gauge'],
      ['controller_runtime_active_workers', 'gauge'],
      ['workqueue_depth', 'gauge'],
      ['workqueue_adds_total', 'counter'],
      ['workqueue_retries_total', 'counter'],
      ['workqueue_queue_duration_seconds', 'histogram'],
      ['workqueue_work_duration_seconds', 'histogram'],
      ['workqueue_unfinished_work_seconds', 'gauge'],
      ['workqueue_longest_running_processor_seconds', 'gauge'],
      ['vmmem_driver_call_seconds', 'histogram'],
      ['vmmem_vms_managed', 'gauge'],
      ['leader_election_master_status', 'gauge'],
      ['process_cpu_seconds_total', 'counter'],
      ['process_resident_memory_bytes', 'gauge'],
      ['nodejs_eventloop_lag_seconds', 'gauge'],
    ];
    for (const [name, type] of expected) assert.equal(types.get(name), type, name);

    const c = { controller: 'virtualmachinememory' };
    assert.equal(find(samples, 'controller_runtime_reconcile_total', { ...c, result: 'error' })?.value, 1);
    assert.equal(find(samples, 'controller_runtime_reconcile_total', { ...c, result: 'requeue' })?.value, 1);
    assert.equal(find(samples, 'controller_runtime_reconcile_total', { ...c, result: 'success' })?.value, 1);
    assert.equal(find(samples, 'controller_runtime_reconcile_total', { ...c, result: 'requeue_after' })?.value, 0);
    assert.equal(find(samples, 'controller_runtime_reconcile_errors_total', c)?.value, 1);
    assert.equal(find(samples, 'controller_runtime_reconcile_time_seconds_count', c)?.value, 3);
    assert.equal(find(samples, 'controller_runtime_max_concurrent_reconciles', c)?.value, 3);
    assert.equal(find(samples, 'controller_runtime_active_workers', c)?.value, 0);

    const q = { name: 'virtualmachinememory' };
    assert.equal(find(samples, 'workqueue_adds_total', q)?.value, 3);
    assert.equal(find(samples, 'workqueue_retries_total', q)?.value, 2);
    assert.equal(find(samples, 'workqueue_depth', q)?.value, 0);
    assert.equal(find(samples, 'workqueue_queue_duration_seconds_count', q)?.value, 3);
    assert.equal(find(samples, 'workqueue_work_duration_seconds_count', q)?.value, 3);
    assert.equal(find(samples, 'workqueue_unfinished_work_seconds', q)?.value, 0);
    assert.equal(find(samples, 'workqueue_longest_running_processor_seconds', q)?.value, 0);

    assert.equal(find(samples, 'vmmem_driver_call_seconds_count', { driver: 'libvirt', op: 'observe', result: 'ok' })?.value, 1);
    assert.equal(find(samples, 'vmmem_driver_call_seconds_count', { driver: 'vsphere', op: 'apply', result: 'error' })?.value, 1);
    assert.equal(find(samples, 'vmmem_vms_managed', { state: 'Ready' })?.value, 3);
    assert.equal(find(samples, 'vmmem_vms_managed', { state: 'Stalled' })?.value, 1);
    assert.equal(find(samples, 'vmmem_vms_managed', { state: 'RestartRequired' })?.value, 0);
    assert.equal(find(samples, 'leader_election_master_status', { name: 'vmmem-leader' })?.value, 1);
  });

  test('in-flight gauges report a running reconcile at scrape time', async () => {
    const m = new Metrics({ processMetrics: false });
    let release!: () => void;
    const c = new Controller({
      name: 'slow',
      logger: silentLogger(),
      metrics: m,
      reconcile: () => new Promise<void>((r) => (release = r)).then(() => ({})),
    });
    c.start();
    c.enqueue('k');
    await new Promise((r) => setTimeout(r, 30));
    const { samples } = parseExposition(await m.text());
    assert.ok((find(samples, 'workqueue_longest_running_processor_seconds', { name: 'slow' })?.value ?? 0) >= 0.02);
    assert.ok((find(samples, 'workqueue_unfinished_work_seconds', { name: 'slow' })?.value ?? 0) >= 0.02);
    assert.equal(find(samples, 'controller_runtime_active_workers', { controller: 'slow' })?.value, 1);
    release();
    await c.stop();
  });

  test('registries are isolated', async () => {
    const a = new Metrics({ processMetrics: false });
    const b = new Metrics({ processMetrics: false });
    a.setLeader('x', true);
    assert.match(await a.text(), /leader_election_master_status\{name="x"\} 1/);
    assert.doesNotMatch(await b.text(), /name="x"/);
  });
});

void describe('inventory gauges', () => {
  const vmm = (name: string, hv: string, conditions: { type: string; status: string; reason: string }[], observed?: Record<string, string>) => ({
    apiVersion: 'vmmem.io/v1alpha1',
    kind: 'VirtualMachineMemory',
    metadata: { name, namespace: 'vms' },
    spec: { hypervisorRef: { name: hv }, vm: { name }, maxMemory: '4Gi' },
    status: { conditions, ...(observed ? { observed } : {}) },
  });
  const hv = (name: string, connected: boolean) => ({
    apiVersion: 'vmmem.io/v1alpha1',
    kind: 'Hypervisor',
    metadata: { name, namespace: 'vms' },
    spec: { uri: 'sim:///x' },
    status: { conditions: [{ type: 'Connected', status: connected ? 'True' : 'False', reason: connected ? 'Connected' : 'HypervisorUnreachable' }] },
  });

  test('are computed from the store at scrape time: a status change shows on the next scrape, no timer', async () => {
    const m = new Metrics({ processMetrics: false });
    const vmms = [
      vmm('a', 'kvm', [{ type: 'Ready', status: 'True', reason: 'Converged' }], { maxMemory: '4Gi', memory: '3Gi', actualMemory: '3Gi' }),
      vmm('b', 'kvm', [{ type: 'Ready', status: 'True', reason: 'Converged' }], { maxMemory: '8Gi', memory: '8Gi' }),
    ];
    const hvs = [hv('kvm', true), hv('esx', false)];
    m.setInventory({ vmms: () => vmms, hypervisors: () => hvs });
    let { samples } = parseExposition(await m.text());
    assert.equal(find(samples, 'vmmem_vms_managed', { state: 'Ready' })?.value, 2);
    assert.equal(find(samples, 'vmmem_vms_managed', { state: 'Stalled' })?.value, 0);
    assert.equal(find(samples, 'vmmem_hypervisor_connected', { hypervisor_namespace: 'vms', hypervisor: 'kvm' })?.value, 1);
    assert.equal(find(samples, 'vmmem_hypervisor_connected', { hypervisor_namespace: 'vms', hypervisor: 'esx' })?.value, 0);
    assert.equal(find(samples, 'vmmem_memory_managed_bytes', { hypervisor_namespace: 'vms', hypervisor: 'kvm', field: 'maxMemory' })?.value, 12 * 2 ** 30);
    assert.equal(find(samples, 'vmmem_memory_managed_bytes', { hypervisor_namespace: 'vms', hypervisor: 'kvm', field: 'actualMemory' })?.value, 3 * 2 ** 30);

    // The store's object changes (a status write landed in the cache): the very next scrape says so.
    vmms[1] = vmm('b', 'kvm', [
      { type: 'Ready', status: 'False', reason: 'BalloonUnresponsive' },
      { type: 'Stalled', status: 'True', reason: 'BalloonUnresponsive' },
    ]);
    ({ samples } = parseExposition(await m.text()));
    assert.equal(find(samples, 'vmmem_vms_managed', { state: 'Ready' })?.value, 1);
    assert.equal(find(samples, 'vmmem_vms_managed', { state: 'Stalled' })?.value, 1);
    assert.equal(find(samples, 'vmmem_vm_conditions', { type: 'Stalled', reason: 'BalloonUnresponsive' })?.value, 1);
    assert.equal(find(samples, 'vmmem_memory_managed_bytes', { hypervisor_namespace: 'vms', hypervisor: 'kvm', field: 'maxMemory' })?.value, 4 * 2 ** 30);

    // A replica that stops leading exports none of them.
    m.setInventory(undefined);
    ({ samples } = parseExposition(await m.text()));
    assert.equal(find(samples, 'vmmem_vms_managed', { state: 'Ready' }), undefined);
    assert.equal(find(samples, 'vmmem_hypervisor_connected', { hypervisor_namespace: 'vms', hypervisor: 'kvm' }), undefined);
  });
});
