/**
 * `vmmem run`: the operator. Against a cluster by default (in-cluster
 * config or kubeconfig), or in standalone mode over a manifest directory
 * with `--manifests`. `--once` (standalone) reconciles until nothing more can
 * be done now and prints every object with its status.
 */
import { hostname } from 'node:os';
import { parseArgs } from 'node:util';
import { stringify } from 'yaml';
import { createLogger } from '../controller/log.ts';
import { Metrics, setDefaultMetrics } from '../controller/metrics.ts';
import { startHealthServer } from '../controller/health.ts';
import type { HealthServer } from '../controller/health.ts';
import { Operator } from '../controller/operator.ts';
import { parseReachRules } from '../drivers/policy.ts';
import type { HypervisorPolicy } from '../drivers/policy.ts';
import type { Logger, ObjectStore, StoredObject } from '../controller/ports.ts';
import { ManifestStore } from '../standalone/store.ts';
import { exitCodeFor, reconcileUntilQuiet } from '../standalone/once.ts';
import type { CommandIO } from './io.ts';

export const RUN_OPTIONS = {
  kubeconfig: { type: 'string' },
  manifests: { type: 'string', multiple: true },
  once: { type: 'boolean' },
  output: { type: 'string', short: 'o' },
  namespace: { type: 'string' },
  'leader-elect': { type: 'boolean' },
  'leader-election-namespace': { type: 'string' },
  'leader-election-id': { type: 'string' },
  'metrics-bind-address': { type: 'string' },
  'health-probe-bind-address': { type: 'string' },
  concurrency: { type: 'string' },
  'log-level': { type: 'string' },
  // The admin's trust boundary (docs/security.md): tenants' Hypervisors get only what these allow.
  'allow-sim-hypervisors': { type: 'boolean' },
  'hypervisor-allow': { type: 'string', multiple: true },
} as const;

export async function runCommand(args: string[], io: CommandIO): Promise<number> {
  const { values } = parseArgs({ args, options: RUN_OPTIONS, allowPositionals: false });
  const output = values.output ?? 'yaml';
  if (!['yaml', 'json'].includes(output)) {
    io.err(`vmmem run: -o must be yaml or json, got ${JSON.stringify(output)}`);
    return 2;
  }
  const concurrency = values.concurrency === undefined ? 4 : Number(values.concurrency);
  if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 256) {
    io.err(`vmmem run: --concurrency must be an integer from 1 to 256, got ${JSON.stringify(values.concurrency)}`);
    return 2;
  }
  let policy: HypervisorPolicy;
  try {
    policy = clusterPolicy(values);
  } catch (err) {
    io.err(`vmmem run: ${(err as Error).message}`);
    return 2;
  }
  if (values.once && !values.manifests) {
    io.err('vmmem run: --once needs --manifests <dir> (standalone mode)');
    return 2;
  }
  // With --once the objects go to stdout: keep logs on stderr so the output stays parseable.
  const log = createLogger({ level: values['log-level'] ?? (values.once ? 'warn' : 'info'), name: 'vmmem', ...(values.once ? { stream: process.stderr } : {}) });

  if (values.manifests) {
    const store = new ManifestStore(values.manifests, { log, watch: !values.once });
    // Standalone: the manifests are the user's own, and the simulator is the default demo.
    const standalone = { ...policy, allowSim: true };
    if (values.once) return runOnce(store, log, output as 'yaml' | 'json', io, standalone);
    return runForever(store, log, {
      policy: standalone, concurrency, metricsAddress: values['metrics-bind-address'] ?? '0', probeAddress: values['health-probe-bind-address'] ?? '0' });
  }

  // Loaded on demand: standalone mode never needs the Kubernetes client.
  const [{ loadKubeConfig }, { KubeStore }, { LeaderElector }] = await Promise.all([
    import('../kube/config.ts'),
    import('../kube/store.ts'),
    import('../kube/leader.ts'),
  ]);
  const loaded = loadKubeConfig(values.kubeconfig ? { kubeconfig: values.kubeconfig } : {});
  const kubeConfig = loaded.kubeConfig;
  log.info({ source: loaded.source, from: loaded.from, namespace: values.namespace ?? 'all namespaces' }, 'connecting to Kubernetes');
  const store: ObjectStore = new KubeStore(kubeConfig, log, { ...(values.namespace ? { namespace: values.namespace } : {}), fieldManager: 'vmmem' });
  return runForever(store, log, {
    policy,
    concurrency,
    metricsAddress: values['metrics-bind-address'] ?? ':8080',
    probeAddress: values['health-probe-bind-address'] ?? ':8081',
    ...(values['leader-elect']
      ? {
          leader: new LeaderElector(kubeConfig, {
            namespace: values['leader-election-namespace'] ?? process.env.POD_NAMESPACE ?? loaded.namespace ?? 'vmmem-system',
            name: values['leader-election-id'] ?? 'vmmem-leader',
            identity: `${process.env.POD_NAME ?? hostname()}-${Math.random().toString(36).slice(2, 8)}`,
            logger: log,
          }),
        }
      : {}),
  });
}

