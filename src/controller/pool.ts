/**
 * One connected driver per Hypervisor object, shared by every VMM that
 * references it (DESIGN §6). A connection is replaced when the Hypervisor's
 * spec or its Secret's content changes, and dropped when a call reports the
 * connection gone, so the next reconcile reconnects (with the queue's backoff).
 */
import { createHash } from 'node:crypto';
import type { HypervisorSpec } from '../api/hypervisor.ts';
import { redactUri } from '../api/uri-policy.ts';
import type { Credentials, Driver, DriverEvent, HypervisorIdentity } from '../drivers/driver.ts';
import { DriverError } from '../drivers/driver.ts';
import { createDriver } from '../drivers/registry.ts';
import type { Logger, ObjectKey, ObjectStore } from './ports.ts';
import { keyString } from './ports.ts';

/** A problem resolving what a connection needs, before any hypervisor call. */
export class ConnectionSetupError extends Error {
  readonly reason: string;
  readonly stalled: boolean;
  constructor(reason: string, message: string, stalled: boolean) {
    super(message);
    this.name = 'ConnectionSetupError';
    this.reason = reason;
    this.stalled = stalled;
  }
}

interface Entry {
  fingerprint: string;
  driver: Driver;
  identity: HypervisorIdentity;
  unsubscribe?: () => Promise<void>;
}

export type DriverFactoryFn = typeof createDriver;

export interface PoolOptions {
  store: ObjectStore;
  log: Logger;
  onEvent?: (hypervisor: ObjectKey, event: DriverEvent) => void;
  /** Per-call timeout for drivers, ms. */
  timeoutMs?: number;
  createDriver?: DriverFactoryFn;
  /** Called with every secret value read, so logs can scrub them. */
  registerSecret?: (value: string) => void;
}

export class HypervisorPool {
  private readonly entries = new Map<string, Entry>();
  private readonly connecting = new Map<string, Promise<Entry>>();
  /**
   * A connect that just failed, remembered briefly: a host that never answers
   * would otherwise cost a full connect timeout for every VMM on it.
   */
  private readonly recentFailures = new Map<string, { fingerprint: string; at: number; error: unknown }>();
  private readonly warnedInsecure = new Set<string>();
  /** Secret reads, briefly cached: thousands of VMMs share a handful of Hypervisors. */
  private readonly secretCache = new Map<string, { at: number; data: Record<string, string> | undefined }>();
  private readonly opts: PoolOptions;

  constructor(opts: PoolOptions) {
    this.opts = opts;
  }

  /** The connected driver for a Hypervisor, connecting (once, even under concurrency) if needed. */
  async get(key: ObjectKey, spec: HypervisorSpec): Promise<{ driver: Driver; identity: HypervisorIdentity }> {
    const credentials = await this.credentials(key, spec);
    const fingerprint = fingerprintOf(spec, credentials);
    const id = keyString(key);
    const current = this.entries.get(id);
    if (current && current.fingerprint === fingerprint) return current;
    if (current) await this.invalidate(key, 'Hypervisor spec or credentials changed');
    const failed = this.recentFailures.get(id);
    if (failed && failed.fingerprint === fingerprint && Date.now() - failed.at < FAILED_CONNECT_MEMORY_MS) throw failed.error;
    let pending = this.connecting.get(id);
    if (!pending) {
      pending = this.connect(key, spec, credentials, fingerprint)
        .then(
          (entry) => {
            this.recentFailures.delete(id);
            return entry;
          },
          (error: unknown) => {
            this.recentFailures.set(id, { fingerprint, at: Date.now(), error });
            throw error;
          },
        )
        .finally(() => this.connecting.delete(id));
      this.connecting.set(id, pending);
    }
    return pending;
  }

  /** The connected driver, if there is one (never connects). */
  peek(key: ObjectKey): Driver | undefined {
    return this.entries.get(keyString(key))?.driver;
  }

  private async connect(key: ObjectKey, spec: HypervisorSpec, credentials: Credentials, fingerprint: string): Promise<Entry> {
    const id = keyString(key);
    if (spec.tls?.insecureSkipVerify && !this.warnedInsecure.has(id)) {
      this.warnedInsecure.add(id);
      this.opts.log.warn({ hypervisor: id, uri: redactUri(spec.uri) }, 'TLS certificate verification is disabled for this Hypervisor (spec.tls.insecureSkipVerify: true)');
    }
    const factory = this.opts.createDriver ?? createDriver;
    const driver = await factory({ uri: spec.uri, credentials, insecureSkipVerify: spec.tls?.insecureSkipVerify === true, timeoutMs: this.opts.timeoutMs ?? 30_000 });
    try {
      await driver.connect();
      const identity = await driver.identify();
      const entry: Entry = { fingerprint, driver, identity };
      if (driver.events && this.opts.onEvent) {
        const onEvent = this.opts.onEvent;
        entry.unsubscribe = await driver.events((event) => {
          if (event.kind === 'disconnected') void this.invalidate(key, event.reason);
          onEvent(key, event);
        });
      }
      this.entries.set(id, entry);
      this.opts.log.info({ hypervisor: id, uri: redactUri(spec.uri), type: identity.type, version: identity.version }, 'connected to hypervisor');
      return entry;
    } catch (err) {
      await driver.close().catch(() => undefined);
      throw err;
    }
  }

