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
