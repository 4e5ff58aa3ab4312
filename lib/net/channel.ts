/**
 * An authenticated, encrypted, framed TCP channel between two agents (the migration agents, and
 * RdmaConnection's TCP set-up in lib/rdma/handshake.ts), which either share a secret or hold certificates
 * of one CA. With a secret, the handshake (lib/net/handshake.ts) has the client prove it holds the secret
 * first, then the server; it derives one AES-256-GCM key per direction, and after it every frame is sealed
 * (lib/net/seal.ts), so it cannot be read, forged, altered, replayed, reordered or dropped without the
 * receiver noticing. With certificates (lib/net/channel-tls.ts) the channel runs in mutual TLS 1.3, which
 * does the same; the server then tells the client whether its `verifyPeer` accepted it (one frame). Frames (lib/net/frame.ts) are typed and
 * size-limited: JSON messages (objects) and binary data on numbered streams. Before the handshake a peer
 * may send only the handshake's few hundred bytes, and a server holds a bounded number of unauthenticated
 * connections. Anything malformed ends the channel with a clear error.
 */
import crypto from 'node:crypto';
import { EventEmitter } from 'node:events';
import net from 'node:net';
import tls from 'node:tls';
import { argType, argRange } from '../errors.js';
import { checkChannelTls, contextOptions, type ChannelTls } from './channel-tls.js';
import { ChannelError } from './channel-error.js';
import {
  FrameDecoder,
  MAX_DATA,
  MAX_MESSAGE,
  T_DATA,
  T_HELLO,
  T_MESSAGE,
  T_PING,
  T_PROOF,
  T_REFUSE,
  MAX_HELLO,
  frameHeader,
  type Frame,
} from './frame.js';
import { NONCE_LEN, deriveKeys, encodeHello, parseHello, proof, proofMatches, type Role } from './handshake.js';
import { Opener, PLAIN, Sealer, type FrameOpener, type FrameSealer } from './seal.js';
import { secretBuffer } from './secret.js';

export { ChannelError } from './channel-error.js';
export { secretBuffer, generateSecret, writeSecretFile, SECRET_BYTES } from './secret.js';
export { MAX_DATA, MAX_MESSAGE, FrameDecoder, decodeFrames, type Frame } from './frame.js';
export { checkChannelTls, type ChannelTls } from './channel-tls.js';

/** How a channel's ends know each other: a shared secret, or certificates (mutual TLS). */
export type ChannelAuth = Buffer | string | ChannelTls;

/** `a` checked: a secret's bytes, or certificates. */
export function checkAuth(a: unknown, name = 'secret'): Buffer | ChannelTls {
  return a !== null && typeof a === 'object' && !Buffer.isBuffer(a) ? checkChannelTls(a, name) : secretBuffer(a, name);
}

/** Bytes queued on the socket before senders wait: far above Node's 16 KiB default, so
 *  1 MiB frames stream back to back instead of stop-and-wait per frame. */
const SEND_HIGH_WATER = 8 * 1024 * 1024;

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

export interface ServerOptions {
  /** Deadline for a connection's handshake (default 10 s). */
  timeoutMs?: number;
  liveness?: Liveness;
  /** Unauthenticated connections at once from one remote address (default 8); more are closed at once. */
  maxPendingPerPeer?: number;
  /** Unauthenticated connections at once in all (default 64); more are closed at once. */
  maxPending?: number;
  /** A connection was refused or failed its handshake (ERR_AUTH, ERR_TOO_MANY, …): for logs. */
  onRefused?: (e: ChannelError, peer: string) => void;
}

export interface ConnectOptions {
  host: string;
  port: number;
  /** The secret both ends hold, or this end's certificates (mutual TLS). */
  secret: ChannelAuth;
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
  private sealer: FrameSealer | null = null;
  private opener: FrameOpener | null = null;
  /** In mutual TLS: the server's one answer (accepted, or refused) ends the handshake. */
  private tls = false;
  private readonly decoder = new FrameDecoder();
  /** Sealed frames are delivered (the handshake is done and the owner had a chance to listen). */
  private ready = false;
  /** The peer sent its last handshake frame: what follows waits, sealed, for `ready`. */
  private peerDone = false;
  /** We told the peer why we drop it: let that frame reach it before closing. */
  private refused = false;
  private closedWith: ChannelError | null | undefined = undefined;
  /** Handshake frames before the channel is up. */
  private pre: { resolve: (f: Frame) => void; reject: (e: Error) => void } | null = null;
  private preQueue: Frame[] = [];

