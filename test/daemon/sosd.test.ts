// The node daemon: real process, real unix socket, every frame validated.
import t from 'tap';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { request } from '../../lib/daemon/client.js';
import { MAX_FRAME } from '../../lib/daemon/protocol.js';

const sosd = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../lib/daemon/sosd.js');

async function raw(socket: string, payload: string, lines: number): Promise<Record<string, unknown>[]> {
  return await new Promise((resolve, reject) => {
    const s = net.connect(socket);
    let buf = '';
    s.setEncoding('utf8');
    s.on('error', reject);
    s.on('data', (d: string) => {
      buf += d;
      const got = buf.split('\n').filter(Boolean);
      if (got.length >= lines) {
        s.end();
        resolve(got.map((l) => JSON.parse(l) as Record<string, unknown>));
      }
    });
    s.write(payload);
  });
}

void t.test('sosd serves its API and rejects bad frames without dropping the connection', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sosd-'));
  const socket = path.join(dir, 'run', 'sosd.sock');
  const child = spawn(process.execPath, [sosd, '--socket', socket], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.teardown(() => {
    child.kill('SIGTERM');
    fs.rmSync(dir, { recursive: true, force: true });
  });
  await new Promise<void>((res) => child.stdout.once('data', () => res()));

  t.equal(fs.statSync(socket).mode & 0o777, 0o600, 'only the daemon user may connect');
  t.equal(fs.statSync(path.dirname(socket)).mode & 0o777, 0o700);

  const info = (await request('node.info', {}, socket)) as { userfaultfd: { available: boolean } };
  t.equal(info.userfaultfd.available, true);
  t.match(await request('version', {}, socket), { protocol: 1 });
  await t.rejects(request('nope', {}, socket), { code: 'ERR_UNKNOWN_OP' });

  const replies = await raw(
    socket,
    'not json\n[1]\n{"v":2,"id":5,"op":"status"}\n{"v":1,"id":"x","op":"status"}\n{"v":1,"id":6,"op":"status","args":3}\n{"v":1,"id":7,"op":"status"}\n',
    6,
  );
  t.match(replies[0], { ok: false, error: { code: 'ERR_BAD_JSON' } });
  t.match(replies[1], { ok: false, error: { code: 'ERR_BAD_FRAME' } });
  t.match(replies[2], { ok: false, id: 5, error: { code: 'ERR_VERSION' } });
  t.match(replies[3], { ok: false, error: { code: 'ERR_BAD_FRAME' } });
  t.match(replies[4], { ok: false, id: 6, error: { code: 'ERR_BAD_FRAME' } });
  t.match(replies[5], { ok: true, id: 7, result: { pid: child.pid } }, 'the connection still works after bad frames');

  const big = await raw(socket, 'x'.repeat(MAX_FRAME + 10), 1);
  t.match(big[0], { ok: false, error: { code: 'ERR_FRAME_TOO_LARGE' } });
});
