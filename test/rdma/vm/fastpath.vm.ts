// Inside the soft-RoCE VM: the allocation-free data path — prepared sends
// (qp.prepareSend) posted with numbers only, cq.pollInto into a reused typed
// array, the shared empty poll — with data checked byte for byte, plus its
// safety: validation at prepare and post time, the close tree (a prepared
// send closes with its QP, MRs and AHs, and keeps them alive meanwhile),
// JS getters that close things while a work request is read, and arbitrary
// calls on the raw objects.
import t from 'tap';
import { native } from '../../../lib/native/index.js';
import { Region } from '../../../lib/uffd/index.js';
import * as rdma from '../../../lib/rdma/index.js';
import { DEV, GID_INDEX } from './env.js';
import { loopbackPair } from './pair.js';
import { seeded } from '../../helpers/seeded.js';

const { WC } = rdma;
const gc = (globalThis as { gc?: () => void }).gc;

/** The loopback fixture with room for batches (and 2 SGEs on A); maxRdAtomic through toRtr/toRts's options. */
function pair(ctx: rdma.Context, opts: { maxRdAtomic?: number } = {}) {
  const qp = { maxSendWr: 256, maxRecvWr: 64 };
  if (opts.maxRdAtomic === undefined)
    return loopbackPair(ctx, { cqDepth: 512, qpA: { ...qp, maxSendSge: 2 }, qpB: qp });
  const pd = ctx.allocPd();
  const cqA = ctx.createCq(512),
    cqB = ctx.createCq(512);
  const a = pd.createQp(cqA, cqA, qp),
    b = pd.createQp(cqB, cqB, qp);
  const gid = ctx.queryGid(1, GID_INDEX);
  for (const [q, peer] of [
    [a, b],
    [b, a],
  ] as const) {
    q.toInit();
    q.toRtr({ qpNum: peer.qpNum, gid }, { sgidIndex: GID_INDEX, maxDestRdAtomic: opts.maxRdAtomic });
    q.toRts({ maxRdAtomic: opts.maxRdAtomic });
  }
  return { pd, cqA, cqB, a, b };
}

/** Wait for n completions through pollInto; returns the slots, n * WC.SLOTS numbers. */
async function reap(
  cq: rdma.CompletionQueue,
  n: number,
  out: Float64Array | BigUint64Array = new Float64Array(64 * WC.SLOTS),
): Promise<number[]> {
  const got: number[] = [];
  const until = Date.now() + 20_000;
  while (got.length < n * WC.SLOTS) {
    const k = cq.pollInto(out, Math.min(64, n - got.length / WC.SLOTS));
    for (let i = 0; i < k * WC.SLOTS; i++) got.push(Number(out[i]));
    if (Date.now() > until) throw new Error(`only ${got.length / WC.SLOTS} of ${n} completions`);
    if (k === 0) await new Promise((r) => setImmediate(r));
  }
  return got;
}
const field = (slots: number[], i: number, f: number) => slots[i * WC.SLOTS + f];

