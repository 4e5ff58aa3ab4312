// The channel's framing (lib/net/frame.ts): decodeFrames, and FrameDecoder fed the same bytes in
// pieces. Either may only throw ChannelError; both must cut the same frames and fail the same way
// (how the bytes arrive never changes what they mean), and no frame may exceed its type's limit.
import crypto from 'node:crypto';
import {
  FrameDecoder,
  HEADER,
  MAX_DATA,
  MAX_HELLO,
  MAX_MESSAGE,
  PROOF_LEN,
  TAG,
  T_DATA,
  T_MESSAGE,
  T_PING,
  T_PROOF,
  decodeFrames,
  frameHeader,
  type Frame,
} from '../../../lib/net/frame.js';
import { SosError } from '../../../lib/errors.js';
import { contained, invariant } from '../input.js';

/** Frames until the decoder returns null or throws; the byte at [0] says when to seal (and bit 2 whether in TLS), [1] how to cut. */
function decode(bytes: Buffer, sealAfter: number, piece: number, tagLen: number): { frames: Frame[]; code?: string } {
  const d = new FrameDecoder();
  const frames: Frame[] = [];
  try {
    for (let at = 0; at < bytes.length || at === 0; at += piece) {
      d.push(bytes.subarray(at, at + piece));
      for (;;) {
        if (frames.length === sealAfter) d.seal(tagLen);
        const f = d.next();
        if (!f) break;
        frames.push(f);
      }
    }
    return { frames };
  } catch (e) {
    if (!(e instanceof SosError)) throw e;
    return { frames, code: e.code };
  }
}

function limit(f: Frame, sealed: boolean): number {
  if (!sealed) return f.type === T_PROOF ? PROOF_LEN : MAX_HELLO;
  return f.type === T_DATA ? MAX_DATA + 4 : f.type === T_MESSAGE ? MAX_MESSAGE : f.type === T_PING ? 0 : -1;
}

export function fuzz(data: Buffer): void {
  if (data.length < 2) return;
  const sealAfter = data[0] % 4 === 3 ? Infinity : data[0] % 4;
  const tagLen = data[0] & 4 ? 0 : TAG; // inside TLS, sealed frames carry no tag
  const piece = 1 + data[1];
  const bytes = data.subarray(2);
  contained(() => decodeFrames(bytes, sealAfter, tagLen));
  const whole = decode(bytes, sealAfter, bytes.length || 1, tagLen);
  const cut = decode(bytes, sealAfter, piece, tagLen);
  invariant(whole.code === cut.code, `whole: ${whole.code}, in pieces of ${piece}: ${cut.code}`);
  invariant(
    whole.frames.length === cut.frames.length,
    `whole: ${whole.frames.length} frames, in pieces: ${cut.frames.length}`,
  );
  whole.frames.forEach((f, i) => {
    const g = cut.frames[i];
    invariant(f.type === g.type && f.body.equals(g.body), `frame ${i} differs when cut in pieces of ${piece}`);
    invariant(
      f.header.length === HEADER && f.header.readUInt32BE(1) === f.body.length,
      `frame ${i}: header and body disagree`,
    );
    invariant(
      f.body.length <= limit(f, i >= sealAfter),
      `frame ${i} of type ${f.type}: ${f.body.length} bytes over its limit`,
    );
  });
}

export const seeds = [
  Buffer.concat([Buffer.from([3, 7]), frameHeader(0x10, 3), Buffer.from('{}\n')]),
  Buffer.concat([
    Buffer.from([1, 2]),
    frameHeader(0x10, 2),
    Buffer.from('{}'),
    frameHeader(T_DATA, 6),
    Buffer.from([0, 0, 0, 1, 9, 9]),
    crypto.randomBytes(16),
  ]),
  Buffer.concat([
    Buffer.from([0, 40]),
    frameHeader(T_MESSAGE, 2),
    Buffer.from('{}'),
    Buffer.alloc(16),
    frameHeader(T_PING, 0),
    Buffer.alloc(16),
  ]),
  Buffer.concat([Buffer.from([3, 1]), frameHeader(T_PROOF, PROOF_LEN), Buffer.alloc(PROOF_LEN)]),
];
export const dictionary = ['\x10\x00\x00\x00', '\x11\x00\x00\x00\x20', '\x01\x00\x01\x00\x00', '\x02\x00\x10\x00\x04'];
