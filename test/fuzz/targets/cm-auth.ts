// The rdma_cm private data (lib/rdma/cm-auth.ts): decodeRequest and decodeReply on raw bytes, and on
// bytes signed with the right secret (first byte odd) so that the checks behind the MAC are reached too.
// Only a HandshakeError may come out; what is accepted is exactly what was signed, and only once.
import { NonceCache, decodeReply, decodeRequest, encodeReply, encodeRequest } from '../../../lib/rdma/cm-auth.js';
import { Reader, contained, invariant } from '../input.js';

const SECRET = Buffer.alloc(32, 0x5a);
const QP = 7;
const NOW = 1_800_000_000_000;

export function fuzz(data: Buffer): void {
  if (!data.length) return;
  const r = new Reader(data.subarray(1));
  const seen = new NonceCache(60_000);
  const nonce = Buffer.alloc(8, 1);
  if (!(data[0] & 1)) {
    const b = r.left ? r.rest() : undefined;
    contained(() => decodeRequest(SECRET, QP, b, seen, NOW));
    contained(() => decodeReply(SECRET, nonce, QP, b));
    return;
  }
  // A window of fuzzer-chosen fields, signed (encode may refuse fields out of range), then tampered.
  const w = { addr: r.u32() * 2 ** r.pick([0, 8, 21, 22]), rkey: r.u32(), length: r.u32() * 2 ** r.pick([0, 21, 22]) };
  const at = NOW + (r.u16() - 32768) * 1000 * r.pick([0, 1, 2]);
  for (const enc of [() => encodeRequest(SECRET, QP, w, at, nonce), () => encodeReply(SECRET, nonce, QP, w)]) {
    let b: Buffer;
    try {
      b = enc();
    } catch {
      continue;
    }
    const flip = r.u8();
    if (flip & 1) b[(flip >> 1) % b.length] ^= r.u8() | 1;
    const req = b.length === 49;
    contained(() => {
      const got = req ? decodeRequest(SECRET, QP, b, seen, NOW).window : decodeReply(SECRET, nonce, QP, b);
      invariant(!(flip & 1), 'a tampered message was accepted');
      invariant(JSON.stringify(got) === JSON.stringify(w), `accepted ${JSON.stringify(got)} for ${JSON.stringify(w)}`);
      if (req) invariant(!contained(() => decodeRequest(SECRET, QP, b, seen, NOW)), 'a replayed request was accepted');
    });
  }
}

export const seeds = [
  Buffer.concat([Buffer.from([0]), encodeRequest(SECRET, QP, { addr: 4096, rkey: 1, length: 4096 }, NOW)]),
  Buffer.concat([Buffer.from([0]), encodeReply(SECRET, Buffer.alloc(8, 1), QP, { addr: 1, rkey: 2, length: 3 })]),
  Buffer.from([1, 0, 0, 16, 0, 0, 0, 0, 1, 0, 0, 16, 0, 0, 128, 0, 1, 0]),
];
