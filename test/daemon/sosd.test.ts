// The node daemon: real process, real unix socket, every frame validated; the socket is born 0600,
// peers are checked with SO_PEERCRED, and a --socket path that is not a stale socket is never touched.
import t from 'tap';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { request } from '../../lib/daemon/client.js';
import { MAX_FRAME } from '../../lib/daemon/protocol.js';
import { native } from '../../lib/native/index.js';
import { until } from '../../testkit/wait.js';

const sosd = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../lib/daemon/sosd.js');
// A port of the kernel's choosing: never the default 9464, which a real sosd (or another test) may hold.
const HTTP = '127.0.0.1:0';

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
  const child = spawn(
    process.execPath,
    [sosd, '--socket', socket, '--http', HTTP, '--state-dir', path.join(path.dirname(socket), 'state')],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
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

  // One 2 MiB line: one reply, and the request on the next line is still served.
  const huge = await raw(socket, 'x'.repeat(2 * 2 ** 20) + '\n{"v":1,"id":8,"op":"status"}\n', 2);
  t.equal(huge.length, 2, 'an oversized line gets one reply, not one per chunk');
  t.match(huge[0], { ok: false, error: { code: 'ERR_FRAME_TOO_LARGE' } });
  t.match(huge[1], { ok: true, id: 8 }, 'the line after it is served');

  const typed = await raw(socket, '{"v":"1","id":9,"op":"status"}\n{"id":10,"op":"status"}\n', 2);
  t.match(typed[0], {
    ok: false,
    id: 9,
    error: { code: 'ERR_BAD_FRAME', message: 'v must be the number 1, not the string "1"' },
  });
  t.match(typed[1], {
    ok: false,
    id: 10,
    error: { code: 'ERR_BAD_FRAME', message: 'v is missing: it must be the number 1' },
  });
});

interface Sosd {
  child: ChildProcess;
  stderr(): string;
  /** Resolves with 'listening' once it serves, or its exit code when it ended first. */
  started: Promise<'listening' | number | null>;
  exited: Promise<number | null>;
}

function startSosd(socket: string): Sosd {
  const child = spawn(
    process.execPath,
    [sosd, '--socket', socket, '--http', HTTP, '--state-dir', path.join(path.dirname(socket), 'state')],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let err = '';
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((res) => child.once('exit', (c) => res(c)));
  const started = Promise.race([
    new Promise<'listening'>((res) => child.stdout.once('data', () => res('listening'))),
    exited,
  ]);
  return { child, stderr: () => err, started, exited };
}

/** One status request from a process running as `nobody`: its first reply line, or its connect error's code. */
async function asNobody(
  socket: string,
): Promise<{ reply?: { ok: boolean; error?: { code: string; message: string } }; error?: string }> {
  const script = `
    const s = require('node:net').connect(process.argv[1]);
    let b = '';
    const done = (o) => { process.stdout.write(JSON.stringify(o)); process.exit(0); };
    s.on('connect', () => s.write(JSON.stringify({ v: 1, id: 1, op: 'status' }) + '\\n'));
    s.on('data', (d) => { b += d; if (b.includes('\\n')) done({ reply: JSON.parse(b.split('\\n')[0]) }); });
    s.on('error', (e) => done({ error: e.code }));
    s.on('end', () => done({ error: 'EOF' }));`;
  const child = spawn(
    'setpriv',
    ['--reuid', '65534', '--regid', '65534', '--clear-groups', '--', process.execPath, '-e', script, socket],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  await new Promise((res) => child.once('close', res));
  return JSON.parse(out) as { reply?: { ok: boolean; error?: { code: string; message: string } }; error?: string };
}

void t.test("a peer that is neither root nor sosd's user is refused and logged", async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sosd-peer-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  // Folders nobody may pass through, made by the test: sosd keeps their modes.
  fs.chmodSync(dir, 0o711);
  const run = path.join(dir, 'run');
  fs.mkdirSync(run, { mode: 0o711 });
  fs.chmodSync(run, 0o711);
  const socket = path.join(run, 'sosd.sock');
  const d = startSosd(socket);
  t.teardown(() => d.child.kill('SIGTERM'));
  t.equal(await d.started, 'listening', d.stderr());
  t.equal(fs.statSync(run).mode & 0o777, 0o711, 'an existing folder is not chmodded');
  t.equal(fs.statSync(socket).mode & 0o777, 0o600, 'the socket is 0600 from the start');

  t.same(await asNobody(socket), { error: 'EACCES' }, 'the file mode keeps nobody out');

  // Even a socket whose mode an admin widened serves no one else: the peer's uid is checked.
  fs.chmodSync(socket, 0o666);
  const r = await asNobody(socket);
  t.match(r, { reply: { ok: false, error: { code: 'ERR_PEER_REFUSED', message: /uid 65534/ } } });
  await until(() => /refused a connection from uid 65534 gid 65534 pid \d+/.test(d.stderr()), 30_000, 'the log line');
  t.match(await request('status', {}, socket), { pid: d.child.pid }, 'root is still served');
});

void t.test('peerCred reads a unix socket peer and fails with a typed SystemError', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sosd-cred-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const server = net.createServer();
  const accepted = new Promise<net.Socket>((res) => server.once('connection', res));
  await new Promise<void>((res) => server.listen(path.join(dir, 's'), res));
  t.teardown(() => server.close());
  const client = net.connect(path.join(dir, 's'));
  t.teardown(() => client.destroy());
  const sock = await accepted;
  t.teardown(() => sock.destroy());
  const fd = (sock as unknown as { _handle: { fd: number } })._handle.fd;
  t.same(native.peerCred(fd), { pid: process.pid, uid: process.getuid!(), gid: process.getgid!() });

  const file = fs.openSync(path.join(dir, 'f'), 'w');
  t.teardown(() => fs.closeSync(file));
  t.throws(() => native.peerCred(file), { name: 'SystemError', code: 'ENOTSOCK', syscall: 'getsockopt(SO_PEERCRED)' });
  t.throws(() => native.peerCred(-1), { code: 'ERR_OUT_OF_RANGE' });
  t.throws(() => native.peerCred('3' as never), { code: 'ERR_INVALID_ARG_TYPE' });
});

