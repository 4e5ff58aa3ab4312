/**
 * serverlessos/rdma — RDMA verbs (libibverbs, loaded at run time).
 * Objects form pyverbs' tree: Context → ProtectionDomain → MemoryRegion,
 * QueuePair; Context → CompletionQueue → QueuePair. Closing a parent closes
 * its children first; every close is idempotent and `using` works.
 * The data path has a fast form for hot loops: `qp.prepareSend()` (work
 * requests checked once, posted with numbers only) and `cq.pollInto()`
 * (completions as numbers in a reused typed array). See docs/rdma.md.
 */
import {
  native,
  type AsyncEvent,
  type Completion,
  type DeviceAttributes,
  type DeviceInfo,
  type PortAttributes,
  type QpAttributes,
  type QpState,
  type RawChannel,
  type RawContext,
  type RawCq,
  type RawMr,
  type RawNode,
  type RawPrepared,
  type RawQp,
  type RawSrq,
} from '../native/index.js';
import { argRange, argType } from '../errors.js';
import { EventEmitter } from 'node:events';
import { integer, object } from '../validate.js';
import { Region } from '../uffd/region.js';

const raw = native.rdma;

export type Access = 'local-write' | 'remote-write' | 'remote-read' | 'remote-atomic';
export interface Sge {
  mr: MemoryRegion;
  offset?: number;
  length: number;
}
export type SendOpcode =
  | 'SEND'
  | 'SEND_WITH_IMM'
  | 'RDMA_WRITE'
  | 'RDMA_WRITE_WITH_IMM'
  | 'RDMA_READ'
  | 'ATOMIC_CMP_AND_SWP'
  | 'ATOMIC_FETCH_AND_ADD';
export interface SendWr {
  wrId?: number | bigint;
  opcode: SendOpcode;
  sge?: readonly Sge[];
  signaled?: boolean;
  imm?: number;
  remoteAddr?: number | bigint;
  rkey?: number;
  compareAdd?: number | bigint;
  swap?: number | bigint;
  /** UD only: the destination of the datagram. */
  ah?: AddressHandle;
  remoteQpn?: number;
  remoteQkey?: number;
}
export interface RecvWr {
  wrId?: number | bigint;
  sge?: readonly Sge[];
}

function accessBits(list: readonly Access[]): number {
  let bits = 0;
  for (const a of list) {
    switch (a) {
      case 'local-write':
        bits |= raw.ACCESS_LOCAL_WRITE;
        break;
      case 'remote-write':
        bits |= raw.ACCESS_REMOTE_WRITE;
        break;
      case 'remote-read':
        bits |= raw.ACCESS_REMOTE_READ;
        break;
      case 'remote-atomic':
        bits |= raw.ACCESS_REMOTE_ATOMIC;
        break;
      default:
        throw argType(`unknown access flag ${String(a)}`);
    }
  }
  return bits;
}

/** RDMA devices of this host ([] when rdma-core or kernel RDMA is missing). */
export function devices(): DeviceInfo[] {
  return raw.devices();
}
/** Whether libibverbs could be loaded, and why not. */
export function status(): { library: boolean; reason?: string } {
  return raw.status();
}

abstract class Node implements Disposable {
  /** @internal */ abstract readonly raw: RawNode;
  get closed(): boolean {
    return this.raw.isClosed();
  }
  /** Close (idempotent); children first. */
  close(): void {
    this.raw.close();
  }
  [Symbol.dispose](): void {
    this.close();
  }
}

export class Context extends Node {
  /** @internal */ readonly raw: RawContext;
  /** Device async events ('event' listeners): port active/error, QP fatal, CQ error… */
  readonly events = new EventEmitter<{ event: [AsyncEvent] }>();
  private constructor(r: RawContext) {
    super();
    this.raw = r;
    // The native side holds this callback strongly: it must not hold the Context (or the Context could never be collected).
    const events = this.events;
    (events as EventEmitter).on('newListener', () => r.startEvents((ev) => events.emit('event', ev)));
  }
  /** Open a device by name (e.g. 'rxe0'). */
  static open(name: string): Context {
    if (typeof name !== 'string') throw argType('device name must be a string');
    return new Context(new raw.RdmaContext(name));
  }
  query(): DeviceAttributes {
    return this.raw.query();
  }
  queryPort(port = 1): PortAttributes {
    return this.raw.queryPort(integer('port', port, 1, 255));
  }
  queryGid(port = 1, index = 0): string {
    return this.raw.queryGid(integer('port', port, 1, 255), integer('index', index, 0));
  }
  allocPd(): ProtectionDomain {
    return new ProtectionDomain(this);
  }
  /** A completion queue; with a channel it can be awaited (`next()`) without polling. */
  createCq(cqe = 256, channel?: CompletionChannel): CompletionQueue {
    return new CompletionQueue(this, cqe, channel);
  }
  createCompChannel(): CompletionChannel {
    return new CompletionChannel(this);
  }
  /** @internal Channels of this context: closing it wakes their waiters. */
  readonly channels = new Set<CompletionChannel>();
  override close(): void {
    super.close();
    for (const ch of this.channels) ch.close(); // closed natively already: this settles awaited next()s
    this.channels.clear();
  }
}

