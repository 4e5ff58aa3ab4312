// Work requests: what postSend()/postRecv()/prepareSend() take.
import type { AddressHandle } from './ah.js';
import type { MemoryRegion } from './mr.js';

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
