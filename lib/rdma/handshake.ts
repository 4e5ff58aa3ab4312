/**
 * Out-of-band exchange of what two RC queue pairs need to connect (QP
 * number, GID, PSN) and of one remote memory window (addr, rkey, length),
 * over TCP. Both peers prove they hold the shared secret (HMAC-SHA256 over
 * fresh nonces and the parameters), so an unauthenticated peer learns
 * nothing and cannot inject a QP or a key. Every frame is size-limited and
 * validated; a bad frame fails the handshake with a clear error.
 */
import crypto from 'node:crypto';
import type net from 'node:net';

export interface Endpoint {
  qpNum: number;
  gid: string;
  psn: number;
  addr: number;
  rkey: number;
  length: number;
}

const MAX_FRAME = 4096;
const VERSION = 1;

export class HandshakeError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'HandshakeError';
  }
}

function mac(secret: Buffer, ...parts: string[]): string {
  const h = crypto.createHmac('sha256', secret);
  for (const p of parts) h.update(p).update('\0');
  return h.digest('hex');
}

function equalMac(a: string, b: string): boolean {
  const x = Buffer.from(a, 'hex');
  const y = Buffer.from(b, 'hex');
  return x.length === y.length && x.length === 32 && crypto.timingSafeEqual(x, y);
}

/** Reads newline-delimited JSON frames from a socket, one at a time. */
class Frames {
  private buf = '';
  private queue: string[] = [];
  private waiter: ((l: string | Error) => void) | null = null;
  private failure: Error | null = null;
  constructor(sock: net.Socket, timeoutMs: number) {
    sock.setEncoding('utf8');
    sock.setTimeout(timeoutMs, () =>
      this.fail(new HandshakeError('ETIMEDOUT', 'peer did not complete the handshake in time')),
    );
    sock.on('data', (d: string) => {
      this.buf += d;
      for (let nl = this.buf.indexOf('\n'); nl >= 0; nl = this.buf.indexOf('\n')) {
        this.push(this.buf.slice(0, nl));
        this.buf = this.buf.slice(nl + 1);
      }
      if (this.buf.length > MAX_FRAME)
        this.fail(new HandshakeError('ERR_FRAME_TOO_LARGE', `handshake frame over ${MAX_FRAME} bytes`));
    });
    sock.on('error', (e) => this.fail(e));
    sock.on('close', () =>
      this.fail(new HandshakeError('ECONNRESET', 'peer closed the connection during the handshake')),
    );
  }
  private push(l: string) {
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = null;
      w(l);
    } else this.queue.push(l);
  }
  private fail(e: Error) {
    this.failure ??= e;
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = null;
      w(e);
    }
  }
  async next(): Promise<Record<string, unknown>> {
    const l =
      this.queue.shift() ?? (this.failure ? this.failure : await new Promise<string | Error>((r) => (this.waiter = r)));
    if (l instanceof Error) throw l;
    let v: unknown;
    try {
      v = JSON.parse(l);
    } catch {
      throw new HandshakeError('ERR_BAD_FRAME', 'handshake frame is not JSON');
    }
    if (v === null || typeof v !== 'object' || Array.isArray(v))
      throw new HandshakeError('ERR_BAD_FRAME', 'handshake frame must be an object');
    const o = v as Record<string, unknown>;
    if (o.v !== VERSION) throw new HandshakeError('ERR_VERSION', `unsupported handshake version ${String(o.v)}`);
    if (o.error !== undefined)
      throw new HandshakeError('ERR_PEER', `peer refused: ${typeof o.error === 'string' ? o.error : 'unspecified'}`);
    return o;
  }
}

function str(o: Record<string, unknown>, k: string, re: RegExp): string {
  const v = o[k];
  if (typeof v !== 'string' || !re.test(v))
    throw new HandshakeError('ERR_BAD_FRAME', `handshake field ${k} is missing or malformed`);
  return v;
}

function endpointOf(o: Record<string, unknown>): Endpoint {
  const e = o.endpoint as Record<string, unknown> | undefined;
  if (!e || typeof e !== 'object') throw new HandshakeError('ERR_BAD_FRAME', 'handshake has no endpoint');
  const u32 = (k: string) => {
    const v = e[k];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 0xffffffff)
      throw new HandshakeError('ERR_BAD_FRAME', `endpoint.${k} must be a 32-bit integer`);
    return v;
  };
  const addr = e.addr;
  const length = e.length;
  if (typeof addr !== 'number' || !Number.isSafeInteger(addr) || addr < 0)
    throw new HandshakeError('ERR_BAD_FRAME', 'endpoint.addr must be a safe integer');
  if (typeof length !== 'number' || !Number.isSafeInteger(length) || length < 0)
    throw new HandshakeError('ERR_BAD_FRAME', 'endpoint.length must be a safe integer');
  const gid = e.gid;
  if (typeof gid !== 'string' || gid.length > 64 || !/^[0-9a-fA-F:.]+$/.test(gid))
    throw new HandshakeError('ERR_BAD_FRAME', 'endpoint.gid must be an IPv6-form GID');
  return { qpNum: u32('qpNum') & 0xffffff, gid, psn: u32('psn') & 0xffffff, addr, rkey: u32('rkey'), length };
}

/**
 * Run the handshake on a connected socket. `role` is 'client' or 'server';
 * resolves with the peer's endpoint once both sides proved the secret.
 */
export async function handshake(
  sock: net.Socket,
  role: 'client' | 'server',
  secret: Buffer,
  mine: Endpoint,
  timeoutMs = 10_000,
): Promise<Endpoint> {
  if (secret.length < 16) throw new HandshakeError('ERR_WEAK_SECRET', 'the shared secret must be at least 16 bytes');
  const frames = new Frames(sock, timeoutMs);
  const send = (o: object) => sock.write(JSON.stringify({ v: VERSION, ...o }) + '\n');
  const myNonce = crypto.randomBytes(16).toString('hex');
  const peerRole = role === 'client' ? 'server' : 'client';
  send({ nonce: myNonce });
  const hello = await frames.next();
  const peerNonce = str(hello, 'nonce', /^[0-9a-f]{32}$/);
  if (peerNonce === myNonce) throw new HandshakeError('ERR_REPLAY', 'peer echoed our nonce');
  const ep = JSON.stringify(mine);
  send({ endpoint: mine, mac: mac(secret, role, myNonce, peerNonce, ep) });
  const reply = await frames.next();
  const peer = endpointOf(reply);
  const peerMac = str(reply, 'mac', /^[0-9a-f]{64}$/);
  if (!equalMac(peerMac, mac(secret, peerRole, peerNonce, myNonce, JSON.stringify(reply.endpoint)))) {
    send({ error: 'authentication failed' });
    throw new HandshakeError('ERR_AUTH', 'peer failed authentication (wrong secret or tampered parameters)');
  }
  sock.setTimeout(0);
  return peer;
}
