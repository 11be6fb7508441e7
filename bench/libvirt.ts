// libvirt client throughput and latency against a real, isolated libvirtd.
//
//   node bench/libvirt.ts            (npm run bench -- libvirt)
//
// The measured call is virDomainGetInfo (REMOTE_PROC_DOMAIN_GET_INFO) on the
// daemon's test driver domain `test`, one connection each:
//   - vmmem sequential: one call at a time
//   - vmmem pipelined: N calls in flight on the same connection
//   - python3-libvirt (Debian, the C library): sequential, timing its own loop
//   - virsh: one process per call (connect, call, exit), as a shell-out would
// The same figures for the QEMU driver (a defined domain) are printed for reference.
// Each client runs VMMEM_BENCH_ROUNDS (default 3) times, alternating, and the
// median round is reported (the machine is shared; alternating spreads noise).
// Env: VMMEM_BENCH_CALLS (default 10000), VMMEM_BENCH_INFLIGHT (default 32),
//      VMMEM_BENCH_VIRSH (default 40), VMMEM_BENCH_MAX_CLIENT_REQUESTS (libvirtd, default 5 = libvirt's default).

import { spawn, spawnSync } from 'node:child_process';
import { startLibvirtd, tinyDomainXml } from '../test/env/libvirtd.ts';
import { LibvirtClient } from '../src/libvirt/index.ts';
import type { DomainRef } from '../src/libvirt/index.ts';

const CALLS = Number(process.env.VMMEM_BENCH_CALLS ?? 10000);
const INFLIGHT = Number(process.env.VMMEM_BENCH_INFLIGHT ?? 32);
const VIRSH_CALLS = Number(process.env.VMMEM_BENCH_VIRSH ?? 40);
const MAX_CLIENT_REQUESTS = Number(process.env.VMMEM_BENCH_MAX_CLIENT_REQUESTS ?? 5);
const ROUNDS = Number(process.env.VMMEM_BENCH_ROUNDS ?? 3);

/** The run with the median throughput (rounds alternate between clients, so load spikes hit all). */
function median(rs: Result[]): Result {
  const sorted = [...rs].sort((a, b) => a.callsPerSec - b.callsPerSec);
  return sorted[Math.floor(sorted.length / 2)]!;
}

interface Result {
  label: string;
  calls: number;
  seconds: number;
  callsPerSec: number;
  p50: number;
  p95: number;
  p99: number;
}

function summarize(label: string, latNs: Float64Array, n: number, seconds: number): Result {
  const lat = Array.from(latNs.subarray(0, n)).sort((a, b) => a - b);
  const q = (p: number) => (lat[Math.min(lat.length - 1, Math.floor(p * lat.length))] ?? 0) / 1000;
  return { label, calls: n, seconds, callsPerSec: n / seconds, p50: q(0.5), p95: q(0.95), p99: q(0.99) };
}

async function sequential(c: LibvirtClient, dom: DomainRef, n: number, label: string): Promise<Result> {
  for (let i = 0; i < Math.min(1000, n); i++) await c.domainGetInfo(dom);
  const lat = new Float64Array(n);
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    const s = performance.now();
    await c.domainGetInfo(dom);
    lat[i] = (performance.now() - s) * 1e6;
  }
  return summarize(label, lat, n, (performance.now() - t0) / 1e3);
}

async function pipelined(c: LibvirtClient, dom: DomainRef, n: number, inflight: number, label: string): Promise<Result> {
  for (let i = 0; i < Math.min(1000, n); i++) await c.domainGetInfo(dom);
  const lat = new Float64Array(n);
  let issued = 0;
  const t0 = performance.now();
  const worker = async () => {
    while (issued < n) {
      const i = issued++;
      const s = performance.now();
      await c.domainGetInfo(dom);
      lat[i] = (performance.now() - s) * 1e6;
    }
  };
  await Promise.all(Array.from({ length: inflight }, worker));
  return summarize(label, lat, n, (performance.now() - t0) / 1e3);
}

const PY = `
import json, sys, time, libvirt
uri, name, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
conn = libvirt.open(uri)
dom = conn.lookupByName(name)
for _ in range(min(1000, n)):
    dom.info()
lat = []
pc = time.perf_counter_ns
t0 = pc()
for _ in range(n):
    s = pc()
    dom.info()
    lat.append(pc() - s)
secs = (pc() - t0) / 1e9
conn.close()
print(json.dumps({"seconds": secs, "lat": lat}))
`;

