/**
 * `vmmem run`: the operator. Against a cluster by default (in-cluster
 * config or kubeconfig), or in standalone mode over a manifest directory
 * with `--manifests`. `--once` (standalone) reconciles until nothing more can
 * be done now and prints every object with its status.
 */
import { statSync } from 'node:fs';
import type { KubeConfig } from '@kubernetes/client-node';
import { hostname } from 'node:os';
import { formatDuration, parseDuration } from '../api/duration.ts';
import { conditionOf } from '../controller/conditions.ts';
import { createLogger } from '../controller/log.ts';
import { Metrics, setDefaultMetrics } from '../controller/metrics.ts';
import { startHealthServer } from '../controller/health.ts';
import type { HealthServer, MetricsSecurity } from '../controller/health.ts';
import { Operator } from '../controller/operator.ts';
import { parseReachRules } from '../drivers/policy.ts';
import type { HypervisorPolicy } from '../drivers/policy.ts';
import type { Logger, ObjectStore, StoredObject } from '../controller/ports.ts';
import { ManifestStore } from '../standalone/store.ts';
import type { RecordedEvent } from '../standalone/store.ts';
import { exitCodeFor, ONCE_SHORT_REQUEUE_MS, reconcileUntilQuiet } from '../standalone/once.ts';
import { parseArgsOptions, UsageError } from './args.ts';
import { commandNamed } from './commands.ts';
import type { CommandSpec } from './commands.ts';
import type { ParsedValues } from './args.ts';
import { consoleLogStream, formatEvent, painterFor, statusTables } from './console.ts';
import type { CommandIO } from './io.ts';
import { checkStatusFile, formatObjects, StatusFileWriter, writeStatusFile } from './status-file.ts';

/** `vmmem run`'s flags as parseArgs options, from the command table (tests check deploy/ args against it). */
export const RUN_OPTIONS = parseArgsOptions(commandNamed('run') as CommandSpec);

