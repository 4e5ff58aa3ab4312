/**
 * The channel's handshake, as pure functions. Version 2:
 *   1. both sides send a hello {v, role, nonce} (a fresh 32-byte nonce each);
 *   2. the client sends its proof, HMAC-SHA256(secret, label, 'client', client hello, server hello);
 *   3. the server checks it and only then sends its own proof (role 'server'), or a refusal.
 * The server thus says nothing that depends on the secret to a peer that has not proved it (no value to
 * test guesses against offline). The proofs cover both hellos, so both nonces, roles and versions.
 * Each direction then gets its own AES-256-GCM key: HKDF-SHA256 of the secret, salted with both nonces.
 */
import crypto from 'node:crypto';
import { ChannelError } from './channel-error.js';
import { PROOF_LEN } from './frame.js';

/** Protocol version in the hello; a peer speaking another is refused (ERR_VERSION). */
export const VERSION = 2;
export const NONCE_LEN = 32;
export type Role = 'client' | 'server';

export interface Hello {
  v: number;
  role: Role;
  nonce: Buffer;
}

export function encodeHello(role: Role, nonce: Buffer): Buffer {
  return Buffer.from(JSON.stringify({ v: VERSION, role, nonce: nonce.toString('hex') }));
}

function bad(message: string): ChannelError {
  return new ChannelError(message, { code: 'ERR_BAD_FRAME' });
}

/** The peer's hello, checked: the version first (ERR_VERSION), then its role (the other one) and nonce (ERR_BAD_FRAME). */
export function parseHello(payload: Buffer, myRole: Role): Hello {
  let v: unknown;
  try {
    v = JSON.parse(payload.toString('utf8'));
  } catch {
    throw bad('handshake hello is not JSON');
  }
  const o = v as Record<string, unknown>;
  if (!o || typeof o !== 'object' || Array.isArray(o)) throw bad('handshake hello must be an object');
  // Not String(): on a JSON object such as {"toString":1} it throws a TypeError.
  const peer = JSON.stringify(o.v) ?? 'undefined';
  if (o.v !== VERSION)
    throw new ChannelError(`unsupported channel version ${peer.slice(0, 20)} (this side speaks ${VERSION})`, {
      code: 'ERR_VERSION',
    });
  if (o.role === myRole || (o.role !== 'client' && o.role !== 'server')) throw bad('handshake roles do not match');
  if (typeof o.nonce !== 'string' || !/^[0-9a-f]{64}$/.test(o.nonce)) throw bad('handshake nonce malformed');
  return { v: VERSION, role: o.role, nonce: Buffer.from(o.nonce, 'hex') };
}

/** The proof of `role`: an HMAC over both hellos as sent (client's first), so over both nonces and roles. */
export function proof(secret: Buffer, role: Role, clientHello: Buffer, serverHello: Buffer): Buffer {
  const h = crypto.createHmac('sha256', secret).update(`sos-channel-v${VERSION}-proof\0${role}\0`);
  for (const part of [clientHello, serverHello]) {
    const n = Buffer.allocUnsafe(4);
    n.writeUInt32BE(part.length, 0);
    h.update(n).update(part);
  }
  return h.digest();
}

/** Whether `got` is the expected proof (constant time). */
export function proofMatches(got: Buffer, expected: Buffer): boolean {
  return got.length === PROOF_LEN && expected.length === PROOF_LEN && crypto.timingSafeEqual(got, expected);
}

/** One AES-256 key per direction, from the secret and both nonces (HKDF-SHA256). */
export function deriveKeys(secret: Buffer, clientNonce: Buffer, serverNonce: Buffer): { c2s: Buffer; s2c: Buffer } {
  const salt = Buffer.concat([clientNonce, serverNonce]);
  const key = (dir: string) =>
    Buffer.from(crypto.hkdfSync('sha256', secret, salt, `sos-channel-v${VERSION} ${dir}`, 32));
  return { c2s: key('client-to-server'), s2c: key('server-to-client') };
}
