// Inside the soft-RoCE VM: a listening RdmaConnection (TCP `listen` and rdma_cm `listenCm`) allocates
// nothing for a peer that has not authenticated. Clients with a wrong secret, garbage, or (rdma_cm) a
// replayed request are refused, and the server process's QPs and MRs, as the kernel's resource tracker
// lists them (`rdma resource show`), do not grow; a good client still connects afterwards.
import t, { type Test } from 'tap';
import net from 'node:net';
import path from 'node:path';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { LineProcess } from '../../../testkit/line-process.js';
import { exec } from '../../../lib/exec.js';
import { Region } from '../../../lib/uffd/index.js';
import * as rdma from '../../../lib/rdma/index.js';
import { encodeRequest } from '../../../lib/rdma/cm-auth.js';
import { DEV, HOST, PEER_WAIT_MS } from './env.js';

const SECRET = 'thirty-two-bytes-at-least-for-tests!';
const WRONG = 'a-different-secret-of-32-bytes-or-more';
const peerScript = path.join(path.dirname(fileURLToPath(import.meta.url)), 'conn-peer.js');
let nextPort = 18700;

class Peer extends LineProcess {
  constructor(
    readonly mode: 'tcp' | 'cm',
    readonly port = nextPort++,
  ) {
    super(process.execPath, [peerScript, mode, HOST, String(port), SECRET], {
      name: `conn-peer ${mode}`,
      waitMs: PEER_WAIT_MS,
    });
  }
}

/** The QPs and MRs the kernel tracks for process `pid`. */
async function resources(pid: number): Promise<{ qp: number; mr: number }> {
  const count = async (kind: string) => {
    const rows = JSON.parse((await exec('rdma', ['-j', 'resource', 'show', kind])) || '[]') as unknown;
    return (Array.isArray(rows) ? rows.flat() : []).filter((r) => (r as { pid?: number }).pid === pid).length;
  };
  return { qp: await count('qp'), mr: await count('mr') };
}

async function startPeer(t: Test, mode: 'tcp' | 'cm'): Promise<Peer> {
  const peer = new Peer(mode);
  t.teardown(() => peer.proc.kill('SIGKILL'));
  t.equal(await peer.line(), 'listening');
  t.same(await resources(peer.proc.pid!), { qp: 0, mr: 0 }, 'listening holds no QP and no MR');
  return peer;
}

async function refusedWith(t: Test, peer: Peer, code: RegExp, what: string): Promise<void> {
  t.match(await peer.line(), code, `${what}: the server refused it`);
  t.same(await resources(peer.proc.pid!), { qp: 0, mr: 0 }, `${what}: the server allocated nothing`);
}

void t.test('TCP listen: a wrong secret and garbage are refused before any QP or MR exists', async (t) => {
  const peer = await startPeer(t, 'tcp');
  await t.rejects(rdma.RdmaConnection.connect(HOST, peer.port, { device: DEV, secret: WRONG, memory: 4096 }), {
    name: 'HandshakeError',
    code: /^ERR_(AUTH|PEER)$/,
  });
  await refusedWith(t, peer, /^refused ERR_(AUTH|PEER)$/, 'a wrong secret');
  for (const junk of [Buffer.alloc(64, 0xff), Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n')]) {
    const s = net.connect(peer.port, HOST);
    s.on('error', () => {});
    s.resume(); // read the server's hello: a paused socket never sees the end
    s.end(junk);
    await once(s, 'close');
    await refusedWith(t, peer, /^refused E[A-Z_]+$/, `garbage ${junk.subarray(0, 4).toString('hex')}`);
  }
  const local = Region.anonymous(1 << 20);
  t.teardown(() => local.close());
  const conn = await rdma.RdmaConnection.connect(HOST, peer.port, { device: DEV, secret: SECRET, memory: local });
  t.match(await peer.line(), /^connected \d+$/, 'a good client still connects');
  t.same(await resources(peer.proc.pid!), { qp: 1, mr: 1 }, 'its QP and MR, once authenticated');
  await conn.read(0, 4096);
  conn.close();
});

void t.test('rdma_cm listenCm: a wrong secret, garbage and a replayed request allocate nothing', async (t) => {
  const peer = await startPeer(t, 'cm');
  const pid = peer.proc.pid!;
  await t.rejects(rdma.RdmaConnection.connectCm(HOST, peer.port, { secret: WRONG, memory: 4096 }), {
    code: 'ERR_PEER',
    message: /ERR_AUTH/,
  });
  await refusedWith(t, peer, /^refused ERR_(AUTH|PEER)$/, 'a wrong secret');

  // A raw client: its own QP, and private data of its choosing.
  using ch = new rdma.CmEventChannel();
  using ctx = rdma.Context.open(DEV);
  const pd = ctx.allocPd();
  const cq = ctx.createCq(16);
  const qp = pd.createQp(cq, cq);
  const attempt = async (privateData: Buffer) => {
    qp.modify({ state: 'RESET' }); // reusable after a reject or a disconnect
    const id = ch.createId();
    await id.resolve(HOST, peer.port);
    return { id, connected: id.connect(qp, { privateData }) };
  };
  const junk: [string, Buffer][] = [
    ['short', Buffer.from('hello')],
    ['a forged MAC', Buffer.concat([Buffer.from([1]), Buffer.alloc(55, 0xa5)])],
  ];
  for (const [what, data] of junk) {
    const { id, connected } = await attempt(data);
    await t.rejects(connected, { name: 'CmError' });
    id.close();
    await refusedWith(t, peer, /^refused ERR_[A-Z_]+$/, `garbage (${what})`);
  }

  // A genuine request, accepted once; the same bytes again from the same QP are a replay.
  const request = encodeRequest(Buffer.from(SECRET), qp.qpNum, { addr: 0, rkey: 0, length: 4096 });
  const first = await attempt(request);
  await first.connected;
  t.match(await peer.line(), /^connected \d+$/, 'the genuine request connects');
  t.same(await resources(pid), { qp: 1, mr: 1 });
  first.id.disconnect();
  t.equal(await peer.line(), 'closed');
  first.id.close();
  t.same(await resources(pid), { qp: 0, mr: 0 }, 'the connection closed, its QP and MR went with it');
  const replay = await attempt(request);
  const e = (await t.rejects(replay.connected, { name: 'CmError' })) as unknown as { privateData?: Buffer };
  t.match(e.privateData?.toString('latin1') ?? '', /^ERR_REPLAY/, 'the client hears why');
  replay.id.close();
  await refusedWith(t, peer, /^refused ERR_REPLAY$/, 'a replayed request');

  const conn = await rdma.RdmaConnection.connectCm(HOST, peer.port, { secret: SECRET, memory: 4096 });
  t.match(await peer.line(), /^connected \d+$/, 'a good client still connects');
  t.same(await resources(pid), { qp: 1, mr: 1 });
  await conn.read(0, 4096);
  conn.close();
});
