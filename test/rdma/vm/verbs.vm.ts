// Runs inside the soft-RoCE VM (test/rdma/softroce.test.ts drives it):
// verbs on rxe0 with an RC queue-pair pair looped back through the NIC.
import t from 'tap';
import { Region } from '../../../lib/uffd/index.js';
import { SosError, SystemError } from '../../../lib/errors.js';
import * as rdma from '../../../lib/rdma/index.js';
import { native } from '../../../lib/native/index.js';
import { DEV, GID_INDEX, HOST } from './env.js';
import { connectRc, loopbackPair } from './pair.js';

async function completions(cq: rdma.CompletionQueue, n: number, ms = 20_000): Promise<rdma.Completion[]> {
  const out: rdma.Completion[] = [];
  const until = Date.now() + ms;
  while (out.length < n) {
    out.push(...cq.poll(Math.min(256, n - out.length)));
    if (Date.now() > until) throw new Error(`only ${out.length} of ${n} completions`);
    if (out.length < n) await new Promise((r) => setImmediate(r));
  }
  return out;
}

void t.test('device, port and GID table', async (t) => {
  t.ok(rdma.devices().some((d) => d.name === DEV));
  using ctx = rdma.Context.open(DEV);
  const attr = ctx.query();
  t.ok(attr.maxQp > 0 && attr.maxMr > 0 && attr.physPortCnt >= 1);
  const port = ctx.queryPort(1);
  t.equal(port.state, 'ACTIVE');
  t.equal(port.linkLayer, 'ethernet');
  t.equal(ctx.queryGid(1, GID_INDEX), `::ffff:${HOST}`);
  t.throws(() => rdma.Context.open('nope0'), { code: 'ENODEV', syscall: 'ibv_open_device' });
});

void t.test('RC: WRITE, READ back, SEND/RECV with immediate, WRITE with immediate, atomics', async (t) => {
  using ctx = rdma.Context.open(DEV);
  const { pd, cqA, cqB, a, b } = loopbackPair(ctx, {
    cqDepth: 512,
    qpA: { maxSendWr: 256, maxRecvWr: 64 },
    qpB: { maxSendWr: 256, maxRecvWr: 64 },
  });
  t.equal(a.state, 'RTS');
  const src = Region.anonymous(1 << 16);
  const dst = Region.anonymous(1 << 16);
  const s = src.bytes();
  for (let i = 0; i < s.length; i++) s[i] = (i * 13 + 5) & 0xff;
  const mrA = pd.registerMemory(src);
  const mrB = pd.registerMemory(dst, { access: ['local-write', 'remote-write', 'remote-read', 'remote-atomic'] });

  a.postSend([
    { wrId: 1, opcode: 'RDMA_WRITE', sge: [{ mr: mrA, length: 4096 }], remoteAddr: mrB.addr, rkey: mrB.rkey },
  ]);
  const [w] = await completions(cqA, 1);
  t.match(w, { ok: true, opcode: 'RDMA_WRITE', wrId: 1n });
  t.equal(
    Buffer.compare(Buffer.from(dst.bytes(0, 4096)), Buffer.from(s.subarray(0, 4096))),
    0,
    'WRITE landed byte for byte',
  );

  const back = pd.registerMemory(new Uint8Array(4096));
  a.postSend([
    { wrId: 2, opcode: 'RDMA_READ', sge: [{ mr: back, length: 4096 }], remoteAddr: mrB.addr, rkey: mrB.rkey },
  ]);
  t.match((await completions(cqA, 1))[0], { ok: true, opcode: 'RDMA_READ', byteLen: 4096 });

  const inbox = new Uint8Array(256);
  const mrIn = pd.registerMemory(inbox);
  b.postRecv([{ wrId: 7, sge: [{ mr: mrIn, length: 256 }] }]);
  a.postSend([{ wrId: 3, opcode: 'SEND_WITH_IMM', imm: 0xdeadbeef, sge: [{ mr: mrA, offset: 100, length: 200 }] }]);
  const [recv] = await completions(cqB, 1);
  t.match(recv, { ok: true, opcode: 'RECV', byteLen: 200, imm: 0xdeadbeef, wrId: 7n });
  t.equal(Buffer.compare(Buffer.from(inbox.subarray(0, 200)), Buffer.from(s.subarray(100, 300))), 0, 'SEND payload');
  await completions(cqA, 1);

  b.postRecv([{ wrId: 8 }]);
  a.postSend([
    {
      wrId: 4,
      opcode: 'RDMA_WRITE_WITH_IMM',
      imm: 42,
      sge: [{ mr: mrA, length: 64 }],
      remoteAddr: mrB.addr + 8192,
      rkey: mrB.rkey,
    },
  ]);
  t.match((await completions(cqB, 1))[0], { ok: true, opcode: 'RECV_RDMA_WITH_IMM', imm: 42 });
  await completions(cqA, 1);

  // Atomics on the first 8 bytes of dst: set it, fetch-and-add, compare-and-swap.
  const word = new DataView(dst.buffer, 0, 8); // a view, not a copy
  word.setBigUint64(0, 100n, true);
  const result = new BigUint64Array(1);
  const mrRes = pd.registerMemory(result);
  a.postSend([
    {
      wrId: 5,
      opcode: 'ATOMIC_FETCH_AND_ADD',
      compareAdd: 5,
      sge: [{ mr: mrRes, length: 8 }],
      remoteAddr: mrB.addr,
      rkey: mrB.rkey,
    },
  ]);
  await completions(cqA, 1);
  t.equal(result[0], 100n, 'fetch-and-add returns the old value');
  t.equal(word.getBigUint64(0, true), 105n);
  a.postSend([
    {
      wrId: 6,
      opcode: 'ATOMIC_CMP_AND_SWP',
      compareAdd: 105,
      swap: 7,
      sge: [{ mr: mrRes, length: 8 }],
      remoteAddr: mrB.addr,
      rkey: mrB.rkey,
    },
  ]);
  await completions(cqA, 1);
  t.equal(result[0], 105n);
  t.equal(word.getBigUint64(0, true), 7n, 'swapped');

  ctx.close(); // closes QPs, MRs, CQs and the PD first
  t.ok(a.closed && b.closed && mrA.closed && mrB.closed && pd.closed && cqA.closed && cqB.closed);
  src.close();
  dst.close();
});

