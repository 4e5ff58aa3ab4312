/**
 * RdmaConnection: one RC queue pair to a peer, with a registered local
 * memory window and the peer's window, connected through an authenticated
 * TCP channel (lib/net/channel.ts, the exchange in lib/rdma/handshake.ts) or
 * through rdma_cm. read()/write() return promises and may be many in flight;
 * completions arrive through a completion channel on the event loop. The TCP
 * channel stays open as the control channel: when the peer goes away (or goes
 * silent past the channel's liveness timeout) the connection fails its pending
 * operations and closes.
 */
import crypto from 'node:crypto';
import { EventEmitter } from 'node:events';
import type net from 'node:net';
import { StateError, argRange, argType } from '../errors.js';
import { AuthChannel, secretBuffer } from '../net/channel.js';
import { Region } from '../uffd/region.js';
import { integer } from '../validate.js';
import { CompletionError, HandshakeError, RdmaError } from './errors.js';
import { handshake, handshakeError, refuse, type Endpoint } from './handshake.js';
import { CmError, CmEventChannel, type CmId } from './cm.js';
import { NonceCache, decodeReply, decodeRequest, encodeReply, encodeRequest, requestNonce } from './cm-auth.js';
import type { Completion } from '../native/index.js';
import { Context } from './context.js';
import type { CompletionChannel, CompletionQueue } from './cq.js';
import type { MemoryRegion } from './mr.js';
import type { ProtectionDomain } from './pd.js';
import type { QueuePair } from './qp.js';

export interface ConnectionOptions {
  /** RDMA device (e.g. 'rxe0'). */
  device: string;
  /** Shared secret both peers hold (32 random bytes: `generateSecret()`). */
  secret: Buffer | string;
  /** Local memory the peer may read and write: a Region, or a size to allocate one. */
  memory: Region | number;
  /** GID index of the local port (1 = the IPv4-mapped RoCEv2 GID on rxe). */
  gidIndex?: number;
  /** Work requests in flight at most (default 128). */
  depth?: number;
}

function secretOf(o: ConnectionOptions): Buffer {
  try {
    return secretBuffer(o.secret, 'options.secret');
  } catch (e) {
    throw handshakeError(e);
  }
}

interface Pending {
  resolve: (c: Completion) => void;
  reject: (e: Error) => void;
}

/** What tells a connection that its peer is gone (and why, if known), and ends that link: a channel or an rdma_cm id. */
interface Control {
  onLoss(f: (cause?: Error) => void): void;
  destroy(): void;
}

function channelControl(ch: AuthChannel): Control {
  return { onLoss: (f) => ch.on('close', (e) => f(e ?? undefined)), destroy: () => ch.destroy() };
}

function cmControl(id: CmId, done: () => void): Control {
  return {
    onLoss: (f) => id.once('disconnected', f),
    destroy: () => {
      id.disconnect();
      id.close();
      done();
    },
  };
}

/** Accepting rdma_cm connections: close() stops listening (established connections stay). */
export interface CmListener {
  readonly port: number;
  close(): void;
}

const replays = new NonceCache(150_000);

function verbsFor(device: string, depth: number, memory: Region) {
  const ctx = Context.open(device);
  try {
    const pd = ctx.allocPd();
    const channel = ctx.createCompChannel();
    const cq = ctx.createCq(depth * 2, channel);
    const qp = pd.createQp(cq, cq, { maxSendWr: depth, maxRecvWr: 1 });
    const mr = pd.registerMemory(memory, { access: ['local-write', 'remote-write', 'remote-read', 'remote-atomic'] });
    return { ctx, pd, channel, cq, qp, mr };
  } catch (e) {
    ctx.close();
    throw e;
  }
}

/** What one side brings to a TCP-set-up connection: its verbs, its window, and the endpoint the peer needs. */
interface Local {
  verbs: ReturnType<typeof verbsFor>;
  memory: Region;
  ownsMemory: boolean;
  gidIndex: number;
  mine: Endpoint;
  close(): void;
}

function checkOptions(o: ConnectionOptions): { device: string; gidIndex: number; depth: number } {
  if (typeof o.device !== 'string') throw argType('options.device must be a string');
  const gidIndex = integer('options.gidIndex', o.gidIndex ?? 1, 0);
  const depth = integer('options.depth', o.depth ?? 128, 1, 4096);
  if (o.memory instanceof Region) {
    if (o.memory.closed) throw argType('options.memory is closed');
  } else integer('options.memory', o.memory, 4096);
  return { device: o.device, gidIndex, depth };
}