/** Flags arrive parsed and checked against the command table (src/cli/commands.ts). */
export async function runCommand(values: ParsedValues, io: CommandIO): Promise<number> {
  const str = (k: string) => (typeof values[k] === 'string' ? (values[k] as string) : undefined);
  const manifests = values.manifests as string[] | undefined;
  const concurrency = Number(str('concurrency') ?? '4');
  if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 256) throw new UsageError(`--concurrency must be an integer from 1 to 256, got ${JSON.stringify(str('concurrency'))}`);
  let timeoutMs: number;
  try {
    timeoutMs = parseDuration(str('timeout') ?? '5m', '--timeout');
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  let policy: HypervisorPolicy;
  try {
    policy = clusterPolicy(values);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  if (values.once && !manifests) throw new UsageError('--once needs --manifests <dir> (standalone mode)');
  const shards = str('shards') === undefined ? undefined : Number(str('shards'));
  if (shards !== undefined && (!Number.isInteger(shards) || shards < 1 || shards > 1024)) throw new UsageError(`--shards must be an integer from 1 to 1024, got ${JSON.stringify(str('shards'))}`);
  if (shards !== undefined && (manifests || values['leader-elect'])) throw new UsageError('--shards is cluster mode with one Lease per shard: drop --manifests and --leader-elect');
  let leaseTimings: LeaseTimings;
  try {
    leaseTimings = parseLeaseTimings(str);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  for (const flag of ['status-file', 'events']) if (str(flag) !== undefined && !manifests) throw new UsageError(`--${flag} is for standalone mode: add --manifests <dir>`);
  for (const flag of ['output', 'timeout']) if (str(flag) !== undefined && !values.once) throw new UsageError(`--${flag} is for --once`);
  if (manifests && (str('context') || str('kubeconfig') || str('namespace'))) throw new UsageError('--kubeconfig, --context and --namespace are for cluster mode; standalone mode (--manifests) reads no cluster');
  if (manifests && (str('metrics-secure') === 'true' || str('metrics-cert-dir'))) throw new UsageError('--metrics-secure and --metrics-cert-dir are for cluster mode: scrapers are checked with the API server, which standalone mode has none of');
  if (manifests) checkManifestPaths(manifests);
  const statusFile = str('status-file');
  if (statusFile && manifests) checkStatusFile(statusFile, manifests);

  // With --once the objects go to stdout: keep logs on stderr so the output stays parseable.
  const logTo = values.once ? process.stderr : process.stdout;
  const format = str('log-format') ?? (logTo.isTTY ? 'console' : 'json');
  const log = createLogger({
    level: (str('log-level') ?? (values.once ? 'warn' : 'info')) as LevelName,
    name: 'vmmem',
    stream: format === 'console' ? consoleLogStream(logTo) : logTo,
  });

  if (manifests) {
    const events = str('events') ?? 'auto';
    const onEvent = eventPrinter(events === 'auto' ? (values.once ? 'none' : process.stderr.isTTY ? 'console' : 'json') : events, log);
    const store = new ManifestStore(manifests, { log, watch: !values.once, ...(onEvent ? { onEvent } : {}) });
    // Standalone: the manifests are the user's own, and the simulator is the default demo.
    const standalone = { ...policy, allowSim: true };
    if (values.once) return runOnce(store, log, { policy: standalone, output: (str('output') ?? 'yaml') as OnceOutput, timeoutMs, ...(statusFile ? { statusFile } : {}) }, io);
    const writer = statusFile ? new StatusFileWriter(store, statusFile, log) : undefined;
    writer?.start();
    try {
      return await runForever(store, log, { policy: standalone, concurrency, metricsAddress: str('metrics-bind-address') ?? '0', probeAddress: str('health-probe-bind-address') ?? '0' });
    } finally {
      writer?.stop();
    }
  }

  // Loaded on demand: standalone mode never needs the Kubernetes client.
  const [{ loadKubeConfig }, { KubeStore }, { LeaderElector }] = await Promise.all([
    import('../kube/config.ts'),
    import('../kube/store.ts'),
    import('../kube/leader.ts'),
  ]);
  const loaded = loadKubeConfig(str('kubeconfig') ? { kubeconfig: str('kubeconfig') as string } : {});
  const kubeConfig = loaded.kubeConfig;
  const context = str('context');
  if (context !== undefined) {
    if (!kubeConfig.getContexts().some((c) => c.name === context)) {
      throw new UsageError(`--context ${JSON.stringify(context)}: no such context in ${loaded.from} (have: ${kubeConfig.getContexts().map((c) => c.name).join(', ') || 'none'})`);
    }
    kubeConfig.setCurrentContext(context);
  }
  const namespace = str('namespace');
  log.info({ source: loaded.source, from: loaded.from, context: kubeConfig.getCurrentContext(), namespace: namespace ?? 'all namespaces' }, 'connecting to Kubernetes');
  const leaseNamespace = str('leader-election-namespace') ?? process.env.POD_NAMESPACE ?? loaded.namespace ?? 'vmmem-system';
  const identity = str('identity') ?? `${process.env.POD_NAME ?? hostname()}-${Math.random().toString(36).slice(2, 8)}`;
  const metricsSecurity = await metricsSecurityFor(values, kubeConfig, log);
  if (shards !== undefined) {
    const { runSharded } = await import('./sharded.ts');
    const metrics = new Metrics();
    setDefaultMetrics(metrics);
    return runSharded({
      kubeConfig,
      log,
      metrics,
      shards,
      identity,
      leaseNamespace,
      namespace,
      concurrency,
      policy,
      ...leaseTimings,
      metricsAddress: str('metrics-bind-address') ?? ':8080',
      probeAddress: str('health-probe-bind-address') ?? ':8081',
      metricsSecurity,
    });
  }
  const store: ObjectStore = new KubeStore(kubeConfig, log, { ...(namespace ? { namespace } : {}), fieldManager: 'vmmem' });
  return runForever(store, log, {
    policy,
    concurrency,
    metricsSecurity,
    metricsAddress: str('metrics-bind-address') ?? ':8080',
    probeAddress: str('health-probe-bind-address') ?? ':8081',
    ...(values['leader-elect']
      ? {
          leader: new LeaderElector(kubeConfig, {
            namespace: leaseNamespace,
            name: str('leader-election-id') ?? 'vmmem-leader',
            identity,
            logger: log,
            ...leaseTimings,
          }),
        }
      : {}),
  });
}

/**
 * --metrics-secure=true (deploy/ and the chart set it; kubebuilder's default): /metrics over HTTPS,
 * every scrape authenticated and authorized by the API server (src/kube/metrics-tls.ts). Off by
 * default in the binary so a development run against a kubeconfig serves plain HTTP.
 */
async function metricsSecurityFor(values: ParsedValues, kubeConfig: KubeConfig, log: Logger): Promise<MetricsSecurity> {
  const certDir = typeof values['metrics-cert-dir'] === 'string' ? values['metrics-cert-dir'] : undefined;
  if (values['metrics-secure'] !== 'true') {
    if (certDir !== undefined) throw new UsageError('--metrics-cert-dir needs --metrics-secure=true');
    return {};
  }
  const { secureMetricsFor } = await import('../kube/metrics-tls.ts');
  try {
    return secureMetricsFor(kubeConfig, certDir, log);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

type LeaseTimings = { leaseDurationMs?: number; renewDeadlineMs?: number; retryPeriodMs?: number };

/** --leader-election-{lease-duration,renew-deadline,retry-period}: durations such as 15s (client-go's flags). */
function parseLeaseTimings(str: (k: string) => string | undefined): LeaseTimings {
  const ms = (flag: string) => {
    const text = str(flag);
    return text === undefined ? undefined : parseDuration(text, `--${flag}`);
  };
  const leaseDurationMs = ms('leader-election-lease-duration');
  const renewDeadlineMs = ms('leader-election-renew-deadline');
  const retryPeriodMs = ms('leader-election-retry-period');
  return {
    ...(leaseDurationMs !== undefined ? { leaseDurationMs } : {}),
    ...(renewDeadlineMs !== undefined ? { renewDeadlineMs } : {}),
    ...(retryPeriodMs !== undefined ? { retryPeriodMs } : {}),
  };
}

/** A manifests path that does not exist is a usage error, before anything runs; unreadable ones are reported by the store (exit 1). */
function checkManifestPaths(paths: readonly string[]): void {
  for (const path of paths) {
    if (path === '-') continue;
    try {
      statSync(path);
    } catch (err) {
      if ((err as { code?: string }).code === 'ENOENT') throw new UsageError(`--manifests ${path}: no such file or directory`);
    }
  }
}

type LevelName = 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal' | 'silent';
type OnceOutput = 'yaml' | 'json' | 'table';

/** Events as readable lines on stderr (a terminal), as JSON log entries (log collectors), or not at all. */
function eventPrinter(mode: string, log: Logger): ((e: RecordedEvent) => void) | undefined {
  if (mode === 'none') return undefined;
  if (mode === 'json') return (e) => log.info({ event: e }, `event ${e.type} ${e.reason} ${e.object}`);
  const p = painterFor(process.stderr);
  return (e) => process.stderr.write(formatEvent(p, e) + '\n');
}

interface LeaderLike {
  run(callbacks: { onStartedLeading(signal: AbortSignal): void; onStoppedLeading(reason: 'lost' | 'released'): void }): Promise<void>;
  release(): Promise<void>;
}

/** The admin's policy from the flags: in cluster mode sim: is refused unless --allow-sim-hypervisors. */
function clusterPolicy(values: ParsedValues): HypervisorPolicy {
  const allow = values['hypervisor-allow'] as string[] | undefined;
  return { allowSim: values['allow-sim-hypervisors'] === true, ...(allow ? { allow: parseReachRules(allow.join(',')) } : {}) };
}

async function runOnce(store: ManifestStore, log: Logger, opts: { policy: HypervisorPolicy; output: OnceOutput; timeoutMs: number; statusFile?: string }, io: CommandIO): Promise<number> {
  const metrics = new Metrics();
  setDefaultMetrics(metrics);
  const operator = new Operator({ store, log, metrics, policy: opts.policy, once: { shortRequeueMs: ONCE_SHORT_REQUEUE_MS } });
  const started = Date.now();
  try {
    await operator.start({ workers: false });
    await reconcileUntilQuiet(operator, { deadlineMs: opts.timeoutMs, onPass: () => reportProgress(store, started) });
    const objects = [...store.list('Hypervisor'), ...store.list('VirtualMachineMemory')];
    io.out(opts.output === 'table' ? statusTables(painterFor(process.stdout), objects) : formatObjects(objects, opts.output));
    if (opts.statusFile) writeStatusFile(opts.statusFile, objects);
    const timedOut = Date.now() - started >= opts.timeoutMs && objects.some(reconciling);
    if (timedOut) io.err(`vmmem run --once: --timeout ${formatDuration(opts.timeoutMs)} passed with objects still converging: ${objects.filter(reconciling).map((o) => o.metadata.name).join(', ')}`);
    for (const problem of store.problems) io.err(`vmmem run --once: ${problem}`);
    const code = exitCodeFor(objects);
    // A manifest that was not read, or a timeout, is a failure even when what did load converged.
    return code === 0 && (store.problems.length > 0 || timedOut) ? 1 : code;
  } finally {
    await operator.stop();
  }
}

const reconciling = (o: StoredObject) => conditionOf(o, 'Reconciling')?.status === 'True';

/** On long waits (a balloon settling, a virtio-mem plug), say on stderr what is still moving. */
function reportProgress(store: ManifestStore, started: number): void {
  const moving = store.list('VirtualMachineMemory').filter(reconciling);
  if (moving.length === 0 || Date.now() - started < 2000) return;
  const secs = Math.round((Date.now() - started) / 1000);
  for (const o of moving) {
    const c = conditionOf(o, 'Reconciling');
    process.stderr.write(`vmmem run --once: ${secs}s: ${o.metadata.namespace}/${o.metadata.name}: ${c?.reason ?? ''}: ${c?.message ?? ''}\n`);
  }
}

async function runForever(
  store: ObjectStore,
  log: Logger,
  opts: { policy: HypervisorPolicy; concurrency: number; metricsAddress: string; probeAddress: string; leader?: LeaderLike; metricsSecurity?: MetricsSecurity },
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
    ...opts.metricsSecurity,
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