void t.test('many work requests in flight, posted as one batch', async (t) => {
  using ctx = rdma.Context.open(DEV);
  const { pd, cqA, a } = loopbackPair(ctx, {
    cqDepth: 512,
    qpA: { maxSendWr: 256, maxRecvWr: 64 },
    qpB: { maxSendWr: 256, maxRecvWr: 64 },
  });
  const buf = Region.anonymous(1 << 20);
  const mr = pd.registerMemory(buf);
  const wrs: rdma.SendWr[] = [];
  for (let i = 0; i < 128; i++) {
    buf.bytes(i * 4096, 1)[0] = i;
    wrs.push({
      wrId: i,
      opcode: 'RDMA_WRITE',
      sge: [{ mr, offset: i * 4096, length: 4096 }],
      remoteAddr: mr.addr + 512 * 1024 + i * 4096,
      rkey: mr.rkey,
    });
  }
  a.postSend(wrs);
  const done = await completions(cqA, 128);
  t.ok(done.every((c) => c.ok));
  t.same(
    done.map((c) => Number(c.wrId)).sort((x, y) => x - y),
    [...Array(128).keys()],
  );
  t.ok(
    [...Array(128).keys()].every((i) => buf.bytes(512 * 1024 + i * 4096, 1)[0] === i),
    'every write landed',
  );
  ctx.close();
  buf.close();
});