function openLocal(o: ConnectionOptions): Local {
  const { device, gidIndex, depth } = checkOptions(o);
  const ownsMemory = !(o.memory instanceof Region);
  const memory = o.memory instanceof Region ? o.memory : Region.anonymous(o.memory);
  let verbs: ReturnType<typeof verbsFor> | undefined;
  try {
    verbs = verbsFor(device, depth, memory);
    const { ctx, qp, mr } = verbs;
    const mine: Endpoint = {
      qpNum: qp.qpNum,
      gid: ctx.queryGid(1, gidIndex),
      psn: crypto.randomInt(0, 0xffffff),
      addr: mr.addr,
      rkey: mr.rkey,
      length: mr.length,
    };
    const v = verbs;
    return {
      verbs,
      memory,
      ownsMemory,
      gidIndex,
      mine,
      close: () => {
        v.ctx.close();
        if (ownsMemory) memory.close();
      },
    };
  } catch (e) {
    verbs?.ctx.close();
    if (ownsMemory) memory.close();
    throw e;
  }
}

function mappedGid(address: string | undefined): string {
  return address === undefined ? '::' : address.includes(':') ? address : `::ffff:${address}`;
}

export class RdmaConnection extends EventEmitter<{ close: []; error: [Error] }> implements Disposable {
  /** The local window the peer sees. */
  readonly memory: Region;
  /** The peer's window: read/write addresses are offsets into it. */
  readonly remote: Endpoint;
  private readonly ctx: Context;
  private readonly pd: ProtectionDomain;
  private readonly channel: CompletionChannel;
  private readonly cq: CompletionQueue;
  private readonly qp: QueuePair;
  private readonly mr: MemoryRegion;
  private readonly pending = new Map<bigint, Pending>();
  private nextId = 1n;
  private closed = false;
  private readonly ownsMemory: boolean;

  private constructor(parts: {
    ctx: Context;
    pd: ProtectionDomain;
    channel: CompletionChannel;
    cq: CompletionQueue;
    qp: QueuePair;
    mr: MemoryRegion;
    memory: Region;
    ownsMemory: boolean;
    remote: Endpoint;
    control: Control;
  }) {
    super();
    ({
      ctx: this.ctx,
      pd: this.pd,
      channel: this.channel,
      cq: this.cq,
      qp: this.qp,
      mr: this.mr,
      memory: this.memory,
      ownsMemory: this.ownsMemory,
      remote: this.remote,
    } = parts);
    this.control = parts.control;
    this.control.onLoss((cause) =>
      this.fail(new RdmaError(`lost the peer: ${cause?.message ?? 'it disconnected'}`, { code: 'ECONNRESET', cause })),
    );
    void this.drain();
  }
  private readonly control: Control;

  /**
   * Connect to a listening peer. The device and the window are set up first (an unusable device
   * fails before the network is touched), then the authenticated channel and the endpoint exchange.
   */
  static async connect(host: string, port: number, options: ConnectionOptions): Promise<RdmaConnection> {
    const secret = secretOf(options);
    const local = openLocal(options);
    let ch: AuthChannel | undefined;
    try {
      ch = await AuthChannel.connect({ host, port, secret }).catch((e: unknown) => {
        throw handshakeError(e);
      });
      return await RdmaConnection.establish(ch, local);
    } catch (e) {
      local.close();
      ch?.destroy();
      throw e;
    }
  }

  /**
   * Accept connections on host:port; each authenticated peer becomes a connection. Rejects at once when
   * `options.device` cannot be opened (the error names it) or another option is wrong.
   */
  static async listen(
    host: string,
    port: number,
    options: ConnectionOptions,
    onConnection: (c: RdmaConnection) => void,
    onError?: (e: Error) => void,
  ): Promise<net.Server> {
    const secret = secretOf(options);
    const { device } = checkOptions(options);
    Context.open(device).close(); // each connection opens its own context; this one proves the device is there
    const server = AuthChannel.server(
      secret,
      (ch) => {
        let local: Local;
        try {
          local = openLocal(options);
        } catch (e) {
          refuse(ch, e);
          onError?.(e as Error);
          return;
        }
        RdmaConnection.establish(ch, local).then(onConnection, (e: Error) => {
          local.close();
          refuse(ch, e);
          onError?.(e);
        });
      },
      { onRefused: (e) => onError?.(handshakeError(e) as Error) },
    );
    return await new Promise((res, rej) => {
      server.once('error', rej);
      server.listen(port, host, () => res(server));
    });
  }

