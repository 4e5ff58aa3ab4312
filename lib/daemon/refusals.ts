/** How sosd's services refuse a peer: one wording and code for each kind of refusal. */
import { SosError } from '../errors.js';
import type { RequestContext } from './server.js';

/** The peer may not do this (ERR_FORBIDDEN). */
export function forbidden(message: string): SosError {
  return new SosError(message, { code: 'ERR_FORBIDDEN' });
}

/** The node name of a TLS node peer; ERR_FORBIDDEN for anyone else (the local socket included: it is no node). */
export function nodePeer(ctx: RequestContext): string {
  if (ctx.peer.kind !== 'tls' || ctx.peer.role !== 'node') throw forbidden('only a node of the cluster may ask this');
  return ctx.peer.name;
}
