// Inside the soft-RoCE VM: rdma_cm. Two processes connect by IP address and
// exchange their windows in the private data; RDMA WRITE/READ/SEND over the
// connection; reject, no listener, unreachable address, a peer killed, and
// misuse — all typed errors, no crash.
import t from 'tap';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { LineProcess } from '../../../testkit/line-process.js';
import * as rdma from '../../../lib/rdma/index.js';
import { DEV, HOST, PEER_WAIT_MS } from './env.js';

const peerScript = path.join(path.dirname(fileURLToPath(import.meta.url)), 'cm-peer.js');
let nextPort = 7471;

class Peer extends LineProcess {
  constructor(readonly port: number) {
    super(process.execPath, [peerScript, HOST, String(port)], { name: 'cm-peer', waitMs: PEER_WAIT_MS });
  }
}

function verbs(device: string) {
  const ctx = rdma.Context.open(device);
  const pd = ctx.allocPd();
  const cq = ctx.createCq(64);
  const qp = pd.createQp(cq, cq);
  return { ctx, pd, cq, qp };
}

async function completions(cq: rdma.CompletionQueue, n: number): Promise<rdma.Completion[]> {
  const out: rdma.Completion[] = [];
  const until = Date.now() + 20_000;
  while (out.length < n) {
    out.push(...cq.poll(n - out.length));
    if (Date.now() > until) throw new Error(`only ${out.length} of ${n} completions`);
    if (out.length < n) await new Promise((r) => setImmediate(r));
  }
  return out;
}

void t.test('two processes connect through rdma_cm; WRITE, READ and SEND over it; disconnect', async (t) => {
  const peer = new Peer(nextPort++);
  t.teardown(() => peer.proc.kill('SIGKILL'));
  t.equal(await peer.line(), 'listening');
  using ch = new rdma.CmEventChannel();
  const id = ch.createId();
  await id.resolve(HOST, peer.port);
  t.equal(id.device, DEV, 'the route names the device');
  t.match(id.info(), { peerAddress: HOST, peerPort: peer.port });
  const { ctx, pd, cq, qp } = verbs(id.device ?? DEV);
  t.teardown(() => ctx.close());
  const { privateData } = await id.connect(qp, { privateData: Buffer.from('hello from the client') });
  t.equal(await peer.line(), 'request hello from the client', 'the request carried our private data');
  t.equal(await peer.line(), 'established');
  t.equal(qp.state, 'RTS');
  t.ok(privateData && privateData.length >= 16, 'the reply carried the window');
  const addr = Number(privateData!.readBigUInt64LE(0));
  const rkey = privateData!.readUInt32LE(8);
  const length = privateData!.readUInt32LE(12);
  t.equal(length, 65536);

  const local = new Uint8Array(65536);
  const mr = pd.registerMemory(local);
  qp.postSend([{ wrId: 1, opcode: 'RDMA_READ', sge: [{ mr, length: 65536 }], remoteAddr: addr, rkey }]);
  const [read] = await completions(cq, 1);
  t.match(read, { ok: true, opcode: 'RDMA_READ', byteLen: 65536 }, `READ completed: ${read.status}`);
  t.ok(
    local.every((x, i) => x === ((i * 3) & 0xff)),
    'READ brought every byte of the peer window',
  );

  local.fill(1, 0, 4096);
  qp.postSend([{ wrId: 2, opcode: 'RDMA_WRITE', sge: [{ mr, length: 4096 }], remoteAddr: addr + 8192, rkey }]);
  t.match((await completions(cq, 1))[0], { ok: true, opcode: 'RDMA_WRITE' });
  t.equal(await peer.ask('sum 8192 4096'), 'sum 4096', 'WRITE landed in the peer process');

  id.disconnect();
  t.equal(await peer.line(), 'disconnected', 'the peer saw the disconnect');
  t.equal(qp.state, 'ERR', 'our QP went to the error state');
  id.disconnect(); // idempotent
  id.close();
  id.close();
  peer.proc.stdin.write('exit\n');
});

