/**
 * AES-256-GCM for the channel's frames after the handshake. One key per direction per connection, and the
 * 96-bit nonce is the 64-bit frame sequence number (never reused under that key); the frame's header
 * (type, length) is the associated data. A frame altered, replayed, reordered or dropped (the next one then
 * carries an unexpected sequence number) fails the tag check.
 */
import crypto from 'node:crypto';
import { ChannelError } from './channel-error.js';
import { TAG, frameHeader } from './frame.js';

function iv(seq: bigint): Buffer {
  const b = Buffer.alloc(12);
  b.writeBigUInt64BE(seq, 4);
  return b;
}

/** What the channel seals its frames with: AES-GCM under a shared secret's keys, or nothing inside TLS. */
export interface FrameSealer {
  seal(type: number, parts: Buffer[]): Buffer[];
}
export interface FrameOpener {
  open(header: Buffer, body: Buffer, tag: Buffer): Buffer;
}

/** Inside TLS, which already encrypts and authenticates: frames go as they are (no tag). */
export const PLAIN: FrameSealer & FrameOpener = {
  seal: (type, parts) => [
    frameHeader(
      type,
      parts.reduce((n, b) => n + b.length, 0),
    ),
    ...parts,
  ],
  open: (_header, body) => body,
};

/** Seals the frames of one direction, in order. */
export class Sealer implements FrameSealer {
  private seq = 0n;
  constructor(private readonly key: Buffer) {}

  /** The frame's wire parts (header, ciphertext of each part, tag): no copy beyond the cipher's output. */
  seal(type: number, parts: Buffer[]): Buffer[] {
    const len = parts.reduce((n, b) => n + b.length, 0);
    const header = frameHeader(type, len);
    const c = crypto.createCipheriv('aes-256-gcm', this.key, iv(this.seq++), { authTagLength: TAG });
    c.setAAD(header);
    const out = [header];
    for (const p of parts) if (p.length) out.push(c.update(p));
    c.final();
    out.push(c.getAuthTag());
    return out;
  }
}

/** Opens the frames of one direction, in order. */
export class Opener implements FrameOpener {
  private seq = 0n;
  constructor(private readonly key: Buffer) {}

  /** The plaintext of a sealed frame; throws ChannelError ERR_AUTH when the tag does not match. */
  open(header: Buffer, body: Buffer, tag: Buffer): Buffer {
    const d = crypto.createDecipheriv('aes-256-gcm', this.key, iv(this.seq), { authTagLength: TAG });
    d.setAAD(header);
    d.setAuthTag(tag);
    const plain = d.update(body);
    try {
      d.final();
    } catch {
      throw new ChannelError('frame failed authentication (tampered, replayed, reordered or dropped)', {
        code: 'ERR_AUTH',
      });
    }
    this.seq++;
    return plain;
  }
}
