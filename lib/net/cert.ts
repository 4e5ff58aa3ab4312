// Throwaway TLS identities for CRIU's page-server connections (mutual TLS,
// CRIU's --tls). Each side makes a fresh P-256 key and a self-signed
// certificate, sends the certificate over the already authenticated agent
// channel, and trusts exactly the peer's certificate: whoever holds neither
// private key cannot join, and nothing needs a CA. Built with @peculiar/x509
// rather than by spawning openssl, so the start date can be back-dated: a peer
// whose clock runs a little behind would otherwise reject a certificate
// "not yet valid".
import crypto from 'node:crypto';
import 'reflect-metadata'; // @peculiar/x509's dependency injection needs it, before the import
import * as x509 from '@peculiar/x509';
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

const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const subtle = crypto.webcrypto.subtle;
x509.cryptoProvider.set(crypto.webcrypto as never);

/** Make a fresh identity in `dir` (created 0700; the key file 0600). */
export async function makeIdentity(dir: string, name = 'serverlessos', days = 2): Promise<TlsIdentity> {
  const keys = await subtle.generateKey(ALG, true, ['sign', 'verify']);
  const now = Date.now();
  const serial = crypto.randomBytes(16);
  serial[0] = (serial[0] & 0x3f) | 0x40; // positive, no leading zero
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial.toString('hex'),
    name: `CN=${name}`,
    // Back-dated a day: a peer whose clock runs a little behind still finds it valid.
    notBefore: new Date(now - 86_400_000),
    notAfter: new Date(now + days * 86_400_000),
    signingAlgorithm: ALG,
    keys,
    // CA:TRUE: each side trusts exactly the other's certificate as its one CA (CRIU's --tls-cacert).
    extensions: [new x509.BasicConstraintsExtension(true, undefined, true)],
  });
  const certPem = cert.toString('pem').replace(/\r\n/g, '\n').replace(/\n?$/, '\n');
  const privateKey = crypto.KeyObject.from(keys.privateKey);
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
