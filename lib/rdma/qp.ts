// A queue pair: its state transitions and the posting of work requests.
import { native, type QpAttributes, type QpState, type RawQp } from '../native/index.js';
import { argType } from '../errors.js';
import { integer, object } from '../validate.js';
import { accessBits, type Access } from './access.js';
import type { CompletionQueue } from './cq.js';
import type { ProtectionDomain } from './pd.js';
import { PreparedSend } from './prepared.js';
import { SharedReceiveQueue } from './srq.js';
import type { RecvWr, SendWr } from './wr.js';
import { VerbsObject } from './verbs-object.js';

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

export class QueuePair extends VerbsObject {
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
    this.raw = new native.rdma.RdmaQp(pd.raw, sendCq.raw, recvCq.raw, { ...o, srq: o.srq?.raw });
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