  /** Drops a connection (closing it); the next get() reconnects. */
  async invalidate(key: ObjectKey, why: string): Promise<void> {
    const id = keyString(key);
    const entry = this.entries.get(id);
    if (!entry) return;
    this.entries.delete(id);
    this.opts.log.info({ hypervisor: id, why }, 'dropping hypervisor connection');
    await entry.unsubscribe?.().catch(() => undefined);
    await entry.driver.close().catch(() => undefined);
  }

  /**
   * Call after a driver error. Only a connection that is gone (or whose
   * stream is corrupt) is dropped: a single call that timed out or failed
   * leaves the shared connection to every other reconcile on that host
   * (dropping it turned one transient error into a failure for all of them;
   * found by the chaos suite).
   */
  async noteError(key: ObjectKey, err: unknown): Promise<void> {
    if (err instanceof DriverError && ['Disconnected', 'Protocol'].includes(err.code)) {
      await this.invalidate(key, `${err.code}: ${err.message}`);
    }
  }

  async closeAll(): Promise<void> {
    await Promise.all([...this.entries.keys()].map((id) => this.invalidate(parseId(id), 'shutting down')));
  }

  private async cachedSecret(key: ObjectKey): Promise<Record<string, string> | undefined> {
    const id = keyString(key);
    const hit = this.secretCache.get(id);
    // A missing Secret is not cached: creating it should heal the Hypervisor at the next retry.
    if (hit && hit.data && Date.now() - hit.at < SECRET_TTL_MS) return hit.data;
    const data = await this.opts.store.getSecret(key);
    this.secretCache.set(id, { at: Date.now(), data });
    return data;
  }

  private async credentials(key: ObjectKey, spec: HypervisorSpec): Promise<Credentials> {
    const creds: Credentials = {};
    const read = async (name: string, what: string) => {
      const data = await this.cachedSecret({ namespace: key.namespace, name });
      if (!data) {
        throw new ConnectionSetupError('SecretNotFound', `Hypervisor ${keyString(key)}: ${what} Secret "${name}" not found in namespace ${key.namespace}`, false);
      }
      for (const v of Object.values(data)) if (v) this.opts.registerSecret?.(v);
      return data;
    };
    if (spec.credentialsSecretRef) {
      const d = await read(spec.credentialsSecretRef.name, 'spec.credentialsSecretRef');
      assign(creds, 'username', d.username);
      assign(creds, 'password', d.password);
      assign(creds, 'clientCert', d['tls.crt']);
      assign(creds, 'clientKey', d['tls.key']);
      assign(creds, 'caCert', d['ca.crt']);
      assign(creds, 'sshPrivateKey', d['ssh-privatekey']);
      assign(creds, 'knownHosts', d.known_hosts);
    }
    if (spec.tls?.caSecretRef) {
      const d = await read(spec.tls.caSecretRef.name, 'spec.tls.caSecretRef');
      if (!d['ca.crt']) throw new ConnectionSetupError('SecretInvalid', `Hypervisor ${keyString(key)}: Secret "${spec.tls.caSecretRef.name}" has no key ca.crt`, true);
      creds.caCert = d['ca.crt'];
    }
    return creds;
  }
}

const SECRET_TTL_MS = 30_000;
const FAILED_CONNECT_MEMORY_MS = 5_000;

function assign(creds: Credentials, key: keyof Credentials, value: string | undefined): void {
  if (value !== undefined && value !== '') creds[key] = value;
}

/** Identity of a connection's inputs; secrets enter only as a hash. */
function fingerprintOf(spec: HypervisorSpec, credentials: Credentials): string {
  const secretHash = createHash('sha256').update(JSON.stringify(credentials)).digest('hex');
  return JSON.stringify({ uri: spec.uri, tls: spec.tls ?? null, secretHash });
}

function parseId(id: string): ObjectKey {
  const i = id.indexOf('/');
  return { namespace: id.slice(0, i), name: id.slice(i + 1) };
}
