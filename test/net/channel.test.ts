// The authenticated channel over real loopback TCP: round trips, a wrong
// secret, garbage, oversized and tampered frames, a peer that vanishes.
import t from 'tap';
import crypto from 'node:crypto';
import net from 'node:net';
import { once } from 'node:events';
import { AuthChannel, ChannelError, MAX_DATA, type Message } from '../../lib/net/channel.js';
import { until } from '../../testkit/wait.js';

const SECRET = crypto.randomBytes(32);

async function serve(secret: Buffer, onChannel: (ch: AuthChannel) => void, refused: ChannelError[] = []) {
  const server = AuthChannel.server(secret, onChannel, { timeoutMs: 3000, onRefused: (e) => refused.push(e) });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as net.AddressInfo).port;
  return { server, port, refused };
}

void t.test('messages and data round-trip, with backpressure', async (t) => {
  const { server, port } = await serve(SECRET, (ch) => {
    ch.on('message', (m) => ch.send({ op: 'echo', m }));
    ch.on('data', (s, d) => void ch.sendData(s + 1, d));
  });
  t.teardown(() => server.close());
  const ch = await AuthChannel.connect({ host: '127.0.0.1', port, secret: SECRET });
  const reply = ch.waitFor((m) => m.op === 'echo', 5000);
  ch.send({ op: 'hi', n: 1, s: 'x' });
  t.same((await reply).m, { op: 'hi', n: 1, s: 'x' });

  const big = crypto.randomBytes(3 * MAX_DATA + 12345);
  const got: Buffer[] = [];
  let n = 0;
  const all = new Promise<void>((r) =>
    ch.on('data', (s, d) => {
      t.equal(s, 8);
      got.push(d);
      n += d.length;
      if (n === big.length) r();
    }),
  );
  await ch.sendData(7, big);
  await all;
  t.ok(Buffer.concat(got).equals(big), 'data arrives intact and in order');
  ch.close();
  t.ok(ch.closed);
  t.throws(() => ch.send({ op: 'late' }), { code: 'ERR_CLOSED' });
});

void t.test('a wrong secret is refused on both sides and nothing passes', async (t) => {
  const seen: Message[] = [];
  const { server, port, refused } = await serve(SECRET, (ch) => ch.on('message', (m) => seen.push(m)));
  t.teardown(() => server.close());
  await t.rejects(AuthChannel.connect({ host: '127.0.0.1', port, secret: crypto.randomBytes(32) }), {
    code: 'ERR_AUTH',
  });
  await until(() => refused.length > 0, 10_000, 'the server refused the client');
  t.equal(refused.length, 1);
  t.equal(refused[0].code, 'ERR_AUTH');
  t.same(seen, []);
  t.throws(() => AuthChannel.server('short', () => {}), { code: 'ERR_WEAK_SECRET' });
  await t.rejects(AuthChannel.connect({ host: '127.0.0.1', port, secret: 'short' }), { code: 'ERR_WEAK_SECRET' });
});

void t.test('garbage and oversized frames are refused', async (t) => {
  const { server, port, refused } = await serve(SECRET, () => t.fail('no channel from garbage'));
  t.teardown(() => server.close());
  for (const junk of [
    Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'),
    Buffer.from([0x10, 0, 0, 0, 3, 0x7b, 0x7d, 0x0a]),
    Buffer.from([0x01, 0, 0, 0, 1, 0]),
  ]) {
    const s = net.connect(port, '127.0.0.1');
    s.on('error', () => {});
    s.resume();
    s.write(junk);
    await once(s, 'close');
  }
  t.equal(refused.length, 3);
  t.same(refused.map((e) => e.code).sort(), ['ERR_FRAME_TOO_LARGE', 'ERR_VERSION', 'ETIMEDOUT'].sort());
});

void t.test('a tampered frame ends the channel; a vanished peer closes it with an error', async (t) => {
  const got: Message[] = [];
  let serverSide: AuthChannel | undefined;
  const { server, port } = await serve(SECRET, (ch) => {
    serverSide = ch;
    ch.on('message', (m) => got.push(m));
  });
  t.teardown(() => server.close());
  // A proxy that flips one bit inside the 'two' message.
  const proxy = net.createServer((c) => {
    const up = net.connect(port, '127.0.0.1');
    c.on('data', (d: Buffer) => {
      const at = d.indexOf('"two"');
      if (at >= 0) d[at + 1] ^= 1;
      up.write(d);
    });
    up.on('data', (d) => c.write(d));
    up.on('close', () => c.destroy());
    c.on('close', () => up.destroy());
    c.on('error', () => {});
    up.on('error', () => {});
  });
  proxy.listen(0, '127.0.0.1');
  await once(proxy, 'listening');
  t.teardown(() => proxy.close());
  const ch = await AuthChannel.connect({
    host: '127.0.0.1',
    port: (proxy.address() as net.AddressInfo).port,
    secret: SECRET,
  });
  ch.send({ op: 'one' });
  // 'one' through first, so the altered 'two' travels in a segment of its own.
  await until(() => got.length === 1, 10_000, "the server got 'one'");
  const closed = once(serverSide!, 'close');
  ch.send({ op: 'two' });
  const [err] = (await closed) as [ChannelError];
  t.equal(err.code, 'ERR_AUTH', 'the altered frame fails authentication');
  t.same(
    got.map((m) => m.op),
    ['one'],
    'the altered message was never delivered',
  );
  const [e2] = (await once(ch, 'close')) as [ChannelError];
  t.equal(e2.code, 'ECONNRESET', 'the client sees the connection drop');
  await t.rejects(
    ch.waitFor(() => true),
    { code: 'ECONNRESET' },
  );
});