void t.test('prepared WRITE and READ, fields changed between posts; completions by pollInto', async (t) => {
  using ctx = rdma.Context.open(DEV);
  const { pd, cqA, a } = pair(ctx);
  const local = Region.anonymous(1 << 16),
    remote = Region.anonymous(1 << 16);
  const l = local.bytes(),
    r = remote.bytes();
  for (let i = 0; i < l.length; i++) l[i] = (i * 7 + 3) & 0xff;
  const mrL = pd.registerMemory(local),
    mrR = pd.registerMemory(remote);
  const write = a.prepareSend([
    { wrId: 1, opcode: 'RDMA_WRITE', sge: [{ mr: mrL, length: 4096 }], remoteAddr: mrR.addr, rkey: mrR.rkey },
  ]);
  t.equal(write.length, 1);
  // 8 WRITEs, each a different local offset, remote offset, length and wrId.
  for (let k = 0; k < 8; k++)
    write
      .setWrId(0, 100 + k)
      .setRemoteAddr(0, mrR.addr + k * 4096)
      .setSge(0, 0, k * 1000, 1000 + k)
      .post();
  const w = await reap(cqA, 8);
  for (let k = 0; k < 8; k++) {
    t.equal(field(w, k, WC.WR_ID), 100 + k);
    t.equal(field(w, k, WC.STATUS), WC.SUCCESS);
    t.equal(rdma.wcOpcodeName(field(w, k, WC.OPCODE)), 'RDMA_WRITE');
    t.equal(field(w, k, WC.QP_NUM), a.qpNum);
  }
  for (let k = 0; k < 8; k++)
    t.same(r.subarray(k * 4096, k * 4096 + 1000 + k), l.subarray(k * 1000, k * 1000 + 1000 + k), `WRITE ${k} landed`);

  // READ them back into the second half of the local region, BigUint64Array completions.
  l.fill(0, 32768);
  const read = a.prepareSend([
    {
      wrId: 0,
      opcode: 'RDMA_READ',
      sge: [{ mr: mrL, offset: 32768, length: 8 }],
      remoteAddr: mrR.addr,
      rkey: mrR.rkey,
    },
  ]);
  const big = new BigUint64Array(4 * WC.SLOTS);
  for (let k = 0; k < 8; k++) {
    read
      .setWrId(0, 200 + k)
      .setRemoteAddr(0, mrR.addr + k * 4096)
      .setSge(0, 0, 32768 + k * 2048, 1000 + k)
      .post();
    const s = await reap(cqA, 1, big);
    t.equal(field(s, 0, WC.WR_ID), 200 + k);
    t.equal(rdma.wcOpcodeName(field(s, 0, WC.OPCODE)), 'RDMA_READ');
    t.equal(field(s, 0, WC.BYTE_LEN), 1000 + k);
    t.same(
      l.subarray(32768 + k * 2048, 32768 + k * 2048 + 1000 + k),
      r.subarray(k * 4096, k * 4096 + 1000 + k),
      `READ ${k} came back`,
    );
  }
  t.equal(big[WC.WR_ID], 207n, 'a BigUint64Array holds the wrId as a bigint');
  write.close();
  read.close();
  local.close();
  remote.close();
});

