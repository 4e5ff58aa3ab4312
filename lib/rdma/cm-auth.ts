/**
 * The authenticated window exchange of an RdmaConnection made through
 * rdma_cm: it rides in the connection request's and reply's private data
 * (at most 56 bytes on RoCE/IB), so no second channel is needed.
 *
 *   request  v(1) time(4, s) nonce(8) addr(8) rkey(4) length(8) mac(16) = 49 bytes
 *   reply    v(1) addr(8) rkey(4) length(8) mac(16)                     = 37 bytes
 *
 * Each mac is HMAC-SHA256 with the shared secret, truncated to 128 bits,
 * over a label, the sender's QP number as the peer's CM reported it (so the
 * fields cannot be moved onto another QP) and the fields before it; the
 * reply's also covers the request's nonce (so it answers that request only).
 * A request older or newer than `maxSkewS`, or whose nonce was seen, is
 * refused (replay).
 */
import crypto from 'node:crypto';
import { HandshakeError } from './errors.js';

export interface Window {
  addr: number;
  rkey: number;
  length: number;
}

const VERSION = 1;
const REQ_LEN = 49;
const REP_LEN = 37;
const MAC_LEN = 16;

function mac(secret: Buffer, label: string, qpNum: number, ...parts: Buffer[]): Buffer {
  const h = crypto.createHmac('sha256', secret).update(label);
  const q = Buffer.alloc(4);
  q.writeUInt32LE(qpNum >>> 0);
  h.update(q);
  for (const p of parts) h.update(p);
  return h.digest().subarray(0, MAC_LEN);
}

function putWindow(b: Buffer, at: number, w: Window): void {
  if (
    !Number.isSafeInteger(w.addr) ||
    w.addr < 0 ||
    !Number.isSafeInteger(w.length) ||
    w.length < 0 ||
    !Number.isInteger(w.rkey) ||
    w.rkey < 0 ||
    w.rkey > 0xffffffff
  )
    throw new HandshakeError('window fields out of range', { code: 'ERR_BAD_FRAME' });
  b.writeBigUInt64LE(BigInt(w.addr), at);
  b.writeUInt32LE(w.rkey, at + 8);
  b.writeBigUInt64LE(BigInt(w.length), at + 12);
}

function getWindow(b: Buffer, at: number): Window {
  const addr = b.readBigUInt64LE(at);
  const length = b.readBigUInt64LE(at + 12);
  if (addr > BigInt(Number.MAX_SAFE_INTEGER) || length > BigInt(Number.MAX_SAFE_INTEGER))
    throw new HandshakeError('window fields out of range', { code: 'ERR_BAD_FRAME' });
  return { addr: Number(addr), rkey: b.readUInt32LE(at + 8), length: Number(length) };
}

function check(data: Buffer | undefined, len: number, what: string): Buffer {
  // RoCE/IB pad private data to the message's fixed size: only a short one is malformed.
  if (!data || data.length < len)
    throw new HandshakeError(`${what} private data is missing or short`, { code: 'ERR_BAD_FRAME' });
  if (data[0] !== VERSION) throw new HandshakeError(`unsupported ${what} version ${data[0]}`, { code: 'ERR_VERSION' });
  return data.subarray(0, len);
}

/** Nonces of accepted requests, remembered as long as a replay of them could pass the time check. */
export class NonceCache {
  private readonly seen = new Map<string, number>();
  constructor(
    private readonly ttlMs: number,
    private readonly max = 65536,
  ) {}
  /** false when the nonce was seen (a replay). */
  add(nonce: Buffer, nowMs: number): boolean {
    for (const [k, until] of this.seen) {
      if (until > nowMs && this.seen.size < this.max) break;
      this.seen.delete(k); // oldest first (insertion order)
    }
    const k = nonce.toString('hex');
    if (this.seen.has(k)) return false;
    this.seen.set(k, nowMs + this.ttlMs);
    return true;
  }
}

/** The client's request: its window, for its QP `qpNum`. */
export function encodeRequest(
  secret: Buffer,
  qpNum: number,
  w: Window,
  nowMs = Date.now(),
  nonce = crypto.randomBytes(8),
): Buffer {
  const b = Buffer.alloc(REQ_LEN);
  b[0] = VERSION;
  b.writeUInt32LE(Math.floor(nowMs / 1000) >>> 0, 1);
  nonce.copy(b, 5, 0, 8);
  putWindow(b, 13, w);
  mac(secret, 'sos-rdma-cm-req', qpNum, b.subarray(0, 33)).copy(b, 33);
  return b;
}

/** The server's check of a request that came from QP `qpNum`: the client's window and nonce, or a HandshakeError. */
export function decodeRequest(
  secret: Buffer,
  qpNum: number,
  data: Buffer | undefined,
  seen: NonceCache,
  nowMs = Date.now(),
  maxSkewS = 60,
): { window: Window; nonce: Buffer } {
  const b = check(data, REQ_LEN, 'request');
  if (!crypto.timingSafeEqual(b.subarray(33, 49), mac(secret, 'sos-rdma-cm-req', qpNum, b.subarray(0, 33))))
    throw new HandshakeError('peer failed authentication (wrong secret or tampered parameters)', { code: 'ERR_AUTH' });
  const t = b.readUInt32LE(1);
  if (Math.abs(t - Math.floor(nowMs / 1000)) > maxSkewS)
    throw new HandshakeError(`request time is more than ${maxSkewS} s off`, { code: 'ERR_STALE' });
  const nonce = Buffer.from(b.subarray(5, 13));
  if (!seen.add(nonce, nowMs)) throw new HandshakeError('request was seen before', { code: 'ERR_REPLAY' });
  return { window: getWindow(b, 13), nonce };
}

/** The server's reply to the request with `nonce`: its window, for its QP `qpNum`. */
export function encodeReply(secret: Buffer, nonce: Buffer, qpNum: number, w: Window): Buffer {
  const b = Buffer.alloc(REP_LEN);
  b[0] = VERSION;
  putWindow(b, 1, w);
  mac(secret, 'sos-rdma-cm-rep', qpNum, nonce, b.subarray(0, 21)).copy(b, 21);
  return b;
}

/** The client's check of the reply from QP `qpNum` to its request with `nonce`. */
export function decodeReply(secret: Buffer, nonce: Buffer, qpNum: number, data: Buffer | undefined): Window {
  const b = check(data, REP_LEN, 'reply');
  if (!crypto.timingSafeEqual(b.subarray(21, 37), mac(secret, 'sos-rdma-cm-rep', qpNum, nonce, b.subarray(0, 21))))
    throw new HandshakeError('peer failed authentication (wrong secret or tampered parameters)', { code: 'ERR_AUTH' });
  return getWindow(b, 1);
}

/** The nonce inside an encoded request. */
export function requestNonce(req: Buffer): Buffer {
  return Buffer.from(req.subarray(5, 13));
}
