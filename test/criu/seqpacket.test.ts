// The SOCK_SEQPACKET socketpair: whole messages both ways through a child,
// end of stream, and misuse as typed errors (never a crash or a hang).
import t from 'tap';
import { spawn } from 'node:child_process';
import { criu, StateError, SystemError } from '../../lib/index.js';
import { native } from '../../lib/native/index.js';
import { within } from '../../testkit/wait.js';

const { SeqPacket } = criu;

// A child that echoes every message on fd 3 back, reversed, as one message.
const ECHO = `
import socket, sys
s = socket.socket(fileno=3)
while True:
    m = s.recv(1 << 20)
    if not m: break
    s.send(m[::-1])
`;

void t.test('messages keep their boundaries through a child holding the peer', async (t) => {
  using sp = new SeqPacket();
  const child = spawn('python3', ['-c', ECHO], { stdio: ['ignore', 'inherit', 'inherit', sp.peerFd] });
  sp.closePeer();
  t.throws(() => sp.peerFd, StateError, 'the peer is gone once handed over');
  const sizes = [1, 7, 4096, 200_000];
  for (const n of sizes) sp.send(Buffer.alloc(n, n & 0xff));
  for (const n of sizes) {
    const m = await within(sp.recv(), 10_000, `echo of ${n} bytes`);
    t.equal(m?.length, n, `one whole message of ${n} bytes`);
  }
  const big = Buffer.from(Array.from({ length: 70_000 }, (_, i) => i & 0xff));
  sp.send(big);
  t.same(await sp.recv(), Buffer.from(big).reverse(), 'content intact');
  child.kill();
  t.equal(await within(sp.recv(), 10_000, 'end of stream'), null, 'end of stream once the child is gone');
});

void t.test('misuse: typed errors, idempotent close, pending recv rejected', async (t) => {
  const sp = new SeqPacket();
  t.throws(() => sp.send('text' as unknown as Uint8Array), { code: 'ERR_INVALID_ARG_TYPE' });
  const pending = sp.recv();
  t.throws(() => void sp.recv(), { code: 'ERR_BUSY' }, 'one recv at a time');
  sp.close();
  await t.rejects(pending, { code: 'ERR_CLOSED' }, 'pending recv rejected on close');
  sp.close();
  sp[Symbol.dispose]();
  t.ok(sp.closed);
  t.throws(() => sp.send(Buffer.from('x')), { code: 'ERR_CLOSED' });
  t.throws(() => void sp.recv(), { code: 'ERR_CLOSED' });
  t.throws(() => sp.peerFd, { code: 'ERR_CLOSED' });
  sp.closePeer();

  // Sending to a peer that closed: EPIPE as a SystemError, not a signal.
  const sp2 = new SeqPacket();
  const c = spawn('true', [], { stdio: ['ignore', 'ignore', 'ignore', sp2.peerFd] });
  sp2.closePeer();
  await new Promise((r) => c.once('close', r));
  t.equal(await sp2.recv(), null);
  t.throws(() => sp2.send(Buffer.from('x')), SystemError);
  sp2.close();

  // The raw native class with nonsense arguments.
  const raw = new native.NativeSeqPacket() as unknown as Record<string, (...a: unknown[]) => unknown>;
  for (const m of ['send', 'peerFd', 'closePeer', 'isClosed']) {
    for (const a of [undefined, null, 1, 'x', {}, [], new ArrayBuffer(3), new Uint16Array(2)]) {
      try {
        raw[m](a);
      } catch (e) {
        t.ok(e instanceof Error, `${m}: an Error`);
      }
    }
  }
  raw.close();
  raw.close();
});

void t.test('a handle dropped with a recv pending is not leaked into a crash', async (t) => {
  // The pending recv keeps the handle alive; closing settles it.
  let sp: InstanceType<typeof SeqPacket> | null = new SeqPacket();
  const p = sp.recv();
  (globalThis as { gc?: () => void }).gc?.();
  sp.close();
  sp = null;
  await t.rejects(p, { code: 'ERR_CLOSED' });
});

void t.test('a worker exiting with a recv() pending and unread messages tears down cleanly', async (t) => {
  const { Worker } = await import('node:worker_threads');
  const lib = new URL('../../lib/index.js', import.meta.url).href;
  const body = `
    import { parentPort } from 'node:worker_threads';
    const { criu } = await import(${JSON.stringify(lib)});
    const a = new criu.SeqPacket(); void a.recv().catch(() => {});
    const b = new criu.SeqPacket(); b.send(Buffer.from('unread'));
    globalThis.keep = [a, b];
    parentPort.postMessage('ready');`;
  for (let i = 0; i < 3; i++) {
    const w = new Worker(new URL(`data:text/javascript,${encodeURIComponent(body)}`), { execArgv: [] });
    await within(
      new Promise((resolve, reject) => {
        w.once('message', resolve);
        w.once('error', reject);
      }),
      20_000,
      'worker ready',
    );
    await w.terminate();
  }
  t.pass('three workers terminated with live handles');
});
