/**
 * Issue #12 items 2 and 3: the admin's policy on what a tenant's Hypervisor may reach.
 * - cluster mode (`vmmem run --kubeconfig`, real kube-apiserver) refuses sim: unless the
 *   operator runs with --allow-sim-hypervisors, before any file is opened;
 * - --hypervisor-allow refuses hosts, CIDRs and ports outside the rules before any
 *   connection (a listening socket counts accepts and sees none), including a host name that
 *   resolves into a forbidden CIDR; an allowed target is connected to (so the test can fail).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { parse, stringify } from 'yaml';
import { checkHypervisorAllowed, parseReachRules } from '../../src/drivers/policy.ts';
import { DriverError } from '../../src/drivers/driver.ts';
import { startKube } from '../env/kube.ts';
import type { KubeEnv } from '../env/kube.ts';

const root = join(import.meta.dirname, '..', '..');
const bin = join(root, 'bin', 'vmmem');
const work = mkdtempSync(join(tmpdir(), 'vmmem-sec-reach-'));

interface Cond { type: string; status: string; reason: string; message: string }
interface Item { kind: string; metadata: { name: string }; status?: { conditions?: Cond[] } }

async function runOnce(dir: string, ...flags: string[]): Promise<{ code: number; items: Item[]; out: string }> {
  let stdout: string;
  let stderr: string;
  let code = 0;
  try {
    ({ stdout, stderr } = await promisify(execFile)(bin, ['run', '--manifests', dir, '--once', '-o', 'json', ...flags], { cwd: root, timeout: 120_000, maxBuffer: 16 << 20 }));
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    ({ stdout, stderr, code } = e);
  }
  return { code, items: stdout ? (JSON.parse(stdout) as { items: Item[] }).items : [], out: stdout + stderr };
}

function hvDir(name: string, uri: string): string {
  const dir = join(work, name);
  rmSync(dir, { recursive: true, force: true });
  const docs = [
    { apiVersion: 'vmmem.io/v1alpha1', kind: 'Hypervisor', metadata: { name: 'hv', namespace: 'default' }, spec: { uri } },
    { apiVersion: 'vmmem.io/v1alpha1', kind: 'VirtualMachineMemory', metadata: { name: 'web-01', namespace: 'default' }, spec: { hypervisorRef: { name: 'hv' }, vm: { name: 'web-01' }, maxMemory: '1Gi' } },
  ];
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'objects.yaml'), docs.map((d) => stringify(d)).join('---\n'));
  return dir;
}

function hvReady(items: Item[]): Cond | undefined {
  return items.find((i) => i.kind === 'Hypervisor')?.status?.conditions?.find((c) => c.type === 'Ready');
}

/** A TCP listener that counts the connections it accepts (and closes them). */
async function countingListener(): Promise<{ server: Server; port: number; accepted: () => number }> {
  let n = 0;
  const server = createServer((s) => {
    n++;
    s.destroy();
  });
  await new Promise<void>((res) => server.listen(0, '127.0.0.1', res));
  return { server, port: (server.address() as AddressInfo).port, accepted: () => n };
}

after(() => rmSync(work, { recursive: true, force: true }));

