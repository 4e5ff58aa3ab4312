// The rdma_cm part of the addon (native/rdma/cm.cc, in `native.rdma`): types only.
import type { QpAttributes, RawNode } from './rdma.js';

/** Where an id is: its device once resolved or bound to a device address, and both ends. */
export interface CmIdInfo {
  device?: string;
  port?: number;
  localAddress?: string;
  localPort?: number;
  peerAddress?: string;
  peerPort?: number;
}

/** An rdma_cm event channel: `start` delivers every event of its ids on the libuv loop. */
export interface RawCmChannel extends RawNode {
  start(cb: (ev: RawCmEvent) => void): void;
  ref(on: boolean): void;
}
export interface RawCmId extends RawNode {
  bind(host: string, port: number): void;
  listen(backlog: number): void;
  resolveAddr(host: string, port: number, timeoutMs: number, src?: string): void;
  resolveRoute(timeoutMs: number): void;
  connect(p: object): void;
  accept(p: object): void;
  reject(data?: Uint8Array): void;
  establish(): void;
  disconnect(): void;
  qpAttr(state: 'INIT' | 'RTR' | 'RTS'): QpAttributes;
  info(): CmIdInfo;
}
/** A CM event; for CONNECT_REQUEST `id` is a new id and `listenId` the listener it came to. */
export interface RawCmEvent {
  type: string;
  status: number;
  id: RawCmId;
  listenId?: RawCmId;
  privateData?: Buffer;
  qpNum?: number;
  responderResources?: number;
  initiatorDepth?: number;
}

/** `native.rdma`'s rdma_cm half. */
export interface CmBinding {
  RdmaCmChannel: new () => RawCmChannel;
  RdmaCmId: new (channel: RawCmChannel) => RawCmId;
  cmStatus(): { library: boolean; reason?: string };
}
