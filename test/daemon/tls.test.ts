// sosd's mutual-TLS API: members of the cluster (certificates from a real cluster folder) call the ops
// their role allows, over the same frames as the local socket; everyone else is refused at the handshake
// (no certificate, another CA, a revoked one) or by identity (another cluster), and unauthenticated
// connections are bounded. Loopback only; waits on conditions, never on durations.
import t, { type Test } from 'tap';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { initCluster, issueMember, loadMember, revoke } from '../../lib/cluster/folder.js';
import { issue, type Role } from '../../lib/cluster/identity.js';
import { request } from '../../lib/daemon/client.js';
import { DaemonMetrics } from '../../lib/daemon/metrics.js';
import { MAX_FRAME } from '../../lib/daemon/protocol.js';
import { RemoteClient, remoteRequest, type RemoteOptions } from '../../lib/daemon/remote.js';
import { DaemonServer, NO_ARGS } from '../../lib/daemon/server.js';
import type { TlsListenOptions } from '../../lib/daemon/tls.js';
import { until } from '../../testkit/wait.js';

const HOST = '127.0.0.1';
const CLUSTER = 'alpha';
const WAIT = 30_000;

interface Setup {
  dir: string;
  server: DaemonServer;
  port: number;
  logs: string[];
  as(role: Role, name: string): RemoteOptions;
  metric(re: RegExp): Promise<number>;
  /** Until the metric `re` reads `n` (counters that move after the client has seen its end). */
  reaches(re: RegExp, n: number): Promise<number>;
}

async function setup(t: Test, limits: Partial<TlsListenOptions> = {}): Promise<Setup> {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'sosd-tls-'));
  t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));
  const dir = path.join(root, 'cluster');
  await initCluster(dir, { cluster: CLUSTER });
  await issueMember(dir, { name: 'node-1', role: 'node', hosts: [HOST] });
  await issueMember(dir, { name: 'node-2', role: 'node' });
  const logs: string[] = [];
  const server = new DaemonServer(path.join(root, 'run', 'sosd.sock'), {
    log: (l) => logs.push(l),
    metrics: new DaemonMetrics({ processMetrics: false }),
  });
  server.register('test.whoami', NO_ARGS, (_args, ctx) => ctx.peer, { roles: ['operator', 'node'] });
  server.register(
    'test.double',
    { type: 'object', additionalProperties: false, required: ['n'], properties: { n: { type: 'integer' } } },
    (args) => (args.n as number) * 2,
    { roles: ['operator'] },
  );
  server.registerAll([{ op: 'test.local', schema: NO_ARGS, handler: () => 'local' }]);
  await server.listen();
  const addr = await server.listenTls({
    host: HOST,
    port: 0,
    credentials: loadMember(dir, 'node', 'node-1'),
    cluster: CLUSTER,
    ...limits,
  });
  t.teardown(() => server.close());
  const metric = async (re: RegExp) => {
    const m = re.exec(await server.metrics.scrape());
    return m ? Number(m[1]) : 0;
  };
  return {
    dir,
    server,
    port: addr.port,
    logs,
    as: (role, name) => ({ host: HOST, port: addr.port, credentials: loadMember(dir, role, name), cluster: CLUSTER }),
    metric,
    async reaches(re, n) {
      const end = Date.now() + WAIT;
      for (let v = await metric(re); ; v = await metric(re)) {
        if (v >= n || Date.now() > end) return v;
        await new Promise((r) => setTimeout(r, 5));
      }
    },
  };
}

/** Write `payload` on a TLS connection made with `opts`, and collect `lines` reply lines. */
async function rawTls(opts: RemoteOptions, payload: string, lines: number): Promise<Record<string, unknown>[]> {
  const c = opts.credentials;
  return await new Promise((resolve, reject) => {
    const s = tls.connect({
      host: opts.host,
      port: opts.port,
      ca: c.caPem,
      cert: c.certPem,
      key: c.keyPem,
      checkServerIdentity: () => undefined,
    });
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
    s.once('secureConnect', () => s.write(payload));
  });
}

