/**
 * serverlessos/rdma — RDMA verbs (libibverbs, loaded at run time).
 * Objects form pyverbs' tree: Context → ProtectionDomain → MemoryRegion,
 * QueuePair; Context → CompletionQueue → QueuePair. Closing a parent closes
 * its children first; every close is idempotent and `using` works.
 * Not yet here (next increments of this module): completion channels on the
 * libuv loop, async events, UD address handles, SRQ, rdma_cm, RdmaConnection.
 */
import { native as nativeBinding } from '../native.js';
import { argType } from '../errors.js';
import { integer, object } from '../validate.js';
import { Region } from '../uffd/region.js';

interface Raw {
  devices(): DeviceInfo[];
  status(): { library: boolean; reason?: string };
  RdmaContext: new (name: string) => RawNode & {
    query(): DeviceAttributes;
    queryPort(port: number): PortAttributes;
    queryGid(port: number, index: number): string;
  };
  RdmaPd: new (ctx: object) => RawNode;
  RdmaMr: new (pd: object, mem: object, offset: number, length: number, access: number) => RawNode & {
    info(): { addr: number; length: number; lkey: number; rkey: number };
  };
  RdmaCq: new (ctx: object, cqe: number) => RawNode & { poll(max?: number): Completion[] };
  RdmaQp: new (pd: object, sendCq: object, recvCq: object, opts: object) => RawNode & {
    info(): { qpNum: number; state: QpState; type: 'RC' | 'UD' };
    modify(attrs: QpAttributes): void;
    postSend(wrs: object[]): void;
    postRecv(wrs: object[]): void;
  };
  ACCESS_LOCAL_WRITE: number;
  ACCESS_REMOTE_WRITE: number;
  ACCESS_REMOTE_READ: number;
  ACCESS_REMOTE_ATOMIC: number;
}
interface RawNode { close(): void; isClosed(): boolean }

const raw = (nativeBinding as unknown as { rdma: Raw }).rdma;

export interface DeviceInfo { name: string; guid: string; transport: 'ib' | 'iwarp' | 'other' }
export interface DeviceAttributes {
  fwVer: string; vendorId: number; vendorPartId: number; maxMrSize: number; maxQp: number; maxQpWr: number;
  maxSge: number; maxCq: number; maxCqe: number; maxMr: number; maxPd: number; maxQpRdAtom: number;
  atomicCap: 'none' | 'hca' | 'glob'; physPortCnt: number;
}
export interface PortAttributes {
  state: 'NOP' | 'DOWN' | 'INIT' | 'ARMED' | 'ACTIVE' | 'ACTIVE_DEFER' | 'UNKNOWN';
  maxMtu: number; activeMtu: number; gidTblLen: number; lid: number; linkLayer: 'ethernet' | 'infiniband';
}
export type QpState = 'RESET' | 'INIT' | 'RTR' | 'RTS' | 'SQD' | 'SQE' | 'ERR';
export type Access = 'local-write' | 'remote-write' | 'remote-read' | 'remote-atomic';
export interface QpAttributes {
  state?: QpState; portNum?: number; pkeyIndex?: number; access?: number; qkey?: number; pathMtu?: number;
  destQpNum?: number; rqPsn?: number; sqPsn?: number; maxDestRdAtomic?: number; maxRdAtomic?: number;
  minRnrTimer?: number; timeout?: number; retryCnt?: number; rnrRetry?: number;
  /** The peer's address vector (RoCE: its GID), with the local GID index and port used to reach it. */
  dgid?: string; sgidIndex?: number; hopLimit?: number; ahPort?: number;
}
export interface Completion {
  wrId: bigint; ok: boolean; status: string; opcode: string; byteLen: number; qpNum: number; srcQp: number; imm?: number;
}
export interface Sge { mr: MemoryRegion; offset?: number; length: number }
export type SendOpcode = 'SEND' | 'SEND_WITH_IMM' | 'RDMA_WRITE' | 'RDMA_WRITE_WITH_IMM' | 'RDMA_READ' | 'ATOMIC_CMP_AND_SWP' | 'ATOMIC_FETCH_AND_ADD';
export interface SendWr {
  wrId?: number | bigint; opcode: SendOpcode; sge?: Sge[]; signaled?: boolean; imm?: number;
  remoteAddr?: number | bigint; rkey?: number; compareAdd?: number | bigint; swap?: number | bigint;
}
export interface RecvWr { wrId?: number | bigint; sge?: Sge[] }