export class ProtectionDomain extends Node {
  /** @internal */ readonly raw: RawNode;
  constructor(readonly context: Context) {
    super();
    this.raw = new raw.RdmaPd(context.raw);
  }
  /**
   * Register memory: a Region (pinned while registered), an ArrayBuffer or a
   * typed array (kept referenced), or a raw native range { address, length }
   * (memory of another library: the kernel checks it is mapped; with remote
   * access flags the peer can write it, so register only what it may).
   */
  registerMemory(
    memory: Region | ArrayBuffer | ArrayBufferView | RawRange,
    options?: { offset?: number; length?: number; access?: Access[] },
  ): MemoryRegion {
    return new MemoryRegion(this, memory, options);
  }
  /** An address handle: where UD datagrams go. */
  createAh(dest: { gid: string; sgidIndex?: number; hopLimit?: number; port?: number }): AddressHandle {
    return new AddressHandle(this, dest);
  }
  createSrq(options?: { maxWr?: number; maxSge?: number }): SharedReceiveQueue {
    return new SharedReceiveQueue(this, options);
  }
  createQp(sendCq: CompletionQueue, recvCq: CompletionQueue, options?: QpOptions): QueuePair {
    return new QueuePair(this, sendCq, recvCq, options);
  }
}

export interface RawRange {
  address: number | bigint;
  length: number;
}

export class AddressHandle extends Node {
  /** @internal */ readonly raw: RawNode;
  constructor(
    readonly pd: ProtectionDomain,
    dest: { gid: string; sgidIndex?: number; hopLimit?: number; port?: number },
  ) {
    super();
    const d = object('dest', dest);
    if (typeof d.gid !== 'string') throw argType('dest.gid must be a GID string');
    this.raw = new raw.RdmaAh(pd.raw, {
      dgid: d.gid,
      sgidIndex: d.sgidIndex ?? 1,
      hopLimit: d.hopLimit ?? 64,
      port: d.port ?? 1,
    });
  }
}

export class SharedReceiveQueue extends Node {
  /** @internal */ readonly raw: RawSrq;
  constructor(
    readonly pd: ProtectionDomain,
    options?: { maxWr?: number; maxSge?: number },
  ) {
    super();
    this.raw = new raw.RdmaSrq(pd.raw, object('options', options));
  }
  /** Post receive buffers shared by every QP created with this SRQ. */
  postRecv(wrs: readonly RecvWr[]): void {
    this.raw.postRecv(wrs); // the binding reads the typed wrappers' native objects itself
  }
}

export class MemoryRegion extends Node {
  /** @internal */ readonly raw: RawMr;
  constructor(
    readonly pd: ProtectionDomain,
    memory: Region | ArrayBuffer | ArrayBufferView | RawRange,
    options?: { offset?: number; length?: number; access?: Access[] },
  ) {
    super();
    const o = object('options', options);
    const size =
      memory instanceof Region
        ? memory.size
        : 'address' in memory
          ? integer('memory.length', memory.length, 1)
          : memory.byteLength;
    const offset = o.offset === undefined ? 0 : integer('options.offset', o.offset, 0, size);
    const length = o.length === undefined ? size - offset : integer('options.length', o.length, 1, size - offset);
    const access = accessBits((o.access as Access[] | undefined) ?? ['local-write', 'remote-write', 'remote-read']);
    const mem = memory instanceof Region ? memory.native : memory;
    this.raw = new raw.RdmaMr(pd.raw, mem, offset, length, access);
  }
  get addr(): number {
    return this.raw.info().addr;
  }
  get length(): number {
    return this.raw.info().length;
  }
  get lkey(): number {
    return this.raw.info().lkey;
  }
  get rkey(): number {
    return this.raw.info().rkey;
  }
}

const waitingChannels = new Set<CompletionChannel>();

