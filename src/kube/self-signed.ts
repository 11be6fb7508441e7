// A self-signed serving certificate for the metrics endpoint, made at start when no certificate
// is mounted (kubebuilder's metrics server does the same). Node can create keys and signatures but
// has no API to create an X.509 certificate, so this writes the few DER structures RFC 5280 needs:
// an ECDSA P-256 key, a v3 certificate with subject = issuer = CN=<commonName>, the given DNS names
// as subjectAltName, signed with ecdsa-with-SHA256. Checked by node:crypto's X509Certificate
// parser and by TLS clients in test/unit/self-signed.test.ts.
import { X509Certificate, generateKeyPairSync, randomBytes, sign } from 'node:crypto';

const OID_ECDSA_SHA256 = '1.2.840.10045.4.3.2';
const OID_COMMON_NAME = '2.5.4.3';
const OID_SUBJECT_ALT_NAME = '2.5.29.17';

function length(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let v = n; v > 0; v >>= 8) bytes.unshift(v & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

/** One DER TLV: tag, definite length, contents. */
function tlv(tag: number, ...contents: Buffer[]): Buffer {
  const body = Buffer.concat(contents);
  return Buffer.concat([Buffer.from([tag]), length(body.length), body]);
}

const sequence = (...c: Buffer[]) => tlv(0x30, ...c);

function oid(dotted: string): Buffer {
  const [a, b, ...rest] = dotted.split('.').map(Number);
  const out = [a! * 40 + b!];
  for (const arc of rest) {
    const chunk = [arc & 0x7f];
    for (let v = arc >> 7; v > 0; v >>= 7) chunk.unshift(0x80 | (v & 0x7f));
    out.push(...chunk);
  }
  return tlv(0x06, Buffer.from(out));
}

/** UTCTime through 2049, GeneralizedTime from 2050 (RFC 5280 §4.1.2.5). */
function time(d: Date): Buffer {
  const iso = d.toISOString().replace(/[-:T]/g, '').slice(0, 14); // YYYYMMDDHHMMSS
  return d.getUTCFullYear() < 2050 ? tlv(0x17, Buffer.from(`${iso.slice(2)}Z`)) : tlv(0x18, Buffer.from(`${iso}Z`));
}

export interface SelfSigned {
  /** PEM private key (PKCS#8). */
  key: string;
  /** PEM certificate. */
  cert: string;
}

/** A fresh key and a certificate valid from an hour ago (clock skew) for `days` days. */
export function selfSignedCertificate(commonName: string, dnsNames: readonly string[], days = 365, now = new Date()): SelfSigned {
  if (!/^[A-Za-z0-9.-]{1,64}$/.test(commonName)) throw new Error(`self-signed certificate: invalid common name ${JSON.stringify(commonName)}`);
  for (const n of dnsNames) {
    if (!/^[A-Za-z0-9*.-]{1,253}$/.test(n)) throw new Error(`self-signed certificate: invalid DNS name ${JSON.stringify(n)}`);
  }
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const serial = randomBytes(16);
  serial[0] = serial[0]! & 0x7f; // positive INTEGER
  const name = sequence(tlv(0x31, sequence(oid(OID_COMMON_NAME), tlv(0x0c, Buffer.from(commonName)))));
  const algorithm = sequence(oid(OID_ECDSA_SHA256));
  const notBefore = new Date(now.getTime() - 3600_000);
  const notAfter = new Date(now.getTime() + days * 86_400_000);
  const san = sequence(...dnsNames.map((n) => tlv(0x82, Buffer.from(n)))); // [2] dNSName
  const extensions = tlv(0xa3, sequence(sequence(oid(OID_SUBJECT_ALT_NAME), tlv(0x04, san))));
  const tbs = sequence(
    tlv(0xa0, tlv(0x02, Buffer.from([2]))), // version v3
    tlv(0x02, serial),
    algorithm,
    name,
    sequence(time(notBefore), time(notAfter)),
    name,
    publicKey.export({ type: 'spki', format: 'der' }),
    extensions,
  );
  const signature = sign('sha256', tbs, privateKey); // DER ECDSA-Sig-Value for an EC key
  const der = sequence(tbs, algorithm, tlv(0x03, Buffer.from([0]), signature));
  const cert = `-----BEGIN CERTIFICATE-----\n${der.toString('base64').replace(/.{64}/g, '$&\n').replace(/\n?$/, '\n')}-----END CERTIFICATE-----\n`;
  // Parse it back: a structure mistake fails here, at start, not in a scraper's TLS handshake.
  const parsed = new X509Certificate(cert);
  if (!parsed.verify(publicKey)) throw new Error('self-signed certificate: signature does not verify');
  return { key: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, cert };
}