void t.test(
  'an operator calls operator ops; handlers learn who asks; the local socket may call every op',
  async (t) => {
    const s = await setup(t);
    const op = s.as('operator', 'operator');
    t.equal(await remoteRequest(op, 'test.double', { n: 21 }), 42);
    const c = await RemoteClient.connect(op);
    t.teardown(() => c.close());
    t.match(c.server, { role: 'node', name: 'node-1', cluster: CLUSTER }, 'the server proved it is node-1');
    const [who, twice, version] = await Promise.all([
      c.request('test.whoami'),
      c.request('test.double', { n: 5 }),
      c.request('version'),
    ]);
    t.match(who, { kind: 'tls', role: 'operator', name: 'operator', serial: /^[0-9a-f]+$/ });
    t.equal(twice, 10, 'requests multiplexed on one connection, matched by id');
    t.match(version, { protocol: 1 });
    await t.rejects(c.request('test.double', { n: 'x' }), { code: 'ERR_BAD_ARGS', message: 'args.n must be integer' });

    // The local socket is the node's admin: every op, roles or not.
    t.equal(await request('test.local', {}, s.server.socketPath), 'local');
    t.equal(await request('test.double', { n: 2 }, s.server.socketPath), 4);
    t.match(await request('test.whoami', {}, s.server.socketPath), { kind: 'local', uid: process.getuid?.() });

    await t.rejects(RemoteClient.connect({ ...op, serverName: 'node-9' }), { code: 'ERR_WRONG_PEER' });
    await t.rejects(
      RemoteClient.connect({ ...op, cluster: 'beta' }),
      { code: 'ERR_CLUSTER' },
      'a server of another cluster',
    );
    t.ok((await s.metric(/^sos_daemon_tls_connections_total\{outcome="accepted"\} (\d+)$/m)) >= 2);
  },
);

void t.test(
  'a node asking for an operator-only op: ERR_FORBIDDEN, counted, logged, and the connection stays usable',
  async (t) => {
    const s = await setup(t);
    const c = await RemoteClient.connect(s.as('node', 'node-2'));
    t.teardown(() => c.close());
    await t.rejects(c.request('test.double', { n: 1 }), {
      code: 'ERR_FORBIDDEN',
      message: 'op "test.double" needs the role operator; this connection is node "node-2"',
    });
    // Refused before its args are looked at: bad args of a forbidden op are still ERR_FORBIDDEN.
    await t.rejects(c.request('test.double', { x: 1 }), { code: 'ERR_FORBIDDEN' });
    await t.rejects(c.request('test.local'), { code: 'ERR_FORBIDDEN', message: /served on the local socket only/ });
    await t.rejects(c.request('status'), { code: 'ERR_FORBIDDEN' }, 'built-in ops are local-only');
    const unknown = (await c.request('nope').catch((e: Error) => e)) as Error & { code: string };
    t.equal(unknown.code, 'ERR_UNKNOWN_OP');
    t.equal(unknown.message, 'unknown op "nope"; known: version, test.whoami', 'a peer is told only of its ops');
    t.match(await c.request('test.whoami'), { kind: 'tls', role: 'node', name: 'node-2' }, 'still usable');
    t.equal(await s.metric(/^sos_daemon_requests_total\{op="test.double",outcome="forbidden"\} (\d+)$/m), 2);
    t.equal(await s.metric(/^sos_daemon_frames_rejected_total\{reason="ERR_FORBIDDEN"\} (\d+)$/m), 4);
    t.notMatch(await s.server.metrics.scrape(), /node-2/, 'no peer name in any label');
    t.ok(
      s.logs.some((l) => l.includes('refused op "test.double" to node node-2')),
      'the refusal is logged',
    );
  },
);

void t.test('no certificate: refused at the handshake', async (t) => {
  const s = await setup(t);
  const ca = loadMember(s.dir, 'operator', 'operator').caPem;
  const got = await new Promise<{ code?: string; data: string }>((resolve) => {
    let data = '';
    const c = tls.connect({ host: HOST, port: s.port, ca, checkServerIdentity: () => undefined });
    c.setEncoding('utf8');
    c.on('data', (d: string) => (data += d));
    c.once('secureConnect', () => c.write('{"v":1,"id":1,"op":"version"}\n'));
    c.once('error', (e: NodeJS.ErrnoException) => resolve({ code: e.code, data }));
    c.once('close', () => resolve({ data }));
  });
  t.equal(got.data, '', 'not one byte of the API');
  t.match(got.code, /CERTIFICATE_REQUIRED|ECONNRESET/, `the server's alert: ${got.code}`);
  await until(() => s.server.tlsConnections.pending === 0, WAIT, 'the handshake is settled');
  t.equal(await s.reaches(/^sos_daemon_tls_connections_total\{outcome="handshake_failed"\} (\d+)$/m, 1), 1);
  t.equal(s.server.tlsConnections.open, 0);
});

