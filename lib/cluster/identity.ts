/**
 * The cluster's identities: one CA per cluster, a short-lived certificate per node, orchestrator and
 * operator (kubeadm's and Nomad's convention), revocation by a CRL the CA signs. Certificates are
 * built with @peculiar/x509 on Node's WebCrypto; keys are ECDSA P-256. A leaf names its holder in CN,
 * its role in OU and its cluster in O; `peerIdentity` reads them back from a TLS peer that Node's TLS
 * has already verified against the CA (and the CRL), and `authorize` checks the role an operation
 * needs. Nothing here writes files: callers keep the PEM strings where they keep secrets.
 */
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import crypto from 'node:crypto';
import net from 'node:net';
import type tls from 'node:tls';
import { SosError } from '../errors.js';

type CryptoKey = crypto.webcrypto.CryptoKey;
const subtle = crypto.webcrypto.subtle;
x509.cryptoProvider.set(crypto.webcrypto as never);

/** Who a certificate speaks for: nodes (sosd), the orchestrator, and operators (sosctl). */
export type Role = 'node' | 'orchestrator' | 'operator';
export const ROLES: readonly Role[] = ['node', 'orchestrator', 'operator'];

/**
 * A certificate or key was refused, or a peer may not do what it asked: `ERR_BAD_ARGUMENT` (a name,
 * role or lifetime the CA will not sign), `ERR_BAD_CERT` (PEM that does not parse, a key that is not
 * the CA's), `ERR_NO_PEER_CERT` (the TLS peer sent no verified certificate), `ERR_CLUSTER` (a
 * certificate of another cluster), `ERR_ROLE` (the peer's role may not do this).
 */
export class IdentityError extends SosError {}

/** The cluster CA: its certificate (shared with every member) and its key (kept by whoever issues). */
export interface ClusterCa {
  cluster: string;
  certPem: string;
  keyPem: string;
}

/** One member's credentials, as Node's `tls` options take them. */
export interface Credentials {
  name: string;
  role: Role;
  cluster: string;
  /** Hexadecimal serial number: what `revoke` takes. */
  serial: string;
  notAfter: Date;
  certPem: string;
  keyPem: string;
}

/** What a verified TLS peer is. */
export interface PeerIdentity {
  name: string;
  role: Role;
  cluster: string;
  serial: string;
}

const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const DAY = 86_400_000;
// A DN value we put into a certificate: plain names only, so that reading one back is unambiguous.
const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

function checkName(what: string, v: unknown): string {
  if (typeof v !== 'string' || !NAME.test(v))
    throw new IdentityError(
      `${what} must be 1-63 characters of letters, digits, '.', '_' or '-', starting with a letter or digit; got ${JSON.stringify(v)}`,
      { code: 'ERR_BAD_ARGUMENT' },
    );
  return v;
}

function checkDays(v: number | undefined, dflt: number): number {
  const d = v ?? dflt;
  if (!Number.isInteger(d) || d < 1 || d > 3650)
    throw new IdentityError(`days must be a whole number from 1 to 3650, got ${String(v)}`, {
      code: 'ERR_BAD_ARGUMENT',
    });
  return d;
}

const keyPem = async (k: CryptoKey) => x509.PemConverter.encode(await subtle.exportKey('pkcs8', k), 'PRIVATE KEY');

async function importKey(pem: string): Promise<CryptoKey> {
  try {
    const der = x509.PemConverter.decodeFirst(pem);
    return await subtle.importKey('pkcs8', der, ALG, true, ['sign']);
  } catch (e) {
    throw new IdentityError(`the CA key is not a PKCS#8 P-256 private key: ${(e as Error).message}`, {
      code: 'ERR_BAD_CERT',
      cause: e,
    });
  }
}

function parseCert(pem: string, what: string): x509.X509Certificate {
  try {
    return new x509.X509Certificate(pem);
  } catch (e) {
    throw new IdentityError(`${what} is not a PEM certificate: ${(e as Error).message}`, {
      code: 'ERR_BAD_CERT',
      cause: e,
    });
  }
}

/**
 * 16 random bytes: unique without a counter to keep. First byte 0x40-0x7f: positive, and no leading
 * zero for a reader to strip (Node's `serialNumber` prints none), so serials compare as strings.
 */
function serial(): string {
  const b = crypto.randomBytes(16);
  b[0] = (b[0] & 0x3f) | 0x40;
  return b.toString('hex');
}

/** A new cluster CA named `cluster` (10 years by default: it outlives its leaves; rotate by re-issuing). */
export async function createCa(opts: { cluster: string; days?: number }): Promise<ClusterCa> {
  const cluster = checkName('cluster', opts.cluster);
  const days = checkDays(opts.days, 3650);
  const keys = await subtle.generateKey(ALG, true, ['sign', 'verify']);
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: `CN=${cluster} CA, O=${cluster}`,
    notBefore: new Date(now - 60_000), // a peer's clock a minute behind still accepts it
    notAfter: new Date(now + days * DAY),
    signingAlgorithm: ALG,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { cluster, certPem: cert.toString('pem'), keyPem: await keyPem(keys.privateKey) };
}

/**
 * A leaf certificate for `name` in `role`, valid for `days` (default 365), for TLS servers and clients
 * alike; `hosts` (DNS names and IP addresses) go into its subjectAltName for clients that check them.
 */