void t.test('misuse: typed errors, no crash', async (t) => {
  const ctx = rdma.Context.open(DEV);
  const pd = ctx.allocPd();
  const cq = ctx.createCq(16);
  const qp = pd.createQp(cq, cq);
  const mem = new Uint8Array(4096);
  const mr = pd.registerMemory(mem);
  t.equal(qp.state, 'RESET');
  const e = t.throws(() =>
    qp.postSend([{ opcode: 'RDMA_WRITE', sge: [{ mr, length: 8 }], remoteAddr: 0, rkey: 0 }]),
  ) as SystemError;
  t.equal(e.syscall, 'ibv_post_send', 'posting on a RESET QP');
  const m = t.throws(() => qp.modify({ state: 'RTS' }), 'RESET → RTS is not a valid transition') as SystemError;
  t.equal(m.syscall, 'ibv_modify_qp');
  t.throws(
    () => qp.postSend([{ opcode: 'SEND', sge: [{ mr, offset: 4000, length: 200 }] }]),
    { code: 'ERR_OUT_OF_RANGE' },
    'sge outside its MR',
  );
  t.throws(() => qp.postSend([{ opcode: 'NOPE' as 'SEND' }]), { code: 'ERR_INVALID_ARG_TYPE' });
  t.throws(() => pd.registerMemory(mem, { access: ['everything' as 'local-write'] }), { code: 'ERR_INVALID_ARG_TYPE' });
  const region = Region.anonymous(4096);
  const mr2 = pd.registerMemory(region);
  t.equal(region.info().handles, 1);
  await t.rejects(region.unmap(0, 4096), { code: 'ERR_BUSY' }, 'registered memory cannot be unmapped');
  pd.close(); // a parent with children: they close first
  t.ok(qp.closed && mr.closed && mr2.closed);
  t.throws(() => qp.postSend([]), { code: 'ERR_CLOSED' });
  t.throws(() => mr.rkey, { code: 'ERR_CLOSED' });
  t.throws(() => pd.createQp(cq, cq), { code: 'ERR_CLOSED' });
  pd.close();
  mr.close();
  cq.close();
  ctx.close();
  ctx.close();
  t.throws(() => ctx.allocPd(), { code: 'ERR_CLOSED' });
  region.close();
});

void t.test('UD datagrams through an address handle', async (t) => {
  using ctx = rdma.Context.open(DEV);
  const pd = ctx.allocPd();
  const cqA = ctx.createCq(64);
  const cqB = ctx.createCq(64);
  const a = pd.createQp(cqA, cqA, { type: 'UD' });
  const b = pd.createQp(cqB, cqB, { type: 'UD' });
  a.readyUd({ qkey: 0x1111 });
  b.readyUd({ qkey: 0x2222 });
  t.equal(b.state, 'RTS');
  const ah = pd.createAh({ gid: ctx.queryGid(1, GID_INDEX), sgidIndex: GID_INDEX });
  const mem = new Uint8Array(8192);
  const mr = pd.registerMemory(mem);
  b.postRecv([{ wrId: 1, sge: [{ mr, offset: 4096, length: 40 + 512 }] }]); // UD receives carry a 40-byte GRH first
  mem.fill(0x5a, 0, 300);
  a.postSend([
    {
      wrId: 2,
      opcode: 'SEND_WITH_IMM',
      imm: 77,
      sge: [{ mr, length: 300 }],
      ah,
      remoteQpn: b.qpNum,
      remoteQkey: 0x2222,
    },
  ]);
  const [r] = await completions(cqB, 1);
  t.match(r, { ok: true, opcode: 'RECV', byteLen: 40 + 300, imm: 77, srcQp: a.qpNum });
  t.ok(
    mem.subarray(4096 + 40, 4096 + 340).every((x) => x === 0x5a),
    'datagram payload after the GRH',
  );
  t.throws(
    () => a.postSend([{ opcode: 'SEND', sge: [{ mr, length: 8 }], remoteQpn: b.qpNum }]),
    { code: 'ERR_INVALID_ARG_TYPE' },
    'UD sends need an address handle',
  );
  pd.close();
  t.ok(ah.closed, 'address handles close with their PD');
});

