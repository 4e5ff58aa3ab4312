/**
 * An authenticated, framed TCP channel between two agents that share a
 * secret (the migration agents, and RdmaConnection's TCP set-up in
 * lib/rdma/handshake.ts). The handshake proves both sides hold the secret
 * (HMAC-SHA256 over both fresh nonces and the roles) and derives one key per
 * direction; after it every frame carries an HMAC over its
 * sequence number, type and payload, so a frame cannot be forged, altered,
 * replayed, reordered or dropped without the receiver noticing. Frames are
 * typed and size-limited: JSON messages (objects) and binary data on
 * numbered streams. Anything malformed ends the channel with a clear error.
 */
import crypto from 'node:crypto';
import { EventEmitter } from 'node:events';
import net from 'node:net';
import { argType } from '../errors.js';
import { ChannelError } from './channel-error.js';
import { secretBuffer } from './secret.js';

export { ChannelError } from './channel-error.js';
export { secretBuffer, generateSecret, writeSecretFile, SECRET_BYTES } from './secret.js';

/** Largest JSON message (bytes of UTF-8). */
export const MAX_MESSAGE = 64 * 1024;
/** Largest binary payload of one data frame. */
export const MAX_DATA = 1024 * 1024;
const VERSION = 1;
/** Bytes queued on the socket before senders wait: far above Node's 16 KiB default, so
 *  1 MiB frames stream back to back instead of stop-and-wait per frame. */
const SEND_HIGH_WATER = 8 * 1024 * 1024;
const MAC_LEN = 32;
const HEADER = 5; // u8 type, u32 payload length
const T_HELLO = 0x10;
const T_PROOF = 0x11;
const T_REFUSE = 0x12;
const T_MESSAGE = 0x01;
const T_DATA = 0x02;
const T_PING = 0x03;

/** Keep-alive: a ping every `intervalMs`; no frame at all for `timeoutMs` ends the channel (ETIMEDOUT). */
export interface Liveness {
  intervalMs: number;
  timeoutMs: number;
}
export const DEFAULT_LIVENESS: Liveness = { intervalMs: 1000, timeoutMs: 15_000 };

/** A JSON message on the channel: an object with a string `op`. */
export type Message = { op: string } & Record<string, unknown>;

export interface ChannelEvents {
  message: [Message];
  data: [stream: number, chunk: Buffer];
  close: [error: ChannelError | null];
}

function hmac(key: Buffer, ...parts: (string | Buffer)[]): Buffer {
  const h = crypto.createHmac('sha256', key);
  for (const p of parts) h.update(p).update('\0');
  return h.digest();
}