/** Completion events of its CQs, read on the libuv loop (no busy JS loop). */
export class CompletionChannel extends Node {
  /** @internal */ readonly raw: RawChannel;
  private readonly cqs = new Map<object, CompletionQueue>();
  private waiting = 0;
  constructor(readonly context: Context) {
    super();
    this.raw = new raw.RdmaChannel(context.raw);
    // Held weakly by the native callback, so that an idle channel dropped without close() is collected;
    // strongly (in `waitingChannels`) while a CQ of it is awaited.
    const self = new WeakRef(this);
    this.raw.start((cq) => self.deref()?.cqs.get(cq)?.wakeWaiters());
    this.raw.ref(false);
    context.channels.add(this);
  }
  override close(): void {
    super.close();
    this.context.channels.delete(this);
    for (const cq of this.cqs.values()) cq.wakeWaiters(); // a CQ closed under an awaited next() rejects it
    waitingChannels.delete(this);
  }
  /** @internal */ attach(cq: CompletionQueue): void {
    this.cqs.set(cq.raw, cq);
  }
  /** @internal A waiter keeps the process alive, like a pending socket read. */
  hold(delta: number): void {
    this.waiting += delta;
    if (this.waiting > 0) waitingChannels.add(this);
    else waitingChannels.delete(this);
    if (!this.closed) this.raw.ref(this.waiting > 0);
  }
}

export class CompletionQueue extends Node {
  /** @internal */ readonly raw: RawCq;
  private waiters: (() => void)[] = [];
  constructor(
    readonly context: Context,
    cqe: number,
    readonly channel?: CompletionChannel,
  ) {
    super();
    if (channel !== undefined && !(channel instanceof CompletionChannel))
      throw argType('channel must be a CompletionChannel');
    this.raw = new raw.RdmaCq(context.raw, integer('cqe', cqe, 1), channel?.raw);
    channel?.attach(this);
  }
  /** Completions available now (at most `max`; never blocks). An empty poll returns one shared frozen `[]`. */
  poll(max = 16): readonly Completion[] {
    return this.raw.poll(max === 16 ? undefined : integer('max', max, 1, 256));
  }
  /**
   * Completions available now, written into `out` as numbers (no objects):
   * completion i occupies `out[i * WC.SLOTS + WC.…]` (wrId, status, opcode,
   * byteLen, imm, qpNum, srcQp, flags). Returns how many were written, at most
   * `max` and what `out` holds (256 per call at most). Reuse one array: this is
   * the allocation-free form of `poll()`. A Float64Array holds wrIds exactly
   * up to 2^53; a BigUint64Array holds all of them.
   */
  pollInto(out: Float64Array | BigUint64Array, max?: number): number {
    return this.raw.pollInto(out, max);
  }
  /**
   * Busy-poll in C++ for up to `spinMicros` until completions arrive: the
   * lowest latency, at the price of blocking this thread meanwhile.
   */
  pollSpin(max = 16, spinMicros = 100): Completion[] {
    const got = this.raw.pollSpin(integer('max', max, 1, 256), integer('spinMicros', spinMicros, 0, 100_000));
    return got.length ? (got as Completion[]) : []; // a fresh array: only poll() returns the shared empty one
  }
  /** Wait (on the event loop, through the completion channel) for at least one completion. */
  async next(max = 16): Promise<Completion[]> {
    if (!this.channel) throw argType('next() needs a CompletionQueue created with a CompletionChannel');
    for (;;) {
      // A non-empty poll is a fresh array, the caller's to keep.
      const now = this.poll(max);
      if (now.length) return now as Completion[];
      this.raw.requestNotify(false);
      const raced = this.poll(max); // completions that arrived before arming
      if (raced.length) return raced as Completion[];
      this.channel.hold(1);
      try {
        await new Promise<void>((resolve) => this.waiters.push(resolve));
      } finally {
        this.channel.hold(-1);
      }
      if (this.closed) throw Object.assign(new Error('completion queue closed while waiting'), { code: 'ERR_CLOSED' });
    }
  }
  /** @internal */ wakeWaiters(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }
  override close(): void {
    super.close();
    this.wakeWaiters();
  }
}

export interface QpOptions {
  type?: 'RC' | 'UD';
  maxSendWr?: number;
  maxRecvWr?: number;
  maxSendSge?: number;
  maxRecvSge?: number;
  maxInlineData?: number;
  sigAll?: boolean;
  /** Take receive buffers from this shared receive queue. */
  srq?: SharedReceiveQueue;
}

