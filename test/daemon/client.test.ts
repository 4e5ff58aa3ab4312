// The local client (lib/daemon/client.ts) against a peer that misbehaves on the socket: one that
// closes the connection without an answer (a sosd that died mid-request) is reported at once, not
// at the request's timeout; one that answers garbage gets ERR_BAD_FRAME.
import t from 'tap';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { request } from '../../lib/daemon/client.js';

async function peer(t: { teardown(f: () => void): void }, onLine: (sock: net.Socket) => void): Promise<string> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sos-client-'));
  const socket = path.join(dir, 'sosd.sock');
  const server = net.createServer((s) => s.once('data', () => onLine(s)));
  await new Promise<void>((r) => server.listen(socket, r));
  t.teardown(() => {
    server.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  return socket;
}

void t.test('a sosd that closes the connection before it answers: ECONNRESET at once', async (t) => {
  const socket = await peer(t, (s) => s.destroy());
  // The timeout is far beyond tap's for this file: only the close can end the request in time.
  await t.rejects(request('status', {}, socket, 3_600_000), {
    code: 'ECONNRESET',
    message: /closed the connection before it answered/,
  });
});

void t.test('a sosd that answers garbage: ERR_BAD_FRAME', async (t) => {
  const socket = await peer(t, (s) => s.end('not json\n'));
  await t.rejects(request('status', {}, socket), { code: 'ERR_BAD_FRAME' });
});

void t.test('an answer still resolves (the close after it changes nothing)', async (t) => {
  const socket = await peer(t, (s) => s.end(JSON.stringify({ v: 1, id: 1, ok: true, result: { pid: 7 } }) + '\n'));
  t.same(await request('status', {}, socket), { pid: 7 });
});
