// The memory node over mutual TLS, with certificates of a real cluster folder (the project's own CA):
// pages written and read back byte for byte; refused at the TLS handshake, and nothing allocated for them:
// a client without a certificate, of another CA, of another cluster signed by our CA, revoked, of a role
// the node does not take, or speaking the clear protocol; and refused by the client: a node its CA did
// not sign, of another cluster, or another member than asked. Loopback; waits on conditions only.
import t, { type Test } from 'tap';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { initCluster, issueMember, loadMember, revoke, type MemberFiles } from '../../lib/cluster/folder.js';
import { issue } from '../../lib/cluster/identity.js';
import { MemoryNode, RemoteStore, type MemoryNodeTlsOptions } from '../../lib/memory/index.js';
import { until } from '../../testkit/wait.js';
import { outcomeCode as code } from '../../testkit/outcome.js';

const PAGE = 4096;
const MiB = 1 << 20;
const WAIT = 30_000;
const APP = 'tls-app';

interface Folder {
  dir: string;
  node: MemberFiles;
  operator: MemberFiles;
  /** A certificate of another cluster's CA. */
  foreign: MemberFiles;
  /** Signed by our CA's key, naming cluster beta. */
  intruder: MemberFiles;
}

async function folder(t: Test): Promise<Folder> {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'mem-tls-'));
  t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));
  const dir = path.join(root, 'alpha');
  await initCluster(dir, { cluster: 'alpha' });
  await issueMember(dir, { name: 'node-1', role: 'node', hosts: ['127.0.0.1'] });
  await initCluster(path.join(root, 'beta'), { cluster: 'beta' });
  const operator = loadMember(dir, 'operator', 'operator');
  const ca = {
    cluster: 'beta',
    certPem: operator.caPem,
    keyPem: fs.readFileSync(path.join(dir, 'ca-key.pem'), 'utf8'),
  };
  const bad = await issue(ca, { name: 'intruder', role: 'operator' });
  return {
    dir,
    node: loadMember(dir, 'node', 'node-1'),
    operator,
    foreign: loadMember(path.join(root, 'beta'), 'operator', 'operator'),
    intruder: { ...operator, certPem: bad.certPem, keyPem: bad.keyPem },
  };
}

async function tlsNode(t: Test, tlsOpts: MemoryNodeTlsOptions, secret = crypto.randomBytes(32)) {
  const n = new MemoryNode({ capacity: 64 * MiB, applications: { [APP]: secret }, tls: tlsOpts });
  t.teardown(() => n.close());
  const { host, port } = await n.listen();
  return { n, host, port, secret };
}

/** Nothing held for anyone, and every connection gone. */
async function nothingAllocated(t: Test, n: MemoryNode, what: string): Promise<void> {
  await until(() => n.stats().connections === 0, WAIT, `${what}: the connections are closed`);
  const s = n.stats();
  t.equal(s.reserved, 0, `${what}: nothing reserved`);
  t.equal(s.applications[APP].regions, 0, `${what}: no region`);
  t.equal(s.unauthenticated, 0, `${what}: none left unauthenticated`);
}

