/**
 * The channel's frames on the wire: `u8 type, u32 length, body[length]`, and after the handshake a
 * 16-byte AES-GCM tag behind the body (an empty one inside TLS). FrameDecoder cuts a byte stream into frames and enforces the
 * limits of each phase; it is pure (no I/O, no keys), so a fuzzer can drive it with any bytes.
 */
import { ChannelError } from './channel-error.js';

/** Largest JSON message (bytes of UTF-8). */
export const MAX_MESSAGE = 64 * 1024;
/** Largest binary payload of one data frame. */
export const MAX_DATA = 1024 * 1024;
export const HEADER = 5; // u8 type, u32 body length
export const TAG = 16; // AES-GCM tag after a sealed frame's body

// Handshake frames, in the clear: both sides' hello, the proofs, a refusal.
export const T_HELLO = 0x10;
export const T_PROOF = 0x11;
export const T_REFUSE = 0x12;
// Sealed frames, after the handshake.
export const T_MESSAGE = 0x01;
export const T_DATA = 0x02;
export const T_PING = 0x03;

/** Largest hello and refusal (a hello is ~100 bytes of JSON). */
export const MAX_HELLO = 160;
/** A proof is one HMAC-SHA256. */
export const PROOF_LEN = 32;
/** Bytes a peer may send before it proved the secret: its hello and its proof, with their headers. */
export const PRE_AUTH_MAX = 2 * HEADER + MAX_HELLO + PROOF_LEN;

/** One frame as cut from the stream: `header` is its 5 bytes (the AEAD's associated data), `tag` only when sealed. */
export interface Frame {
  type: number;
  header: Buffer;
  body: Buffer;
  tag?: Buffer;
}

/** The 5-byte header of a frame with a body of `length` bytes. */
export function frameHeader(type: number, length: number): Buffer {
  const h = Buffer.allocUnsafe(HEADER);
  h.writeUInt8(type, 0);
  h.writeUInt32BE(length, 1);
  return h;
}

function bad(message: string): ChannelError {
  return new ChannelError(message, { code: 'ERR_BAD_FRAME' });
}

/** Bytes received but not yet parsed, kept as a list so large frames never re-copy. */
class ByteQueue {
  private chunks: Buffer[] = [];
  length = 0;
  push(b: Buffer) {
    if (!b.length) return;
    this.chunks.push(b);
    this.length += b.length;
  }
  peek(n: number): Buffer {
    if (n === 0 || this.chunks.length === 0) return Buffer.alloc(0);
    if (this.chunks[0].length >= n) return this.chunks[0].subarray(0, n);
    return Buffer.concat(this.chunks).subarray(0, n);
  }
  take(n: number): Buffer {
    // An empty payload may come after the last chunk was used up (found by fuzzing).
    if (n === 0) return Buffer.alloc(0);
    const first = this.chunks[0];
    let out: Buffer;
    if (first.length >= n) {
      out = first.subarray(0, n);
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
    } else {
      const parts: Buffer[] = [];
      let need = n;
      while (need > 0) {
        const c = this.chunks[0];
        if (c.length <= need) {
          parts.push(c);
          this.chunks.shift();
          need -= c.length;
        } else {
          parts.push(c.subarray(0, need));
          this.chunks[0] = c.subarray(need);
          need = 0;
        }
      }
      out = Buffer.concat(parts, n);
    }
    this.length -= n;
    return out;
  }
}

/**
 * Cuts bytes into frames. In the handshake phase (the start) only handshake frames of their sizes pass,
 * and at most PRE_AUTH_MAX bytes in all; once `seal()` was called only sealed frames within their type's
 * limit. `push()` bytes, then call `next()` until it returns null (a frame is incomplete). Anything else
 * throws ChannelError: ERR_BAD_FRAME (a type or size the phase does not allow), ERR_FRAME_TOO_LARGE (a sealed
 * frame over its type's limit). After a throw the decoder is unusable (the channel ends).
 */