void t.test('in one process: listener and connector, request private data, reject, no listener', async (t) => {
  using ch = new rdma.CmEventChannel();
  const listener = ch.createId();
  const port = nextPort++;
  listener.listen('0.0.0.0', port);
  t.throws(() => listener.listen('0.0.0.0', port), { code: 'ERR_BUSY' });
  const requests: rdma.CmId[] = [];
  listener.on('request', (req) => {
    requests.push(req);
    if (req.request?.privateData?.subarray(0, 4).toString() === 'deny') req.reject(Buffer.from('go away'));
  });

  const refused = ch.createId();
  await refused.resolve(HOST, port);
  const a = verbs(refused.device ?? DEV);
  t.teardown(() => a.ctx.close());
  const e = (await t.rejects(refused.connect(a.qp, { privateData: Buffer.from('deny') }), {
    name: 'CmError',
    code: 'ECONNREFUSED',
    syscall: 'rdma_connect',
    event: 'REJECTED',
  })) as unknown as rdma.CmError;
  t.equal(e.privateData?.subarray(0, 7).toString(), 'go away', 'the reject carried its private data');
  t.ok(requests[0]?.closed, 'a rejected request closes');
  refused.close();

  // Accept in-process: both QPs on the same device.
  const client = ch.createId();
  await client.resolve(HOST, port);
  const b = verbs(client.device ?? DEV);
  const s = verbs(DEV);
  t.teardown(() => {
    b.ctx.close();
    s.ctx.close();
  });
  const accepted = new Promise<void>((resolve, reject) => {
    listener.once('request', (req) => {
      t.equal(req.request?.privateData?.subarray(0, 2).toString(), 'hi');
      req.accept(s.qp, { privateData: Buffer.from('welcome') }).then(resolve, reject);
    });
  });
  const [{ privateData }] = await Promise.all([client.connect(b.qp, { privateData: Buffer.from('hi') }), accepted]);
  t.equal(privateData?.subarray(0, 7).toString(), 'welcome');
  const buf = new Uint8Array(4096);
  const mrB = b.pd.registerMemory(buf);
  const mrS = s.pd.registerMemory(new Uint8Array(4096));
  s.qp.postRecv([{ wrId: 9, sge: [{ mr: mrS, length: 4096 }] }]);
  buf.fill(7, 0, 100);
  b.qp.postSend([{ wrId: 1, opcode: 'SEND_WITH_IMM', imm: 77, sge: [{ mr: mrB, length: 100 }] }]);
  t.match((await completions(s.cq, 1))[0], { ok: true, opcode: 'RECV', byteLen: 100, imm: 77 });
  t.ok(!mrS.closed && !mrB.closed, 'the MRs (referenced until here, or GC could close them) are open');

  // No listener on that port: refused by the peer's CM.
  const nobody = ch.createId();
  await nobody.resolve(HOST, nextPort++);
  const c = verbs(DEV);
  t.teardown(() => c.ctx.close());
  await t.rejects(
    nobody.connect(c.qp, { timeoutMs: 20_000 }),
    { name: 'CmError', code: 'ECONNREFUSED' },
    'no listener: refused',
  );
  ch.close();
  t.ok(listener.closed && client.closed && nobody.closed, 'closing the channel closed its ids');
  t.throws(() => listener.info(), { code: 'ERR_CLOSED' });
  t.throws(() => ch.createId(), { code: 'ERR_CLOSED' });
});

void t.test('unreachable address and misuse: typed errors', async (t) => {
  using ch = new rdma.CmEventChannel();
  const id = ch.createId();
  await t.rejects(
    id.resolve('10.0.2.99', 7000, { timeoutMs: 500 }),
    { name: /Error/, syscall: /rdma_resolve_(addr|route)/ },
    'no such host',
  );
  const fresh = ch.createId();
  const { ctx, qp } = verbs(DEV);
  t.teardown(() => ctx.close());
  await t.rejects(fresh.connect(qp), { name: 'SystemError', syscall: 'rdma_init_qp_attr' }, 'connect before resolve');
  await t.rejects(fresh.accept(qp), { code: 'ERR_UNSUPPORTED' }, 'accept on an id that is not a request');
  t.throws(() => fresh.listen('not-an-ip', 1), { code: 'ERR_INVALID_ARG_TYPE' });
  await t.rejects(fresh.resolve(HOST, 70000), { code: 'ERR_OUT_OF_RANGE' });
  const busy = ch.createId();
  const p = busy.resolve(HOST, 7999);
  await t.rejects(busy.resolve(HOST, 7999), { code: 'ERR_BUSY' }, 'one step at a time');
  busy.close();
  await t.rejects(p, { code: 'ERR_CLOSED' }, 'closing fails the pending step');
  await t.rejects(busy.resolve(HOST, 7999), { code: 'ERR_CLOSED' });
});

void t.test('a peer killed while connected: disconnected event, error completions, no crash', async (t) => {
  const peer = new Peer(nextPort++);
  t.teardown(() => peer.proc.kill('SIGKILL'));
  t.equal(await peer.line(), 'listening');
  using ch = new rdma.CmEventChannel();
  const id = ch.createId();
  await id.resolve(HOST, peer.port);
  const { ctx, pd, cq, qp } = verbs(DEV);
  t.teardown(() => ctx.close());
  const { privateData } = await id.connect(qp);
  await peer.line();
  await peer.line();
  const addr = Number(privateData!.readBigUInt64LE(0));
  const rkey = privateData!.readUInt32LE(8);
  const disconnected = new Promise<void>((r) => id.once('disconnected', () => r()));
  peer.proc.kill('SIGKILL');
  await disconnected;
  t.pass("the peer's death arrived as a disconnect");
  t.equal(qp.state, 'ERR', 'the QP went to the error state');
  const mr = pd.registerMemory(new Uint8Array(4096));
  qp.postSend([{ wrId: 3, opcode: 'RDMA_READ', sge: [{ mr, length: 4096 }], remoteAddr: addr, rkey }]);
  const [c] = await completions(cq, 1);
  t.match(c, { ok: false, wrId: 3n }, `a READ after the peer died completes in error (${c.status})`);
});
