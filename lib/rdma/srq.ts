// A shared receive queue: receive buffers shared by several queue pairs.
import { native, type RawSrq } from '../native/index.js';
import { object } from '../validate.js';
import type { ProtectionDomain } from './pd.js';
import type { RecvWr } from './wr.js';
import { VerbsObject } from './verbs-object.js';

export class SharedReceiveQueue extends VerbsObject {
  /** @internal */ readonly raw: RawSrq;
  constructor(
    readonly pd: ProtectionDomain,
    options?: { maxWr?: number; maxSge?: number },
  ) {
    super();
    this.raw = new native.rdma.RdmaSrq(pd.raw, object('options', options));
  }
  /** Post receive buffers shared by every QP created with this SRQ. */
  postRecv(wrs: readonly RecvWr[]): void {
    this.raw.postRecv(wrs); // the binding reads the typed wrappers' native objects itself
  }
}
