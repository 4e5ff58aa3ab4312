// The verbs part of the addon (native/rdma/, `native.rdma`): the raw objects lib/rdma wraps, and the
// plain values they return (which lib/rdma re-exports as its public types). Types only.

export interface DeviceInfo {
  name: string;
  guid: string;
  transport: 'ib' | 'iwarp' | 'other';
}
export interface DeviceAttributes {
  fwVer: string;
  vendorId: number;
  vendorPartId: number;
  maxMrSize: number;
  maxQp: number;
  maxQpWr: number;
  maxSge: number;
  maxCq: number;
  maxCqe: number;
  maxMr: number;
  maxPd: number;
  maxQpRdAtom: number;
  atomicCap: 'none' | 'hca' | 'glob';
  physPortCnt: number;
}
export interface PortAttributes {
  state: 'NOP' | 'DOWN' | 'INIT' | 'ARMED' | 'ACTIVE' | 'ACTIVE_DEFER' | 'UNKNOWN';
  maxMtu: number;
  activeMtu: number;
  gidTblLen: number;
  lid: number;
  linkLayer: 'ethernet' | 'infiniband';
}
export type QpState = 'RESET' | 'INIT' | 'RTR' | 'RTS' | 'SQD' | 'SQE' | 'ERR';
export interface QpAttributes {
  state?: QpState;
  portNum?: number;
  pkeyIndex?: number;
  access?: number;
  qkey?: number;
  pathMtu?: number;
  destQpNum?: number;
  rqPsn?: number;
  sqPsn?: number;
  maxDestRdAtomic?: number;
  maxRdAtomic?: number;
  minRnrTimer?: number;
  timeout?: number;
  retryCnt?: number;
  rnrRetry?: number;
  /** The peer's address vector (RoCE: its GID), with the local GID index and port used to reach it. */
  dgid?: string;
  sgidIndex?: number;
  hopLimit?: number;
  ahPort?: number;
}
export interface Completion {
  wrId: bigint;
  ok: boolean;
  status: string;
  opcode: string;
  byteLen: number;
  qpNum: number;
  srcQp: number;
  imm?: number;
}
/** An asynchronous event of the device: port up/down, QP or CQ errors. */
export interface AsyncEvent {
  type: string;
  port?: number;
  qpNum?: number;
}

/** What every verbs object has: an idempotent close that closes its children first. */
export interface RawNode {
  close(): void;
  isClosed(): boolean;
}
export interface RawContext extends RawNode {
  startEvents(cb: (ev: AsyncEvent) => void): void;
  query(): DeviceAttributes;
  queryPort(port: number): PortAttributes;
  queryGid(port: number, index: number): string;
}
export type RawPd = RawNode;
export interface RawMr extends RawNode {
  info(): { addr: number; length: number; lkey: number; rkey: number };
}
export interface RawCq extends RawNode {
  poll(max?: number): readonly Completion[];
  pollSpin(max: number, spinMicros: number): readonly Completion[];
  pollInto(out: Float64Array | BigUint64Array, max?: number): number;
  requestNotify(solicitedOnly: boolean): void;
}
/** A completion channel: `start` calls back with the raw CQ that has an event. */
export interface RawChannel extends RawNode {
  start(cb: (cq: RawCq) => void): void;
  ref(on: boolean): void;
}
export type RawAh = RawNode;
/**
 * Work requests are plain objects shaped as lib/rdma's SendWr/RecvWr; the binding reads each field once,
 * and takes an SGE's `mr` (and a UD request's `ah`) as the typed wrapper or its raw object.
 */
export type RawWorkRequests = readonly object[];
export interface RawSrq extends RawNode {
  postRecv(wrs: RawWorkRequests): void;
}
export interface RawQp extends RawNode {
  info(): { qpNum: number; state: QpState; type: 'RC' | 'UD' };
  modify(attrs: QpAttributes): void;
  postSend(wrs: RawWorkRequests): void;
  postRecv(wrs: RawWorkRequests): void;
}
/** Send work requests checked once; `post` reads only the numbers in `ctl` (see lib/rdma/prepared.ts). */
export interface RawPrepared extends RawNode {
  layout(): number[];
  read(ctl: Float64Array): void;
  post(ctl?: Float64Array, count?: number): void;
}

/** `native.rdma`'s verbs half (the rdma_cm half is in cm.ts). */
export interface VerbsBinding {
  devices(): DeviceInfo[];
  status(): { library: boolean; reason?: string };
  RdmaContext: new (name: string) => RawContext;
  RdmaPd: new (ctx: RawContext) => RawPd;
  RdmaMr: new (pd: RawPd, mem: object, offset: number, length: number, access: number) => RawMr;
  RdmaCq: new (ctx: RawContext, cqe: number, channel?: RawChannel) => RawCq;
  RdmaChannel: new (ctx: RawContext) => RawChannel;
  RdmaAh: new (pd: RawPd, attrs: object) => RawAh;
  RdmaSrq: new (pd: RawPd, attrs: object) => RawSrq;
  RdmaQp: new (pd: RawPd, sendCq: RawCq, recvCq: RawCq, opts: object) => RawQp;
  RdmaPrepared: new (qp: RawQp, wrs: RawWorkRequests) => RawPrepared;
  wcStatusStr(status: number): string;
  WC_SLOTS: number;
  WC_WITH_IMM: number;
  ACCESS_LOCAL_WRITE: number;
  ACCESS_REMOTE_WRITE: number;
  ACCESS_REMOTE_READ: number;
  ACCESS_REMOTE_ATOMIC: number;
}
