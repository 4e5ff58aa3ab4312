// Inside the soft-RoCE VM: RdmaConnection through rdma_cm (connect by IP
// address, the windows authenticated in the CM's private data) between two
// processes; a wrong secret; the peer killed mid-transfer.
import t from 'tap';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { LineProcess } from '../../../testkit/line-process.js';
import { readsWhilePeerKilled } from './killed-peer.js';
import { Region } from '../../../lib/uffd/index.js';
import * as rdma from '../../../lib/rdma/index.js';
import { HOST, PEER_WAIT_MS } from './env.js';

const SECRET = 'thirty-two-bytes-at-least-for-tests!';
const peerScript = path.join(path.dirname(fileURLToPath(import.meta.url)), 'conn-peer.js');
let nextPort = 7900;

class Peer extends LineProcess {
  constructor(readonly port = nextPort++) {
    super(process.execPath, [peerScript, 'cm', HOST, String(port), SECRET], {
      name: 'conn-peer cm',
      waitMs: PEER_WAIT_MS,
    });
  }
}

void t.test('connect by address through rdma_cm: READ, WRITE, many in flight, close seen by the peer', async (t) => {
  const peer = new Peer();
  t.teardown(() => peer.proc.kill('SIGKILL'));
  t.equal(await peer.line(), 'listening');
  const local = Region.anonymous(1 << 20);
  const conn = await rdma.RdmaConnection.connectCm(HOST, peer.port, { secret: SECRET, memory: local });
  t.match(await peer.line(), /^connected \d+$/);
  t.equal(conn.remote.length, 1 << 20);
  t.equal(conn.remote.gid, `::ffff:${HOST}`);
  await conn.read(4096, 65536, 0);
  t.ok(
    local.bytes(0, 65536).every((x, i) => x === (((4096 + i) * 7) & 0xff)),
    'READ brought the peer bytes',
  );
  local.bytes(131072, 65536).fill(2);
  await conn.write(524288, 65536, 131072);
  t.equal(await peer.ask('sum 524288 65536'), `sum ${2 * 65536}`, 'WRITE landed in the peer');
  const ops: Promise<void>[] = [];
  for (let i = 0; i < 128; i++) ops.push(conn.read(i * 4096, 4096, 262144 + i * 4096));
  t.ok(conn.inFlight > 1, 'several in flight at once');
  await Promise.all(ops);
  t.ok(
    local.bytes(262144, 128 * 4096).every((x, i) => x === ((i * 7) & 0xff)),
    '128 concurrent READs, every byte right',
  );
  conn.close();
  t.equal(await peer.line(), 'closed', 'the peer saw the disconnect');
  await t.rejects(conn.read(0, 8), { code: 'ERR_CLOSED' });
  local.close();
  peer.proc.stdin.write('exit\n');
});

void t.test('a wrong secret is refused on both sides, with the reason', async (t) => {
  const peer = new Peer();
  t.teardown(() => peer.proc.kill('SIGKILL'));
  t.equal(await peer.line(), 'listening');
  await t.rejects(
    rdma.RdmaConnection.connectCm(HOST, peer.port, { secret: 'a-different-secret-of-32-bytes-or-more', memory: 4096 }),
    {
      name: 'HandshakeError',
      code: 'ERR_PEER',
      message: /ERR_AUTH/,
    },
  );
  t.equal(await peer.line(), 'refused ERR_AUTH');
  await t.rejects(rdma.RdmaConnection.connectCm(HOST, peer.port, { secret: 'short', memory: 4096 }), {
    code: 'ERR_WEAK_SECRET',
  });
  await t.rejects(
    rdma.RdmaConnection.connectCm(HOST, nextPort++, { secret: SECRET, memory: 4096 }),
    { code: 'ECONNREFUSED' },
    'nobody listening',
  );
  const ok = await rdma.RdmaConnection.connectCm(HOST, peer.port, { secret: SECRET, memory: 4096 });
  t.match(await peer.line(), /^connected \d+$/, 'the listener still serves');
  ok.close();
});

void t.test('the peer killed mid-transfer: pending operations fail, the connection closes, no crash', async (t) => {
  const peer = new Peer();
  t.equal(await peer.line(), 'listening');
  const conn = await rdma.RdmaConnection.connectCm(HOST, peer.port, { secret: SECRET, memory: 1 << 20 });
  await peer.line();
  await readsWhilePeerKilled(t, conn, peer);
});