  /**
   * Connect through rdma_cm to a peer listening with listenCm(): the address
   * is resolved to a route (and `options.device`, if not given, to the device
   * on that route); the windows travel authenticated in the CM's private data.
   */
  static async connectCm(
    host: string,
    port: number,
    options: Omit<ConnectionOptions, 'device'> & { device?: string; timeoutMs?: number },
  ): Promise<RdmaConnection> {
    const secret = secretOf(options as ConnectionOptions);
    const depth = integer('options.depth', options.depth ?? 128, 1, 4096);
    const timeoutMs = integer('options.timeoutMs', options.timeoutMs ?? 10_000, 1, 600_000);
    if (options.device !== undefined && typeof options.device !== 'string')
      throw argType('options.device must be a string');
    const ch = new CmEventChannel();
    let ownsMemory = false;
    let memory: Region | undefined;
    let verbs: ReturnType<typeof verbsFor> | undefined;
    try {
      const id = ch.createId();
      await id.resolve(host, port, { timeoutMs });
      ownsMemory = !(options.memory instanceof Region);
      memory =
        options.memory instanceof Region
          ? options.memory
          : Region.anonymous(integer('options.memory', options.memory, 4096));
      verbs = verbsFor(options.device ?? id.device ?? '', depth, memory);
      const request = encodeRequest(secret, verbs.qp.qpNum, {
        addr: verbs.mr.addr,
        rkey: verbs.mr.rkey,
        length: verbs.mr.length,
      });
      let reply: { privateData?: Buffer; qpNum: number };
      try {
        reply = await id.connect(verbs.qp, { privateData: request, timeoutMs });
      } catch (e) {
        const code =
          e instanceof CmError ? /^ERR_[A-Z_]+/.exec(e.privateData?.toString('latin1') ?? '')?.[0] : undefined;
        if (code) throw new HandshakeError(`peer refused: ${code}`, { code: 'ERR_PEER', cause: e });
        throw e;
      }
      const w = decodeReply(secret, requestNonce(request), reply.qpNum, reply.privateData);
      const info = id.info();
      const remote: Endpoint = { qpNum: reply.qpNum, gid: mappedGid(info.peerAddress), psn: 0, ...w };
      return new RdmaConnection({ ...verbs, memory, ownsMemory, remote, control: cmControl(id, () => ch.close()) });
    } catch (e) {
      ch.close();
      verbs?.ctx.close();
      if (ownsMemory) memory?.close();
      throw e;
    }
  }

  /**
   * Accept rdma_cm connections on host:port (an address of an RDMA device,
   * or '0.0.0.0'); each authenticated peer becomes a connection. A refused
   * peer gets the reason in the reject's private data; `onError` hears it too.
   */
  static listenCm(
    host: string,
    port: number,
    options: Omit<ConnectionOptions, 'device'> & { device?: string },
    onConnection: (c: RdmaConnection) => void,
    onError?: (e: Error) => void,
  ): CmListener {
    const secret = secretOf(options as ConnectionOptions);
    const depth = integer('options.depth', options.depth ?? 128, 1, 4096);
    if (options.memory instanceof Region) {
      if (options.memory.closed) throw argType('options.memory is closed');
    } else integer('options.memory', options.memory, 4096);
    const ch = new CmEventChannel();
    let open = 1; // the listener, plus one per connection: the channel closes with the last
    const release = () => {
      if (--open === 0) ch.close();
    };
    const listener = ch.createId();
    listener.on('request', (req) => {
      // Nothing is allocated (memory, context, QP, MR) before the request authenticates: a peer without
      // the secret, or replaying a request, costs the server only this check.
      let verbs: ReturnType<typeof verbsFor> | undefined;
      const ownsMemory = !(options.memory instanceof Region);
      let memory: Region | undefined;
      const refuse = (e: Error) => {
        verbs?.ctx.close();
        if (ownsMemory) memory?.close();
        if (!req.closed) {
          const code = (e as { code?: unknown }).code;
          try {
            req.reject(
              Buffer.from(typeof code === 'string' && code.startsWith('ERR_') ? code : 'ERR_REFUSED', 'latin1'),
            );
          } catch {
            req.close();
          }
        }
        onError?.(e);
      };
      try {
        const { window, nonce } = decodeRequest(secret, req.request?.qpNum ?? 0, req.request?.privateData, replays);
        memory = options.memory instanceof Region ? options.memory : Region.anonymous(options.memory);
        verbs = verbsFor(options.device ?? req.device ?? '', depth, memory);
        const reply = encodeReply(secret, nonce, verbs.qp.qpNum, {
          addr: verbs.mr.addr,
          rkey: verbs.mr.rkey,
          length: verbs.mr.length,
        });
        const v = verbs;
        const m = memory;
        req.accept(v.qp, { privateData: reply }).then(() => {
          open++;
          const remote: Endpoint = {
            qpNum: req.request?.qpNum ?? 0,
            gid: mappedGid(req.info().peerAddress),
            psn: 0,
            ...window,
          };
          onConnection(new RdmaConnection({ ...v, memory: m, ownsMemory, remote, control: cmControl(req, release) }));
        }, refuse);
      } catch (e) {
        refuse(e as Error);
      }
    });
    try {
      listener.listen(host, port);
    } catch (e) {
      ch.close();
      throw e;
    }
    let closed = false;
    return {
      port: listener.info().localPort ?? port,
      close: () => {
        if (closed) return;
        closed = true;
        listener.close();
        release();
      },
    };
  }