void t.test(
  "another cluster's certificate is refused: another CA at the handshake, the same CA by its O",
  async (t) => {
    const s = await setup(t);
    const otherDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sosd-tls-other-'));
    t.teardown(() => fs.rmSync(otherDir, { recursive: true, force: true }));
    await initCluster(path.join(otherDir, 'c'), { cluster: 'beta' });
    const foreign = loadMember(path.join(otherDir, 'c'), 'operator', 'operator');
    const ours = loadMember(s.dir, 'operator', 'operator');
    // We trust the server (our CA), but our certificate is of another CA.
    const opts = {
      ...s.as('operator', 'operator'),
      credentials: { ...foreign, caPem: ours.caPem, crlPem: ours.crlPem },
    };
    await t.rejects(RemoteClient.connect(opts), { code: 'ECONNRESET', message: /may have refused our certificate/ });
    await t.rejects(remoteRequest(opts, 'test.double', { n: 1 }), { name: 'DaemonError' });
    t.equal(await s.reaches(/^sos_daemon_tls_connections_total\{outcome="certificate_refused"\} (\d+)$/m, 2), 2);

    // Signed by our CA's key, but naming cluster beta: verified by TLS, refused by identity, told why.
    const ca = {
      cluster: 'beta',
      certPem: ours.caPem,
      keyPem: fs.readFileSync(path.join(s.dir, 'ca-key.pem'), 'utf8'),
    };
    const intruder = await issue(ca, { name: 'intruder', role: 'operator' });
    await t.rejects(RemoteClient.connect({ ...s.as('operator', 'operator'), credentials: { ...ours, ...intruder } }), {
      code: 'ERR_PEER_REFUSED',
      message: /members of cluster alpha only.*cluster "beta"/,
    });
    t.equal(await s.metric(/^sos_daemon_tls_connections_total\{outcome="identity_refused"\} (\d+)$/m), 1);
    t.equal(await s.metric(/^sos_daemon_tls_connections_total\{outcome="accepted"\} (\d+)$/m), 0);
  },
);

void t.test('a revoked certificate: setCrl closes its open connection and refuses new ones', async (t) => {
  const s = await setup(t);
  const node2 = loadMember(s.dir, 'node', 'node-2');
  const c = await RemoteClient.connect(s.as('node', 'node-2'));
  const other = await RemoteClient.connect(s.as('operator', 'operator'));
  t.teardown(() => {
    c.close();
    other.close();
  });
  const serial = ((await c.request('test.whoami')) as { serial: string }).serial;
  await revoke(s.dir, [serial]);
  await t.rejects(s.server.setCrl('not a CRL'), { code: 'ERR_INVALID_ARG_VALUE' }, 'a bad CRL is refused…');
  t.equal(
    await remoteRequest(s.as('node', 'node-2'), 'test.whoami').then(() => 'served'),
    'served',
    '…and the old one kept',
  );
  await until(() => s.server.tlsConnections.open === 2, WAIT, "the one-off request's connection is gone");
  t.equal(await s.server.setCrl(fs.readFileSync(path.join(s.dir, 'crl.pem'), 'utf8')), 1, 'one connection closed');
  await until(() => c.closed, WAIT, 'the revoked connection is closed');
  await t.rejects(c.request('test.whoami'), { name: 'DaemonError' });
  await t.rejects(RemoteClient.connect({ ...s.as('node', 'node-2'), credentials: node2 }), { code: 'ECONNRESET' });
  t.match(await other.request('test.whoami'), { name: 'operator' }, 'the others are untouched');
  t.equal(await s.metric(/^sos_daemon_tls_connections_total\{outcome="revoked_open"\} (\d+)$/m), 1);
  t.equal(await s.reaches(/^sos_daemon_tls_connections_total\{outcome="certificate_refused"\} (\d+)$/m, 1), 1);
});

void t.test('malformed frames over TLS get the same errors as on the socket', async (t) => {
  const s = await setup(t);
  const op = s.as('operator', 'operator');
  const replies = await rawTls(
    op,
    'not json\n[1]\n{"v":2,"id":5,"op":"version"}\n{"v":1,"id":"x","op":"version"}\n{"v":1,"id":6,"op":"version","args":3}\n{"v":"1","id":9,"op":"version"}\n{"v":1,"id":7,"op":"version"}\n',
    7,
  );
  const byId = (id: number | null, code?: string) =>
    replies.some((r) => r.id === id && (code ? (r.error as { code: string } | undefined)?.code === code : r.ok));
  t.equal(replies.filter((r) => r.id === null && (r.error as { code: string }).code === 'ERR_BAD_JSON').length, 1);
  t.ok(byId(5, 'ERR_VERSION'));
  t.ok(byId(6, 'ERR_BAD_FRAME'));
  t.match(
    replies.find((r) => r.id === 9),
    { error: { code: 'ERR_BAD_FRAME', message: 'v must be the number 1, not the string "1"' } },
  );
  t.equal(replies.filter((r) => r.id === null).length, 3, 'not JSON, not an object, no id');
  t.ok(byId(7), 'the connection still works after bad frames');

  const huge = await rawTls(op, 'x'.repeat(MAX_FRAME * 4) + '\n{"v":1,"id":8,"op":"version"}\n', 2);
  t.match(huge[0], { ok: false, id: null, error: { code: 'ERR_FRAME_TOO_LARGE' } });
  t.match(huge[1], { ok: true, id: 8 }, 'the line after an oversized one is served');

  // A request the client cannot send whole is refused before it is sent.
  const c = await RemoteClient.connect(op);
  t.teardown(() => c.close());
  await t.rejects(c.request('test.double', { n: 1, pad: 'x'.repeat(MAX_FRAME) }), { code: 'ERR_FRAME_TOO_LARGE' });
  t.equal(await c.request('test.double', { n: 3 }), 6);
});