export class FrameDecoder {
  private readonly inbox = new ByteQueue();
  private sealed = false;
  private tagLen = TAG;
  private preAuthBytes = 0;

  /** Bytes pushed and not yet returned as frames. */
  get buffered(): number {
    return this.inbox.length;
  }

  push(bytes: Buffer): void {
    this.inbox.push(bytes);
  }

  /**
   * From now on, sealed frames only (the handshake is done; bytes already pushed are read as sealed), each
   * followed by a tag of `tagLen` bytes (0 inside TLS: those frames carry an empty tag).
   */
  seal(tagLen = TAG): void {
    this.sealed = true;
    this.tagLen = tagLen;
  }

  next(): Frame | null {
    return this.sealed ? this.nextSealed() : this.nextHandshake();
  }

  private nextHandshake(): Frame | null {
    if (this.inbox.length >= 1) {
      const type = this.inbox.peek(1)[0];
      if (type !== T_HELLO && type !== T_PROOF && type !== T_REFUSE)
        throw bad(`frame type ${type} before the handshake completed`);
    }
    if (this.inbox.length < HEADER) return this.capped(null);
    const h = this.inbox.peek(HEADER);
    const type = h.readUInt8(0);
    const len = h.readUInt32BE(1);
    if (type === T_PROOF ? len !== PROOF_LEN : len > MAX_HELLO)
      throw bad(
        `handshake frame of type ${type} with ${len} bytes (allowed: ${type === T_PROOF ? PROOF_LEN : `≤ ${MAX_HELLO}`})`,
      );
    if (this.inbox.length < HEADER + len) return this.capped(null);
    this.preAuthBytes += HEADER + len;
    const header = Buffer.from(this.inbox.take(HEADER));
    return this.capped({ type, header, body: this.inbox.take(len) });
  }

  /** Handshake frames so far plus a pending partial one stay under PRE_AUTH_MAX. */
  private capped(f: Frame | null): Frame | null {
    const pending = f ? 0 : this.inbox.length;
    if (this.preAuthBytes + pending > PRE_AUTH_MAX)
      throw bad(`more than ${PRE_AUTH_MAX} bytes before the handshake completed`);
    return f;
  }

  private nextSealed(): Frame | null {
    if (this.inbox.length < HEADER) return null;
    const h = this.inbox.peek(HEADER);
    const type = h.readUInt8(0);
    const len = h.readUInt32BE(1);
    const limit = type === T_DATA ? MAX_DATA + 4 : type === T_MESSAGE ? MAX_MESSAGE : type === T_PING ? 0 : -1;
    if (limit < 0) throw bad(`unexpected frame type ${type} after the handshake`);
    if (len > limit)
      throw new ChannelError(`frame of ${len} bytes over the ${limit}-byte limit for its type`, {
        code: 'ERR_FRAME_TOO_LARGE',
      });
    if (this.inbox.length < HEADER + len + this.tagLen) return null;
    const header = Buffer.from(this.inbox.take(HEADER));
    const body = this.inbox.take(len);
    return { type, header, body, tag: this.inbox.take(this.tagLen) };
  }
}

/**
 * Every complete frame in `bytes`, read in the handshake phase and then, from frame `sealAfter` on (default:
 * never), in the sealed phase (tags of `tagLen` bytes; 0 inside TLS); the bytes of an incomplete last frame are left over. Throws ChannelError as
 * FrameDecoder does. Pure: the entry point for fuzzing the channel's framing.
 */
export function decodeFrames(bytes: Buffer, sealAfter = Infinity, tagLen = TAG): { frames: Frame[]; rest: number } {
  const d = new FrameDecoder();
  d.push(bytes);
  const frames: Frame[] = [];
  for (;;) {
    if (frames.length === sealAfter) d.seal(tagLen);
    const f = d.next();
    if (!f) return { frames, rest: d.buffered };
    frames.push(f);
  }
}