  private static async establish(ch: AuthChannel, local: Local): Promise<RdmaConnection> {
    const peer = await handshake(ch, local.mine);
    const { qp } = local.verbs;
    qp.toInit();
    qp.toRtr({ qpNum: peer.qpNum, gid: peer.gid, psn: peer.psn }, { sgidIndex: local.gidIndex });
    qp.toRts({ psn: local.mine.psn });
    const { memory, ownsMemory } = local;
    return new RdmaConnection({ ...local.verbs, memory, ownsMemory, remote: peer, control: channelControl(ch) });
  }

  /**
   * RDMA READ `length` bytes at `remoteOffset` of the peer's window into the
   * local window at `localOffset`. Resolves when the data is there.
   */
  async read(remoteOffset: number, length: number, localOffset = 0): Promise<void> {
    this.check(remoteOffset, length, localOffset);
    await this.post('RDMA_READ', remoteOffset, length, localOffset);
  }

  /** RDMA WRITE `length` bytes of the local window at `localOffset` to the peer's window at `remoteOffset`. */
  async write(remoteOffset: number, length: number, localOffset = 0): Promise<void> {
    this.check(remoteOffset, length, localOffset);
    await this.post('RDMA_WRITE', remoteOffset, length, localOffset);
  }

  get inFlight(): number {
    return this.pending.size;
  }

  close(): void {
    this.fail(new StateError('connection closed', { code: 'ERR_CLOSED' }));
  }
  [Symbol.dispose](): void {
    this.close();
  }

  private check(remoteOffset: number, length: number, localOffset: number): void {
    if (this.closed) throw new StateError('connection is closed', { code: 'ERR_CLOSED' });
    integer('length', length, 1, 2 ** 31);
    integer('remoteOffset', remoteOffset);
    integer('localOffset', localOffset);
    if (remoteOffset + length > this.remote.length)
      throw argRange(`[${remoteOffset}, +${length}) is outside the peer's window of ${this.remote.length} bytes`);
    if (localOffset + length > this.mr.length)
      throw argRange(`[${localOffset}, +${length}) is outside the local window of ${this.mr.length} bytes`);
  }

  private post(
    opcode: 'RDMA_READ' | 'RDMA_WRITE',
    remoteOffset: number,
    length: number,
    localOffset: number,
  ): Promise<Completion> {
    const wrId = this.nextId++;
    const done = new Promise<Completion>((resolve, reject) => this.pending.set(wrId, { resolve, reject }));
    try {
      this.qp.postSend([
        {
          wrId,
          opcode,
          sge: [{ mr: this.mr, offset: localOffset, length }],
          remoteAddr: this.remote.addr + remoteOffset,
          rkey: this.remote.rkey,
        },
      ]);
    } catch (e) {
      this.pending.delete(wrId);
      throw e;
    }
    return done;
  }

  // One loop per connection: wait on the channel, settle the operations.
  private async drain(): Promise<void> {
    while (!this.closed) {
      let wcs: Completion[];
      try {
        wcs = await this.cq.next(64);
      } catch {
        return; // closed while waiting
      }
      for (const c of wcs) {
        const p = this.pending.get(c.wrId);
        if (!p) continue;
        this.pending.delete(c.wrId);
        if (c.ok) p.resolve(c);
        else
          p.reject(new CompletionError(`RDMA ${c.opcode} failed: ${c.status}`, { status: c.status, opcode: c.opcode }));
      }
    }
  }

  private fail(e: Error): void {
    if (this.closed) return;
    this.closed = true;
    for (const p of this.pending.values()) p.reject(e);
    this.pending.clear();
    this.control.destroy();
    this.ctx.close();
    if (this.ownsMemory) this.memory.close();
    this.emit('close');
  }
}