export class QueuePair extends Node {
  /** @internal */ readonly raw: RawQp;
  constructor(
    readonly pd: ProtectionDomain,
    readonly sendCq: CompletionQueue,
    readonly recvCq: CompletionQueue,
    options?: QpOptions,
  ) {
    super();
    const o = object('options', options);
    if (o.srq !== undefined && !(o.srq instanceof SharedReceiveQueue))
      throw argType('options.srq must be a SharedReceiveQueue');
    this.raw = new raw.RdmaQp(pd.raw, sendCq.raw, recvCq.raw, { ...o, srq: o.srq?.raw });
  }
  get qpNum(): number {
    return this.raw.info().qpNum;
  }
  get state(): QpState {
    return this.raw.info().state;
  }
  /** ibv_modify_qp with the given attributes (the mask is the keys present). */
  modify(attrs: QpAttributes): void {
    object('attrs', attrs);
    this.raw.modify(attrs);
  }
  /** RESET → INIT with the access this QP grants its peer. */
  toInit(options: { port?: number; access?: Access[] } = {}): void {
    this.modify({
      state: 'INIT',
      pkeyIndex: 0,
      portNum: options.port ?? 1,
      access: accessBits(options.access ?? ['local-write', 'remote-write', 'remote-read', 'remote-atomic']),
    });
  }
  /**
   * INIT → RTR towards a peer (RoCE: its GID; GID index 1 is the IPv4-mapped RoCEv2 GID on rxe).
   * `maxDestRdAtomic` (default 1): RDMA READs and atomics the peer may have outstanding on this QP;
   * give it at least the peer's `maxRdAtomic`, at most the device's `maxQpRdAtom`.
   */
  toRtr(
    peer: { qpNum: number; gid: string; psn?: number },
    options: { port?: number; sgidIndex?: number; mtu?: number; maxDestRdAtomic?: number } = {},
  ): void {
    this.modify({
      state: 'RTR',
      pathMtu: options.mtu ?? 1024,
      destQpNum: peer.qpNum,
      rqPsn: peer.psn ?? 0,
      maxDestRdAtomic: integer('options.maxDestRdAtomic', options.maxDestRdAtomic ?? 1, 0, 255),
      minRnrTimer: 12,
      dgid: peer.gid,
      sgidIndex: options.sgidIndex ?? 1,
      hopLimit: 64,
      ahPort: options.port ?? 1,
    });
  }
  /**
   * RTR → RTS. `maxRdAtomic` (default 1): RDMA READs and atomics this QP keeps outstanding
   * (more in flight, more bandwidth per QP); at most the peer's `maxDestRdAtomic`.
   */
  toRts(options: { psn?: number; maxRdAtomic?: number } = {}): void {
    this.modify({
      state: 'RTS',
      sqPsn: options.psn ?? 0,
      timeout: 14,
      retryCnt: 7,
      rnrRetry: 7,
      maxRdAtomic: integer('options.maxRdAtomic', options.maxRdAtomic ?? 1, 0, 255),
    });
  }
  /** A UD QP: RESET → INIT (with its qkey) → RTR → RTS; it can then send datagrams to any address handle. */
  readyUd(options: { qkey: number; port?: number; psn?: number }): void {
    this.modify({ state: 'INIT', pkeyIndex: 0, portNum: options.port ?? 1, qkey: integer('qkey', options.qkey) });
    this.modify({ state: 'RTR' });
    this.modify({ state: 'RTS', sqPsn: options.psn ?? 0 });
  }
  /**
   * Post a batch of send-queue work requests in one ibv_post_send. The binding
   * reads each field once and checks every SGE against its MR; nothing is
   * posted when a request is invalid. For a hot loop, see prepareSend().
   */
  postSend(wrs: readonly SendWr[]): void {
    this.raw.postSend(wrs); // the binding reads the typed wrappers' native objects itself
  }
  /** Post a batch of receive work requests in one ibv_post_recv. */
  postRecv(wrs: readonly RecvWr[]): void {
    this.raw.postRecv(wrs);
  }
  /**
   * Check and convert work requests once, for posting many times with only
   * numbers changing (wrId, remote address, rkey, imm, SGE offsets and
   * lengths): see PreparedSend. The prepared send closes with this QP and with
   * any MR or AH it names, and keeps them referenced while it lives.
   */
  prepareSend(wrs: readonly SendWr[]): PreparedSend {
    return new PreparedSend(this, wrs);
  }
}