function accessBits(list: readonly Access[]): number {
  let bits = 0;
  for (const a of list) {
    switch (a) {
      case 'local-write': bits |= raw.ACCESS_LOCAL_WRITE; break;
      case 'remote-write': bits |= raw.ACCESS_REMOTE_WRITE; break;
      case 'remote-read': bits |= raw.ACCESS_REMOTE_READ; break;
      case 'remote-atomic': bits |= raw.ACCESS_REMOTE_ATOMIC; break;
      default: throw argType(`unknown access flag ${String(a)}`);
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
  /** @internal */ readonly raw: InstanceType<Raw['RdmaContext']>;
  private constructor(r: InstanceType<Raw['RdmaContext']>) {
    super();
    this.raw = r;
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
  createCq(cqe = 256): CompletionQueue {
    return new CompletionQueue(this, cqe);
  }
}

export class ProtectionDomain extends Node {
  /** @internal */ readonly raw: RawNode;
  constructor(readonly context: Context) {
    super();
    this.raw = new raw.RdmaPd(context.raw);
  }
  /** Register memory: a Region (pinned while registered), an ArrayBuffer or a typed array. */
  registerMemory(memory: Region | ArrayBuffer | ArrayBufferView, options?: { offset?: number; length?: number; access?: Access[] }): MemoryRegion {
    return new MemoryRegion(this, memory, options);
  }
  createQp(sendCq: CompletionQueue, recvCq: CompletionQueue, options?: QpOptions): QueuePair {
    return new QueuePair(this, sendCq, recvCq, options);
  }
}

export class MemoryRegion extends Node {
  /** @internal */ readonly raw: InstanceType<Raw['RdmaMr']>;
  constructor(readonly pd: ProtectionDomain, memory: Region | ArrayBuffer | ArrayBufferView, options?: { offset?: number; length?: number; access?: Access[] }) {
    super();
    const o = object('options', options);
    const size = memory instanceof Region ? memory.size : memory.byteLength;
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

export class CompletionQueue extends Node {
  /** @internal */ readonly raw: InstanceType<Raw['RdmaCq']>;
  constructor(readonly context: Context, cqe: number) {
    super();
    this.raw = new raw.RdmaCq(context.raw, integer('cqe', cqe, 1));
  }
  /** Completions available now (at most `max`; never blocks). */
  poll(max = 16): Completion[] {
    return this.raw.poll(integer('max', max, 1, 256));
  }
}

export interface QpOptions {
  type?: 'RC' | 'UD'; maxSendWr?: number; maxRecvWr?: number; maxSendSge?: number; maxRecvSge?: number;
  maxInlineData?: number; sigAll?: boolean;
}

export class QueuePair extends Node {
  /** @internal */ readonly raw: InstanceType<Raw['RdmaQp']>;
  constructor(readonly pd: ProtectionDomain, readonly sendCq: CompletionQueue, readonly recvCq: CompletionQueue, options?: QpOptions) {
    super();
    this.raw = new raw.RdmaQp(pd.raw, sendCq.raw, recvCq.raw, object('options', options));
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
    this.modify({ state: 'INIT', pkeyIndex: 0, portNum: options.port ?? 1, access: accessBits(options.access ?? ['local-write', 'remote-write', 'remote-read', 'remote-atomic']) });
  }
  /** INIT → RTR towards a peer (RoCE: its GID; GID index 1 is the IPv4-mapped RoCEv2 GID on rxe). */
  toRtr(peer: { qpNum: number; gid: string; psn?: number }, options: { port?: number; sgidIndex?: number; mtu?: number } = {}): void {
    this.modify({
      state: 'RTR', pathMtu: options.mtu ?? 1024, destQpNum: peer.qpNum, rqPsn: peer.psn ?? 0, maxDestRdAtomic: 1,
      minRnrTimer: 12, dgid: peer.gid, sgidIndex: options.sgidIndex ?? 1, hopLimit: 64, ahPort: options.port ?? 1,
    });
  }
  /** RTR → RTS. */
  toRts(options: { psn?: number } = {}): void {
    this.modify({ state: 'RTS', sqPsn: options.psn ?? 0, timeout: 14, retryCnt: 7, rnrRetry: 7, maxRdAtomic: 1 });
  }
  /** Post a batch of send-queue work requests in one ibv_post_send. */
  postSend(wrs: SendWr[]): void {
    if (!Array.isArray(wrs)) throw argType('work requests must be an array');
    this.raw.postSend(wrs.map((w) => ({ ...w, sge: w.sge?.map((s) => ({ ...s, mr: s.mr.raw })) })));
  }
  /** Post a batch of receive work requests in one ibv_post_recv. */
  postRecv(wrs: RecvWr[]): void {
    if (!Array.isArray(wrs)) throw argType('work requests must be an array');
    this.raw.postRecv(wrs.map((w) => ({ ...w, sge: w.sge?.map((s) => ({ ...s, mr: s.mr.raw })) })));
  }
}