void t.test('a shared receive queue feeds several QPs; raw native ranges register', async (t) => {
  using ctx = rdma.Context.open(DEV);
  const { pd, cqA, a } = loopbackPair(ctx, {
    cqDepth: 512,
    qpA: { maxSendWr: 256, maxRecvWr: 64 },
    qpB: { maxSendWr: 256, maxRecvWr: 64 },
  });
  const srq = pd.createSrq({ maxWr: 16 });
  const cqS = ctx.createCq(64);
  const r1 = pd.createQp(cqS, cqS, { srq });
  const s1 = pd.createQp(cqA, cqA);
  connectRc(ctx, r1, s1);
  const region = Region.anonymous(8192);
  // Register the region's memory as a raw native range (address + length).
  const mr = pd.registerMemory({ address: region.address, length: region.size });
  srq.postRecv([
    { wrId: 11, sge: [{ mr, offset: 4096, length: 64 }] },
    { wrId: 12, sge: [{ mr, offset: 4160, length: 64 }] },
  ]);
  region.bytes(0, 16).fill(8);
  s1.postSend([{ opcode: 'SEND', sge: [{ mr, length: 16 }] }]);
  const [got] = await completions(cqS, 1);
  t.match(got, { ok: true, opcode: 'RECV', byteLen: 16, qpNum: r1.qpNum });
  t.ok([11n, 12n].includes(got.wrId), 'the receive came from the SRQ');
  t.equal(region.bytes(Number(got.wrId === 11n ? 4096 : 4160), 1)[0], 8);
  t.throws(
    () => pd.registerMemory({ address: 0x1000, length: 4096 }),
    { name: 'SystemError', syscall: 'ibv_reg_mr' },
    'an unmapped raw range is refused by the kernel',
  );
  srq.close();
  t.ok(r1.closed, 'closing the SRQ closed the QP that used it');
  a.close();
  ctx.close();
  region.close();
});

void t.test('scatter/gather lists, unsignaled requests, an MR deregistered while in use', async (t) => {
  using ctx = rdma.Context.open(DEV);
  const pd = ctx.allocPd();
  const cqA = ctx.createCq(512);
  const cqB = ctx.createCq(512);
  const a = pd.createQp(cqA, cqA, { maxSendWr: 256, maxSendSge: 4 });
  const b = pd.createQp(cqB, cqB, { maxRecvSge: 4 });
  connectRc(ctx, a, b);
  const src = new Uint8Array(4096).map((_, i) => i & 0xff);
  const dstMem = Region.anonymous(4096); // the WRITEs' target: memory the addon owns
  t.teardown(() => dstMem.close());
  const dst = dstMem.bytes();
  const mrS = pd.registerMemory(src);
  const mrD = pd.registerMemory(dstMem);
  // Three pieces of src gathered into one WRITE, landing contiguously.
  a.postSend([
    {
      wrId: 1,
      opcode: 'RDMA_WRITE',
      sge: [
        { mr: mrS, offset: 0, length: 10 },
        { mr: mrS, offset: 100, length: 10 },
        { mr: mrS, offset: 200, length: 10 },
      ],
      remoteAddr: mrD.addr,
      rkey: mrD.rkey,
    },
  ]);
  await completions(cqA, 1);
  t.same(
    [...dst.subarray(0, 30)],
    [...src.subarray(0, 10), ...src.subarray(100, 110), ...src.subarray(200, 210)],
    'gathered',
  );

  // Unsignaled requests produce no completion; the signaled one after them does.
  const wrs: rdma.SendWr[] = [];
  for (let i = 0; i < 9; i++)
    wrs.push({
      wrId: 100 + i,
      opcode: 'RDMA_WRITE',
      signaled: false,
      sge: [{ mr: mrS, length: 8 }],
      remoteAddr: mrD.addr + 1024 + i * 8,
      rkey: mrD.rkey,
    });
  wrs.push({
    wrId: 109,
    opcode: 'RDMA_WRITE',
    sge: [{ mr: mrS, length: 8 }],
    remoteAddr: mrD.addr + 1024 + 72,
    rkey: mrD.rkey,
  });
  a.postSend(wrs);
  const done = await completions(cqA, 1);
  t.same(
    done.map((c) => c.wrId),
    [109n],
    'only the signaled request completes',
  );
  t.same(cqA.poll(), []);

  // Deregister the source while reads into it are in flight: every request
  // still completes (successfully or with a typed error), nothing crashes.
  const ops: rdma.SendWr[] = [];
  for (let i = 0; i < 64; i++)
    ops.push({
      wrId: 200 + i,
      opcode: 'RDMA_READ',
      sge: [{ mr: mrS, offset: (i % 8) * 512, length: 512 }],
      remoteAddr: mrD.addr,
      rkey: mrD.rkey,
    });
  a.postSend(ops);
  mrS.close();
  t.ok(mrS.closed);
  const settled = await completions(cqA, 64);
  t.ok(
    settled.every((c) => typeof c.status === 'string'),
    `statuses: ${[...new Set(settled.map((c) => c.status))].join(', ')}`,
  );
  t.throws(
    () => a.postSend([{ opcode: 'SEND', sge: [{ mr: mrS, length: 8 }] }]),
    { code: 'ERR_CLOSED' },
    'a closed MR cannot be used',
  );
  ctx.close();
});

