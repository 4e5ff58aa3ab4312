// Completion queues and the completion channel that lets one be awaited on the event loop.
import { native, type Completion, type RawChannel, type RawCq } from '../native/index.js';
import { StateError, argType } from '../errors.js';
import { integer } from '../validate.js';
import type { Context } from './context.js';
import { VerbsObject } from './verbs-object.js';

const waitingChannels = new Set<CompletionChannel>();

/** Completion events of its CQs, read on the libuv loop (no busy JS loop). */
export class CompletionChannel extends VerbsObject {
  /** @internal */ readonly raw: RawChannel;
  private readonly cqs = new Map<object, CompletionQueue>();
  private waiting = 0;
  constructor(readonly context: Context) {
    super();
    this.raw = new native.rdma.RdmaChannel(context.raw);
    // Held weakly by the native callback, so that an idle channel dropped without close() is collected;
    // strongly (in `waitingChannels`) while a CQ of it is awaited.
    const self = new WeakRef(this);
    this.raw.start((cq) => self.deref()?.cqs.get(cq)?.wakeWaiters());
    this.raw.ref(false);
    context.channels.add(this);
  }
  override close(): void {
    super.close();
    this.context.channels.delete(this);
    for (const cq of this.cqs.values()) cq.wakeWaiters(); // a CQ closed under an awaited next() rejects it
    waitingChannels.delete(this);
  }
  /** @internal */ attach(cq: CompletionQueue): void {
    this.cqs.set(cq.raw, cq);
  }
  /** @internal A waiter keeps the process alive, like a pending socket read. */
  hold(delta: number): void {
    this.waiting += delta;
    if (this.waiting > 0) waitingChannels.add(this);
    else waitingChannels.delete(this);
    if (!this.closed) this.raw.ref(this.waiting > 0);
  }
}

export class CompletionQueue extends VerbsObject {
  /** @internal */ readonly raw: RawCq;
  private waiters: (() => void)[] = [];
  constructor(
    readonly context: Context,
    cqe: number,
    readonly channel?: CompletionChannel,
  ) {
    super();
    if (channel !== undefined && !(channel instanceof CompletionChannel))
      throw argType('channel must be a CompletionChannel');
    this.raw = new native.rdma.RdmaCq(context.raw, integer('cqe', cqe, 1), channel?.raw);
    channel?.attach(this);
  }
  /** Completions available now (at most `max`; never blocks). An empty poll returns one shared frozen `[]`. */
  poll(max = 16): readonly Completion[] {
    return this.raw.poll(max === 16 ? undefined : integer('max', max, 1, 256));
  }
  /**
   * Completions available now, written into `out` as numbers (no objects):
   * completion i occupies `out[i * WC.SLOTS + WC.…]` (wrId, status, opcode,
   * byteLen, imm, qpNum, srcQp, flags). Returns how many were written, at most
   * `max` and what `out` holds (256 per call at most). Reuse one array: this is
   * the allocation-free form of `poll()`. A Float64Array holds wrIds exactly
   * up to 2^53; a BigUint64Array holds all of them.
   */
  pollInto(out: Float64Array | BigUint64Array, max?: number): number {
    return this.raw.pollInto(out, max);
  }
  /**
   * Busy-poll in C++ for up to `spinMicros` until completions arrive: the
   * lowest latency, at the price of blocking this thread meanwhile.
   */
  pollSpin(max = 16, spinMicros = 100): Completion[] {
    const got = this.raw.pollSpin(integer('max', max, 1, 256), integer('spinMicros', spinMicros, 0, 100_000));
    return got.length ? (got as Completion[]) : []; // a fresh array: only poll() returns the shared empty one
  }
  /** Wait (on the event loop, through the completion channel) for at least one completion. */
  async next(max = 16): Promise<Completion[]> {
    if (!this.channel) throw argType('next() needs a CompletionQueue created with a CompletionChannel');
    for (;;) {
      // A non-empty poll is a fresh array, the caller's to keep.
      const now = this.poll(max);
      if (now.length) return now as Completion[];
      this.raw.requestNotify(false);
      const raced = this.poll(max); // completions that arrived before arming
      if (raced.length) return raced as Completion[];
      this.channel.hold(1);
      try {
        await new Promise<void>((resolve) => this.waiters.push(resolve));
      } finally {
        this.channel.hold(-1);
      }
      if (this.closed) throw new StateError('completion queue closed while waiting', { code: 'ERR_CLOSED' });
    }
  }
  /** @internal */ wakeWaiters(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }
  override close(): void {
    super.close();
    this.wakeWaiters();
  }
}
