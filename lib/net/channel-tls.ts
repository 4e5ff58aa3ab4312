/**
 * Mutual TLS for the channel (lib/net/channel.ts), the alternative to a shared secret: both ends show a
 * certificate of one CA (TLS 1.3, the CA's CRL when given), and each end's `verifyPeer` then decides
 * whether the verified peer is one it talks to (a cluster's nodes: lib/cluster/member-tls.ts). The
 * channel keeps its frames and limits; TLS encrypts and authenticates them, so they are not sealed again.
 */
import tls from 'node:tls';
import { argType, argValue } from '../errors.js';

export interface ChannelTls {
  /** The CA that signs both ends' certificates. */
  caPem: string;
  /** This end's certificate and key. */
  certPem: string;
  keyPem: string;
  /** The CA's revocation list: a revoked peer is refused. */
  crlPem?: string;
  /**
   * Called once TLS verified the peer's certificate against `caPem` (and `crlPem`), before anything of
   * it is read: throw to refuse the peer (the message is what it is told).
   */
  verifyPeer(socket: tls.TLSSocket): void;
}

/** `v` as ChannelTls, or a typed error that names `name`; bad PEM is an error here, not at a handshake. */
export function checkChannelTls(v: unknown, name = 'tls'): ChannelTls {
  if (v === null || typeof v !== 'object')
    throw argType(`${name} must be { caPem, certPem, keyPem, crlPem?, verifyPeer }`);
  const t = v as ChannelTls;
  for (const k of ['caPem', 'certPem', 'keyPem'] as const)
    if (typeof t[k] !== 'string' || !t[k]) throw argType(`${name}.${k} must be a PEM string`);
  if (t.crlPem !== undefined && typeof t.crlPem !== 'string') throw argType(`${name}.crlPem must be a PEM string`);
  if (typeof t.verifyPeer !== 'function') throw argType(`${name}.verifyPeer must be a function`);
  try {
    tls.createSecureContext(contextOptions(t));
  } catch (e) {
    throw argValue(`${name}: the certificates do not load: ${(e as Error).message}`);
  }
  return t;
}

/** PEM credentials as Node's TLS takes them, TLS 1.3 only (also sosd's API listener and the memory node's check). */
export function contextOptions(
  t: Pick<ChannelTls, 'caPem' | 'certPem' | 'keyPem' | 'crlPem'>,
): tls.SecureContextOptions {
  return {
    ca: t.caPem,
    cert: t.certPem,
    key: t.keyPem,
    ...(t.crlPem ? { crl: t.crlPem } : {}),
    minVersion: 'TLSv1.3',
  };
}
