// An independent TypeScript client of the memory protocol, written from docs/memory.md alone (node:crypto):
// it proves the document is enough to speak the protocol, and it sends what the C++ client never would
// (malformed, oversize, truncated and tampered frames) for the protocol tests and the fuzz target.
import crypto from 'node:crypto';
import net from 'node:net';

export const MAGIC = 0x4d534f53;
export const VERSION = 1;
export const PAGE = 4096;
export const MAX_BATCH = 256;
export const T = {
  CLIENT_HELLO: 0x10,
  SERVER_HELLO: 0x11,
  PROOF: 0x12,
  REFUSE: 0x13,
  ALLOC: 1,
  READ: 2,
  WRITE: 3,
  FREE: 4,
  RENEW: 5,
  STATS: 6,
  ATTACH_RDMA: 7,
  REPLY: 0x80,
} as const;
export const S = { OK: 0, FULL: 1, NO_REGION: 2, RANGE: 3, AUTH: 4, VERSION: 5 } as const;
/** Largest sealed body: a WRITE of MAX_BATCH pages (id, region, first, count, pages). */
export const MAX_BODY = 24 + MAX_BATCH * PAGE;

export function header(len: number, type: number, flags = 0): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt32LE(len, 0);
  h.writeUInt16LE(type, 4);
  h.writeUInt16LE(flags, 6);
  return h;
}

function iv(seq: bigint): Buffer {
  const b = Buffer.alloc(12);
  b.writeBigUInt64LE(seq, 4);
  return b;
}

function proof(secret: Buffer, role: string, ch: Buffer, sh: Buffer): Buffer {
  const h = crypto.createHmac('sha256', secret).update(`sos-memory-v1-proof\0${role}\0`);
  for (const p of [ch, sh]) {
    const n = Buffer.alloc(4);
    n.writeUInt32LE(p.length);
    h.update(n).update(p);
  }
  return h.digest();
}

function key(secret: Buffer, cn: Buffer, sn: Buffer, dir: string): Buffer {
  return Buffer.from(crypto.hkdfSync('sha256', secret, Buffer.concat([cn, sn]), `sos-memory-v1 ${dir}`, 32));
}

export function clientHello(app: string, nonce: Buffer, version = VERSION): Buffer {
  const name = Buffer.from(app);
  const b = Buffer.alloc(7 + name.length + 32);
  b.writeUInt32LE(MAGIC, 0);
  b.writeUInt16LE(version, 4);
  b.writeUInt8(name.length, 6);
  name.copy(b, 7);
  nonce.copy(b, 7 + name.length);
  return b;
}

export interface Reply {
  type: number;
  id: number;
  status: number;
  payload: Buffer;
}

/** A byte stream cut into frames; `sealed` switches to frames with a tag once the handshake is done. */
class Reader {
  private buf = Buffer.alloc(0);
  private waiters: (() => void)[] = [];
  ended = false;
  constructor(sock: net.Socket) {
    sock.on('data', (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.wake();
    });
    sock.on('close', () => {
      this.ended = true;
      this.wake();
    });
    sock.on('error', () => undefined);
  }
  private wake() {
    for (const w of this.waiters.splice(0)) w();
  }
  async take(n: number): Promise<Buffer> {
    while (this.buf.length < n) {
      if (this.ended) throw new Error('connection closed');
      await new Promise<void>((r) => this.waiters.push(r));
    }
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    return out;
  }
}

export class WireClient {
  readonly sock: net.Socket;
  private readonly reader: Reader;
  private txKey?: Buffer;
  private rxKey?: Buffer;
  private txSeq = 0n;
  private rxSeq = 0n;
  private nextId = 1;
  readonly closed: Promise<void>;

  private constructor(sock: net.Socket) {
    this.sock = sock;
    this.reader = new Reader(sock);
    this.closed = new Promise((r) => sock.once('close', () => r()));
  }

  static async open(host: string, port: number): Promise<WireClient> {
    const sock = net.connect({ host, port });
    await new Promise<void>((resolve, reject) => {
      sock.once('connect', resolve);
      sock.once('error', reject);
    });
    sock.setNoDelay(true);
    return new WireClient(sock);
  }

  /** Open and authenticate; rejects with the REFUSE status as `status` when refused. */
  static async connect(host: string, port: number, app: string, secret: Buffer, version = VERSION) {
    const c = await WireClient.open(host, port);
    await c.handshake(app, secret, version);
    return c;
  }

  /** Bytes as they are, resolved once the socket took them (so a destroy() after it cannot drop them). */
  send(bytes: Buffer): Promise<void> {
    return new Promise((resolve, reject) => this.sock.write(bytes, (e) => (e ? reject(e) : resolve())));
  }

