// What a memory region or queue pair lets the peer (and the local HCA) do, as ibv_access_flags bits.
import { native } from '../native/index.js';
import { argType } from '../errors.js';

export type Access = 'local-write' | 'remote-write' | 'remote-read' | 'remote-atomic';

/** @internal The ibv_access_flags of a list of access names. */
export function accessBits(list: readonly Access[]): number {
  let bits = 0;
  for (const a of list) {
    switch (a) {
      case 'local-write':
        bits |= native.rdma.ACCESS_LOCAL_WRITE;
        break;
      case 'remote-write':
        bits |= native.rdma.ACCESS_REMOTE_WRITE;
        break;
      case 'remote-read':
        bits |= native.rdma.ACCESS_REMOTE_READ;
        break;
      case 'remote-atomic':
        bits |= native.rdma.ACCESS_REMOTE_ATOMIC;
        break;
      default:
        throw argType(`unknown access flag ${String(a)}`);
    }
  }
  return bits;
}