export async function issue(
  ca: ClusterCa,
  opts: { name: string; role: Role; hosts?: string[]; days?: number },
): Promise<Credentials> {
  const name = checkName('name', opts.name);
  if (!ROLES.includes(opts.role))
    throw new IdentityError(`role must be one of ${ROLES.join(', ')}, got ${JSON.stringify(opts.role)}`, {
      code: 'ERR_BAD_ARGUMENT',
    });
  const days = checkDays(opts.days, 365);
  const hosts = opts.hosts ?? [];
  for (const h of hosts) if (!net.isIP(h)) checkName('host', h);
  const caCert = parseCert(ca.certPem, 'the CA certificate');
  const caKey = await importKey(ca.keyPem);
  const keys = await subtle.generateKey(ALG, true, ['sign', 'verify']);
  const now = Date.now();
  const sn = serial();
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: sn,
    subject: `CN=${name}, OU=${opts.role}, O=${ca.cluster}`,
    issuer: caCert.subject,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + days * DAY),
    signingAlgorithm: ALG,
    publicKey: keys.publicKey,
    signingKey: caKey,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
      new x509.SubjectAlternativeNameExtension(
        [{ type: 'dns', value: name }, ...hosts.map((h) => ({ type: net.isIP(h) ? 'ip' : 'dns', value: h }) as const)],
        false,
      ),
      await x509.AuthorityKeyIdentifierExtension.create(caCert),
    ],
  });
  // The key must be the CA's: a leaf signed by another key would be refused by every peer later.
  if (!(await cert.verify({ publicKey: caCert.publicKey })))
    throw new IdentityError('the CA key does not match the CA certificate', { code: 'ERR_BAD_CERT' });
  return {
    name,
    role: opts.role,
    cluster: ca.cluster,
    serial: sn,
    notAfter: cert.notAfter,
    certPem: cert.toString('pem'),
    keyPem: await keyPem(keys.privateKey),
  };
}

/**
 * The CA's revocation list naming `serials` (hexadecimal, as `Credentials.serial`), valid for `days`
 * (default 7: re-sign it before then). Node's TLS takes it as the `crl` option and refuses those peers.
 */
export async function revocationList(ca: ClusterCa, serials: string[], opts: { days?: number } = {}): Promise<string> {
  const days = checkDays(opts.days, 7);
  for (const s of serials)
    if (typeof s !== 'string' || !/^[0-9a-f]{1,40}$/i.test(s))
      throw new IdentityError(`a serial number must be hexadecimal, got ${JSON.stringify(s)}`, {
        code: 'ERR_BAD_ARGUMENT',
      });
  const caCert = parseCert(ca.certPem, 'the CA certificate');
  const now = Date.now();
  const crl = await x509.X509CrlGenerator.create({
    issuer: caCert.subject,
    thisUpdate: new Date(now - 60_000),
    nextUpdate: new Date(now + days * DAY),
    signingAlgorithm: ALG,
    signingKey: await importKey(ca.keyPem),
    entries: serials.map((serialNumber) => ({ serialNumber, revocationDate: new Date(now) })),
    extensions: [await x509.AuthorityKeyIdentifierExtension.create(caCert)],
  });
  // OpenSSL reads only the 'X509 CRL' label, not the library's 'CRL'.
  return x509.PemConverter.encode(crl.rawData, 'X509 CRL');
}

/**
 * Node `tls` options for mutual TLS in the cluster: TLS 1.3 only, the peer's certificate required and
 * verified against the CA (and `crl`, when given). Server names are not checked: peers are told apart
 * by the identity in their certificate, which `peerIdentity` reads.
 */
export function tlsOptions(
  caPem: string,
  own: Pick<Credentials, 'certPem' | 'keyPem'>,
  crl?: string,
): tls.SecureContextOptions & { requestCert: true; rejectUnauthorized: true; checkServerIdentity: () => undefined } {
  return {
    ca: caPem,
    cert: own.certPem,
    key: own.keyPem,
    ...(crl ? { crl } : {}),
    minVersion: 'TLSv1.3',
    requestCert: true,
    rejectUnauthorized: true,
    checkServerIdentity: () => undefined,
  };
}

/** The identity of a TLS peer that Node verified; refused unless it is of `cluster`. */
export function peerIdentity(socket: tls.TLSSocket, cluster: string): PeerIdentity {
  const c = socket.authorized ? socket.getPeerCertificate() : undefined;
  if (!c || !c.subject)
    throw new IdentityError(
      `the peer sent no verified certificate${socket.authorizationError ? ` (${String(socket.authorizationError)})` : ''}`,
      { code: 'ERR_NO_PEER_CERT' },
    );
  const one = (v: string | string[] | undefined) => (Array.isArray(v) ? undefined : v);
  const name = one(c.subject.CN);
  const role = one(c.subject.OU) as Role | undefined;
  const o = one(c.subject.O);
  if (o !== cluster)
    throw new IdentityError(
      `the peer's certificate is of cluster ${JSON.stringify(o)}, not ${JSON.stringify(cluster)}`,
      {
        code: 'ERR_CLUSTER',
      },
    );
  if (!name || !role || !ROLES.includes(role))
    throw new IdentityError(
      `the peer's certificate names no role of this cluster (OU=${JSON.stringify(c.subject.OU)})`,
      {
        code: 'ERR_ROLE',
      },
    );
  return { name, role, cluster: o, serial: c.serialNumber.toLowerCase() };
}

/** Refuse `who` unless its role is among `allowed`; `what` names the operation in the error. */
export function authorize(who: PeerIdentity, allowed: readonly Role[], what: string): void {
  if (!allowed.includes(who.role))
    throw new IdentityError(`${who.role} ${who.name} may not ${what} (allowed: ${allowed.join(', ')})`, {
      code: 'ERR_ROLE',
    });
}