describe('--hypervisor-allow (network reach)', () => {
  let listener: Awaited<ReturnType<typeof countingListener>>;
  before(async () => {
    listener = await countingListener();
  });
  after(() => listener.server.close());

  it('parses host, *.suffix, IPv4/IPv6 CIDR and port rules, and refuses malformed ones naming the rule', () => {
    const rules = parseReachRules('10.0.0.0/8:16514, vcenter.example.com:443,*.hv.example.com,[fd00::/8]:22,unix');
    assert.deepEqual(rules.map((r) => [r.kind, r.value, r.prefix, r.port]), [
      ['cidr', '10.0.0.0', 8, 16514], ['name', 'vcenter.example.com', undefined, 443], ['suffix', '.hv.example.com', undefined, undefined], ['cidr', 'fd00::', 8, 22], ['unix', '', undefined, undefined],
    ]);
    for (const bad of ['10.0.0.0/33', 'host:0', 'host:99999', '-oProxy', 'fd00::1', 'a/8', 'host:x']) {
      assert.throws(() => parseReachRules(bad), (e: Error) => e.message.includes(JSON.stringify(bad)), bad);
    }
  });

  it('decides by address, CIDR, port, name and resolution (a fake resolver: our own interface)', async () => {
    const policy = { allowSim: true, allow: parseReachRules('10.0.0.0/8:16514,vcenter.example.com:443,*.hv.example.com') };
    const resolve = async (h: string) => (h === 'inside.example.org' ? ['10.1.2.3'] : h === 'rebind.example.org' ? ['10.1.2.3', '169.254.169.254'] : []);
    const refused = async (uri: string, says: RegExp) =>
      assert.rejects(checkHypervisorAllowed(uri, policy, resolve), (e: unknown) => e instanceof DriverError && e.code === 'NotAllowed' && says.test(e.message), uri);
    await checkHypervisorAllowed('qemu+tls://10.9.9.9/system', policy, resolve);
    await checkHypervisorAllowed('https://vcenter.example.com/sdk', policy, resolve);
    await checkHypervisorAllowed('qemu+ssh://root@kvm1.hv.example.com/system', policy, resolve);
    await checkHypervisorAllowed('qemu+tls://inside.example.org/system', policy, resolve);
    await refused('qemu+tcp://10.9.9.9/system', /10\.9\.9\.9 port 16509 is not allowed by the operator's --hypervisor-allow/);
    await refused('https://vcenter.example.com:8443/sdk', /port 8443/);
    await refused('https://169.254.169.254/sdk', /169\.254\.169\.254 port 443/);
    await refused('qemu+tls://rebind.example.org/system', /resolves to 169\.254\.169\.254/);
    await refused('qemu:///system', /local libvirt socket .* "unix"/);
    await refused('qemu+tls://[fd00::1]/system', /fd00::1/);
  });

  it('vmmem run refuses a Hypervisor outside the rules with HypervisorNotAllowed and never connects', async () => {
    const uri = `qemu+tcp://127.0.0.1:${listener.port}/system`;
    const r = await runOnce(hvDir('refused', uri), '--hypervisor-allow=10.0.0.0/8');
    assert.notEqual(r.code, 0, r.out);
    const ready = hvReady(r.items);
    assert.equal(ready?.reason, 'HypervisorNotAllowed', r.out);
    assert.match(ready!.message, /127\.0\.0\.1 port \d+ is not allowed by the operator's --hypervisor-allow \(10\.0\.0\.0\/8\)/);
    const vmm = r.items.find((i) => i.kind === 'VirtualMachineMemory')?.status?.conditions?.find((c) => c.type === 'Stalled');
    assert.equal(vmm?.reason, 'HypervisorNotAllowed', r.out);
    // A name that resolves into a forbidden address is refused the same way.
    const byName = await runOnce(hvDir('by-name', `qemu+tcp://localhost:${listener.port}/system`), '--hypervisor-allow=10.0.0.0/8');
    assert.equal(hvReady(byName.items)?.reason, 'HypervisorNotAllowed', byName.out);
    assert.match(hvReady(byName.items)!.message, /localhost port \d+ is not allowed .*resolves to/);
    assert.equal(listener.accepted(), 0, 'the operator connected to a host its policy forbids');
  });

  it('an allowed target is connected to (the listener sees the attempt)', async () => {
    const uri = `qemu+tcp://127.0.0.1:${listener.port}/system`;
    const r = await runOnce(hvDir('allowed', uri), `--hypervisor-allow=127.0.0.0/8:${listener.port}`);
    assert.notEqual(hvReady(r.items)?.reason, 'HypervisorNotAllowed', r.out);
    assert.ok(listener.accepted() > 0, 'the allowed connection was not attempted');
  });

  it('a malformed --hypervisor-allow is a usage error (exit 2) naming the rule', async () => {
    const r = await runOnce(hvDir('usage', 'sim:memory:x'), '--hypervisor-allow=10.0.0.0/40');
    assert.equal(r.code, 2, r.out);
    assert.match(r.out, /--hypervisor-allow: "10\.0\.0\.0\/40"/);
  });
});

describe('sim: in cluster mode (real kube-apiserver)', () => {
  let kube: KubeEnv;
  const NS = 'tenant-sim';
  before(async () => {
    kube = await startKube({ crds: [join(root, 'crds')] });
    await kube.request('POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: NS } });
  });
  after(async () => kube?.stop());

  async function operatorReason(hvName: string, uri: string, flags: string[]): Promise<Cond> {
    const hv = await kube.request('POST', `/apis/vmmem.io/v1alpha1/namespaces/${NS}/hypervisors`, { apiVersion: 'vmmem.io/v1alpha1', kind: 'Hypervisor', metadata: { name: hvName }, spec: { uri } });
    assert.equal(hv.status, 201, hv.body);
    const child = spawn(bin, ['run', '--kubeconfig', kube.kubeconfigPath, '--namespace', NS, '--metrics-bind-address', '127.0.0.1:0', '--health-probe-bind-address', '127.0.0.1:0', ...flags], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    try {
      const deadline = Date.now() + 90_000;
      while (Date.now() < deadline) {
        const r = await kube.request('GET', `/apis/vmmem.io/v1alpha1/namespaces/${NS}/hypervisors/${hvName}`);
        const ready = (JSON.parse(r.body) as Item).status?.conditions?.find((c) => c.type === 'Ready');
        if (ready && ready.status === 'False') return ready;
        await new Promise((res) => setTimeout(res, 250));
      }
      assert.fail(`no Ready=False on Hypervisor ${hvName}:\n${out.slice(-2000)}`);
    } finally {
      child.kill('SIGKILL');
    }
  }

  it('deploy/components/networkpolicy: the NetworkPolicy example is accepted by the API server (strict, dry run)', async () => {
    const np = parse(readFileSync(join(root, 'deploy', 'components', 'networkpolicy', 'networkpolicy.yaml'), 'utf8')) as { metadata: { namespace: string } };
    await kube.request('POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: np.metadata.namespace } });
    const r = await kube.request('POST', `/apis/networking.k8s.io/v1/namespaces/${np.metadata.namespace}/networkpolicies?fieldValidation=Strict&dryRun=All`, np);
    assert.equal(r.status, 201, r.body);
    const kust = parse(readFileSync(join(root, 'deploy', 'components', 'networkpolicy', 'kustomization.yaml'), 'utf8')) as { kind: string; resources: string[] };
    assert.deepEqual([kust.kind, kust.resources], ['Component', ['networkpolicy.yaml']]);
  });

  it('refuses sim: without --allow-sim-hypervisors, before the inventory is opened; allows it with the flag', async () => {
    // The path does not exist: had the operator opened it the reason would be HypervisorUnreachable ("cannot be read").
    const missing = join(work, 'no-such-inventory.yaml');
    const refused = await operatorReason('sim-refused', `sim://${missing}`, []);
    assert.equal(refused.reason, 'HypervisorNotAllowed', JSON.stringify(refused));
    assert.match(refused.message, /--allow-sim-hypervisors/);
    assert.doesNotMatch(refused.message, /cannot be read/);
    const allowed = await operatorReason('sim-allowed', `sim://${missing}`, ['--allow-sim-hypervisors']);
    assert.notEqual(allowed.reason, 'HypervisorNotAllowed', JSON.stringify(allowed));
    assert.match(allowed.message, /cannot be read: ENOENT/);
  });
});