function python(uri: string, name: string, n: number, label: string): Promise<Result> {
  return new Promise((resolve, reject) => {
    const p = spawn('/usr/bin/python3', ['-c', PY, uri, name, String(n)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.on('close', (code) => {
      if (code !== 0) return reject(new Error(`python3-libvirt benchmark failed (${code}): ${err}`));
      const r = JSON.parse(out) as { seconds: number; lat: number[] };
      resolve(summarize(label, Float64Array.from(r.lat), r.lat.length, r.seconds));
    });
  });
}

function virsh(uri: string, name: string, n: number, label: string): Result {
  const lat = new Float64Array(n);
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) {
    const s = process.hrtime.bigint();
    const r = spawnSync('virsh', ['-q', '-c', uri, 'dominfo', name], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`virsh failed: ${r.stderr}`);
    lat[i] = Number(process.hrtime.bigint() - s);
  }
  return summarize(label, lat, n, Number(process.hrtime.bigint() - t0) / 1e9);
}

function fmt(r: Result): string {
  const n = (v: number, w: number, d = 0) => v.toFixed(d).padStart(w);
  return `${r.label.padEnd(44)} ${n(r.calls, 7)} ${n(r.callsPerSec, 10)} ${n(r.p50, 9, 1)} ${n(r.p95, 9, 1)} ${n(r.p99, 9, 1)}`;
}

async function main(): Promise<void> {
  const d = await startLibvirtd({ maxClientRequests: MAX_CLIENT_REQUESTS });
  try {
    const testUri = d.uri('test');
    const qemuUri = d.uri('qemu');
    console.log(`libvirtd ${spawnSync('/usr/sbin/libvirtd', ['--version'], { encoding: 'utf8' }).stdout.trim()}, max_client_requests=${MAX_CLIENT_REQUESTS}, node ${process.version}`);
    console.log(`call: virDomainGetInfo; ${CALLS} calls per run, median of ${ROUNDS} alternating rounds, ${INFLIGHT} in flight when pipelined, ${VIRSH_CALLS} virsh runs\n`);
    console.log(`${'run'.padEnd(44)} ${'calls'.padStart(7)} ${'calls/s'.padStart(10)} ${'p50 us'.padStart(9)} ${'p95 us'.padStart(9)} ${'p99 us'.padStart(9)}`);

    const seqs: Result[] = [];
    const pipes: Result[] = [];
    const pys: Result[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      const c = await LibvirtClient.connect(testUri);
      const dom = await c.lookupDomainByName('test');
      seqs.push(await sequential(c, dom, CALLS, 'vmmem sequential (test driver)'));
      pipes.push(await pipelined(c, dom, CALLS, INFLIGHT, `vmmem pipelined x${INFLIGHT} (test driver)`));
      await c.close();
      pys.push(await python(testUri, 'test', CALLS, 'python3-libvirt sequential (test driver)'));
    }
    const seq = median(seqs);
    const pipe = median(pipes);
    const py = median(pys);
    console.log(fmt(seq));
    console.log(fmt(pipe));
    console.log(fmt(py));
    const vs = virsh(testUri, 'test', VIRSH_CALLS, 'virsh per call (test driver)');
    console.log(fmt(vs));

    // Reference: the QEMU driver, on a defined (shut-off) domain.
    const q = await LibvirtClient.connect(qemuUri);
    const qd = await q.domainDefineXml(tinyDomainXml('bench1'));
    const qseq = await sequential(q, qd, Math.ceil(CALLS / 2), 'vmmem sequential (qemu driver)');
    console.log(fmt(qseq));
    const qpipe = await pipelined(q, qd, Math.ceil(CALLS / 2), INFLIGHT, `vmmem pipelined x${INFLIGHT} (qemu driver)`);
    console.log(fmt(qpipe));
    const qpy = await python(qemuUri, 'bench1', Math.ceil(CALLS / 2), 'python3-libvirt sequential (qemu driver)');
    console.log(fmt(qpy));
    await q.domainUndefine(qd);
    await q.close();

    const ratio = seq.callsPerSec / py.callsPerSec;
    console.log('');
    console.log(`vmmem sequential / python3-libvirt: ${ratio.toFixed(2)}x (goal >= 1)`);
    console.log(`vmmem pipelined  / python3-libvirt: ${(pipe.callsPerSec / py.callsPerSec).toFixed(2)}x (goal >= 3)`);
    console.log(`vmmem sequential / virsh:           ${(seq.callsPerSec / vs.callsPerSec).toFixed(0)}x (goal >= 100)`);
    console.log(
      `bench libvirt: seq_calls_s=${Math.round(seq.callsPerSec)} pipelined_calls_s=${Math.round(pipe.callsPerSec)} python_calls_s=${Math.round(py.callsPerSec)} virsh_calls_s=${vs.callsPerSec.toFixed(1)} ratio=${ratio.toFixed(2)}`,
    );
  } finally {
    await d.stop();
  }
}

await main();
