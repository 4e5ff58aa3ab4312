// The authenticated window exchange of RdmaConnection.connectCm/listenCm
// (rdma_cm private data): runs on any host, no RDMA needed.
import t from 'tap';
import crypto from 'node:crypto';
import {
  NonceCache,
  decodeReply,
  decodeRequest,
  encodeReply,
  encodeRequest,
  requestNonce,
} from '../../lib/rdma/cm-auth.js';

const secret = Buffer.from('thirty-two-bytes-at-least-for-tests!');
const win = { addr: 0x7f12_3456_7000, rkey: 0xdeadbeef, length: 1 << 20 };

void t.test('request and reply round-trip, padded as RoCE pads private data, within 56 bytes', async (t) => {
  const req = encodeRequest(secret, 0x11, win);
  t.ok(req.length <= 56);
  const padded = Buffer.concat([req, Buffer.alloc(56 - req.length)]);
  const { window, nonce } = decodeRequest(secret, 0x11, padded, new NonceCache(60_000));
  t.same(window, win);
  t.same(nonce, requestNonce(req));
  const rep = encodeReply(secret, nonce, 0x22, { ...win, rkey: 7 });
  t.ok(rep.length <= 56);
  t.same(decodeReply(secret, nonce, 0x22, Buffer.concat([rep, Buffer.alloc(19)])), { ...win, rkey: 7 });
});

void t.test('wrong secret, tampering, another QP, replay, stale time, bad frames: typed refusals', async (t) => {
  const cache = new NonceCache(60_000);
  const req = encodeRequest(secret, 5, win);
  t.throws(() => decodeRequest(Buffer.from('another-secret-of-32-bytes-or-more'), 5, req, cache), {
    name: 'HandshakeError',
    code: 'ERR_AUTH',
  });
  const tampered = Buffer.from(req);
  tampered[20] ^= 1;
  t.throws(() => decodeRequest(secret, 5, tampered, cache), { code: 'ERR_AUTH' }, 'a changed window');
  t.throws(() => decodeRequest(secret, 6, req, cache), { code: 'ERR_AUTH' }, 'moved onto another QP');
  decodeRequest(secret, 5, req, cache);
  t.throws(() => decodeRequest(secret, 5, req, cache), { code: 'ERR_REPLAY' });
  const old = encodeRequest(secret, 5, win, Date.now() - 120_000);
  t.throws(() => decodeRequest(secret, 5, old, cache), { code: 'ERR_STALE' });
  t.throws(() => decodeRequest(secret, 5, undefined, cache), { code: 'ERR_BAD_FRAME' });
  t.throws(() => decodeRequest(secret, 5, req.subarray(0, 40), cache), { code: 'ERR_BAD_FRAME' });
  const v2 = Buffer.from(req);
  v2[0] = 2;
  t.throws(() => decodeRequest(secret, 5, v2, cache), { code: 'ERR_VERSION' });
  const nonce = crypto.randomBytes(8);
  const rep = encodeReply(secret, nonce, 9, win);
  t.throws(
    () => decodeReply(secret, crypto.randomBytes(8), 9, rep),
    { code: 'ERR_AUTH' },
    'a reply to another request',
  );
  t.throws(() => decodeReply(secret, nonce, 10, rep), { code: 'ERR_AUTH' }, 'a reply from another QP');
  t.throws(() => encodeRequest(secret, 5, { ...win, rkey: -1 }), { code: 'ERR_BAD_FRAME' });
});

void t.test('the nonce cache forgets after its lifetime and stays bounded', async (t) => {
  const c = new NonceCache(1000, 4);
  const n = Buffer.from('12345678');
  t.ok(c.add(n, 0));
  t.notOk(c.add(n, 500));
  t.ok(c.add(n, 2000), 'expired');
  for (let i = 0; i < 10; i++) c.add(Buffer.from(`nonce-${i}`), 2000);
  t.ok(c.add(Buffer.from('nonce-0'), 2000), 'the oldest were dropped at the bound');
});
