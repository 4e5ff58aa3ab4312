// Inside the soft-RoCE VM: completions awaited through a completion channel
// on the event loop, native busy-polling, and errors as typed completions and
// async events (no crash).
import t from 'tap';
import { execSync } from 'node:child_process';
import { Region } from '../../../lib/uffd/index.js';
import * as rdma from '../../../lib/rdma/index.js';
import { until } from '../../../testkit/wait.js';
import { DEV } from './env.js';
import { loopbackPair } from './pair.js';

void t.test('completions awaited through a completion channel', async (t) => {
  using ctx = rdma.Context.open(DEV);
  const ch = ctx.createCompChannel();
  const { pd, cqA, cqB, a, b } = loopbackPair(ctx, { channel: ch });
  const buf = new Uint8Array(8192);
  const mr = pd.registerMemory(buf);
  const got = cqB.next(); // waits on the loop: nothing has been posted yet
  b.postRecv([{ wrId: 1, sge: [{ mr, offset: 4096, length: 4096 }] }]);
  buf.fill(9, 0, 100);
  a.postSend([{ wrId: 2, opcode: 'SEND', sge: [{ mr, length: 100 }] }]);
  const [recv] = await got;
  t.match(recv, { ok: true, opcode: 'RECV', byteLen: 100 });
  t.ok(buf.subarray(4096, 4196).every((x) => x === 9));
  t.match((await cqA.next())[0], { ok: true, opcode: 'SEND' });
  // Many rounds through the channel.
  for (let i = 0; i < 50; i++) {
    b.postRecv([{ wrId: i, sge: [{ mr, offset: 4096, length: 16 }] }]);
    a.postSend([{ wrId: i, opcode: 'SEND', sge: [{ mr, length: 16 }] }]);
    const [r] = await cqB.next();
    t.equal(r.wrId, BigInt(i));
    await cqA.next();
  }
  await t.rejects(ctx.createCq(8).next(), { code: 'ERR_INVALID_ARG_TYPE' }, 'next() needs a channel');
  ctx.close();
  t.ok(ch.closed && cqA.closed, 'closing the context closed the channel and its CQs');
});

void t.test('native busy-poll', async (t) => {
  using ctx = rdma.Context.open(DEV);
  const { pd, cqA, a, b } = loopbackPair(ctx);
  const mem = Region.anonymous(4096); // the WRITE's target: memory the addon owns
  t.teardown(() => mem.close());
  const mr = pd.registerMemory(mem);
  a.postSend([{ wrId: 5, opcode: 'RDMA_WRITE', sge: [{ mr, length: 8 }], remoteAddr: mr.addr, rkey: mr.rkey }]);
  let c: rdma.Completion[] = [];
  // Spin until the completion is there (the deadline only turns a hang into a failure).
  for (const end = Date.now() + 60_000; c.length === 0 && Date.now() < end;) c = cqA.pollSpin(4, 1000);
  t.match(c[0], { ok: true, wrId: 5n });
  t.same(cqA.pollSpin(4, 10), [], 'returns empty after the bounded spin');
  b.close();
  ctx.close();
});

void t.test('a bad rkey becomes an error completion, the QP goes to ERR', async (t) => {
  using ctx = rdma.Context.open(DEV);
  const ch = ctx.createCompChannel();
  const { pd, cqA, a, b } = loopbackPair(ctx, { channel: ch });
  const mr = pd.registerMemory(new Uint8Array(4096));
  a.postSend([
    { wrId: 9, opcode: 'RDMA_WRITE', sge: [{ mr, length: 8 }], remoteAddr: mr.addr, rkey: mr.rkey ^ 0xff00 },
  ]);
  const [c] = await cqA.next();
  t.equal(c.ok, false);
  t.match(c.status, /remote access error/i);
  t.equal(a.state, 'ERR');
  // Posting more on the broken QP: flushed with an error, never a crash.
  a.postSend([{ wrId: 10, opcode: 'RDMA_WRITE', sge: [{ mr, length: 8 }], remoteAddr: mr.addr, rkey: mr.rkey }]);
  const [f] = await cqA.next();
  t.match(f, { ok: false, wrId: 10n });
  t.ok(b.state === 'RTS' || b.state === 'ERR');
  ctx.close();
});

void t.test('port down and up arrive as async events', async (t) => {
  using ctx = rdma.Context.open(DEV);
  const events: rdma.AsyncEvent[] = [];
  ctx.events.on('event', (ev) => events.push(ev));
  // The first event of `type`, once it arrived (the deadline only turns a hang into a failure).
  const waitFor = async (type: RegExp) => {
    await until(() => events.some((e) => type.test(e.type)), 60_000, `an event ${String(type)}`);
    return events.find((e) => type.test(e.type));
  };
  execSync('ip link set eth0 down');
  t.match(await waitFor(/port error/i), { port: 1 }, JSON.stringify(events));
  execSync('ip link set eth0 up');
  t.match(await waitFor(/port active/i), { port: 1 }, JSON.stringify(events));
  await until(() => ctx.queryPort(1).state === 'ACTIVE', 60_000, 'the port is ACTIVE again');
  t.equal(ctx.queryPort(1).state, 'ACTIVE');
});
