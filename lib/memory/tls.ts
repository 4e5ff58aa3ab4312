/**
 * Mutual TLS for the memory node's connections (native/memory/tls.cc): TLS 1.3, each side's certificate
 * verified against the cluster CA (and its CRL), and the peer's certificate naming the cluster in O and
 * a role in OU, as `peerIdentity` (lib/cluster/identity.ts) reads them. Checked here, so that bad options
 * are argument errors in JavaScript; the native side builds the OpenSSL context from what passes.
 */
import { contextOptions } from '../net/channel-tls.js';
import tls from 'node:tls';
import { argType, argValue } from '../errors.js';
import { object } from '../validate.js';
import type { NativeMemoryTls } from '../native/index.js';

/**
 * The credentials of one side: the cluster CA's certificate, its own certificate and key, the CA's CRL
 * (strongly advised: without it a revoked member is let in), and the cluster whose members alone may
 * connect. A cluster folder's `loadMember(dir, role, name)` fits as is.
 */
export interface MemoryTlsOptions {
  caPem: string;
  certPem: string;
  keyPem: string;
  crlPem?: string;
  cluster: string;
}

const CLUSTER = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;
const ROLES = ['node', 'orchestrator', 'operator'];

/** `v` checked and copied (only the fields the native side reads); undefined stays undefined. */
export function memoryTls(
  what: string,
  v: unknown,
  extra: { roles?: unknown; peerName?: string } = {},
): NativeMemoryTls | undefined {
  if (v === undefined) return undefined;
  const o = object(what, v);
  for (const k of ['caPem', 'certPem', 'keyPem'] as const)
    if (typeof o[k] !== 'string' || !o[k]) throw argType(`${what}.${k} must be a PEM string`);
  if (o.crlPem !== undefined && typeof o.crlPem !== 'string') throw argType(`${what}.crlPem must be a PEM string`);
  if (typeof o.cluster !== 'string' || !CLUSTER.test(o.cluster))
    throw argValue(`${what}.cluster must be a cluster name, got ${JSON.stringify(o.cluster)}`);
  const out: NativeMemoryTls = {
    caPem: o.caPem as string,
    certPem: o.certPem as string,
    keyPem: o.keyPem as string,
    cluster: o.cluster,
  };
  if (o.crlPem) out.crlPem = o.crlPem;
  if (extra.roles !== undefined) {
    if (!Array.isArray(extra.roles) || !extra.roles.length || extra.roles.some((r) => !ROLES.includes(r as string)))
      throw argValue(`${what}.roles must be a non-empty list of ${ROLES.join(', ')}`);
    out.roles = extra.roles as string[];
  }
  if (extra.peerName !== undefined) {
    if (typeof extra.peerName !== 'string' || !CLUSTER.test(extra.peerName))
      throw argValue(`the memory node's name must be a member name, got ${JSON.stringify(extra.peerName)}`);
    out.peerName = extra.peerName;
  }
  // Node's own TLS loads the same PEM: a key that is not the certificate's, or PEM that does not
  // parse, is refused here with OpenSSL's words.
  try {
    tls.createSecureContext(contextOptions(out));
  } catch (e) {
    throw argValue(`${what}: the TLS credentials do not load: ${(e as Error).message}`);
  }
  return out;
}
