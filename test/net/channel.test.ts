// The authenticated, encrypted channel over real loopback TCP: round trips, secrets, a wrong secret (and
// what the server reveals to it), garbage, oversized, pre-auth floods, too many connections, tampered
// frames, nothing in the clear on the wire, a peer that vanishes.
import t, { type Test } from 'tap';
import crypto from 'node:crypto';
import net from 'node:net';
import { once } from 'node:events';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  AuthChannel,
  ChannelError,
  MAX_DATA,
  decodeFrames,
  generateSecret,
  writeSecretFile,
  type Message,
} from '../../lib/net/channel.js';
import { until } from '../../testkit/wait.js';

const SECRET = crypto.randomBytes(32);

const QUIET = { intervalMs: 600_000, timeoutMs: 1_200_000 }; // no pings in the way of byte-level checks

async function serve(
  secret: Buffer,
  onChannel: (ch: AuthChannel) => void,
  refused: ChannelError[] = [],
  o: { timeoutMs?: number; maxPendingPerPeer?: number; maxPending?: number } = {},
) {
  const server = AuthChannel.server(secret, onChannel, {
    timeoutMs: 3000,
    liveness: QUIET,
    ...o,
    onRefused: (e) => refused.push(e),
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as net.AddressInfo).port;
  return { server, port, refused };
}

/**
 * A TCP proxy on loopback in front of `port`: `up` may alter what the client sends, `seen` hears
 * every chunk in both directions. Resolves with the proxy's port; closed at the test's end.
 */
async function proxy(
  t: Test,
  port: number,
  o: { up?: (d: Buffer) => Buffer; seen?: (d: Buffer) => void } = {},
): Promise<number> {
  const server = net.createServer((c) => {
    const up = net.connect(port, '127.0.0.1');
    c.on('data', (d: Buffer) => {
      o.seen?.(d);
      up.write(o.up ? o.up(d) : d);
    });
    up.on('data', (d: Buffer) => {
      o.seen?.(d);
      c.write(d);
    });
    up.on('close', () => c.destroy());
    c.on('close', () => up.destroy());
    c.on('error', () => {});
    up.on('error', () => {});
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => server.close());
  return (server.address() as net.AddressInfo).port;
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
    Buffer.from([0x01, 0, 0, 0, 1, 0]), // a message before the handshake
  ]) {
    const s = net.connect(port, '127.0.0.1');
    s.on('error', () => {});
    s.resume();
    s.write(junk);
    await once(s, 'close');
  }
  t.equal(refused.length, 3);
  t.same(refused.map((e) => e.code).sort(), ['ERR_BAD_FRAME', 'ERR_BAD_FRAME', 'ERR_VERSION']);
});

