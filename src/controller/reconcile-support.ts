/**
 * What both reconcilers (vmm-reconciler.ts, hypervisor-reconciler.ts) share:
 * the reconcile's logger, status writes that skip no-op updates, best-effort
 * Events, spec parsing with the reasons docs/conditions.md promises, and the
 * mapping of driver failures to condition reasons.
 *
 * Outcomes (one contract, runner.ts): a `Result` from runner.ts; a thrown
 * RetryableError (or any error) is retried with backoff; a TerminalError is
 * not retried (the status already says what the user must change).
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import type { z } from 'zod';
import { parseDuration } from '../api/duration.ts';
import { formatPath, schemaProblems } from '../util/schema-problems.ts';
import { DriverError } from '../drivers/driver.ts';
import type { Driver } from '../drivers/driver.ts';
import type { Step } from '../model/memory.ts';
import { formatValue, hotplugDetail } from '../planner/plan.ts';
import { ConnectionSetupError } from './pool.ts';
import type { Logger, ObjectKey, ObjectStore, StoredObject } from './ports.ts';
import { sameStatus } from './status.ts';
import type { VMMFailure } from './status.ts';

export const DEFAULT_SYNC_INTERVAL_MS = 5 * 60_000;
export const DEFAULT_BALLOON_TIMEOUT_MS = 2 * 60_000;

/** The logger of the reconcile in progress (bound to its key and reconcile ID by the runner). */
const reconcileLog = new AsyncLocalStorage<Logger>();

/** Runs `fn` with `log` as the reconcilers' logger, so every line carries the reconcile's fields. */
export function withReconcileLog<T>(log: Logger, fn: () => Promise<T>): Promise<T> {
  return reconcileLog.run(log, fn);
}

/** A failure written into status that vmmem retries with backoff (the runner requeues any throw). */
export class RetryableError extends Error {
  readonly reason: string;
  constructor(reason: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'RetryableError';
    this.reason = reason;
  }
}

export interface SupportOptions {
  store: ObjectStore;
  log: Logger;
  now?: () => number;
  /** ±fraction of jitter on the sync interval (default 0.1), so thousands of VMs do not sync in lockstep. */
  jitter?: number;
  /** Observes every driver call (metrics). */
  timeCall?: <T>(driver: string, op: string, fn: () => Promise<T>) => Promise<T>;
}

/** Store writes, Events, clock and call timing as both reconcilers use them. */
export class ReconcileSupport {
  readonly store: ObjectStore;
  private readonly opts: SupportOptions;

  constructor(opts: SupportOptions) {
    this.opts = opts;
    this.store = opts.store;
  }

  get log(): Logger {
    return reconcileLog.getStore() ?? this.opts.log;
  }

  now(): number {
    return this.opts.now ? this.opts.now() : Date.now();
  }

  timeCall<T>(driver: Driver, op: string, fn: () => Promise<T>): Promise<T> {
    return this.opts.timeCall ? this.opts.timeCall(driver.kind, op, fn) : fn();
  }

  jittered(ms: number): number {
    const j = this.opts.jitter ?? 0.1;
    return Math.round(ms * (1 - j + Math.random() * 2 * j));
  }

  async event(obj: StoredObject, type: 'Normal' | 'Warning', reason: string, note: string, action: string): Promise<void> {
    try {
      await this.store.recordEvent(obj, type, reason, note, action);
    } catch (err) {
      // Events are best effort: never fail a reconcile because one could not be recorded.
      this.log.warn({ object: `${obj.kind}/${obj.metadata.namespace}/${obj.metadata.name}`, reason, err: (err as Error).message }, 'could not record event');
    }
  }

  async writeStatus(key: ObjectKey, compute: (fresh: StoredObject) => Record<string, unknown> | undefined, kind: 'VirtualMachineMemory' | 'Hypervisor' = 'VirtualMachineMemory'): Promise<void> {
    await this.store.updateStatus(kind, key, (fresh) => {
      const next = compute(fresh);
      if (next === undefined) return undefined;
      // Only lastSyncTime moved: skip the write (thousands of VMs re-sync every interval).
      if (fresh.status && sameStatus(fresh.status, next)) return undefined;
      return next;
    });
  }
}

export type Parsed<T> = { ok: true; value: T } | { ok: false; message: string; reason: 'InvalidURI' | 'InvalidSpec' };

/**
 * The spec parsed, or its problems in the same words `vmmem validate` uses (src/util/schema-problems.ts),
 * so standalone `run` and the operator's status say what validate says.
 */
export function parseSpec<T>(schema: z.ZodType<T>, spec: unknown): Parsed<T> {
  const r = schema.safeParse(spec);
  if (r.success) return { ok: true, value: r.data };
  const problems = schemaProblems(schema, spec, r.error);
  const message = problems.map((p) => `${formatPath(['spec', ...p.path])}: ${p.message}`).join('; ');
  // docs/conditions.md promises InvalidURI for a URI the allowlist refuses, so the user knows which
  // field to fix without reading the message; anything else in the spec is InvalidSpec.
  const reason = problems.length > 0 && problems.every((p) => p.path[0] === 'uri') ? 'InvalidURI' : 'InvalidSpec';
  return { ok: false, message, reason };
}

export function durationOr(text: string | undefined, field: string, fallback: number): number {
  return text === undefined ? fallback : parseDuration(text, field);
}

export function isOlder(a: StoredObject, b: StoredObject): boolean {
  const ta = a.metadata.creationTimestamp ?? '';
  const tb = b.metadata.creationTimestamp ?? '';
  if (ta !== tb) return ta < tb;
  return a.metadata.name < b.metadata.name;
}

export function describeStep(step: Step): string {
  const via = hotplugDetail(step);
  return `${step.field} ${step.world} ${formatValue(step.from)} → ${formatValue(step.to)}${via ? ` (${via})` : ''}`;
}

export function connectionFailure(hypervisor: string, err: unknown): VMMFailure {
  if (err instanceof ConnectionSetupError) return { reason: err.reason, message: err.message, stalled: err.stalled };
  if (err instanceof DriverError) {
    const said = err.hypervisorMessage ? `: ${err.hypervisorMessage}` : '';
    const base = `Hypervisor "${hypervisor}": ${err.op}: ${err.message}${said && !err.message.includes(err.hypervisorMessage ?? '\0') ? said : ''}`;
    switch (err.code) {
      case 'AuthFailed':
        return { reason: 'AuthenticationFailed', message: base, stalled: false };
      case 'TLS':
        return { reason: 'TLSError', message: base, stalled: false };
      case 'InvalidURI':
        return { reason: 'InvalidURI', message: base, stalled: true };
      case 'NotAllowed':
        return { reason: 'HypervisorNotAllowed', message: base, stalled: true };
      default:
        return { reason: 'HypervisorUnreachable', message: base, stalled: false };
    }
  }
  return { reason: 'HypervisorUnreachable', message: `Hypervisor "${hypervisor}": ${(err as Error)?.message ?? String(err)}`, stalled: false };
}

export function vmFailure(vm: string, hypervisor: string, err: unknown): VMMFailure {
  if (err instanceof DriverError && err.code === 'VMNotFound') {
    return { reason: 'VMNotFound', message: `${vm} not found on Hypervisor "${hypervisor}"${err.hypervisorMessage ? `: ${err.hypervisorMessage}` : ''}`, stalled: false };
  }
  const f = connectionFailure(hypervisor, err);
  return { ...f, message: `${vm}: ${f.message}` };
}
