// `vmmem run --metrics-secure [--metrics-cert-dir DIR]`: the metrics listener's key pair and its
// authorizer. DIR holds tls.crt and tls.key (a kubernetes.io/tls Secret mounted as a volume, e.g.
// issued by cert-manager); without DIR a self-signed certificate is made at start, which scrapers
// accept with insecureSkipVerify (the bearer token still authenticates them; TLS then protects the
// token and the data from passive capture, not from an active man in the middle).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type * as k8s from '@kubernetes/client-node';
import type { MetricsSecurity } from '../controller/health.ts';
import type { Logger } from './http.ts';
import { kubeMetricsAuthorizer } from './metrics-auth.ts';
import { selfSignedCertificate } from './self-signed.ts';

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

export function secureMetricsFor(kubeConfig: k8s.KubeConfig, certDir: string | undefined, log: Logger): MetricsSecurity {
  let tls: { key: string; cert: string };
  if (certDir !== undefined) {
    tls = { cert: readPem(certDir, 'tls.crt'), key: readPem(certDir, 'tls.key') };
    log.info({ certDir }, 'metrics: HTTPS with the mounted certificate');
  } else {
    tls = selfSignedCertificate('vmmem-metrics', serviceNames());
    log.info({}, 'metrics: HTTPS with a self-signed certificate made at start (mount one with --metrics-cert-dir)');
  }
  return { metricsTls: tls, authorizeMetrics: kubeMetricsAuthorizer(kubeConfig, { logger: log }) };
}