/**
 * Work requests checked and converted once (`qp.prepareSend(wrs)`), then
 * posted with `post()`: one native call that reads a few numbers, checks them
 * (SGEs against their memory region) and calls ibv_post_send: no objects, no
 * property reads. The setters only store numbers in a Float64Array that
 * `post()` reads; out-of-range values are refused by `post()` with a
 * RangeError and nothing is posted. wrIds and remote addresses travel as
 * doubles: integers up to 2^53.
 *
 * ```ts
 * const read = qp.prepareSend([{ opcode: 'RDMA_READ', sge: [{ mr, length: 4096 }], remoteAddr, rkey }]);
 * read.setWrId(0, id).setRemoteAddr(0, remoteAddr + off).post();
 * ```
 */
export class PreparedSend extends Node {
  /** @internal */ readonly raw: RawPrepared;
  /** How many work requests it holds. */
  readonly length: number;
  private readonly ctl: Float64Array;
  private readonly base: Uint32Array;
  constructor(
    readonly qp: QueuePair,
    wrs: readonly SendWr[],
  ) {
    super();
    this.raw = new raw.RdmaPrepared(qp.raw, wrs);
    const layout = this.raw.layout();
    this.base = Uint32Array.from(layout);
    this.length = layout.length - 1;
    this.ctl = new Float64Array(layout[layout.length - 1]);
    this.raw.read(this.ctl);
  }
  private at(i: number): number {
    const b = i < this.length ? this.base[i] : undefined;
    if (b === undefined) throw argRange(`work request index ${i} is outside 0..${this.length - 1}`);
    return b;
  }
  setWrId(i: number, wrId: number): this {
    this.ctl[this.at(i) + PREP_WR_ID] = wrId;
    return this;
  }
  /** The remote address (RDMA and atomics), and its rkey when given. */
  setRemoteAddr(i: number, remoteAddr: number, rkey?: number): this {
    const b = this.at(i);
    this.ctl[b + PREP_REMOTE_ADDR] = remoteAddr;
    if (rkey !== undefined) this.ctl[b + PREP_RKEY] = rkey;
    return this;
  }
  setImm(i: number, imm: number): this {
    this.ctl[this.at(i) + PREP_IMM] = imm;
    return this;
  }
  /** SGE `j` of work request `i`: `offset` within its memory region, and `length`. */
  setSge(i: number, j: number, offset: number, length: number): this {
    const b = this.at(i),
      k = b + PREP_SLOTS + 2 * j;
    if (!(j >= 0 && k + 1 < this.base[i + 1])) throw argRange(`work request ${i} has no sge ${j}`);
    this.ctl[k] = offset;
    this.ctl[k + 1] = length;
    return this;
  }
  /** Post the first `count` work requests (default all) in one ibv_post_send. */
  post(count?: number): void {
    this.raw.post(this.ctl, count);
  }
}
const PREP_WR_ID = 0,
  PREP_REMOTE_ADDR = 1,
  PREP_RKEY = 2,
  PREP_IMM = 3,
  PREP_SLOTS = 4;

/**
 * Where `cq.pollInto()` puts each field of completion i: `out[i * WC.SLOTS + WC.WR_ID]` and so
 * on. `status` 0 is success (`wcStatusName()` names the others); `opcode` is ibv_wc_opcode
 * (`wcOpcodeName()`); `imm` is valid when `flags & WC.WITH_IMM`.
 */
export const WC = Object.freeze({
  SLOTS: 8,
  WR_ID: 0,
  STATUS: 1,
  OPCODE: 2,
  BYTE_LEN: 3,
  IMM: 4,
  QP_NUM: 5,
  SRC_QP: 6,
  FLAGS: 7,
  WITH_IMM: 2,
  SUCCESS: 0,
});
/** libibverbs' name of a completion status (as `Completion.status`). */
export function wcStatusName(status: number): string {
  return raw.wcStatusStr(integer('status', status, 0, 0xffff));
}
const WC_OPCODES = ['SEND', 'RDMA_WRITE', 'RDMA_READ', 'COMP_SWAP', 'FETCH_ADD', 'BIND_MW', 'LOCAL_INV', 'TSO'];
/** The name of a completion opcode (as `Completion.opcode`). */
export function wcOpcodeName(opcode: number): string {
  if (opcode & 128) return opcode === 129 ? 'RECV_RDMA_WITH_IMM' : 'RECV';
  return WC_OPCODES[opcode] ?? 'OTHER';
}

export type { AsyncEvent, Completion, DeviceAttributes, DeviceInfo, PortAttributes, QpAttributes, QpState };
export { RdmaConnection, type ConnectionOptions } from './connection.js';
export { handshake, HandshakeError, type Endpoint } from './handshake.js';
export { CmEventChannel, CmId, CmError, cmStatus, type CmEvent, type CmIdInfo, type CmConnectOptions } from './cm.js';