interface LeaderLike {
  run(callbacks: { onStartedLeading(signal: AbortSignal): void; onStoppedLeading(reason: 'lost' | 'released'): void }): Promise<void>;
  release(): Promise<void>;
}

/** The admin's policy from the flags: in cluster mode sim: is refused unless --allow-sim-hypervisors. */
function clusterPolicy(values: { 'allow-sim-hypervisors'?: boolean; 'hypervisor-allow'?: string[] }): HypervisorPolicy {
  const allow = values['hypervisor-allow'];
  return { allowSim: values['allow-sim-hypervisors'] === true, ...(allow ? { allow: parseReachRules(allow.join(',')) } : {}) };
}

async function runOnce(store: ManifestStore, log: Logger, output: 'yaml' | 'json', io: CommandIO, policy: HypervisorPolicy): Promise<number> {
  const metrics = new Metrics();
  setDefaultMetrics(metrics);
  const operator = new Operator({ store, log, metrics, policy });
  try {
    await operator.start({ workers: false });
    await reconcileUntilQuiet(store, operator.reconciler);
    const objects = [...store.list('Hypervisor'), ...store.list('VirtualMachineMemory')];
    io.out(formatObjects(objects, output));
    return exitCodeFor(objects);
  } finally {
    await operator.stop();
  }
}

export function formatObjects(objects: readonly StoredObject[], output: 'yaml' | 'json'): string {
  const list = { apiVersion: 'v1', kind: 'List', metadata: {}, items: objects.map(publicView) };
  return output === 'json' ? JSON.stringify(list, null, 2) : stringify(list, { lineWidth: 0 }).trimEnd();
}

/** Objects as a user would see them from the API server (no standalone-internal uid). */
function publicView(obj: StoredObject): StoredObject {
  const { uid: _uid, ...metadata } = obj.metadata;
  return { apiVersion: obj.apiVersion, kind: obj.kind, metadata: metadata as StoredObject['metadata'], spec: obj.spec, ...(obj.status ? { status: obj.status } : {}) };
}

async function runForever(
  store: ObjectStore,
  log: Logger,
  opts: { policy: HypervisorPolicy; concurrency: number; metricsAddress: string; probeAddress: string; leader?: LeaderLike },
): Promise<number> {
  const metrics = new Metrics();
  setDefaultMetrics(metrics);
  const operator = new Operator({ store, log, metrics, concurrency: opts.concurrency, policy: opts.policy });
  const health: { server?: HealthServer } = {};
  let stopping: Promise<void> | undefined;
  let exitCode = 0;
  const stop = (why: string, code = 0): Promise<void> => {
    exitCode = exitCode || code;
    stopping ??= (async () => {
      log.info({ why }, 'shutting down: no new work, finishing in-flight reconciles');
      await operator.stop();
      await opts.leader?.release().catch((err: unknown) => log.warn({ err }, 'could not release the leader lease'));
      await health.server?.close();
      log.info({}, 'stopped');
    })();
    return stopping;
  };
  const done = new Promise<void>((resolve) => {
    process.once('SIGTERM', () => void stop('SIGTERM').then(resolve));
    process.once('SIGINT', () => void stop('SIGINT').then(resolve));
  });

  const server = await startHealthServer({
    metricsAddress: opts.metricsAddress,
    probeAddress: opts.probeAddress,
    metrics: { text: () => metrics.text(), contentType: 'text/plain; version=0.0.4; charset=utf-8' },
    ready: () => (store.synced ? true : 'caches not synced'),
    logger: log,
  });
  health.server = server;
  await operator.start({ workers: !opts.leader });
  log.info({ probes: server.probeUrl, metrics: server.metricsUrl ?? server.probeUrl }, 'vmmem running');
  if (opts.leader) {
    void opts.leader.run({
      onStartedLeading: () => {
        metrics.setLeader('vmmem', true);
        log.info({}, 'became leader: reconciling');
        operator.startWorkers();
      },
      onStoppedLeading: (reason) => {
        metrics.setLeader('vmmem', false);
        if (reason === 'released') return; // our own SIGTERM: already shutting down
        // Like controller-runtime: a replica that lost the lease exits and restarts clean.
        log.error({}, 'lost leadership: exiting');
        void stop('lost leadership', 1).then(() => process.exit(1));
      },
    });
  }
  await done;
  return exitCode;
}