/** Bytes received but not yet parsed, kept as a list so large frames never re-copy. */
class ByteQueue {
  private chunks: Buffer[] = [];
  length = 0;
  push(b: Buffer) {
    this.chunks.push(b);
    this.length += b.length;
  }
  peek(n: number): Buffer {
    if (this.chunks[0].length >= n) return this.chunks[0].subarray(0, n);
    return Buffer.concat(this.chunks, Math.max(n, 0)).subarray(0, n);
  }
  take(n: number): Buffer {
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

export interface ConnectOptions {
  host: string;
  port: number;
  secret: Buffer | string;
  /** Deadline for connect + handshake (default 10 s). */
  timeoutMs?: number;
  signal?: AbortSignal;
  /** Detects a silent peer (a cut network) once connected; default DEFAULT_LIVENESS. */
  liveness?: Liveness;
}

/**
 * One authenticated connection. Obtain one with `AuthChannel.connect()` or
 * from `AuthChannel.server()`'s `onChannel`. Emits `message`, `data` and
 * `close` (with the error that ended it, or null for an orderly close).
 */
export class AuthChannel extends EventEmitter<ChannelEvents> {
  private sendKey: Buffer = Buffer.alloc(0);
  private recvKey: Buffer = Buffer.alloc(0);
  private sendSeq = 0n;
  private recvSeq = 0n;
  private readonly inbox = new ByteQueue();
  private ready = false;
  /** We told the peer why we drop it: let that frame reach it before closing. */
  private refused = false;
  private closedWith: ChannelError | null | undefined = undefined;
  /** Handshake frames before the channel is up. */
  private pre: { resolve: (f: { type: number; payload: Buffer }) => void; reject: (e: Error) => void } | null = null;
  private preQueue: { type: number; payload: Buffer }[] = [];

  private constructor(readonly socket: net.Socket) {
    super();
    socket.setNoDelay(true);
    socket.on('data', (d: Buffer) => this.onBytes(d));
    socket.on('error', (e: NodeJS.ErrnoException) =>
      this.end(new ChannelError(`connection failed: ${e.message}`, { code: e.code ?? 'ECONNRESET' })),
    );
    socket.on('close', () => this.end(new ChannelError('peer closed the connection', { code: 'ECONNRESET' })));
  }

  /** Address of the peer ("host:port"). */
  get peer(): string {
    return `${this.socket.remoteAddress ?? '?'}:${this.socket.remotePort ?? '?'}`;
  }

  /** More than SEND_HIGH_WATER bytes wait on the socket: producers should pause until 'drain' on `socket`. */
  get congested(): boolean {
    return this.socket.writableLength > SEND_HIGH_WATER;
  }

  /** Whether the channel has ended. */
  get closed(): boolean {
    return this.closedWith !== undefined;
  }

  /** Connect to an agent and authenticate. Rejects with ChannelError (ERR_AUTH on a wrong secret). */
  static async connect(o: ConnectOptions): Promise<AuthChannel> {
    const secret = secretBuffer(o.secret);
    const timeoutMs = o.timeoutMs ?? 10_000;
    const sock = net.connect({ host: o.host, port: o.port });
    const ch = new AuthChannel(sock);
    const onAbort = () => ch.destroy(new ChannelError('aborted', { code: 'ABORT_ERR' }));
    o.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      await ch.handshake('client', secret, timeoutMs);
      ch.keepAlive(o.liveness ?? DEFAULT_LIVENESS);
      return ch;
    } catch (e) {
      ch.destroy(e as ChannelError);
      throw e;
    } finally {
      o.signal?.removeEventListener('abort', onAbort);
    }
  }

  /**
   * A TCP server whose connections are authenticated before `onChannel`
   * sees them. A peer that fails the handshake is told why and dropped;
   * `onRefused` hears about it (for logs).
   */
  static server(
    secretIn: Buffer | string,
    onChannel: (ch: AuthChannel) => void,
    opts: { timeoutMs?: number; liveness?: Liveness; onRefused?: (e: ChannelError, peer: string) => void } = {},
  ): net.Server {
    const secret = secretBuffer(secretIn);
    return net.createServer((sock) => {
      const ch = new AuthChannel(sock);
      ch.handshake('server', secret, opts.timeoutMs ?? 10_000).then(
        () => {
          ch.keepAlive(opts.liveness ?? DEFAULT_LIVENESS);
          onChannel(ch);
        },
        (e: ChannelError) => {
          opts.onRefused?.(e, `${sock.remoteAddress}:${sock.remotePort}`);
          ch.destroy(e);
        },
      );
    });
  }

  private async handshake(role: 'client' | 'server', secret: Buffer, timeoutMs: number): Promise<void> {
    const timer = setTimeout(
      () => this.destroy(new ChannelError('peer did not complete the handshake in time', { code: 'ETIMEDOUT' })),
      timeoutMs,
    );
    try {
      const mine = crypto.randomBytes(32);
      this.writeFrame(T_HELLO, Buffer.from(JSON.stringify({ v: VERSION, role, nonce: mine.toString('hex') })));
      const hello = this.parseHello(await this.nextPre(T_HELLO), role);
      if (hello.equals(mine)) throw new ChannelError('peer echoed our nonce', { code: 'ERR_AUTH' });
      const peerRole = role === 'client' ? 'server' : 'client';
      this.writeFrame(T_PROOF, hmac(secret, 'sos-channel-proof', role, mine, hello));
      const proof = await this.nextPre(T_PROOF);
      const expect = hmac(secret, 'sos-channel-proof', peerRole, hello, mine);
      if (proof.length !== MAC_LEN || !crypto.timingSafeEqual(proof, expect)) {
        this.writeFrame(T_REFUSE, Buffer.from('authentication failed'));
        this.refused = true;
        // Neither side can tell whose secret is the wrong one, only that they differ.
        throw new ChannelError(
          role === 'client'
            ? 'the secrets do not match: the server at the other end holds another secret than ours'
            : 'the secrets do not match: the client holds another secret than ours',
          { code: 'ERR_AUTH' },
        );
      }
      const [c, s] = role === 'client' ? [mine, hello] : [hello, mine];
      const c2s = hmac(secret, 'sos-channel-key', 'client-to-server', c, s);
      const s2c = hmac(secret, 'sos-channel-key', 'server-to-client', c, s);
      this.sendKey = role === 'client' ? c2s : s2c;
      this.recvKey = role === 'client' ? s2c : c2s;
      // Frames that came right behind the proof wait until the owner (who gets
      // this channel in a later microtask) had a chance to listen.
      setImmediate(() => {
        this.ready = true;
        this.pump();
      });
    } finally {
      clearTimeout(timer);
    }
  }

  private parseHello(p: Buffer, role: string): Buffer {
    let v: unknown;
    try {
      v = JSON.parse(p.toString('utf8'));
    } catch {
      throw new ChannelError('handshake hello is not JSON', { code: 'ERR_BAD_FRAME' });
    }
    const o = v as Record<string, unknown>;
    if (!o || typeof o !== 'object')
      throw new ChannelError('handshake hello must be an object', { code: 'ERR_BAD_FRAME' });
    if (o.v !== VERSION)
      throw new ChannelError(`unsupported channel version ${String(o.v)} (this side speaks ${VERSION})`, {
        code: 'ERR_VERSION',
      });
    if (o.role === role || (o.role !== 'client' && o.role !== 'server'))
      throw new ChannelError('handshake roles do not match', { code: 'ERR_BAD_FRAME' });
    if (typeof o.nonce !== 'string' || !/^[0-9a-f]{64}$/.test(o.nonce))
      throw new ChannelError('handshake nonce malformed', { code: 'ERR_BAD_FRAME' });
    return Buffer.from(o.nonce, 'hex');
  }

  private nextPre(type: number): Promise<Buffer> {
    const check = (f: { type: number; payload: Buffer }): Buffer => {
      if (f.type === T_REFUSE)
        throw new ChannelError(
          `the peer refused the handshake (${f.payload.toString('utf8').slice(0, 200)}): the secrets do not match`,
          { code: 'ERR_AUTH' },
        );
      if (f.type !== type)
        throw new ChannelError(`unexpected frame type ${f.type} during the handshake`, { code: 'ERR_BAD_FRAME' });
      return f.payload;
    };
    const queued = this.preQueue.shift();
    if (queued) return Promise.resolve().then(() => check(queued));
    if (this.closedWith !== undefined)
      return Promise.reject(this.closedWith ?? new ChannelError('channel closed', { code: 'ERR_CLOSED' }));
    return new Promise<{ type: number; payload: Buffer }>((resolve, reject) => (this.pre = { resolve, reject })).then(
      check,
    );
  }

  private lastFrameAt = Date.now();

  private keepAlive(l: Liveness) {
    const timer = setInterval(() => {
      if (this.closedWith !== undefined) return clearInterval(timer);
      if (Date.now() - this.lastFrameAt > l.timeoutMs) {
        clearInterval(timer);
        return this.destroy(
          new ChannelError(`nothing from the peer for ${l.timeoutMs} ms (network cut or peer hung)`, {
            code: 'ETIMEDOUT',
          }),
        );
      }
      if (!this.congested) this.sendAuthed(T_PING, Buffer.alloc(0));
    }, l.intervalMs);
    timer.unref();
  }

  /** One frame from payload parts, written without copying them (the socket gathers). */
  private writeFrame(type: number, parts: Buffer | Buffer[], mac?: Buffer): boolean {
    const list = Array.isArray(parts) ? parts : [parts];
    const h = Buffer.allocUnsafe(HEADER);
    h.writeUInt8(type, 0);
    h.writeUInt32BE(
      list.reduce((n, b) => n + b.length, 0),
      1,
    );
    this.socket.cork();
    this.socket.write(h);
    for (const b of list) if (b.length) this.socket.write(b);
    if (mac) this.socket.write(mac);
    this.socket.uncork();
    return !this.congested;
  }

  private frameMac(key: Buffer, seq: bigint, type: number, parts: Buffer | Buffer[]): Buffer {
    const h = Buffer.allocUnsafe(9);
    h.writeBigUInt64BE(seq, 0);
    h.writeUInt8(type, 8);
    const m = crypto.createHmac('sha256', key).update(h);
    for (const b of Array.isArray(parts) ? parts : [parts]) m.update(b);
    return m.digest();
  }

  private onBytes(d: Buffer) {
    this.lastFrameAt = Date.now();
    this.inbox.push(d);
    this.pump();
  }

  private pump() {
    while (this.closedWith === undefined && this.inbox.length >= HEADER) {
      const h = this.inbox.peek(HEADER);
      const type = h.readUInt8(0);
      const len = h.readUInt32BE(1);
      const limit = type === T_DATA ? MAX_DATA + 4 : type === T_MESSAGE ? MAX_MESSAGE : 4096;
      if (len > limit)
        return this.destroy(
          new ChannelError(`frame of ${len} bytes over the ${limit}-byte limit for its type`, {
            code: 'ERR_FRAME_TOO_LARGE',
          }),
        );
      const authed = type === T_MESSAGE || type === T_DATA || type === T_PING;
      const total = HEADER + len + (authed ? MAC_LEN : 0);
      if (this.inbox.length < total) return;
      // Authenticated frames wait in the queue until the handshake derived the keys.
      if (authed && !this.ready) return;
      this.inbox.take(HEADER);
      const payload = this.inbox.take(len);
      if (!authed) {
        if (this.ready)
          return this.destroy(
            new ChannelError(`unexpected frame type ${type} after the handshake`, { code: 'ERR_BAD_FRAME' }),
          );
        const f = { type, payload };
        if (this.pre) {
          const p = this.pre;
          this.pre = null;
          p.resolve(f);
        } else this.preQueue.push(f);
        continue;
      }
      const mac = this.inbox.take(MAC_LEN);
      if (!crypto.timingSafeEqual(mac, this.frameMac(this.recvKey, this.recvSeq, type, payload))) {
        return this.destroy(
          new ChannelError('frame failed authentication (tampered, replayed or out of order)', { code: 'ERR_AUTH' }),
        );
      }
      this.recvSeq++;
      this.lastFrameAt = Date.now();
      if (type === T_PING) continue;
      if (type === T_MESSAGE) {
        let v: unknown;
        try {
          v = JSON.parse(payload.toString('utf8'));
        } catch {
          return this.destroy(new ChannelError('message is not JSON', { code: 'ERR_BAD_FRAME' }));
        }
        if (v === null || typeof v !== 'object' || Array.isArray(v) || typeof (v as Message).op !== 'string') {
          return this.destroy(
            new ChannelError('message must be an object with a string op', { code: 'ERR_BAD_FRAME' }),
          );
        }
        this.emit('message', v as Message);
      } else {
        if (len < 4) return this.destroy(new ChannelError('data frame without a stream id', { code: 'ERR_BAD_FRAME' }));
        this.emit('data', payload.readUInt32BE(0), payload.subarray(4));
      }
    }
  }

  private sendAuthed(type: number, payload: Buffer | Buffer[]): boolean {
    if (this.closedWith !== undefined)
      throw this.closedWith ?? new ChannelError('channel closed', { code: 'ERR_CLOSED' });
    const mac = this.frameMac(this.sendKey, this.sendSeq++, type, payload);
    return this.writeFrame(type, payload, mac);
  }

  /** Send one JSON message. Throws ChannelError if the channel has ended or the message is too large. */
  send(msg: Message): void {
    const p = Buffer.from(JSON.stringify(msg));
    if (p.length > MAX_MESSAGE)
      throw new ChannelError(`message of ${p.length} bytes over ${MAX_MESSAGE}`, { code: 'ERR_FRAME_TOO_LARGE' });
    this.sendAuthed(T_MESSAGE, p);
  }

  /**
   * Send binary data on `stream` (split into frames of at most MAX_DATA).
   * Resolves when the socket can take more (backpressure); rejects if the channel ends.
   */
  async sendData(stream: number, data: Buffer): Promise<void> {
    if (!Number.isInteger(stream) || stream < 0 || stream > 0xffffffff)
      throw argType('stream must be a 32-bit unsigned integer');
    for (let off = 0; off < data.length || (off === 0 && data.length === 0); off += MAX_DATA) {
      const id = Buffer.allocUnsafe(4);
      id.writeUInt32BE(stream, 0);
      if (!this.sendAuthed(T_DATA, [id, data.subarray(off, off + MAX_DATA)])) await this.drained();
      if (data.length === 0) break;
    }
  }

  private drained(): Promise<void> {
    return new Promise((resolve, reject) => {
      const done = () => {
        this.socket.off('drain', done);
        this.off('close', done);
        if (this.closedWith !== undefined)
          reject(this.closedWith ?? new ChannelError('channel closed', { code: 'ERR_CLOSED' }));
        else resolve();
      };
      this.socket.on('drain', done);
      this.on('close', done);
    });
  }

  /**
   * The next message for which `pick` returns true (others still go to
   * listeners), rejecting when the channel ends or after `timeoutMs`.
   */
  waitFor(pick: (m: Message) => boolean, timeoutMs = 0, what = 'a reply'): Promise<Message> {
    return new Promise((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const cleanup = () => {
        this.off('message', onMsg);
        this.off('close', onClose);
        if (timer) clearTimeout(timer);
      };
      const onMsg = (m: Message) => {
        if (!pick(m)) return;
        cleanup();
        resolve(m);
      };
      const onClose = (e: ChannelError | null) => {
        cleanup();
        reject(e ?? new ChannelError(`channel closed while waiting for ${what}`, { code: 'ERR_CLOSED' }));
      };
      if (this.closedWith !== undefined) return onClose(this.closedWith);
      this.on('message', onMsg);
      this.on('close', onClose);
      if (timeoutMs > 0) {
        timer = setTimeout(() => {
          cleanup();
          reject(new ChannelError(`no ${what} within ${timeoutMs} ms`, { code: 'ETIMEDOUT' }));
        }, timeoutMs);
      }
    });
  }

  private end(e: ChannelError | null) {
    if (this.closedWith !== undefined) return;
    this.closedWith = e;
    if (this.pre) {
      const p = this.pre;
      this.pre = null;
      p.reject(e ?? new ChannelError('channel closed', { code: 'ERR_CLOSED' }));
    }
    if (this.refused) {
      this.socket.end();
      setTimeout(() => this.socket.destroy(), 1000).unref();
    } else this.socket.destroy();
    this.emit('close', e);
  }

  /** Close after flushing what was sent (idempotent). */
  close(): void {
    if (this.closedWith !== undefined) return;
    this.closedWith = null;
    if (this.pre) {
      const p = this.pre;
      this.pre = null;
      p.reject(new ChannelError('channel closed', { code: 'ERR_CLOSED' }));
    }
    this.socket.end();
    this.socket.once('close', () => this.emit('close', null));
    setTimeout(() => this.socket.destroy(), 2000).unref();
  }

  /** Drop the connection at once (idempotent). */
  destroy(e?: ChannelError): void {
    this.end(e ?? null);
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
