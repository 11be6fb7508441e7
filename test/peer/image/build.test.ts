// The repository's Dockerfile built for real and the image run, without a Docker daemon:
// `buildah bud --isolation chroot` (root, no daemon, vfs storage: no overlay mount needed) builds
// it on the base image test/peer/image/setup.sh makes (Debian 12 + Node 24: no registry is
// reachable here), and podman runs it as the image's own non-root USER with a read-only root
// filesystem and no network: `vmmem version`, `vmmem validate` over the shipped examples and over a
// bad manifest, and the uid, read-only root and writable /tmp the Deployment relies on. Images live
// in ${VMMEM_CACHE:-~/.cache/vmmem}/image/containers, outside the repository; the built image is
// removed afterwards, the imported base stays cached. A missing tool fails the test, loudly.
//
// Two accommodations for this machine, both about running, not about the image:
//  - podman's default OCI runtime crun refuses the host's hybrid cgroup layout (cgroup v1
//    controllers plus a cgroup2 mount with hugetlb) with "cgroups in hybrid mode not supported";
//    runc with podman's cgroupfs manager runs there.
//  - podman gives the container the rlimits it raised for itself (nofile/nproc at the hard
//    maximum), which this VM refuses ("setrlimit RLIMIT_NPROC: Operation not permitted"):
//    explicit lower ulimits.
// The egress to the npm registry and Debian passes a TLS-inspecting proxy whose CA is in the host's
// trust store: a copy of that bundle and an npmrc naming it are bind-mounted over /usr/local/etc for
// the build's RUN steps only (buildah bud -v); neither is in the image, which the test checks.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ROOT } from '../../support/dockerfile.ts';

const execFileP = promisify(execFile);
const CACHE = process.env.VMMEM_CACHE ?? join(process.env.HOME ?? '/root', '.cache', 'vmmem');
const IMAGE_CACHE = join(CACHE, 'image');
const STORE = join(IMAGE_CACHE, 'containers');
const STORAGE = ['--storage-driver', 'vfs', '--root', join(STORE, 'storage'), '--runroot', join(STORE, 'run')];
const PKG_VERSION = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
const NPM_VERSION = '11.21.3'; // test/peer/image/setup.sh pins the same
const NODE_VERSION = (JSON.parse(readFileSync(join(ROOT, 'node_modules', 'node', 'package.json'), 'utf8')) as { version: string }).version;
const BASE_TAR = join(IMAGE_CACHE, `debian-bookworm-node-${NODE_VERSION}-npm-${NPM_VERSION}`, 'base.tar');
const BASE_IMAGE = `localhost/vmmem-base:bookworm-node${NODE_VERSION}-npm${NPM_VERSION}`;
const IMAGE = `localhost/vmmem:peer-test-${process.pid}`;
const HOST_CA = '/etc/ssl/certs/ca-certificates.crt';
const RUN_FLAGS = ['--runtime', 'runc', '--rm', '--read-only', '--network', 'none', '--ulimit', 'nofile=4096:4096', '--ulimit', 'nproc=4096:4096'];

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

async function sh(cmd: string, args: string[], timeoutMs = 300_000): Promise<Result> {
  try {
    const r = await execFileP(cmd, args, { maxBuffer: 64 << 20, timeout: timeoutMs });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const err = e as { code?: number | string; stdout?: string; stderr?: string; message: string };
    return { code: typeof err.code === 'number' ? err.code : 1, stdout: err.stdout ?? '', stderr: err.stderr ?? err.message };
  }
}

const podman = (args: string[]) => sh('podman', [...STORAGE, '--cgroup-manager', 'cgroupfs', ...args]);
/** The image as a Deployment runs it: its ENTRYPOINT and USER, read-only root, no network. */
const runImage = (args: string[], extra: string[] = []) => podman(['run', ...RUN_FLAGS, ...extra, IMAGE, ...args]);
const show = (r: Result) => `exit ${r.code}\n--- stdout ---\n${r.stdout.slice(-3000)}\n--- stderr ---\n${r.stderr.slice(-3000)}`;

