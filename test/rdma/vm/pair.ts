// Two RC queue pairs of one process connected to each other through the
// device (loopback through the NIC): the fixture most in-VM tests start from.
import * as rdma from '../../../lib/rdma/index.js';
import { GID_INDEX } from './env.js';

/** INIT → RTR → RTS for two RC QPs of one context, each aimed at the other. */
export function connectRc(ctx: rdma.Context, x: rdma.QueuePair, y: rdma.QueuePair): void {
  const gid = ctx.queryGid(1, GID_INDEX);
  for (const [q, peer] of [
    [x, y],
    [y, x],
  ] as const) {
    q.toInit();
    q.toRtr({ qpNum: peer.qpNum, gid }, { sgidIndex: GID_INDEX });
    q.toRts();
  }
}

export interface PairOptions {
  channel?: rdma.CompletionChannel;
  cqDepth?: number;
  qpA?: rdma.QpOptions;
  qpB?: rdma.QpOptions;
}

/** A PD, a CQ per side and two connected RC QPs. */
export function loopbackPair(ctx: rdma.Context, opts: PairOptions = {}) {
  const pd = ctx.allocPd();
  const cqA = ctx.createCq(opts.cqDepth ?? 256, opts.channel);
  const cqB = ctx.createCq(opts.cqDepth ?? 256, opts.channel);
  const a = pd.createQp(cqA, cqA, opts.qpA);
  const b = pd.createQp(cqB, cqB, opts.qpB);
  connectRc(ctx, a, b);
  return { pd, cqA, cqB, a, b };
}