  private constructor(readonly socket: net.Socket) {
    super();
    socket.setNoDelay(true);
    socket.on('data', (d: Buffer) => this.onBytes(d));
    socket.on('error', (e: NodeJS.ErrnoException) => {
      const code = e.code ?? 'ECONNRESET';
      // A certificate the peer refused (or we did) is an authentication failure like a wrong secret.
      const auth = /^ERR_SSL_|^ERR_TLS_CERT|CERT_|UNABLE_TO|SELF_SIGNED/.test(code);
      this.end(
        new ChannelError(`connection failed: ${e.message.trim()}${auth ? ` (${code})` : ''}`, {
          code: auth ? 'ERR_AUTH' : code,
        }),
      );
    });
    socket.on('close', () => this.end(new ChannelError('peer closed the connection', { code: 'ECONNRESET' })));
  }

  /** Address of the peer ("host:port"). */
  get peer(): string {
    return `${this.socket.remoteAddress ?? '?'}:${this.socket.remotePort ?? '?'}`;
  }

  /** In mutual TLS, the peer's verified certificate (its subject names it); null with a secret. */
  get peerCertificate(): tls.PeerCertificate | null {
    return this.socket instanceof tls.TLSSocket ? this.socket.getPeerCertificate() : null;
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
    const auth = checkAuth(o.secret);
    const timeoutMs = o.timeoutMs ?? 10_000;
    const sock = Buffer.isBuffer(auth)
      ? net.connect({ host: o.host, port: o.port })
      : // Who the server is, verifyPeer says (a cluster's node by its name): not a host name in its certificate.
        tls.connect({ host: o.host, port: o.port, ...contextOptions(auth), checkServerIdentity: () => undefined });
    const ch = new AuthChannel(sock);
    const onAbort = () => ch.destroy(new ChannelError('aborted', { code: 'ABORT_ERR' }));
    o.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      if (Buffer.isBuffer(auth)) await ch.handshake('client', auth, timeoutMs);
      else await ch.tlsClient(sock as tls.TLSSocket, auth, timeoutMs);
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
   * A TCP server whose connections are authenticated (by the secret, or in mutual TLS by `auth`'s
   * certificates and its `verifyPeer`) before `onChannel` sees them. A peer that fails the handshake is told
   * why and dropped; a connection beyond the limits of unauthenticated ones (per remote address and in all)
   * is closed at once (ERR_TOO_MANY); `onRefused` hears about both (for logs).
   */
  static server(auth: ChannelAuth, onChannel: (ch: AuthChannel) => void, opts: ServerOptions = {}): net.Server {
    const checked = checkAuth(auth);
    const perPeer = limit('maxPendingPerPeer', opts.maxPendingPerPeer, 8);
    const total = limit('maxPending', opts.maxPending, 64);
    const timeoutMs = opts.timeoutMs ?? 10_000;
    const pendingBy = new Map<string, number>();
    let pending = 0;
    let tlsServer: tls.Server | null = null;
    // TLS handshakes under way, by "address port" (unique among live connections).
    const tlsPending = new Map<string, (e: ChannelError | null, ts?: tls.TLSSocket) => void>();
    const server = net.createServer((sock) => {
      const addr = sock.remoteAddress ?? '?';
      const peer = `${addr}:${sock.remotePort}`;
      const mine = pendingBy.get(addr) ?? 0;
      if (mine >= perPeer || pending >= total) {
        sock.destroy();
        const what = mine >= perPeer ? `${perPeer} from ${addr}` : `${total} in all`;
        opts.onRefused?.(
          new ChannelError(`too many connections waiting for their handshake (${what}): refused`, {
            code: 'ERR_TOO_MANY',
          }),
          peer,
        );
        return;
      }
      pendingBy.set(addr, mine + 1);
      pending++;
      const settled = () => {
        pending--;
        const n = (pendingBy.get(addr) ?? 1) - 1;
        if (n > 0) pendingBy.set(addr, n);
        else pendingBy.delete(addr);
      };
      const up = (ch: AuthChannel) => {
        settled();
        ch.keepAlive(opts.liveness ?? DEFAULT_LIVENESS);
        onChannel(ch);
      };
      const refused = (e: ChannelError, ch?: AuthChannel) => {
        settled();
        opts.onRefused?.(e, peer);
        if (ch) ch.destroy(e);
        else sock.destroy();
      };
      if (Buffer.isBuffer(checked)) {
        const ch = new AuthChannel(sock);
        ch.handshake('server', checked, timeoutMs).then(
          () => up(ch),
          (e: ChannelError) => refused(e, ch),
        );
        return;
      }
      // Mutual TLS by Node's TLS server, handed the socket (its documented 'connection' injection). It
      // requires a client certificate; a certificate it cannot verify is refused here, with its reason
      // (Node would drop the peer without one), before anything of the peer is read. The context is set per connection, so that credentials that
      // changed (a rotated certificate, a new CRL) apply to the next peer.
      try {
        tlsServer!.setSecureContext(contextOptions(checked));
      } catch (e) {
        return refused(new ChannelError(`our certificates do not load: ${(e as Error).message}`, { code: 'ERR_AUTH' }));
      }
      const k = `${addr} ${sock.remotePort}`;
      const done = (e: ChannelError | null, ts?: tls.TLSSocket) => {
        if (tlsPending.get(k) !== done) return;
        tlsPending.delete(k);
        if (e || !ts) return refused(e ?? new ChannelError('peer closed the connection', { code: 'ECONNRESET' }));
        const ch = new AuthChannel(ts);
        try {
          if (!ts.authorized) throw new Error(`the certificate is not verified (${String(ts.authorizationError)})`);
          checked.verifyPeer(ts);
        } catch (x) {
          const why = (x as Error).message;
          ch.writeFrame(T_REFUSE, [Buffer.from(why).subarray(0, MAX_HELLO)]);
          ch.refused = true;
          return refused(new ChannelError(`refused the peer: ${why}`, { code: 'ERR_AUTH' }), ch);
        }
        ch.writeFrame(T_HELLO, [Buffer.from('ok')]);
        ch.plain();
        up(ch);
      };
      tlsPending.set(k, done);
      sock.once('close', () => done(new ChannelError('peer closed the connection', { code: 'ECONNRESET' })));
      tlsServer!.emit('connection', sock);
    });
    if (!Buffer.isBuffer(checked)) {
      tlsServer = tls.createServer({
        ...contextOptions(checked),
        requestCert: true,
        rejectUnauthorized: false, // checked on 'secureConnection', to say why
        handshakeTimeout: timeoutMs,
      });
      const key = (ts: tls.TLSSocket) => `${ts.remoteAddress} ${ts.remotePort}`;
      tlsServer.on('secureConnection', (ts: tls.TLSSocket) => tlsPending.get(key(ts))?.(null, ts));
      tlsServer.on('tlsClientError', (e: NodeJS.ErrnoException, ts: tls.TLSSocket) => {
        tlsPending.get(key(ts))?.(
          new ChannelError(`TLS handshake failed: ${e.message.trim()} (${e.code ?? '?'})`, {
            code: e.code === 'ERR_TLS_HANDSHAKE_TIMEOUT' ? 'ETIMEDOUT' : 'ERR_AUTH',
          }),
        );
        ts.destroy();
      });
    }
    return server;
  }

  /** The client's side of mutual TLS: the server's certificate verified and accepted, then its answer. */
  private async tlsClient(sock: tls.TLSSocket, t: ChannelTls, timeoutMs: number): Promise<void> {
    this.tls = true;
    const timer = setTimeout(
      () => this.destroy(new ChannelError('peer did not complete the TLS handshake in time', { code: 'ETIMEDOUT' })),
      timeoutMs,
    );
    try {
      await new Promise<void>((resolve, reject) => {
        const onClose = (e: ChannelError | null) =>
          reject(e ?? new ChannelError('channel closed', { code: 'ERR_CLOSED' }));
        this.once('close', onClose);
        sock.once('secureConnect', () => {
          this.off('close', onClose);
          resolve();
        });
      });
      try {
        if (!sock.authorized) throw new Error(`its certificate is not verified (${String(sock.authorizationError)})`);
        t.verifyPeer(sock);
      } catch (e) {
        throw new ChannelError(`refusing the server: ${(e as Error).message}`, { code: 'ERR_AUTH' });
      }
      try {
        await this.nextPre(T_HELLO);
      } catch (e) {
        // Node's TLS server drops a client whose certificate it refuses without a word.
        if ((e as ChannelError).code !== 'ECONNRESET') throw e;
        throw new ChannelError(
          'the server closed the connection before accepting us (it may refuse our certificate: revoked, expired, or not of its CA)',
          { code: 'ERR_AUTH' },
        );
      }
      this.plain();
    } finally {
      clearTimeout(timer);
    }
  }

  /** Inside TLS: frames as they are, delivered once the owner had a chance to listen. */
  private plain() {
    this.sealer = this.opener = PLAIN;
    this.decoder.seal(0);
    setImmediate(() => {
      this.ready = true;
      this.pump();
    });
  }

  private async handshake(role: Role, secret: Buffer, timeoutMs: number): Promise<void> {
    const timer = setTimeout(
      () => this.destroy(new ChannelError('peer did not complete the handshake in time', { code: 'ETIMEDOUT' })),
      timeoutMs,
    );
    try {
      const nonce = crypto.randomBytes(NONCE_LEN);
      const myHello = encodeHello(role, nonce);
      this.writeFrame(T_HELLO, [myHello]);
      const peerHelloBytes = await this.nextPre(T_HELLO);
      const peerHello = parseHello(peerHelloBytes, role);
      if (peerHello.nonce.equals(nonce)) throw new ChannelError('peer echoed our nonce', { code: 'ERR_AUTH' });
      const [ch, sh] = role === 'client' ? [myHello, peerHelloBytes] : [peerHelloBytes, myHello];
      if (role === 'client') {
        // We prove first; the server answers with its proof only if ours holds.
        this.writeFrame(T_PROOF, [proof(secret, 'client', ch, sh)]);
        if (!proofMatches(await this.nextPre(T_PROOF), proof(secret, 'server', ch, sh)))
          throw new ChannelError(
            'the secrets do not match: the server at the other end holds another secret than ours',
            { code: 'ERR_AUTH' },
          );
      } else {
        if (!proofMatches(await this.nextPre(T_PROOF), proof(secret, 'client', ch, sh))) {
          this.writeFrame(T_REFUSE, [Buffer.from('authentication failed')]);
          this.refused = true;
          // Neither side can tell whose secret is the wrong one, only that they differ.
          throw new ChannelError('the secrets do not match: the client holds another secret than ours', {
            code: 'ERR_AUTH',
          });
        }
        this.writeFrame(T_PROOF, [proof(secret, 'server', ch, sh)]);
      }
      const [cn, sn] = role === 'client' ? [nonce, peerHello.nonce] : [peerHello.nonce, nonce];
      const { c2s, s2c } = deriveKeys(secret, cn, sn);
      this.sealer = new Sealer(role === 'client' ? c2s : s2c);
      this.opener = new Opener(role === 'client' ? s2c : c2s);
      this.decoder.seal();
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

  private nextPre(type: number): Promise<Buffer> {
    const check = (f: Frame): Buffer => {
      if (f.type === T_REFUSE)
        throw new ChannelError(
          this.tls
            ? `the peer refused us: ${f.body.toString('utf8').slice(0, 200)}`
            : `the peer refused the handshake (${f.body.toString('utf8').slice(0, 200)}): the secrets do not match`,
          { code: 'ERR_AUTH' },
        );
      if (f.type !== type)
        throw new ChannelError(`unexpected frame type ${f.type} during the handshake`, { code: 'ERR_BAD_FRAME' });
      return f.body;
    };
    const queued = this.preQueue.shift();
    if (queued) return Promise.resolve().then(() => check(queued));
    if (this.closedWith !== undefined)
      return Promise.reject(this.closedWith ?? new ChannelError('channel closed', { code: 'ERR_CLOSED' }));
    return new Promise<Frame>((resolve, reject) => (this.pre = { resolve, reject })).then(check);
  }

  private lastFrameAt = performance.now();

  private keepAlive(l: Liveness) {
    const timer = setInterval(() => {
      if (this.closedWith !== undefined) return clearInterval(timer);
      if (performance.now() - this.lastFrameAt > l.timeoutMs) {
        clearInterval(timer);
        return this.destroy(
          new ChannelError(`nothing from the peer for ${l.timeoutMs} ms (network cut or peer hung)`, {
            code: 'ETIMEDOUT',
          }),
        );
      }
      if (!this.congested) this.sendSealed(T_PING, []);
    }, l.intervalMs);
    timer.unref();
  }

  /** Write a frame's parts as one corked batch, without copying them (the socket gathers). */
  private writeParts(parts: Buffer[]): boolean {
    this.socket.cork();
    for (const b of parts) this.socket.write(b);
    this.socket.uncork();
    return !this.congested;
  }

  /** A handshake frame, in the clear. */
  private writeFrame(type: number, parts: Buffer[]): boolean {
    return this.writeParts([
      frameHeader(
        type,
        parts.reduce((n, b) => n + b.length, 0),
      ),
      ...parts,
    ]);
  }

  private onBytes(d: Buffer) {
    this.lastFrameAt = performance.now();
    this.decoder.push(d);
    this.pump();
  }

  private pump() {
    while (this.closedWith === undefined) {
      // After the peer's last handshake frame, frames are sealed: they wait for the keys and the owner.
      if (this.peerDone && !this.ready) return;
      let f: Frame | null;
      let m: Message | [number, Buffer] | null = null;
      try {
        f = this.decoder.next();
        if (f?.tag) m = parse(f.type, this.opener!.open(f.header, f.body, f.tag));
      } catch (e) {
        return this.destroy(e as ChannelError);
      }
      if (!f) return;
      if (!f.tag) {
        // A handshake frame: the hello, then the proof or a refusal, and nothing after it until sealed.
        // (In TLS the server's one frame is its last.)
        if (f.type !== T_HELLO || this.tls) this.peerDone = true;
        if (this.pre) {
          const p = this.pre;
          this.pre = null;
          p.resolve(f);
        } else this.preQueue.push(f);
        continue;
      }
      this.lastFrameAt = performance.now();
      if (Array.isArray(m)) this.emit('data', m[0], m[1]);
      else if (m) this.emit('message', m);
    }
  }

  private sendSealed(type: number, parts: Buffer[]): boolean {
    if (this.closedWith !== undefined)
      throw this.closedWith ?? new ChannelError('channel closed', { code: 'ERR_CLOSED' });
    if (!this.sealer) throw new ChannelError('the handshake is not done', { code: 'ERR_CLOSED' });
    return this.writeParts(this.sealer.seal(type, parts));
  }

  /** Send one JSON message. Throws ChannelError if the channel has ended or the message is too large. */
  send(msg: Message): void {
    const p = Buffer.from(JSON.stringify(msg));
    if (p.length > MAX_MESSAGE)
      throw new ChannelError(`message of ${p.length} bytes over ${MAX_MESSAGE}`, { code: 'ERR_FRAME_TOO_LARGE' });
    this.sendSealed(T_MESSAGE, [p]);
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
      if (!this.sendSealed(T_DATA, [id, data.subarray(off, off + MAX_DATA)])) await this.drained();
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

function limit(name: string, v: unknown, dflt: number): number {
  if (v === undefined) return dflt;
  if (typeof v !== 'number' || !Number.isInteger(v)) throw argType(`options.${name} must be an integer`);
  if (v < 1) throw argRange(`options.${name} must be at least 1`);
  return v;
}

/** A sealed frame's plaintext as a message, a data chunk, or null for a ping; throws ChannelError ERR_BAD_FRAME. */
function parse(type: number, payload: Buffer): Message | [stream: number, chunk: Buffer] | null {
  if (type === T_PING) return null;
  if (type === T_DATA) {
    if (payload.length < 4) throw new ChannelError('data frame without a stream id', { code: 'ERR_BAD_FRAME' });
    return [payload.readUInt32BE(0), payload.subarray(4)];
  }
  let v: unknown;
  try {
    v = JSON.parse(payload.toString('utf8'));
  } catch {
    throw new ChannelError('message is not JSON', { code: 'ERR_BAD_FRAME' });
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v) || typeof (v as Message).op !== 'string')
    throw new ChannelError('message must be an object with a string op', { code: 'ERR_BAD_FRAME' });
  return v as Message;
}