void t.test('a tampered frame ends the channel; a vanished peer closes it with an error', async (t) => {
  const got: Message[] = [];
  let serverSide: AuthChannel | undefined;
  const { server, port } = await serve(SECRET, (ch) => {
    serverSide = ch;
    ch.on('message', (m) => got.push(m));
  });
  t.teardown(() => server.close());
  // A proxy that, once told to, flips one bit inside the ciphertext of the next frame (header 5, tag 16).
  let flip = false;
  const proxied = await proxy(t, port, {
    up: (d) => {
      if (flip) {
        flip = false;
        d[5] ^= 1;
      }
      return d;
    },
  });
  const ch = await AuthChannel.connect({
    host: '127.0.0.1',
    port: proxied,
    secret: SECRET,
    liveness: QUIET,
  });
  ch.send({ op: 'one' });
  // 'one' through first, so the altered 'two' travels in a segment of its own.
  await until(() => got.length === 1, 10_000, "the server got 'one'");
  const closed = once(serverSide!, 'close');
  flip = true;
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

/** The frames a raw socket received (handshake frames in the clear). */
function framesOf(bytes: Buffer) {
  return decodeFrames(bytes).frames.map((f) => ({ type: f.type, body: f.body }));
}

function rawConnect(port: number, localAddress = '127.0.0.1') {
  const s = net.connect({ port, host: '127.0.0.1', localAddress });
  const got: Buffer[] = [];
  s.on('data', (d: Buffer) => got.push(d));
  s.on('error', () => {});
  const closed = new Promise<void>((r) => s.once('close', () => r()));
  return { s, got, bytes: () => Buffer.concat(got), closed };
}

function hello(role: string, v = 2): Buffer {
  const body = Buffer.from(JSON.stringify({ v, role, nonce: crypto.randomBytes(32).toString('hex') }));
  const f = Buffer.concat([Buffer.alloc(5), body]);
  f[0] = 0x10;
  f.writeUInt32BE(body.length, 1);
  return f;
}

void t.test('secrets: 32 random bytes; shorter ones refused with how to make one; a secret file', async (t) => {
  t.equal(generateSecret().length, 32);
  t.notOk(generateSecret().equals(generateSecret()), 'fresh each time');
  for (const s of ['x'.repeat(31), Buffer.alloc(16)])
    t.throws(() => AuthChannel.server(s, () => {}), { code: 'ERR_WEAK_SECRET', message: /32.*generateSecret/ });
  t.doesNotThrow(() => AuthChannel.server('x'.repeat(32), () => {}).close());
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sos-secret-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'secret');
  const s = await writeSecretFile(file);
  t.equal(s.length, 32);
  t.ok(fs.readFileSync(file).equals(s), 'the file holds the secret');
  t.equal(fs.statSync(file).mode & 0o777, 0o600, 'mode 0600');
  await t.rejects(writeSecretFile(file), { code: 'EEXIST' }, 'an existing file is never overwritten');
  t.ok(fs.readFileSync(file).equals(s));
});

void t.test('the server reveals nothing that depends on the secret before the client proved it', async (t) => {
  const { server, port, refused } = await serve(SECRET, () => t.fail('no channel without the secret'));
  t.teardown(() => server.close());
  const c = rawConnect(port);
  await until(() => framesOf(c.bytes()).length === 1, 10_000, "the server's hello");
  const [h] = framesOf(c.bytes());
  t.equal(h.type, 0x10, 'a hello');
  const o = JSON.parse(h.body.toString()) as Record<string, unknown>;
  t.same(Object.keys(o).sort(), ['nonce', 'role', 'v'], 'only its version, role and fresh nonce');
  t.equal(o.v, 2);
  // Our hello and a guessed proof: refused, and still no proof from the server.
  c.s.write(Buffer.concat([hello('client'), Buffer.from([0x11, 0, 0, 0, 32]), crypto.randomBytes(32)]));
  await c.closed;
  const all = framesOf(c.bytes());
  t.same(
    all.map((f) => f.type),
    [0x10, 0x12],
    'the server sent its hello, then a refusal: never a proof',
  );
  t.equal(all[1].body.toString(), 'authentication failed');
  t.same(
    refused.map((e) => e.code),
    ['ERR_AUTH'],
  );
  // A real client with the wrong secret: ERR_AUTH on both sides.
  await t.rejects(AuthChannel.connect({ host: '127.0.0.1', port, secret: generateSecret() }), { code: 'ERR_AUTH' });
  await until(() => refused.length === 2, 10_000, 'the server refused the client');
  t.equal(refused[1].code, 'ERR_AUTH');
});

void t.test('a peer of the previous protocol version is refused with ERR_VERSION', async (t) => {
  const { server, port, refused } = await serve(SECRET, () => t.fail('no channel'));
  t.teardown(() => server.close());
  const c = rawConnect(port);
  c.s.write(hello('client', 1));
  await c.closed;
  t.same(
    refused.map((e) => e.code),
    ['ERR_VERSION'],
  );
  // And a client meeting a v1 server.
  const old = net.createServer((s) => {
    s.on('error', () => {});
    s.write(hello('server', 1));
  });
  old.listen(0, '127.0.0.1');
  await once(old, 'listening');
  t.teardown(() => old.close());
  await t.rejects(
    AuthChannel.connect({ host: '127.0.0.1', port: (old.address() as net.AddressInfo).port, secret: SECRET }),
    { code: 'ERR_VERSION' },
  );
});

void t.test('before the handshake only its few hundred bytes pass: a flood is cut at once', async (t) => {
  // A long handshake deadline: only the cap can close these connections.
  const { server, port, refused } = await serve(SECRET, () => t.fail('no channel'), [], { timeoutMs: 600_000 });
  t.teardown(() => server.close());
  // A hello, then (still incomplete) a hello-typed frame whose size fits alone, but not within the pre-auth budget.
  const c = rawConnect(port);
  c.s.write(Buffer.concat([hello('client'), Buffer.from([0x10, 0, 0, 0, 150]), Buffer.alloc(140, 0x20)]));
  await c.closed;
  // Plain bulk: a megabyte of zeros (type 0 is no handshake frame).
  const d = rawConnect(port);
  d.s.write(Buffer.alloc(1 << 20));
  await d.closed;
  // A proof of the wrong size.
  const e = rawConnect(port);
  e.s.write(Buffer.concat([hello('client'), Buffer.from([0x11, 0, 0, 1, 0]), Buffer.alloc(256)]));
  await e.closed;
  await until(() => refused.length === 3, 10_000, 'three refusals');
  t.same(
    refused.map((x) => x.code),
    ['ERR_BAD_FRAME', 'ERR_BAD_FRAME', 'ERR_BAD_FRAME'],
  );
  t.match(refused[0].message, /before the handshake completed/);
});

void t.test('unauthenticated connections are bounded per peer and in all', async (t) => {
  const refused: ChannelError[] = [];
  const { server, port } = await serve(SECRET, (ch) => ch.on('message', (m) => ch.send(m)), refused, {
    timeoutMs: 600_000,
    maxPendingPerPeer: 2,
    maxPending: 3,
  });
  t.teardown(() => server.close());
  // Idle connections that never prove anything; each is pending once the server greeted it.
  const idle = async (from: string) => {
    const c = rawConnect(port, from);
    await until(() => c.got.length > 0 || c.s.destroyed, 10_000, 'the server greeted or dropped us');
    return c;
  };
  const a = await idle('127.0.0.1');
  const b = await idle('127.0.0.1');
  const third = rawConnect(port, '127.0.0.1');
  await third.closed;
  t.equal(third.got.length, 0, 'a third one from the same address is closed at once, unanswered');
  t.same(
    refused.map((e) => e.code),
    ['ERR_TOO_MANY'],
  );
  t.match(refused[0].message, /2 from 127\.0\.0\.1/);
  const other = await idle('127.0.0.2');
  t.ok(other.got.length > 0, 'another address still gets in');
  const fourth = rawConnect(port, '127.0.0.3');
  await fourth.closed;
  t.equal(refused[1]?.code, 'ERR_TOO_MANY', 'beyond the total, any address is refused');
  t.match(refused[1].message, /3 in all/);
  // One idle peer leaves: a real client (same address) gets a channel again.
  a.s.destroy();
  await until(() => refused.some((e) => e.code === 'ECONNRESET'), 10_000, 'the server saw the idle peer go');
  const ch = await AuthChannel.connect({ host: '127.0.0.1', port, secret: SECRET });
  const echo = ch.waitFor((m) => m.op === 'ping-pong', 5000);
  ch.send({ op: 'ping-pong' });
  await echo;
  ch.close();
  b.s.destroy();
  other.s.destroy();
});

void t.test('nothing crosses the wire in the clear after the handshake', async (t) => {
  const marker = 'PLAINTEXT-MARKER-0123456789';
  const { server, port } = await serve(SECRET, (ch) => {
    ch.on('message', (m) => ch.send({ op: 'echo', m }));
    ch.on('data', (s, d) => void ch.sendData(s, d));
  });
  t.teardown(() => server.close());
  const wire: Buffer[] = [];
  const proxied = await proxy(t, port, { seen: (d) => wire.push(Buffer.from(d)) });
  const ch = await AuthChannel.connect({
    host: '127.0.0.1',
    port: proxied,
    secret: SECRET,
  });
  const reply = ch.waitFor((m) => m.op === 'echo', 5000);
  ch.send({ op: marker, note: marker });
  t.equal(((await reply).m as Message).op, marker);
  const data = Buffer.from(marker.repeat(40_000)); // ~1 MiB: two data frames
  const back: Buffer[] = [];
  let n = 0;
  const all = new Promise<void>((r) =>
    ch.on('data', (_s, d) => {
      back.push(d);
      n += d.length;
      if (n === data.length) r();
    }),
  );
  await ch.sendData(3, data);
  await all;
  t.ok(Buffer.concat(back).equals(data), 'the data came back intact');
  ch.close();
  const captured = Buffer.concat(wire);
  t.ok(captured.length > 2 * data.length, `the proxy saw both directions (${captured.length} bytes)`);
  t.equal(captured.indexOf(marker), -1, 'the marker never appears on the wire');
  t.equal(captured.indexOf(marker.slice(0, 8)), -1, 'nor a part of it');
});

void t.test('decodeFrames is a pure decoder: frames out, or a ChannelError', async (t) => {
  const bytes = Buffer.concat([
    hello('client'),
    Buffer.from([0x11, 0, 0, 0, 32]),
    Buffer.alloc(32),
    Buffer.from([0x10]),
  ]);
  const { frames, rest } = decodeFrames(bytes);
  t.same(
    frames.map((f) => f.type),
    [0x10, 0x11],
  );
  t.equal(rest, 1, 'an incomplete frame stays over');
  const sealed = decodeFrames(Buffer.concat([Buffer.from([3, 0, 0, 0, 0]), Buffer.alloc(16)]), 0);
  t.equal(sealed.frames[0].tag?.length, 16, 'sealed frames carry their tag');
  for (const [junk, code] of [
    [Buffer.from('GET /'), 'ERR_BAD_FRAME'],
    [Buffer.from([0x11, 0, 0, 0, 31]), 'ERR_BAD_FRAME'],
    [Buffer.from([0x10, 0xff, 0, 0, 0]), 'ERR_BAD_FRAME'],
  ] as const)
    t.throws(() => decodeFrames(junk), { code }, `${junk.toString('hex')}: ${code}`);
  t.throws(() => decodeFrames(Buffer.from([2, 0xff, 0, 0, 0]), 0), { code: 'ERR_FRAME_TOO_LARGE' });
  t.throws(() => decodeFrames(Buffer.from([0x10, 0, 0, 0, 0]), 0), { code: 'ERR_BAD_FRAME' });
});