void t.test('a batch: post(count), two SGEs, SEND with immediate, atomics', async (t) => {
  using ctx = rdma.Context.open(DEV);
  const { pd, cqA, cqB, a, b } = pair(ctx);
  const src = new Uint8Array(8192).map((_, i) => i & 0xff);
  const dstMem = Region.anonymous(8192); // a peer's target: memory the addon owns
  t.teardown(() => dstMem.close());
  const dst = dstMem.bytes();
  const mrS = pd.registerMemory(src);
  const mrD = pd.registerMemory(dstMem, { access: ['local-write', 'remote-write', 'remote-read', 'remote-atomic'] });
  // 4 WRITEs of 16 B each to consecutive places; post the first 2, then all 4 elsewhere.
  const wrs: rdma.SendWr[] = [0, 1, 2, 3].map((i) => ({
    wrId: i,
    opcode: 'RDMA_WRITE',
    sge: [{ mr: mrS, offset: i * 16, length: 16 }],
    remoteAddr: mrD.addr + i * 16,
    rkey: mrD.rkey,
  }));
  const p = a.prepareSend(wrs);
  t.equal(p.length, 4);
  p.post(2);
  await reap(cqA, 2);
  t.same(dst.subarray(0, 32), src.subarray(0, 32));
  t.same(dst.subarray(32, 64), new Uint8Array(32), 'only 2 of 4 posted');
  for (let i = 0; i < 4; i++) p.setRemoteAddr(i, mrD.addr + 1024 + i * 16);
  p.post();
  const s = await reap(cqA, 4);
  t.same(
    [0, 1, 2, 3].map((i) => field(s, i, WC.WR_ID)),
    [0, 1, 2, 3],
  );
  t.same(dst.subarray(1024, 1088), src.subarray(0, 64));

  // Two SGEs gathered into one WRITE.
  const g = a.prepareSend([
    {
      wrId: 9,
      opcode: 'RDMA_WRITE',
      sge: [
        { mr: mrS, offset: 100, length: 10 },
        { mr: mrS, offset: 300, length: 6 },
      ],
      remoteAddr: mrD.addr + 2048,
      rkey: mrD.rkey,
    },
  ]);
  g.setSge(0, 1, 400, 6).post();
  await reap(cqA, 1);
  t.same(dst.subarray(2048, 2064), Uint8Array.from([...src.subarray(100, 110), ...src.subarray(400, 406)]));
  t.throws(() => g.setSge(0, 2, 0, 1), RangeError, 'no third SGE');

  // SEND with immediate, the immediate changed per post.
  b.postRecv([
    { wrId: 77, sge: [{ mr: mrD, offset: 4096, length: 64 }] },
    { wrId: 78, sge: [{ mr: mrD, offset: 4160, length: 64 }] },
  ]);
  const send = a.prepareSend([{ wrId: 5, opcode: 'SEND_WITH_IMM', sge: [{ mr: mrS, offset: 0, length: 32 }], imm: 1 }]);
  send.setImm(0, 0xdeadbeef).post();
  send.setImm(0, 42).setSge(0, 0, 32, 8).post();
  await reap(cqA, 2);
  const rcv = await reap(cqB, 2);
  t.same([field(rcv, 0, WC.WR_ID), field(rcv, 1, WC.WR_ID)], [77, 78]);
  t.same([field(rcv, 0, WC.IMM), field(rcv, 1, WC.IMM)], [0xdeadbeef, 42]);
  t.ok(field(rcv, 0, WC.FLAGS) & WC.WITH_IMM, 'the immediate flag');
  t.equal(rdma.wcOpcodeName(field(rcv, 0, WC.OPCODE)), 'RECV');
  t.same([field(rcv, 0, WC.BYTE_LEN), field(rcv, 1, WC.BYTE_LEN)], [32, 8]);
  t.same(dst.subarray(4160, 4168), src.subarray(32, 40));

  // Fetch-and-add: the operand is fixed at prepare time, the target changes.
  const view = new DataView(dst.buffer);
  view.setBigUint64(6144, 10n, true);
  view.setBigUint64(6152, 20n, true);
  const faa = a.prepareSend([
    {
      wrId: 1,
      opcode: 'ATOMIC_FETCH_AND_ADD',
      sge: [{ mr: mrS, offset: 7000, length: 8 }],
      remoteAddr: mrD.addr + 6144,
      rkey: mrD.rkey,
      compareAdd: 5n,
    },
  ]);
  faa.post();
  await reap(cqA, 1);
  faa.setRemoteAddr(0, mrD.addr + 6152).post();
  await reap(cqA, 1);
  t.equal(view.getBigUint64(6144, true), 15n);
  t.equal(view.getBigUint64(6152, true), 25n);
  t.equal(new DataView(src.buffer).getBigUint64(7000, true), 20n, 'the fetched old value');
});

