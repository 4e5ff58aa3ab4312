// A protection domain: what memory regions, address handles, SRQs and queue pairs belong to.
import { native, type RawPd } from '../native/index.js';
import type { Region } from '../uffd/region.js';
import type { Access } from './access.js';
import { AddressHandle } from './ah.js';
import type { Context } from './context.js';
import { MemoryRegion, type RawRange } from './mr.js';
import { QueuePair, type QpOptions } from './qp.js';
import type { CompletionQueue } from './cq.js';
import { SharedReceiveQueue } from './srq.js';
import { VerbsObject } from './verbs-object.js';

export class ProtectionDomain extends VerbsObject {
  /** @internal */ readonly raw: RawPd;
  constructor(readonly context: Context) {
    super();
    this.raw = new native.rdma.RdmaPd(context.raw);
  }
  /**
   * Register memory: a Region (pinned while registered), an ArrayBuffer or a
   * typed array, or a raw native range { address, length } (memory of another
   * library, unsafe: the kernel checks only that it is mapped; with remote
   * access flags the peer can write it, so register only what it may).
   * Access defaults to local-write, remote-write and remote-read; on JS memory
   * to local-write only, and remote access flags there are refused
   * (ERR_INVALID_ARG_VALUE): JavaScript can detach the buffer (transfer,
   * postMessage) and free it. Its ArrayBuffer stays referenced while the MR
   * lives, and a post through an MR whose buffer was detached fails with
   * ERR_MR_DETACHED (docs/rdma.md).
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
