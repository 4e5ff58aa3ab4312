// RdmaConnection's TCP handshake on the host running the suite (no RDMA needed): the endpoint exchange
// over a real loopback AuthChannel, and the refusals of a malformed or foreign-version endpoint.
import t, { type Test } from 'tap';
import crypto from 'node:crypto';
import net from 'node:net';
import { once } from 'node:events';
import { AuthChannel } from '../../lib/net/channel.js';
import { SosError } from '../../lib/errors.js';
import { rdma } from '../../lib/index.js';

const SECRET = crypto.randomBytes(32);
const endpoint = (qpNum: number): rdma.Endpoint => ({
  qpNum,
  gid: '::ffff:10.0.2.15',
  psn: 0x123456,
  addr: 0x7f00_1234_5000,
  rkey: 0xdeadbeef,
  length: 1 << 20,
});

/** A connected pair of authenticated channels: [client, server]. */
async function pair(t: Test): Promise<[AuthChannel, AuthChannel]> {
  let accepted!: (ch: AuthChannel) => void;
  const server = AuthChannel.server(SECRET, (ch) => accepted(ch));
  const got = new Promise<AuthChannel>((r) => (accepted = r));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => server.close());
  const port = (server.address() as net.AddressInfo).port;
  const client = await AuthChannel.connect({ host: '127.0.0.1', port, secret: SECRET });
  const srv = await got;
  t.teardown(() => {
    client.destroy();
    srv.destroy();
  });
  return [client, srv];
}

void t.test('both sides get the peer endpoint', async (t) => {
  const [a, b] = await pair(t);
  const [fromB, fromA] = await Promise.all([rdma.handshake(a, endpoint(7)), rdma.handshake(b, endpoint(9))]);
  t.same(fromB, endpoint(9));
  t.same(fromA, endpoint(7));
});

void t.test('a malformed endpoint is refused, and its sender hears why', async (t) => {
  const bad: [string, Record<string, unknown>, string][] = [
    ['no endpoint', { v: 1 }, 'ERR_BAD_FRAME'],
    ['qpNum not a number', { v: 1, endpoint: { ...endpoint(1), qpNum: 'x' } }, 'ERR_BAD_FRAME'],
    ['rkey over 32 bits', { v: 1, endpoint: { ...endpoint(1), rkey: 2 ** 32 } }, 'ERR_BAD_FRAME'],
    ['addr unsafe', { v: 1, endpoint: { ...endpoint(1), addr: 2 ** 60 } }, 'ERR_BAD_FRAME'],
    ['gid not a GID', { v: 1, endpoint: { ...endpoint(1), gid: 'rxe0; rm -rf' } }, 'ERR_BAD_FRAME'],
    ['another version', { v: 2, endpoint: endpoint(1) }, 'ERR_VERSION'],
  ];
  for (const [what, fields, code] of bad) {
    const [a, b] = await pair(t);
    const refusal = a.waitFor((m) => m.op === 'rdma-refuse', 5000);
    a.send({ op: 'rdma-endpoint', ...fields });
    await t.rejects(rdma.handshake(b, endpoint(9)), { name: 'HandshakeError', code }, what);
    t.match(await refusal, { code }, `${what}: the peer is told ${code}`);
  }
});

void t.test("the peer's refusal and the channel's end are HandshakeErrors", async (t) => {
  const [a, b] = await pair(t);
  a.send({ op: 'rdma-refuse', code: 'ENODEV', reason: 'no RDMA device named rxe9' });
  const e = await rdma.handshake(b, endpoint(9)).catch((x: unknown) => x);
  t.match(e, { name: 'HandshakeError', code: 'ERR_PEER', message: /ENODEV: no RDMA device named rxe9/ });
  t.ok(e instanceof SosError);

  const [c, d] = await pair(t);
  c.destroy();
  await t.rejects(rdma.handshake(d, endpoint(9)), { name: 'HandshakeError', code: 'ECONNRESET' });

  const [, f] = await pair(t);
  await t.rejects(rdma.handshake(f, endpoint(9), 200), { name: 'HandshakeError', code: 'ETIMEDOUT' }, 'a silent peer');
});