void t.test('over mutual TLS: pages written and read back, every byte right', async (t) => {
  const f = await folder(t);
  const { n, host, port, secret } = await tlsNode(t, f.node);
  const size = 8 * MiB;
  const r = await RemoteStore.connect({
    host,
    port,
    application: APP,
    secret,
    size,
    tls: f.operator,
    serverName: 'node-1',
  });
  t.teardown(() => r.close());
  const ref = Buffer.alloc(size);
  for (let i = 0; i < 100; i++) {
    const pages = 1 + crypto.randomInt(300); // over one batch: split by the client
    const first = crypto.randomInt(size / PAGE - pages);
    const data = crypto.randomBytes(pages * PAGE);
    await r.write(first * PAGE, data);
    data.copy(ref, first * PAGE);
  }
  // Pipelined from several callers at once: replies matched by id inside one TLS stream.
  const reads = Array.from({ length: 32 }, () => {
    const off = crypto.randomInt(size - 1);
    const len = 1 + crypto.randomInt(Math.min(size - off, 2 * MiB));
    return r.read(off, len).then((b) => b.equals(ref.subarray(off, off + len)));
  });
  t.ok((await Promise.all(reads)).every(Boolean), 'concurrent reads match');
  t.ok((await r.read(0, size)).equals(ref), 'the whole region');
  t.equal((await r.nodeStats()).reserved, size);
  const s = n.stats();
  t.equal(s.tlsRefused, 0);
  t.equal(s.badFrames, 0);
  t.equal(s.total.bytesIn, r.stats().bytesOut, 'the node took every byte sent');
  await r.close();
  await until(() => n.stats().reserved === 0, WAIT, 'close frees the region');

  // Another role the node takes by default (a node's own certificate), and the secret still authorizes.
  t.equal(
    await code(RemoteStore.connect({ host, port, application: APP, secret, size: PAGE, tls: f.node })),
    'resolved',
  );
  t.equal(
    await code(
      RemoteStore.connect({
        host,
        port,
        application: APP,
        secret: crypto.randomBytes(32),
        size: PAGE,
        tls: f.operator,
      }),
    ),
    'ERR_AUTH',
    'TLS is not a grant: a wrong secret is refused',
  );
  t.equal(n.stats().total.authFailures, 1);
});