void describe('the Dockerfile, built with buildah and run with podman (non-root, read-only root)', () => {
  let work: string;
  let build: Result;

  before(async () => {
    for (const tool of ['buildah', 'podman', 'runc']) {
      const v = await sh(tool, ['--version'], 30_000);
      assert.equal(v.code, 0, `${tool} cannot run (bash test/peer/image/setup.sh installs it): ${v.stderr}`);
    }
    assert.ok(existsSync(BASE_TAR), `base image ${BASE_TAR} missing: run bash test/peer/image/setup.sh`);
    mkdirSync(STORE, { recursive: true });
    work = mkdtempSync(join(IMAGE_CACHE, '.build-test-'));
    if ((await podman(['image', 'exists', BASE_IMAGE])).code !== 0) {
      const imp = await podman(['import', BASE_TAR, BASE_IMAGE]);
      assert.equal(imp.code, 0, `podman import ${BASE_TAR}: ${show(imp)}`);
    }
    // Mounted over /usr/local/etc, a directory the base already has (empty): buildah leaves an
    // empty stub in the image for a mount point that did not exist, none for one that did.
    const trust: string[] = [];
    if (existsSync(HOST_CA)) {
      const etc = join(work, 'etc');
      mkdirSync(etc);
      copyFileSync(HOST_CA, join(etc, 'host-ca.crt'));
      writeFileSync(join(etc, 'npmrc'), 'cafile=/usr/local/etc/host-ca.crt\n');
      trust.push('-v', `${etc}:/usr/local/etc:ro`);
    }
    build = await sh(
      'nice',
      ['buildah', ...STORAGE, 'bud', '--isolation', 'chroot', '--network', 'host', '--layers=false', ...trust, '--build-arg', `NODE_IMAGE=${BASE_IMAGE}`, '-t', IMAGE, '-f', join(ROOT, 'Dockerfile'), ROOT],
      600_000,
    );
  });

  after(async () => {
    await podman(['rmi', '-f', IMAGE]);
    // The deps stage's untagged image (vfs stores every layer as a full copy).
    await podman(['image', 'prune', '-f']);
    if (work) rmSync(work, { recursive: true, force: true });
  });

  void it('builds: every Dockerfile step runs, and the image runs as 65532 with the documented entrypoint', async () => {
    assert.equal(build.code, 0, `buildah bud failed:\n${show(build)}`);
    assert.match(build.stdout + build.stderr, /RUN npm ci --omit=dev/);
    const cfg = await podman(['image', 'inspect', IMAGE, '--format', '{{.Config.User}} {{json .Config.Entrypoint}} {{json .Config.Cmd}}']);
    assert.equal(cfg.code, 0, show(cfg));
    assert.equal(cfg.stdout.trim(), '65532:65532 ["node","/app/src/cli/main.ts"] ["run"]');
  });

  void it('vmmem version prints the package version', async () => {
    assert.equal(build.code, 0, 'image not built');
    const r = await runImage(['version']);
    assert.equal(r.code, 0, show(r));
    assert.equal(r.stdout.trim(), `vmmem ${PKG_VERSION} (vmmem.io/v1alpha1)`);
  });

  void it('vmmem validate accepts the shipped examples and refuses a bad manifest with file:line (exit 1)', async () => {
    assert.equal(build.code, 0, 'image not built');
    const good = await runImage(['validate', '-f', '/app/examples']);
    assert.equal(good.code, 0, show(good));
    const bad = join(work, 'bad');
    mkdirSync(bad);
    writeFileSync(
      join(bad, 'vmm.yaml'),
      'apiVersion: vmmem.io/v1alpha1\nkind: VirtualMachineMemory\nmetadata:\n  name: web-01\nspec:\n  hypervisorRef: {name: kvm}\n  vm: {name: web-01}\n  maxMemory: lots\n',
    );
    const r = await runImage(['validate', '-f', '/in/vmm.yaml'], ['-v', `${bad}:/in:ro`]);
    assert.equal(r.code, 1, show(r));
    assert.match(r.stdout, /^\/in\/vmm\.yaml:8: VirtualMachineMemory\/web-01: spec\.maxMemory: /m, show(r));
  });

  void it('inside: uid 65532, the root filesystem read-only, /tmp writable, no build-time trust files left', async () => {
    assert.equal(build.code, 0, 'image not built');
    const script = [
      'id -u; id -g',
      'touch /app/x 2>&1 || echo app-readonly',
      'touch /etc/x 2>&1 || echo etc-readonly',
      'touch /tmp/x && echo tmp-writable',
      'test -z "$(ls -A /usr/local/etc)" && echo no-build-trust || ls -la /usr/local/etc',
      'test -d /app/node_modules/typescript && echo dev-deps || echo production-deps-only',
    ].join('; ');
    const r = await runImage(['-c', script], ['--entrypoint', '/bin/sh']);
    assert.equal(r.code, 0, show(r));
    const lines = r.stdout.trim().split('\n');
    assert.deepEqual(lines.slice(0, 2), ['65532', '65532'], show(r));
    for (const want of ['app-readonly', 'etc-readonly', 'tmp-writable', 'no-build-trust', 'production-deps-only']) assert.ok(lines.includes(want), `${want}:\n${show(r)}`);
    assert.match(r.stdout, /Read-only file system/, 'the write failed for being read-only, not for permissions');
  });
});
