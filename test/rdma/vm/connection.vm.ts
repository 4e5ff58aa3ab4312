// Inside the soft-RoCE VM: RdmaConnection between two processes, over the
// authenticated handshake; many operations in flight; bad peers; a peer killed.
import t from 'tap';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { LineProcess } from '../../../testkit/line-process.js';
import { readsWhilePeerKilled } from './killed-peer.js';
import { Region } from '../../../lib/uffd/index.js';
import * as rdma from '../../../lib/rdma/index.js';
import { DEV, HOST, PEER_WAIT_MS } from './env.js';

const SECRET = 'thirty-two-bytes-at-least-for-tests!';
const peerScript = path.join(path.dirname(fileURLToPath(import.meta.url)), 'conn-peer.js');
let nextPort = 18600;

class Peer extends LineProcess {
  constructor(readonly port: number) {
    super(process.execPath, [peerScript, 'tcp', HOST, String(port), SECRET], {
      name: 'conn-peer tcp',
      waitMs: PEER_WAIT_MS,
    });
  }
}

async function startPeer(): Promise<Peer> {
  const p = new Peer(nextPort++);
  const first = await p.line();
  if (first !== 'listening') throw new Error(`peer said ${first}`);
  return p;
}

void t.test('read and write the peer window, many in flight', async (t) => {
  const peer = await startPeer();
  t.teardown(() => peer.proc.kill('SIGKILL'));
  const local = Region.anonymous(1 << 20);
  const conn = await rdma.RdmaConnection.connect(HOST, peer.port, { device: DEV, secret: SECRET, memory: local });
  t.match(await peer.line(), /^connected /);
  t.equal(conn.remote.length, 1 << 20);

  await conn.read(4096, 65536, 0);
  const got = local.bytes(0, 65536);
  t.ok(
    got.every((x, i) => x === (((4096 + i) * 7) & 0xff)),
    'READ brought the peer bytes',
  );

  const out = local.bytes(131072, 65536);
  out.fill(3);
  await conn.write(524288, 65536, 131072);
  t.equal(await peer.ask('sum 524288 65536'), `sum ${3 * 65536}`, 'WRITE landed in the peer');

  const ops: Promise<void>[] = [];
  for (let i = 0; i < 128; i++) ops.push(conn.read(i * 4096, 4096, 262144 + i * 4096));
  t.ok(conn.inFlight > 1, 'several in flight at once');
  await Promise.all(ops);
  const all = local.bytes(262144, 128 * 4096);
  t.ok(
    all.every((x, i) => x === ((i * 7) & 0xff)),
    '128 concurrent READs, every byte right',
  );

  await t.rejects(conn.read(1 << 20, 8), { code: 'ERR_OUT_OF_RANGE' }, 'outside the peer window');
  conn.close();
  await t.rejects(conn.read(0, 8), { code: 'ERR_CLOSED' });
  local.close();
  const exited = new Promise((r) => peer.proc.once('exit', r));
  peer.proc.stdin.write('exit\n');
  await exited;
});

void t.test('a peer without the secret is refused on both sides', async (t) => {
  const peer = await startPeer();
  t.teardown(() => peer.proc.kill('SIGKILL'));
  await t.rejects(
    rdma.RdmaConnection.connect(HOST, peer.port, {
      device: DEV,
      secret: 'a-different-secret-of-32-bytes-or-more',
      memory: 4096,
    }),
    { name: 'HandshakeError' },
  );
  t.match(await peer.line(), /^refused ERR_(AUTH|PEER)/);
  // A malformed hello, framed as the channel frames it (u8 type 0x10, u32 length, JSON): refused, and
  // the listener keeps serving.
  const s = net.connect(peer.port, HOST);
  const hello = Buffer.from(JSON.stringify({ v: 2, role: 'client', nonce: 'not-hex' }));
  const header = Buffer.alloc(5);
  header.writeUInt8(0x10, 0);
  header.writeUInt32BE(hello.length, 1);
  s.write(Buffer.concat([header, hello]));
  t.match(await peer.line(), /^refused ERR_BAD_FRAME/);
  s.destroy();
  await t.rejects(rdma.RdmaConnection.connect(HOST, peer.port, { device: DEV, secret: 'short', memory: 4096 }), {
    code: 'ERR_WEAK_SECRET',
  });
  const ok = await rdma.RdmaConnection.connect(HOST, peer.port, { device: DEV, secret: SECRET, memory: 4096 });
  t.match(await peer.line(), /^connected /);
  ok.close();
});

void t.test('a peer killed mid-transfer fails the pending operations, no crash', async (t) => {
  const peer = await startPeer();
  const conn = await rdma.RdmaConnection.connect(HOST, peer.port, { device: DEV, secret: SECRET, memory: 1 << 20 });
  await peer.line();
  await readsWhilePeerKilled(t, conn, peer);
});