void t.test('--socket: a file that is not a socket is left untouched and sosd refuses to start', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sosd-path-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.chmodSync(dir, 0o755);
  const file = path.join(dir, 'precious');
  fs.writeFileSync(file, 'keep me', { mode: 0o644 });
  fs.chmodSync(file, 0o644);
  const before = fs.statSync(file);
  const d = startSosd(file);
  t.equal(await d.exited, 1, 'sosd exits 1');
  // Said as one JSON log line (pino) with the error's code and the path.
  t.match(JSON.parse(d.stderr().trim().split('\n').at(-1)!), {
    level: 'fatal',
    name: 'sosd',
    code: 'ERR_SOCKET_NOT_SOCKET',
    path: file,
    msg: `${file} exists and is not a socket (a regular file): refusing to replace it`,
  });
  const after = fs.statSync(file);
  t.equal(fs.readFileSync(file, 'utf8'), 'keep me', 'its content is kept');
  t.equal(after.mode & 0o7777, 0o644, 'its mode is kept');
  t.equal(after.ino, before.ino, 'it is the same file');
  t.equal(fs.statSync(dir).mode & 0o777, 0o755, 'its folder keeps its mode');

  // A symlink is not followed (its target untouched), nor replaced.
  const link = path.join(dir, 'link.sock');
  fs.symlinkSync(file, link);
  const l = startSosd(link);
  t.equal(await l.exited, 1);
  t.match(l.stderr(), /is not a socket \(a symbolic link\)/);
  t.equal(fs.readlinkSync(link), file);
  t.equal(fs.readFileSync(file, 'utf8'), 'keep me');
});

void t.test("--socket: a live daemon's socket is refused, a stale one (its daemon killed) replaced", async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sosd-stale-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const socket = path.join(dir, 'sosd.sock');
  const first = startSosd(socket);
  t.teardown(() => first.child.kill('SIGKILL'));
  t.equal(await first.started, 'listening', first.stderr());

  const second = startSosd(socket);
  t.equal(await second.exited, 1, 'a second sosd on the same socket exits 1');
  t.match(second.stderr(), new RegExp(`sosd is already running \\(pid ${first.child.pid}\\)`));
  t.match(await request('status', {}, socket), { pid: first.child.pid }, 'the first one still serves');

  first.child.kill('SIGKILL');
  await first.exited;
  t.ok(fs.lstatSync(socket).isSocket(), 'the killed daemon left its socket behind');
  const third = startSosd(socket);
  t.teardown(() => third.child.kill('SIGTERM'));
  t.equal(await third.started, 'listening', third.stderr());
  t.match(await request('status', {}, socket), { pid: third.child.pid }, 'the stale socket was replaced');
  t.equal(fs.statSync(socket).mode & 0o777, 0o600);
});

void t.test('no sosd at the socket: the error says how to start it', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sosd-none-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  await t.rejects(request('status', {}, path.join(dir, 'sosd.sock')), {
    code: 'ENOENT',
    message: /cannot reach sosd at .*sosd\.sock: .*is sosd running\? Start it with `sosd`/,
  });
});