/** A TCP connection to the listener that never starts its handshake; resolves once connected. */
async function silent(t: Test, port: number, localAddress: string): Promise<net.Socket> {
  const s = net.connect({ host: HOST, port, localAddress });
  s.on('error', () => {});
  t.teardown(() => s.destroy());
  await new Promise((r) => s.once('connect', r));
  return s;
}

const closed = (s: net.Socket) => new Promise<void>((r) => (s.destroyed ? r() : s.once('close', () => r())));

void t.test('unauthenticated connections are bounded in all and per address', async (t) => {
  const s = await setup(t, { maxPending: 3, maxPendingPerAddress: 2, handshakeTimeoutMs: 600_000 });
  const a1 = await silent(t, s.port, '127.0.0.1');
  const a2 = await silent(t, s.port, '127.0.0.1');
  await until(() => s.server.tlsConnections.pending === 2, WAIT, 'two handshakes pending');
  const a3 = await silent(t, s.port, '127.0.0.1');
  await closed(a3);
  t.pass('a third from the same address is closed at accept');
  const b1 = await silent(t, s.port, '127.0.0.2');
  await until(() => s.server.tlsConnections.pending === 3, WAIT, 'three handshakes pending');
  const c1 = await silent(t, s.port, '127.0.0.3');
  await closed(c1);
  t.pass('a fourth in all is closed, whatever its address');
  // A member is refused too while the bound is full: the bound is on what is not verified yet.
  await t.rejects(remoteRequest(s.as('operator', 'operator'), 'version'), { name: 'DaemonError' });
  t.equal(await s.metric(/^sos_daemon_tls_connections_total\{outcome="too_many"\} (\d+)$/m), 3);
  t.equal(await s.metric(/^sos_daemon_tls_handshakes_pending (\d+)$/m), 3);
  t.ok(s.logs.some((l) => /refused a TLS connection from 127\.0\.0\.1: sosd holds 2 connections/.test(l)));

  for (const x of [a1, a2, b1]) x.destroy();
  await until(() => s.server.tlsConnections.pending === 0, WAIT, 'the slots are free again');
  t.equal(await remoteRequest(s.as('operator', 'operator'), 'test.double', { n: 4 }), 8);
});

void t.test('a handshake that does not finish in time is closed', async (t) => {
  const s = await setup(t, { handshakeTimeoutMs: 50 });
  const quiet = await silent(t, s.port, '127.0.0.1');
  await closed(quiet);
  await until(() => s.server.tlsConnections.pending === 0, WAIT, 'the handshake is settled');
  t.equal(await s.reaches(/^sos_daemon_tls_connections_total\{outcome="handshake_timeout"\} (\d+)$/m, 1), 1);
});

void t.test('a verified connection that idles is closed', async (t) => {
  const s = await setup(t, { idleTimeoutMs: 50 });
  const c = await RemoteClient.connect(s.as('operator', 'operator'), { probe: false });
  t.teardown(() => c.close());
  await until(() => c.closed, WAIT, 'the idle connection is closed');
  t.equal(await s.metric(/^sos_daemon_tls_connections_total\{outcome="idle"\} (\d+)$/m), 1);
  await until(() => s.server.tlsConnections.open === 0, WAIT, 'it is gone on the server too');
});

void t.test('roles are checked at registration; the TLS listener needs valid credentials', async (t) => {
  const s = await setup(t);
  t.throws(() => s.server.register('test.bad', NO_ARGS, () => 1, { roles: ['admin' as Role] }), {
    code: 'ERR_INVALID_ARG_VALUE',
  });
  t.same(s.server.opsFor('operator'), ['version', 'test.whoami', 'test.double']);
  const other = new DaemonServer(path.join(s.dir, 'x.sock'), { metrics: new DaemonMetrics({ processMetrics: false }) });
  await t.rejects(
    other.listenTls({
      host: HOST,
      port: 0,
      cluster: CLUSTER,
      credentials: { caPem: 'x', certPem: 'y', keyPem: 'z' },
    }),
    { code: 'ERR_INVALID_ARG_VALUE' },
  );
  await t.rejects(
    s.server.listenTls({ host: HOST, port: 0, cluster: CLUSTER, credentials: loadMember(s.dir, 'node', 'node-1') }),
    {
      code: 'ERR_INVALID_ARG_VALUE',
    },
  );
});