void t.test('the node refuses at the TLS handshake, and allocates nothing', async (t) => {
  const f = await folder(t);
  const { n, host, port, secret } = await tlsNode(t, f.node);
  const connect = (o: Partial<Parameters<typeof RemoteStore.connect>[0]>) =>
    RemoteStore.connect({ host, port, application: APP, secret, size: MiB, ...o });
  let refused = 0;
  const expectRefusal = async (what: string, p: Promise<unknown>, want: string | RegExp[], log: RegExp) => {
    if (typeof want === 'string') t.equal(await code(p), want, what);
    else await t.rejects(p, { code: 'ERR_AUTH', message: want[0] }, what);
    refused++;
    await until(() => n.stats().tlsRefused === refused, WAIT, `${what}: counted`);
    t.match(n.stats().log.at(-1), log, `${what}: logged`);
    await nothingAllocated(t, n, what);
  };

  await expectRefusal(
    'another CA',
    connect({ tls: { ...f.foreign, caPem: f.operator.caPem, crlPem: f.operator.crlPem, cluster: 'alpha' } }),
    'ERR_AUTH',
    /TLS refused: the peer's certificate did not verify/,
  );
  await expectRefusal(
    'our CA, cluster beta',
    connect({ tls: f.intruder }),
    [/refused this side's certificate \(sslv3 alert handshake failure\)/],
    /TLS refused: the peer's certificate is of cluster "beta", not "alpha"/,
  );
  // The old clear protocol: the node closes it unread, as a connection reset (the client's code for a
  // node that hangs up in the handshake).
  await expectRefusal('the clear protocol', connect({}), 'ECONNRESET', /TLS refused: SSL_do_handshake: /);

  // No certificate at all (Node's own TLS client, which trusts the node).
  await new Promise<void>((resolve) => {
    const s = tls.connect({ host, port, ca: f.operator.caPem, checkServerIdentity: () => undefined });
    s.on('error', () => resolve());
    s.on('close', () => resolve());
    s.on('secureConnect', () => s.write(Buffer.alloc(64)));
  });
  refused++;
  await until(() => n.stats().tlsRefused === refused, WAIT, 'no certificate: counted');
  t.match(n.stats().log.at(-1), /TLS refused: the peer sent no certificate/);
  await nothingAllocated(t, n, 'no certificate');

  // Revoked: the CA's new CRL, given to the running node (new connections use it).
  await issueMember(f.dir, { name: 'op-2', role: 'operator' });
  const op2 = loadMember(f.dir, 'operator', 'op-2');
  t.equal(await code(connect({ tls: op2 }).then((r) => r.close())), 'resolved', 'op-2 gets in before');
  await until(() => n.stats().connections === 0, WAIT, 'closed');
  await revoke(f.dir, [new crypto.X509Certificate(op2.certPem).serialNumber.toLowerCase()]);
  n.setTls(loadMember(f.dir, 'node', 'node-1'));
  await expectRefusal(
    'revoked',
    connect({ tls: op2 }),
    [/refused this side's certificate \(sslv3 alert certificate revoked\)/],
    /TLS refused: the peer's certificate did not verify: certificate revoked/,
  );
  t.equal(await code(connect({ tls: f.operator }).then((r) => r.close())), 'resolved', 'the others still get in');
});

void t.test('a node that takes operators only refuses a node certificate', async (t) => {
  const f = await folder(t);
  const { n, host, port, secret } = await tlsNode(t, { ...f.node, roles: ['operator'] });
  const base = { host, port, application: APP, secret, size: MiB };
  t.equal(await code(RemoteStore.connect({ ...base, tls: f.node })), 'ERR_AUTH');
  await until(() => n.stats().tlsRefused === 1, WAIT, 'counted');
  t.match(n.stats().log.at(-1), /names no role allowed here \(OU="node"\)/);
  await nothingAllocated(t, n, 'a node certificate');
  t.equal(await code(RemoteStore.connect({ ...base, tls: f.operator }).then((r) => r.close())), 'resolved');
});

void t.test('the client refuses a node it cannot trust', async (t) => {
  const f = await folder(t);
  const { n, host, port, secret } = await tlsNode(t, f.node);
  const base = { host, port, application: APP, secret, size: MiB };
  t.equal(
    await code(RemoteStore.connect({ ...base, tls: { ...f.operator, caPem: f.foreign.caPem, crlPem: undefined } })),
    'ERR_AUTH',
    'a node our CA did not sign',
  );
  t.equal(await code(RemoteStore.connect({ ...base, tls: { ...f.operator, cluster: 'beta' } })), 'ERR_CLUSTER');
  t.equal(await code(RemoteStore.connect({ ...base, tls: f.operator, serverName: 'node-9' })), 'ERR_WRONG_PEER');
  await until(() => n.stats().tlsRefused === 3, WAIT, 'the node saw each client give up');
  await nothingAllocated(t, n, 'refused by the client');

  // A TLS client against a node without TLS: the node sees a bad frame, the client a protocol error.
  const clear = new MemoryNode({ capacity: 16 * MiB, applications: { [APP]: secret } });
  t.teardown(() => clear.close());
  const a = await clear.listen();
  t.equal(await code(RemoteStore.connect({ ...base, ...a, tls: f.operator })), 'ERR_PROTOCOL');
  await until(() => clear.stats().badFrames === 1, WAIT, 'the clear node closed it as a bad frame');
  t.equal(clear.stats().reserved, 0);
});

void t.test('TLS options are checked in JavaScript', async (t) => {
  const f = await folder(t);
  const opts = (tlsOpts: unknown) => ({ capacity: MiB, tls: tlsOpts as MemoryNodeTlsOptions });
  t.throws(() => new MemoryNode(opts({ ...f.node, cluster: undefined })), { code: 'ERR_INVALID_ARG_VALUE' });
  t.throws(() => new MemoryNode(opts({ ...f.node, keyPem: 42 })), { code: 'ERR_INVALID_ARG_TYPE' });
  t.throws(() => new MemoryNode(opts({ ...f.node, keyPem: f.operator.keyPem })), {
    code: 'ERR_INVALID_ARG_VALUE',
    message: /do not load/,
  });
  t.throws(() => new MemoryNode(opts({ ...f.node, roles: ['root'] })), { code: 'ERR_INVALID_ARG_VALUE' });
  const plain = new MemoryNode({ capacity: MiB });
  t.teardown(() => plain.close());
  t.throws(() => plain.setTls(f.node), { code: 'ERR_UNSUPPORTED' });
  await t.rejects(
    RemoteStore.connect({
      host: '127.0.0.1',
      port: 1,
      application: APP,
      secret: Buffer.alloc(32),
      size: PAGE,
      serverName: 'x',
    }),
    { code: 'ERR_INVALID_ARG_VALUE' },
  );
});