void t.test('bad values are refused, nothing is posted', async (t) => {
  using ctx = rdma.Context.open(DEV);
  const { pd, cqA, a } = pair(ctx);
  const mem = new Uint8Array(4096);
  const mr = pd.registerMemory(mem);
  const wr: rdma.SendWr = {
    wrId: 1,
    opcode: 'RDMA_WRITE',
    sge: [{ mr, length: 8 }],
    remoteAddr: mr.addr,
    rkey: mr.rkey,
  };
  const p = a.prepareSend([wr]);
  // Each prepared send gets one bad value; post() refuses it.
  const bad: [string, (q: rdma.PreparedSend) => void][] = [
    ['wrId NaN', (q) => q.setWrId(0, NaN)],
    ['wrId negative', (q) => q.setWrId(0, -1)],
    ['wrId fraction', (q) => q.setWrId(0, 1.5)],
    ['wrId above 2^53', (q) => q.setWrId(0, 2 ** 54)],
    ['remoteAddr negative', (q) => q.setRemoteAddr(0, -4096)],
    ['rkey above 32 bits', (q) => q.setRemoteAddr(0, mr.addr, 2 ** 32)],
    ['sge past the MR', (q) => q.setSge(0, 0, 4090, 8)],
    ['sge offset past the MR', (q) => q.setSge(0, 0, 5000, 0)],
    ['imm above 32 bits', (q) => q.setImm(0, 2 ** 33)],
  ];
  for (const [what, set] of bad) {
    const q = a.prepareSend([wr]);
    set(q);
    t.throws(() => q.post(), RangeError, what);
    q.close();
  }
  t.throws(() => p.setWrId(1, 5), RangeError, 'index past the batch');
  t.throws(() => p.setWrId(-1, 5), RangeError, 'negative index');
  t.throws(() => p.post(2), RangeError, 'count past the batch');
  t.equal(cqA.pollInto(new Float64Array(WC.SLOTS)), 0, 'nothing was posted');
  p.post(0);
  t.equal(cqA.pollInto(new Float64Array(WC.SLOTS)), 0, 'post(0) posts nothing');
  // At prepare time: the same checks as postSend, and the double limits.
  t.throws(() => a.prepareSend([]), RangeError);
  t.throws(() => a.prepareSend([{ ...wr, opcode: 'NOPE' as rdma.SendOpcode }]), TypeError);
  t.throws(() => a.prepareSend([{ ...wr, sge: [{ mr, length: 8192 }] }]), RangeError);
  t.throws(() => a.prepareSend([{ ...wr, wrId: 2n ** 60n }]), RangeError);
  t.throws(() => a.prepareSend([{ ...wr, rkey: 2 ** 32 }]), RangeError);
  t.throws(() => a.prepareSend([{ ...wr, sge: [{ mr: {} as rdma.MemoryRegion, length: 8 }] }]), TypeError);
  t.throws(() => a.prepareSend('x' as unknown as rdma.SendWr[]), TypeError);
  // pollInto's own misuse.
  t.throws(() => cqA.pollInto(new Uint8Array(64) as unknown as Float64Array), TypeError);
  t.throws(() => cqA.pollInto(new Float64Array(WC.SLOTS - 1)), RangeError);
  t.throws(() => cqA.pollInto(new Float64Array(WC.SLOTS), 1000), RangeError);
  // A post the provider refuses (a QP still in RESET) is a SystemError naming the first refused request.
  const fresh = pd.createQp(cqA, cqA);
  const early = fresh.prepareSend([wr, wr]);
  t.throws(
    () => early.post(),
    { name: 'SystemError', syscall: 'ibv_post_send', failedIndex: 0 },
    'posting on a QP in RESET',
  );
});

void t.test('an empty poll is one shared frozen array', async (t) => {
  using ctx = rdma.Context.open(DEV);
  const cq = ctx.createCq(16);
  const e1 = cq.poll(),
    e2 = cq.poll(4);
  t.equal(e1.length, 0);
  t.equal(e1, e2, 'the same array');
  t.ok(Object.isFrozen(e1));
  t.not(cq.pollSpin(1, 0), e1, 'pollSpin returns a fresh array');
});

