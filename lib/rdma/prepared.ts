// Prepared sends: work requests checked once, posted many times with numbers only.
import { native, type RawPrepared } from '../native/index.js';
import { argRange } from '../errors.js';
import type { QueuePair } from './qp.js';
import type { SendWr } from './wr.js';
import { VerbsObject } from './verbs-object.js';

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
export class PreparedSend extends VerbsObject {
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
    this.raw = new native.rdma.RdmaPrepared(qp.raw, wrs);
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
