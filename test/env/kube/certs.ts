// Certificates of the test environment, as envtest's pkg/internal/testing/certs: one CA for the
// serving certificate and the client certificates (openssl CLI, EC P-256), a separate RSA key pair
// for service-account tokens, an admin bearer token, and self-contained kubeconfigs.
import { execFile } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import * as k8s from '@kubernetes/client-node';

const execFileP = promisify(execFile);

export interface KubeCertPaths {
  /** CA that signs the serving cert and the client certs; --client-ca-file. */
  caCert: string;
  caKey: string;
  servingCert: string;
  servingKey: string;
  /** Admin client certificate: CN=vmmem-admin, O=system:masters. */
  adminCert: string;
  adminKey: string;
  serviceAccountKey: string;
  serviceAccountPub: string;
}

async function openssl(args: string[], cwd: string): Promise<void> {
  try {
    await execFileP('openssl', args, { cwd });
  } catch (e) {
    const err = e as Error & { stderr?: string };
    throw new Error(`openssl ${args.join(' ')} failed: ${err.stderr || err.message}`, { cause: e });
  }
}

export interface CertSpec {
  cn: string;
  orgs?: string[];
  ca?: boolean;
  server?: boolean;
  sans?: string[];
}

/** Issue an EC P-256 cert with the openssl CLI: self-signed when `issuer` is absent. */
export async function issueCert(dir: string, name: string, spec: CertSpec, issuer?: { cert: string; key: string }) {
  const cnf = [
    '[req]',
    'distinguished_name = dn',
    'prompt = no',
    'x509_extensions = ext',
    '[dn]',
    `CN = ${spec.cn}`,
    ...(spec.orgs ?? []).map((o, i) => `${i}.O = ${o}`),
    '[ext]',
    ...(spec.ca
      ? ['basicConstraints = critical,CA:TRUE', 'keyUsage = critical,keyCertSign,cRLSign,digitalSignature', 'subjectKeyIdentifier = hash']
      : [
          'basicConstraints = critical,CA:FALSE',
          'keyUsage = critical,digitalSignature,keyEncipherment',
          `extendedKeyUsage = ${spec.server ? 'serverAuth' : 'clientAuth'}`,
          'authorityKeyIdentifier = keyid',
        ]),
    ...(spec.sans?.length ? [`subjectAltName = ${spec.sans.join(',')}`] : []),
    '',
  ].join('\n');
  const cnfPath = join(dir, `${name}.cnf`);
  await writeFile(cnfPath, cnf);
  const cert = join(dir, `${name}.crt`);
  const key = join(dir, `${name}.key`);
  await openssl(
    [
      'req', '-x509', '-config', cnfPath, '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
      '-keyout', key, '-out', cert, '-days', '3650',
      ...(issuer ? ['-CA', issuer.cert, '-CAkey', issuer.key] : []),
    ],
    dir,
  );
  await rm(cnfPath, { force: true });
  return { cert, key };
}

export function kubeconfigYaml(server: string, caPem: string, user: string, certPem: string, keyPem: string): string {
  const b64 = (s: string) => Buffer.from(s).toString('base64');
  return k8s.dumpYaml({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'vmmem-test', cluster: { server, 'certificate-authority-data': b64(caPem) } }],
    users: [{ name: user, user: { 'client-certificate-data': b64(certPem), 'client-key-data': b64(keyPem) } }],
    contexts: [{ name: 'vmmem-test', context: { cluster: 'vmmem-test', user } }],
    'current-context': 'vmmem-test',
  });
}

/**
 * The cluster's certificates in `certDir`: one CA for serving and client certs (the admin client
 * cert is CN=vmmem-admin, O=system:masters); a separate key pair for service accounts; an admin
 * bearer token in a --token-auth-file.
 */
export async function issueClusterCerts(certDir: string): Promise<{
  certs: KubeCertPaths;
  ca: { cert: string; key: string };
  adminToken: string;
  tokenFile: string;
}> {
  const ca = await issueCert(certDir, 'ca', { cn: 'vmmem-test-ca', ca: true });
  const [serving, admin] = await Promise.all([
    issueCert(
      certDir,
      'apiserver',
      {
        cn: 'kube-apiserver',
        server: true,
        sans: ['IP:127.0.0.1', 'DNS:localhost', 'IP:10.0.0.1', 'DNS:kubernetes', 'DNS:kubernetes.default', 'DNS:kubernetes.default.svc', 'DNS:kubernetes.default.svc.cluster.local'],
      },
      ca,
    ),
    issueCert(certDir, 'admin', { cn: 'vmmem-admin', orgs: ['system:masters'] }, ca),
  ]);
  const sa = generateKeyPairSync('rsa', {
    modulusLength: 2048,
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs1', format: 'pem' },
  });
  const certs: KubeCertPaths = {
    caCert: ca.cert,
    caKey: ca.key,
    servingCert: serving.cert,
    servingKey: serving.key,
    adminCert: admin.cert,
    adminKey: admin.key,
    serviceAccountKey: join(certDir, 'sa.key'),
    serviceAccountPub: join(certDir, 'sa.pub'),
  };
  await writeFile(certs.serviceAccountKey, sa.privateKey, { mode: 0o600 });
  await writeFile(certs.serviceAccountPub, sa.publicKey);
  const adminToken = randomBytes(24).toString('hex');
  const tokenFile = join(certDir, 'tokens.csv');
  await writeFile(tokenFile, `${adminToken},vmmem-admin-token,vmmem-admin-token,"system:masters"\n`, { mode: 0o600 });
  return { certs, ca, adminToken, tokenFile };
}