void t.test('lifetime: a prepared send closes with its QP, MRs and AHs, and keeps them alive', async (t) => {
  using ctx = rdma.Context.open(DEV);
  const { pd, cqA, a } = pair(ctx);
  const mem = Region.anonymous(4096);
  const dst = Region.anonymous(4096);
  mem.bytes().fill(9);
  const mr = pd.registerMemory(mem);
  const mrD = pd.registerMemory(dst);
  const p = a.prepareSend([
    { wrId: 1, opcode: 'RDMA_WRITE', sge: [{ mr, length: 8 }], remoteAddr: mrD.addr, rkey: mrD.rkey },
  ]);
  const q = a.prepareSend([
    { wrId: 2, opcode: 'RDMA_WRITE', sge: [{ mr: mrD, length: 8 }], remoteAddr: mr.addr, rkey: mr.rkey },
  ]);
  mr.close();
  t.ok(p.closed, 'closing its MR closed it');
  t.throws(() => p.post(), { name: 'StateError', code: 'ERR_CLOSED' });
  t.throws(() => p.setWrId(0, 1).post(), { code: 'ERR_CLOSED' });
  t.notOk(q.closed, 'another prepared send lives on');
  p.close();
  p.close();
  a.close();
  t.ok(q.closed, 'closing its QP closed it');
  t.throws(() => q.post(), { code: 'ERR_CLOSED' });
  cqA.close();
  t.throws(
    () => cqA.pollInto(new Float64Array(WC.SLOTS)),
    { name: 'StateError', code: 'ERR_CLOSED' },
    'pollInto on a closed CQ',
  );

  // The prepared send alone keeps its MR (and the memory under it) alive through GC.
  const { pd: pd2, cqA: cq2, a: a2, b: b2 } = pair(ctx); // b2, the peer, must stay referenced too
  const targetMem = Region.anonymous(4096);
  const target = targetMem.bytes(0, 64);
  const mrT = pd2.registerMemory(targetMem, { length: 64 });
  const make = () => {
    const src = new Uint8Array(64).fill(0x5a);
    return a2.prepareSend([
      {
        wrId: 3,
        opcode: 'RDMA_WRITE',
        sge: [{ mr: pd2.registerMemory(src), length: 64 }],
        remoteAddr: mrT.addr,
        rkey: mrT.rkey,
      },
    ]);
  };
  const kept = make();
  for (let i = 0; i < 5; i++) {
    gc?.();
    await new Promise((r) => setTimeout(r, 20));
  }
  kept.post();
  const s = await reap(cq2, 1);
  t.equal(field(s, 0, WC.STATUS), WC.SUCCESS, 'its MR was not deregistered by GC');
  t.same(target, new Uint8Array(64).fill(0x5a));
  {
    using scoped = a2.prepareSend([
      { wrId: 4, opcode: 'RDMA_WRITE', sge: [{ mr: mrT, length: 8 }], remoteAddr: mrT.addr, rkey: mrT.rkey },
    ]);
    scoped.post();
  }
  await reap(cq2, 1);
  t.notOk(b2.closed);
});

void t.test('UD: a prepared datagram closes with its address handle', async (t) => {
  using ctx = rdma.Context.open(DEV);
  const pd = ctx.allocPd();
  const cq = ctx.createCq(64);
  const s = pd.createQp(cq, cq, { type: 'UD' });
  const r = pd.createQp(cq, cq, { type: 'UD' });
  s.readyUd({ qkey: 0x11 });
  r.readyUd({ qkey: 0x11 });
  const buf = new Uint8Array(8192);
  buf.set([1, 2, 3, 4], 0);
  const mr = pd.registerMemory(buf);
  r.postRecv([{ wrId: 50, sge: [{ mr, offset: 4096, length: 40 + 64 }] }]);
  const ah = pd.createAh({ gid: ctx.queryGid(1, GID_INDEX), sgidIndex: GID_INDEX });
  const dgram = s.prepareSend([
    { wrId: 51, opcode: 'SEND', sge: [{ mr, length: 4 }], ah, remoteQpn: r.qpNum, remoteQkey: 0x11 },
  ]);
  dgram.post();
  const got = await reap(cq, 2);
  const ids = [field(got, 0, WC.WR_ID), field(got, 1, WC.WR_ID)].sort();
  t.same(ids, [50, 51]);
  t.same([...buf.subarray(4096 + 40, 4096 + 44)], [1, 2, 3, 4], 'the datagram after the 40-byte GRH');
  ah.close();
  t.ok(dgram.closed, 'closing the AH closed it');
  t.throws(() => dgram.post(), { code: 'ERR_CLOSED' });
});

