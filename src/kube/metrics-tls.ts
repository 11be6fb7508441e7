// `vmmem run --metrics-secure=true [--metrics-cert-dir DIR]`: the metrics listener's key pair and
// its authorizer. DIR holds tls.crt and tls.key (a kubernetes.io/tls Secret mounted as a volume,
// e.g. issued by cert-manager); they are checked for a change every minute and a renewed pair is
// served to new connections, since cert-manager renews the Secret in place and the kubelet updates
// the mounted files without restarting the pod. Without DIR a self-signed certificate is made at
// start, which scrapers accept with insecureSkipVerify (the bearer token still authenticates them;
// TLS then protects the token and the data from passive capture, not from an active man in the middle).
import { X509Certificate } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { createSecureContext } from 'node:tls';
import type * as k8s from '@kubernetes/client-node';
import type { MetricsSecurity, MetricsTls } from '../controller/health.ts';
import type { Logger } from './http.ts';
import { kubeMetricsAuthorizer } from './metrics-auth.ts';
import { selfSignedCertificate } from './self-signed.ts';

/** How often a mounted pair is checked for a renewal. */
export const CERT_RELOAD_MS = 60_000;

/** Names a scraper may use for the operator: the Service, its namespace forms, and localhost. */
function serviceNames(): string[] {
  const ns = process.env.POD_NAMESPACE;
  const svc = 'vmmem-metrics';
  return ['localhost', svc, ...(ns && /^[a-z0-9-]{1,63}$/.test(ns) ? [`${svc}.${ns}`, `${svc}.${ns}.svc`, `${svc}.${ns}.svc.cluster.local`] : [])];
}

function readPem(dir: string, file: string): string {
  const path = join(dir, file);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new Error(`--metrics-cert-dir: cannot read ${path}: ${(err as Error).message}`, { cause: err });
  }
  if (text.length > 64 * 1024 || !text.includes('-----BEGIN ')) throw new Error(`--metrics-cert-dir: ${path} is not a PEM file`);
  return text;
}

/** tls.crt + tls.key of DIR, refused unless they form a usable pair (a mismatch fails here, not in a scraper's handshake). */
function readPair(dir: string): { key: string; cert: string } {
  const pair = { cert: readPem(dir, 'tls.crt'), key: readPem(dir, 'tls.key') };
  try {
    createSecureContext(pair);
  } catch (err) {
    throw new Error(`--metrics-cert-dir: ${dir}/tls.crt and tls.key are not a usable pair: ${(err as Error).message}`, { cause: err });
  }
  return pair;
}

/** What changes when the kubelet swaps a Secret volume's files (its ..data symlink) or someone rewrites them. */
function fingerprintOf(dir: string): string {
  return ['tls.crt', 'tls.key']
    .map((f) => {
      const s = statSync(join(dir, f));
      return `${s.ino}:${s.size}:${s.mtimeMs}`;
    })
    .join('/');
}

const describeCert = (cert: string) => {
  const x = new X509Certificate(cert);
  return { subject: x.subject, validTo: x.validTo, sha256: x.fingerprint256 };
};

/** The pair in DIR, with a watch that delivers a renewed, valid pair (an invalid one is logged and the old one kept). */
export function certDirSource(dir: string, log: Logger, reloadMs = CERT_RELOAD_MS): MetricsTls {
  const first = readPair(dir);
  let seen = fingerprintOf(dir);
  log.info({ certDir: dir, ...describeCert(first.cert) }, 'metrics: HTTPS with the mounted certificate');
  return {
    ...first,
    watch(apply) {
      const timer = setInterval(() => {
        try {
          const now = fingerprintOf(dir);
          if (now === seen) return;
          const next = readPair(dir);
          seen = now;
          apply(next);
          log.info({ certDir: dir, ...describeCert(next.cert) }, 'metrics: renewed certificate loaded');
        } catch (err) {
          // Mid-swap or a bad renewal: keep serving the pair we have, try again next time.
          log.warn({ certDir: dir, error: (err as Error).message }, 'metrics: certificate not reloaded, keeping the current one');
        }
      }, reloadMs);
      timer.unref();
      return () => clearInterval(timer);
    },
  };
}

export function secureMetricsFor(kubeConfig: k8s.KubeConfig, certDir: string | undefined, log: Logger): MetricsSecurity {
  let tls: MetricsTls;
  if (certDir !== undefined) {
    tls = certDirSource(certDir, log);
  } else {
    tls = selfSignedCertificate('vmmem-metrics', serviceNames());
    log.info({}, 'metrics: HTTPS with a self-signed certificate made at start (mount one with --metrics-cert-dir)');
  }
  return { metricsTls: tls, authorizeMetrics: kubeMetricsAuthorizer(kubeConfig, { logger: log }) };
}
