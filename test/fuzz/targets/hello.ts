// The channel's handshake hello (lib/net/handshake.ts parseHello), as either role: only ChannelError
// may come out, and what it accepts is a hello of the other role with a 32-byte nonce.
import { NONCE_LEN, encodeHello, parseHello, type Role } from '../../../lib/net/handshake.js';
import { contained, invariant } from '../input.js';
import { JSON_TOKENS } from '../vocabulary.js';

export function fuzz(data: Buffer): void {
  if (!data.length) return;
  const role: Role = data[0] & 1 ? 'client' : 'server';
  const payload = data.subarray(1);
  contained(() => {
    const h = parseHello(payload, role);
    invariant(h.role !== role && h.nonce.length === NONCE_LEN, `accepted ${JSON.stringify(h)} as ${role}`);
  });
  if (payload.length >= NONCE_LEN) {
    const nonce = payload.subarray(0, NONCE_LEN);
    const other: Role = role === 'client' ? 'server' : 'client';
    const h = parseHello(encodeHello(other, nonce), role);
    invariant(h.nonce.equals(nonce), 'a hello does not round-trip');
  }
}

export const seeds = [
  Buffer.concat([Buffer.from([0]), encodeHello('client', Buffer.alloc(NONCE_LEN, 7))]),
  Buffer.concat([Buffer.from([1]), encodeHello('server', Buffer.alloc(NONCE_LEN, 1))]),
  Buffer.from('\x00{"v":2,"role":"client","nonce":"00"}'),
];
export const dictionary = ['"v"', '"role"', '"nonce"', '"client"', '"server"', '2', '"toString"', ...JSON_TOKENS];