void t.test('JS memory: no remote access, kept alive by its MR, and a detached buffer fails every post', async (t) => {
  using ctx = rdma.Context.open(DEV);
  const { pd, cqA, cqB, a, b } = loopbackPair(ctx);
  const remote = /remote.*Region/;
  for (const flag of ['remote-write', 'remote-read', 'remote-atomic'] as const)
    t.throws(() => pd.registerMemory(new Uint8Array(4096), { access: ['local-write', flag] }), {
      code: 'ERR_INVALID_ARG_VALUE',
      message: remote,
    });
  t.throws(
    () => new native.rdma.RdmaMr(pd.raw, new ArrayBuffer(4096), 0, 4096, native.rdma.ACCESS_REMOTE_WRITE),
    { code: 'ERR_INVALID_ARG_TYPE', message: remote },
    'the native layer refuses it too',
  );
  const targetMem = Region.anonymous(4096);
  t.teardown(() => targetMem.close());
  const target = pd.registerMemory(targetMem);
  const write = (wrId: number, mr: rdma.MemoryRegion): rdma.SendWr => ({
    wrId,
    opcode: 'RDMA_WRITE',
    sge: [{ mr, length: 64 }],
    remoteAddr: target.addr,
    rkey: target.rkey,
  });

  // The MR alone keeps its buffer: after GC the WRITE still sends the bytes it held.
  const kept = pd.registerMemory(new Uint8Array(64).fill(0x33));
  for (let i = 0; i < 3; i++) {
    gc?.();
    await new Promise((r) => setImmediate(r));
  }
  a.postSend([write(1, kept)]);
  t.match((await completions(cqA, 1))[0], { ok: true, wrId: 1n });
  t.ok(
    targetMem.bytes(0, 64).every((x) => x === 0x33),
    'the MR kept its buffer alive',
  );

  const ab = new ArrayBuffer(4096);
  new Uint8Array(ab).fill(0x44);
  const mr = pd.registerMemory(ab);
  const prepared = a.prepareSend([write(2, mr)]);
  prepared.post();
  t.match((await completions(cqA, 1))[0], { ok: true, wrId: 2n });
  structuredClone(ab, { transfer: [ab] }); // detached: its memory now belongs to the clone
  t.equal(ab.byteLength, 0, 'detached');
  const detached = { name: 'StateError', code: 'ERR_MR_DETACHED', message: /detached/ };
  const e = t.throws(() => a.postSend([write(3, mr)]), detached, 'postSend') as unknown;
  t.ok(e instanceof SosError, 'a SosError');
  t.throws(() => b.postRecv([{ wrId: 4, sge: [{ mr, length: 64 }] }]), detached, 'postRecv');
  t.throws(() => prepared.post(), detached, 'a prepared send over it');
  t.throws(() => a.prepareSend([write(5, mr)]), detached, 'prepareSend');
  t.throws(() => pd.registerMemory(ab), { code: /^(ERR_MR_DETACHED|ERR_OUT_OF_RANGE)$/ }, 'registering it again');

  // A typed array whose buffer went through postMessage: the same.
  const view = new Uint8Array(new ArrayBuffer(8192), 4096, 64);
  const mrView = pd.registerMemory(view);
  const { port1, port2 } = new MessageChannel();
  port1.postMessage(view.buffer, [view.buffer]);
  port1.close();
  port2.close();
  t.throws(() => a.postSend([write(6, mrView)]), detached, 'a view of a buffer transferred by postMessage');

  t.same(cqA.poll(16), [], 'nothing was posted');
  t.same(cqB.poll(16), []);
  t.equal(a.state, 'RTS', 'the QP is unharmed');
  a.postSend([write(7, kept)]);
  t.match((await completions(cqA, 1))[0], { ok: true, wrId: 7n });
  mr.close();
  mrView.close();
});