  /** A clear frame: header (`len` overrides its length, `flags` its flags) and body. */
  sendClear(type: number, body: Buffer, o: { len?: number; flags?: number } = {}): Promise<void> {
    return this.send(Buffer.concat([header(o.len ?? body.length, type, o.flags ?? 0), body]));
  }

  async readClear(): Promise<{ type: number; body: Buffer }> {
    const h = await this.reader.take(8);
    const body = await this.reader.take(h.readUInt32LE(0));
    return { type: h.readUInt16LE(4), body };
  }

  async handshake(app: string, secret: Buffer, version = VERSION): Promise<void> {
    const cn = crypto.randomBytes(32);
    const ch = clientHello(app, cn, version);
    this.sock.write(Buffer.concat([header(ch.length, T.CLIENT_HELLO), ch]));
    const sh = await this.readClear();
    if (sh.type === T.REFUSE) throw Object.assign(new Error('refused'), { status: sh.body.readUInt32LE(0) });
    if (sh.type !== T.SERVER_HELLO || sh.body.length !== 38 || sh.body.readUInt32LE(0) !== MAGIC)
      throw new Error('bad server hello');
    const sn = sh.body.subarray(6, 38);
    const p = proof(secret, 'client', ch, sh.body);
    this.sock.write(Buffer.concat([header(32, T.PROOF), p]));
    const sp = await this.readClear();
    if (sp.type === T.REFUSE) throw Object.assign(new Error('refused'), { status: sp.body.readUInt32LE(0) });
    if (sp.type !== T.PROOF || !crypto.timingSafeEqual(sp.body, proof(secret, 'server', ch, sh.body)))
      throw new Error('server did not prove the secret');
    this.txKey = key(secret, cn, sn, 'client-to-server');
    this.rxKey = key(secret, cn, sn, 'server-to-client');
  }

  /** A sealed frame of `type` over `body` (`len` overrides the header's length, `flags` its flags). */
  seal(type: number, body: Buffer, o: { len?: number; flags?: number } = {}): Buffer {
    const h = header(o.len ?? body.length, type, o.flags ?? 0);
    const c = crypto.createCipheriv('aes-256-gcm', this.txKey!, iv(this.txSeq++), { authTagLength: 16 });
    c.setAAD(h);
    const ct = c.update(body);
    c.final();
    return Buffer.concat([h, ct, c.getAuthTag()]);
  }

  async readReply(): Promise<Reply> {
    const h = await this.reader.take(8);
    const len = h.readUInt32LE(0);
    const ct = await this.reader.take(len);
    const tag = await this.reader.take(16);
    const d = crypto.createDecipheriv('aes-256-gcm', this.rxKey!, iv(this.rxSeq++), { authTagLength: 16 });
    d.setAAD(h);
    d.setAuthTag(tag);
    const body = d.update(ct);
    d.final();
    return {
      type: h.readUInt16LE(4),
      id: body.readUInt32LE(0),
      status: body.readUInt32LE(4),
      payload: body.subarray(8),
    };
  }

  id(): number {
    return this.nextId++;
  }

  /** A request body: a fresh id, then `fields`. */
  body(fields: Buffer): { id: number; body: Buffer } {
    const id = this.id();
    const b = Buffer.alloc(4);
    b.writeUInt32LE(id);
    return { id, body: Buffer.concat([b, fields]) };
  }

  async request(type: number, fields: Buffer): Promise<Reply> {
    const { id, body } = this.body(fields);
    this.sock.write(this.seal(type, body));
    const r = await this.readReply();
    if (r.id !== id || r.type !== (type | T.REPLY)) throw new Error(`reply ${r.type}/${r.id} to ${type}/${id}`);
    return r;
  }

  async alloc(pages: number): Promise<{ status: number; region: bigint; leaseMs: number }> {
    const f = Buffer.alloc(8);
    f.writeBigUInt64LE(BigInt(pages));
    const r = await this.request(T.ALLOC, f);
    return { status: r.status, region: r.payload.readBigUInt64LE(0), leaseMs: r.payload.readUInt32LE(16) };
  }

  static range(region: bigint, first: number, count: number): Buffer {
    const f = Buffer.alloc(20);
    f.writeBigUInt64LE(region, 0);
    f.writeBigUInt64LE(BigInt(first), 8);
    f.writeUInt32LE(count, 16);
    return f;
  }

  async read(region: bigint, first: number, count: number): Promise<Reply> {
    return this.request(T.READ, WireClient.range(region, first, count));
  }

  async write(region: bigint, first: number, data: Buffer): Promise<Reply> {
    return this.request(T.WRITE, Buffer.concat([WireClient.range(region, first, data.length / PAGE), data]));
  }

  async regionOp(type: number, region: bigint): Promise<Reply> {
    const f = Buffer.alloc(8);
    f.writeBigUInt64LE(region);
    return this.request(type, f);
  }

  destroy(): void {
    this.sock.destroy();
  }
}