void t.test('getters that close things while a work request is read: typed errors, no crash', async (t) => {
  using ctx = rdma.Context.open(DEV);
  const { pd, cqA, a } = pair(ctx);
  const mem = new Uint8Array(4096);
  const mr = pd.registerMemory(mem);
  const closing = (what: { close(): void }) =>
    ({
      wrId: 1,
      opcode: 'RDMA_WRITE',
      sge: [{ mr, length: 8 }],
      remoteAddr: mr.addr,
      get rkey() {
        what.close();
        return mr.rkey;
      },
    }) as unknown as rdma.SendWr;
  const mr2 = pd.registerMemory(new Uint8Array(64));
  const wrMr2 = (m: rdma.MemoryRegion) => ({
    wrId: 2,
    opcode: 'RDMA_WRITE' as const,
    sge: [{ mr: m, length: 8 }],
    remoteAddr: mr.addr,
    rkey: mr.rkey,
  });
  // The second WR's getter closes the MR the first WR uses.
  t.throws(() => a.postSend([wrMr2(mr2), closing(mr2)]), { code: 'ERR_CLOSED' }, 'an MR closed mid-read');
  const thrower = {
    ...wrMr2(mr),
    get imm(): number {
      throw new Error('boom');
    },
  };
  t.throws(() => a.postSend([thrower]), /boom/, 'a getter that throws');
  t.throws(() => a.prepareSend([closing(a)]), { code: 'ERR_CLOSED' }, 'the QP closed mid-read (prepare)');
  const { a: a2 } = pair(ctx);
  t.throws(() => a2.postSend([closing(a2)]), { code: 'ERR_CLOSED' }, 'the QP closed mid-read (post)');
  t.equal(cqA.pollInto(new Float64Array(8 * WC.SLOTS)), 0, 'nothing posted');
});

void t.test('toRtr/toRts with more outstanding READs: 16 in flight on one QP', async (t) => {
  using ctx = rdma.Context.open(DEV);
  t.throws(() => pair(ctx, { maxRdAtomic: 300 }), RangeError);
  const max = Math.min(16, ctx.query().maxQpRdAtom);
  const { pd, cqA, a } = pair(ctx, { maxRdAtomic: max });
  const remoteMem = Region.anonymous(16 * 256);
  const remote = remoteMem.bytes().map((_, i) => (i * 31) & 0xff);
  remoteMem.bytes().set(remote);
  const local = new Uint8Array(16 * 256);
  const mrR = pd.registerMemory(remoteMem),
    mrL = pd.registerMemory(local);
  const reads = a.prepareSend(
    Array.from({ length: 16 }, (_, i) => ({
      wrId: i,
      opcode: 'RDMA_READ' as const,
      sge: [{ mr: mrL, offset: i * 256, length: 256 }],
      remoteAddr: mrR.addr + i * 256,
      rkey: mrR.rkey,
    })),
  );
  reads.post();
  const s = await reap(cqA, 16);
  t.ok(
    [...Array(16).keys()].every((i) => field(s, i, WC.STATUS) === WC.SUCCESS),
    `all 16 READs completed (maxRdAtomic ${max})`,
  );
  t.same(local, remote);
});

