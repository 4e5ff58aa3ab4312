/**
 * A cluster member's certificates as a channel's mutual TLS (lib/net/channel-tls.ts): the peer must be a
 * member of this cluster in one of `roles`, and when `name` is given, that member (a source talks only to
 * the target it chose, not to whoever answers at its address). Credentials given as a function are read
 * at each handshake: a rotated certificate or a new CRL applies to the next connection.
 */
import type tls from 'node:tls';
import type { ChannelTls } from '../net/channel-tls.js';
import { IdentityError, peerIdentity, type Role } from './identity.js';

export interface MemberCredentials {
  caPem: string;
  certPem: string;
  keyPem: string;
  crlPem?: string;
}

export interface MemberTlsOptions {
  /** The cluster CA's certificate, this member's certificate and key, the CA's CRL. */
  credentials: MemberCredentials | (() => MemberCredentials);
  cluster: string;
  /** Roles the peer may have. */
  roles: readonly Role[];
  /** The one member the peer must be. */
  name?: string;
}

export function memberTls(o: MemberTlsOptions): ChannelTls {
  const c = typeof o.credentials === 'function' ? o.credentials : () => o.credentials as MemberCredentials;
  return {
    get caPem() {
      return c().caPem;
    },
    get certPem() {
      return c().certPem;
    },
    get keyPem() {
      return c().keyPem;
    },
    get crlPem() {
      return c().crlPem;
    },
    verifyPeer(socket: tls.TLSSocket) {
      const p = peerIdentity(socket, o.cluster);
      if (!o.roles.includes(p.role))
        throw new IdentityError(`${p.role} ${p.name} is not a ${o.roles.join(' or ')}`, { code: 'ERR_ROLE' });
      if (o.name !== undefined && p.name !== o.name)
        throw new IdentityError(`the peer is ${p.role} ${p.name}, not ${o.name}`, { code: 'ERR_WRONG_PEER' });
    },
  };
}
