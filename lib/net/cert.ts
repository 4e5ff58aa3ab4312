// Throwaway TLS identities for CRIU's page-server connections (mutual TLS,
// CRIU's --tls). Each side makes a fresh P-256 key and a self-signed
// certificate, sends the certificate over the already authenticated agent
// channel, and trusts exactly the peer's certificate: whoever holds neither
// private key cannot join, and nothing needs a CA. Built here with
// node:crypto (DER by hand) rather than by spawning openssl, so the start
// date can be back-dated: a peer whose clock runs a little behind would
// otherwise reject a certificate "not yet valid".
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { SosError } from '../errors.js';

/** A peer's certificate that cannot be trusted: `ERR_BAD_CERT`. */
export class CertError extends SosError {
  constructor(message: string, cause?: unknown) {
    super(message, { code: 'ERR_BAD_CERT', cause });
  }
}

/** A certificate and its key as PEM files, plus the certificate's text to send. */
export interface TlsIdentity {
  certFile: string;
  keyFile: string;
  certPem: string;
}

/** Largest certificate accepted from a peer (ours are ~500 bytes). */
export const MAX_CERT_PEM = 8192;

function der(tag: number, ...parts: Buffer[]): Buffer {
  const body = Buffer.concat(parts);
  const n = body.length;
  const len = n < 0x80 ? Buffer.from([n]) : n < 0x100 ? Buffer.from([0x81, n]) : Buffer.from([0x82, n >> 8, n & 0xff]);
  return Buffer.concat([Buffer.from([tag]), len, body]);
}

const seq = (...p: Buffer[]) => der(0x30, ...p);

function oid(dotted: string): Buffer {
  const [a, b, ...rest] = dotted.split('.').map(Number);
  const bytes = [a * 40 + b];
  for (const v of rest) {
    const chunk = [v & 0x7f];
    for (let x = v >> 7; x > 0; x >>= 7) chunk.unshift((x & 0x7f) | 0x80);
    bytes.push(...chunk);
  }
  return der(0x06, Buffer.from(bytes));
}

function utcTime(d: Date): Buffer {
  const s = d.toISOString().replace(/[-:T]/g, '').slice(2, 14) + 'Z';
  return der(0x17, Buffer.from(s, 'latin1'));
}

const ECDSA_SHA256 = seq(oid('1.2.840.10045.4.3.2'));

/** A self-signed X.509 v3 certificate (DER) for `key`, valid from a day ago for `days` days. */
function selfSigned(key: crypto.KeyObject, pub: crypto.KeyObject, name: string, days: number): Buffer {
  const serial = crypto.randomBytes(16);
  serial[0] = (serial[0] & 0x7f) | 0x40; // positive, and no leading zero byte (DER is minimal)
  const cn = seq(der(0x31, seq(oid('2.5.4.3'), der(0x0c, Buffer.from(name, 'utf8')))));
  const now = Date.now();
  const basicConstraints = seq(
    oid('2.5.29.19'),
    der(0x01, Buffer.from([0xff])),
    der(0x04, seq(der(0x01, Buffer.from([0xff])))),
  );
  const tbs = seq(
    der(0xa0, der(0x02, Buffer.from([2]))),
    der(0x02, serial),
    ECDSA_SHA256,
    cn,
    seq(utcTime(new Date(now - 86_400_000)), utcTime(new Date(now + days * 86_400_000))),
    cn,
    pub.export({ type: 'spki', format: 'der' }),
    der(0xa3, seq(basicConstraints)),
  );
  const sig = crypto.sign('sha256', tbs, key);
  return seq(tbs, ECDSA_SHA256, der(0x03, Buffer.concat([Buffer.from([0]), sig])));
}

function pem(label: string, body: Buffer): string {
  return `-----BEGIN ${label}-----\n${body.toString('base64').replace(/.{64}/g, '$&\n').replace(/\n?$/, '\n')}-----END ${label}-----\n`;
}

/** Make a fresh identity in `dir` (created 0700; the key file 0600). */
export async function makeIdentity(dir: string, name = 'serverlessos', days = 2): Promise<TlsIdentity> {
  const { privateKey, publicKey } = await new Promise<crypto.KeyPairKeyObjectResult>((resolve, reject) =>
    crypto.generateKeyPair('ec', { namedCurve: 'P-256' }, (e, pub, key) =>
      e ? reject(e) : resolve({ publicKey: pub, privateKey: key }),
    ),
  );
  const certPem = pem('CERTIFICATE', selfSigned(privateKey, publicKey, name, days));
  await fs.promises.mkdir(dir, { recursive: true, mode: 0o700 });
  const keyFile = path.join(dir, 'key.pem');
  const certFile = path.join(dir, 'cert.pem');
  await fs.promises.writeFile(keyFile, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  await fs.promises.writeFile(certFile, certPem, { mode: 0o644 });
  return { certFile, keyFile, certPem };
}

/**
 * Check a certificate received from a peer (PEM text, one certificate, currently valid,
 * self-signed) and write it to `file` as the only certificate trusted for that peer.
 */
export async function trustPeer(file: string, certPem: unknown): Promise<string> {
  if (
    typeof certPem !== 'string' ||
    certPem.length > MAX_CERT_PEM ||
    !/^-----BEGIN CERTIFICATE-----\n[A-Za-z0-9+/=\n]+-----END CERTIFICATE-----\n?$/.test(certPem)
  ) {
    throw new CertError('the peer certificate is not one PEM certificate');
  }
  let x: crypto.X509Certificate;
  try {
    x = new crypto.X509Certificate(certPem);
  } catch (e) {
    throw new CertError(`the peer certificate cannot be parsed: ${(e as Error).message}`, e);
  }
  const now = Date.now();
  if (Date.parse(x.validFrom) > now || Date.parse(x.validTo) < now)
    throw new CertError('the peer certificate is not valid now');
  if (!x.verify(x.publicKey)) throw new CertError('the peer certificate is not self-signed');
  await fs.promises.writeFile(file, certPem, { mode: 0o644 });
  return file;
}