void t.test('the plain postSend takes the typed wrappers without copying, and checks them', async (t) => {
  using ctx = rdma.Context.open(DEV);
  const { pd, cqA, a } = pair(ctx);
  const mem = Region.anonymous(4096);
  mem.bytes().fill(3);
  const mr = pd.registerMemory(mem);
  const wrs = [
    { wrId: 2n ** 63n, opcode: 'RDMA_WRITE', sge: [{ mr, offset: 8, length: 8 }], remoteAddr: mr.addr, rkey: mr.rkey },
  ] as const;
  a.postSend(wrs);
  const [c] = await (async () => {
    for (;;) {
      const got = cqA.poll();
      if (got.length) return got;
      await new Promise((r) => setImmediate(r));
    }
  })();
  t.match(c, { ok: true, wrId: 2n ** 63n, opcode: 'RDMA_WRITE', byteLen: 8 });
  a.postSend([{ ...wrs[0], wrId: 3, sge: [{ mr: mr.raw as unknown as rdma.MemoryRegion, length: 8 }] }]);
  t.equal(field(await reap(cqA, 1), 0, WC.WR_ID), 3, 'the native object works too');
  t.throws(() => a.postSend([{ ...wrs[0], rkey: -1 }]), RangeError);
  t.throws(() => a.postSend([{ ...wrs[0], imm: 2 ** 32 }]), RangeError);
  t.throws(() => a.postSend([5 as unknown as rdma.SendWr]), TypeError);
  t.throws(() => a.postSend([{ ...wrs[0], sge: [{ mr, length: -1 }] }]), RangeError);
  t.throws(() => a.postSend([{ ...wrs[0], sge: [{ mr, length: undefined as unknown as number }] }]), TypeError);
});

void t.test('arbitrary calls on raw prepared sends and pollInto: typed errors only', async (t) => {
  using ctx = rdma.Context.open(DEV);
  const { pd, cqA, a } = pair(ctx);
  const mr = pd.registerMemory(new Uint8Array(4096));
  const R = (
    native as unknown as {
      rdma: Record<string, new (...args: unknown[]) => Record<string, (...args: unknown[]) => unknown>>;
    }
  ).rdma;
  const values: unknown[] = [
    undefined,
    null,
    0,
    1,
    -1,
    2 ** 53,
    NaN,
    1.5,
    2n ** 64n,
    'x',
    {},
    [],
    [{}],
    new Float64Array(0),
    new Float64Array(4),
    new Float64Array(64),
    new BigUint64Array(64),
    new Uint32Array(64),
    new ArrayBuffer(64),
    mr.raw,
    a.raw,
    cqA.raw,
  ];
  const { rnd, pick } = seeded(7);
  let errors = 0;
  const preps: Record<string, (...args: unknown[]) => unknown>[] = [];
  for (let i = 0; i < 3000; i++) {
    try {
      if (rnd() < 0.1) {
        const wr = {
          wrId: pick([0, 1, 2 ** 60, -1]),
          opcode: pick(['RDMA_READ', 'RDMA_WRITE', 'SEND', 'x']),
          sge: pick([[{ mr: mr.raw, length: pick([0, 8, 5000]) }], [], 'x', undefined]),
          remoteAddr: pick(values),
          rkey: pick([0, 1, 2 ** 32]),
        };
        preps.push(new R.RdmaPrepared(pick([a.raw, a.raw, mr.raw, {}]), pick([[wr], [wr, wr], wr, []])));
      } else if (preps.length && rnd() < 0.7) {
        const p = pick(preps);
        const m = pick(['post', 'layout', 'read', 'close', 'isClosed']);
        p[m](pick(values), pick(values));
      } else {
        cqA.raw.pollInto(pick(values) as Float64Array, pick(values) as number);
      }
    } catch (e) {
      if (!(e instanceof Error)) throw new Error('a non-Error was thrown');
      errors++;
    }
    if (i === 1500) mr.close(); // everything referring to it is closed from here on
  }
  t.ok(errors > 0, `${errors} typed errors, no crash`);
  t.ok(
    preps.every((p) => p.isClosed()),
    'closing the MR closed every prepared send',
  );
});

void t.test('constants agree with the binding', async (t) => {
  const raw = native.rdma;
  t.equal(WC.SLOTS, raw.WC_SLOTS);
  t.equal(WC.WITH_IMM, raw.WC_WITH_IMM);
  t.equal(rdma.wcStatusName(0), 'success');
  t.equal(rdma.wcOpcodeName(2), 'RDMA_READ');
  t.equal(rdma.wcOpcodeName(129), 'RECV_RDMA_WITH_IMM');
});
