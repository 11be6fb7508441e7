// `npm run bench -- <name> [args...]`: runs bench/<name>.ts in its own Node process (each
// benchmark owns its process: CPU and memory figures are not mixed with another one's).
//
//   npm run bench -- libvirt               libvirt client vs python3-libvirt vs virsh (bench/libvirt.ts)
//   npm run bench -- scale [--n 1000]      the operator at N VMMs on a real API server (bench/scale.ts)
//   npm run bench -- scale --replicas R    the same in sharded mode over R processes (bench/scale-replicas.ts)
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const BENCHES: Record<string, string> = {
  libvirt: 'libvirt client throughput and latency against an isolated libvirtd',
  scale: 'operator at N VMMs on the real kube-apiserver + etcd and the sim driver',
};

const here = dirname(fileURLToPath(import.meta.url));
const [name, ...rest] = process.argv.slice(2);

if (!name || !(name in BENCHES)) {
  const list = Object.entries(BENCHES).map(([n, d]) => `  ${n.padEnd(10)} ${d}`).join('\n');
  process.stderr.write(`${name ? `unknown benchmark ${JSON.stringify(name)}\n\n` : ''}usage: npm run bench -- <name> [args...]\n\n${list}\n`);
  process.exit(2);
}

// Sharded mode is its own file (other phases, other children); --replicas picks it.
const file = name === 'scale' && rest.some((a) => a === '--replicas' || a.startsWith('--replicas=')) ? 'scale-replicas' : name;
const child = spawn(process.execPath, [...process.execArgv, join(here, `${file}.ts`), ...rest], { stdio: 'inherit' });
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => child.kill(sig));
child.on('exit', (code, signal) => {
  process.exitCode = code ?? (signal ? 1 : 0);
});
