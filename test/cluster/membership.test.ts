// Membership by lease against a real etcd: a member's record appears and vanishes with its lease;
// a name is held by one live member; a member that dies without leaving is gone within its TTL; a
// silent etcd (SIGSTOP: the network looks up, nothing answers) makes the member say 'lost' instead of
// trusting a keep-alive, and it joins again once etcd answers; an etcd restart keeps the membership;
// a TLS etcd admits only certificates of the cluster CA.
import t from 'tap';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startEtcd } from '../../lib/cluster/etcd-server.js';
import { openStore, type Store } from '../../lib/cluster/store.js';
import { Member, listNodes } from '../../lib/cluster/membership.js';
import { createCa, issue } from '../../lib/cluster/identity.js';
import { NODES } from '../../lib/cluster/keys.js';
import type { ClusterError } from '../../lib/cluster/errors.js';
import { testEtcd } from '../../testkit/etcd.js';
import { LineProcess } from '../../testkit/line-process.js';
import { nextEvent, within } from '../../testkit/wait.js';

const here = path.dirname(fileURLToPath(import.meta.url));

function store(t: { teardown(f: () => void): void }, endpoint: string, cluster = 'test'): Store {
  const s = openStore({ endpoints: [endpoint], cluster });
  t.teardown(() => s.close());
  return s;
}

/** Resolves when `key` (under the cluster's prefix) is deleted. */
async function deleted(s: Store, key: string): Promise<void> {
  const w = await s.kv.watch().key(key).create();
  try {
    const gone = new Promise<void>((resolve) => w.on('delete', () => resolve()));
    if ((await s.kv.get(key).string()) === null) return;
    await gone;
  } finally {
    await w.cancel();
  }
}

void t.test('join, a name held once, leave', async (t) => {
  const etcd = await testEtcd(t);
  const s = store(t, etcd.endpoint);
  const a = await Member.join(s, { name: 'node-a', facts: { addr: '10.1.0.1', cpus: 2 }, ttlSeconds: 5 });
  t.ok(a.alive, 'alive after join');
  t.match(a.leaseHex, /^[0-9a-f]+$/, 'a lease');
  const nodes = await listNodes(s);
  t.same([...nodes.keys()], ['node-a']);
  t.match(nodes.get('node-a'), { v: 1, name: 'node-a', addr: '10.1.0.1', cpus: 2, lease: a.leaseHex });
  await t.rejects(Member.join(s, { name: 'node-a', ttlSeconds: 5 }), {
    code: 'ERR_NODE_NAME_TAKEN',
    message: new RegExp(`node name node-a is held by another live member \\(lease ${a.leaseHex}\\)`),
  });
  t.equal((await listNodes(s)).get('node-a')?.lease, a.leaseHex, 'the refused join left the record as it was');
  const b = await Member.join(s, { name: 'node-b', ttlSeconds: 5 });
  await a.update({ addr: '10.1.0.9' });
  t.equal((await listNodes(s)).get('node-a')?.addr, '10.1.0.9', 'update replaces the facts');
  await a.leave();
  await a.leave();
  t.notOk(a.alive, 'not alive after leave');
  t.same([...(await listNodes(s)).keys()], ['node-b'], 'leave removes the record at once');
  await t.rejects(a.update({}), { code: 'ERR_LEASE_LOST' });
  const again = await Member.join(s, { name: 'node-a', ttlSeconds: 5 });
  t.ok(again.alive, 'a left name can be joined again');
  await again.leave();
  await b.leave();
  await t.rejects(Member.join(s, { name: 'Bad Name' }), { code: 'ERR_INVALID_ARG_VALUE' });
  await t.rejects(Member.join(s, { name: 'x', ttlSeconds: 1 }), { code: 'ERR_INVALID_ARG_VALUE' });
  t.throws(() => openStore({ endpoints: ['127.0.0.1:2379'], cluster: 'c' }), { code: 'ERR_INVALID_ARG_VALUE' });
  t.throws(() => openStore({ endpoints: ['http://127.0.0.1:2379'], cluster: 'C!' }), { code: 'ERR_INVALID_ARG_VALUE' });
});

void t.test('a member that dies without leaving is gone within its TTL', async (t) => {
  const etcd = await testEtcd(t);
  const s = store(t, etcd.endpoint);
  const p = new LineProcess(
    process.execPath,
    [path.join(here, '../helpers/member-process.js'), etcd.endpoint, 'test', 'node-d', '2'],
    {
      name: 'member',
    },
  );
  t.teardown(() => p.kill());
  const joined = await p.line();
  t.match(joined, /^JOINED [0-9a-f]+$/);
  t.ok((await listNodes(s)).has('node-d'), 'listed while it runs');
  const gone = deleted(s, NODES + 'node-d');
  const killedAt = Date.now();
  p.proc.kill('SIGKILL');
  await within(gone, 30_000, "node-d's record to vanish");
  t.comment(`record gone ${((Date.now() - killedAt) / 1000).toFixed(1)} s after SIGKILL (TTL 2 s)`);
  t.notOk((await listNodes(s)).has('node-d'));
  const other = await Member.join(s, { name: 'node-d', ttlSeconds: 2 });
  t.ok(other.alive, 'its name is free again');
  await other.leave();
});

void t.test('a silent etcd: lost within the TTL, joined again when it answers', async (t) => {
  const etcd = await testEtcd(t);
  const s = store(t, etcd.endpoint);
  const m = await Member.join(s, { name: 'node-s', ttlSeconds: 2 });
  t.teardown(() => m.leave());
  const joinedAt = Date.now();
  t.ok(
    m.validUntil > joinedAt && m.validUntil <= joinedAt + 2000,
    'held surely for at most a TTL from the grant (validUntil)',
  );
  const lost = nextEvent<ClusterError>(m, 'lost', 30_000);
  let lastValid = 0;
  m.on('renewed', () => (lastValid = m.validUntil));
  process.kill(etcd.pid, 'SIGSTOP');
  t.teardown(() => {
    try {
      process.kill(etcd.pid, 'SIGCONT');
    } catch {
      // gone
    }
  });
  const e = await lost;
  t.equal(e.code, 'ERR_LEASE_LOST');
  t.match(e.message, /node-s's lease renewal was not acknowledged for 2 s/);
  t.notOk(m.alive, 'not alive while etcd is silent');
  t.equal(m.validUntil, 0, 'and not surely held');
  t.ok(lastValid === 0 || Date.now() >= lastValid, 'lost no earlier than the last renewal held it');
  await t.rejects(m.putLeased('x', 'y'), { code: 'ERR_LEASE_LOST' }, 'a lost member writes nothing under its lease');
  const old = m.leaseHex;
  const joined = nextEvent<{ lease: string }>(m, 'joined', 60_000);
  process.kill(etcd.pid, 'SIGCONT');
  const j = await joined;
  t.ok(m.alive, 'alive again');
  t.not(j.lease, old, 'under a fresh lease');
  t.equal((await listNodes(s)).get('node-s')?.lease, j.lease, 'the record names the fresh lease');
});

void t.test('an etcd restart keeps the membership', async (t) => {
  const etcd = await testEtcd(t);
  const s = store(t, etcd.endpoint);
  // A TTL far longer than a restart takes: the point is that the lease survives it, not a race.
  const m = await Member.join(s, { name: 'node-r', ttlSeconds: 15 });
  t.teardown(() => m.leave());
  let lost = 0;
  m.on('lost', () => lost++);
  const lease = m.leaseHex;
  await etcd.stop();
  // The same folder and ports: the restarted etcd has the lease and the record from its data.
  const port = (u: string) => Number(new URL(u).port);
  const again = await startEtcd({ dir: etcd.dir, clientPort: port(etcd.endpoint), peerPort: port(etcd.peerEndpoint) });
  t.teardown(() => again.stop());
  // A renewal acknowledged by the restarted etcd proves the lease lives on there.
  const r = await nextEvent<{ ttlSeconds: number }>(m, 'renewed', 60_000);
  t.ok(r.ttlSeconds > 0, 'renewed by the restarted etcd');
  t.ok(m.alive, 'alive after the restart');
  t.equal(lost, 0, 'never lost');
  t.equal(m.leaseHex, lease, 'the same lease');
  t.equal((await listNodes(s)).get('node-r')?.lease, lease, 'the record is still there');
});

void t.test('a TLS etcd admits certificates of the cluster CA only', async (t) => {
  const ca = await createCa({ cluster: 'tls' });
  const server = await issue(ca, { name: 'etcd', role: 'node', hosts: ['127.0.0.1'] });
  const etcd = await testEtcd(t, { tls: { caPem: ca.certPem, certPem: server.certPem, keyPem: server.keyPem } });
  t.match(etcd.endpoint, /^https:\/\/127\.0\.0\.1:\d+$/);
  const node = await issue(ca, { name: 'node-t', role: 'node' });
  const ok = openStore({
    endpoints: [etcd.endpoint],
    cluster: 'tls',
    serverName: 'etcd',
    tls: { caPem: ca.certPem, ...node },
  });
  t.teardown(() => ok.close());
  const m = await Member.join(ok, { name: 'node-t', ttlSeconds: 5 });
  t.ok(m.alive, 'a member with a certificate of the cluster CA joins');
  await m.leave();
  const other = await createCa({ cluster: 'tls' });
  const stranger = await issue(other, { name: 'node-x', role: 'node' });
  const bad = openStore({
    endpoints: [etcd.endpoint],
    cluster: 'tls',
    tls: { caPem: ca.certPem, ...stranger },
    serverName: 'etcd',
    dialTimeoutMs: 2000,
  });
  t.teardown(() => bad.close());
  await t.rejects(Member.join(bad, { name: 'node-x', ttlSeconds: 5 }), { code: 'ERR_ETCD_UNAVAILABLE' });
});

void t.test('a restarted member resumes its lease: the cluster never sees it leave', async (t) => {
  const etcd = await testEtcd(t);
  const s = store(t, etcd.endpoint);
  const watcher = store(t, etcd.endpoint);
  const w = await watcher.kv
    .watch()
    .key(NODES + 'node-p')
    .create();
  t.teardown(() => w.cancel());
  let deletes = 0;
  w.on('delete', () => deletes++);
  const first = await Member.join(s, { name: 'node-p', facts: { gen: 1 }, ttlSeconds: 30 });
  const kept = first.leaseId;
  first.detach();
  first.detach();
  t.notOk(first.alive, 'a detached member is not alive');
  t.equal((await listNodes(s)).get('node-p')?.lease, first.leaseHex, 'its record stays after detach');
  await t.rejects(
    Member.join(s, { name: 'node-p', ttlSeconds: 30 }),
    { code: 'ERR_NODE_NAME_TAKEN' },
    'without the lease: taken',
  );
  const second = await Member.join(s, { name: 'node-p', facts: { gen: 2 }, ttlSeconds: 30, resumeLease: kept });
  t.teardown(() => second.leave());
  t.ok(second.alive);
  t.equal(second.leaseId, kept, 'the same lease');
  t.match((await listNodes(s)).get('node-p'), { gen: 2, lease: first.leaseHex }, 'the record is updated under it');
  const renewed = await nextEvent<{ ttlSeconds: number }>(second, 'renewed', 60_000);
  t.ok(renewed.ttlSeconds > 0, 'and renewed');
  await second.leave();
  await within(
    (async () => {
      while ((await listNodes(s)).has('node-p')) await new Promise((r) => setTimeout(r, 10));
    })(),
    10_000,
    'the record to go',
  );
  t.equal(deletes, 1, 'one delete, at the leave: none at the restart');
  const third = await Member.join(s, { name: 'node-p', ttlSeconds: 5, resumeLease: kept });
  t.teardown(() => third.leave());
  t.not(third.leaseId, kept, 'a revoked lease is not resumed: a fresh one');
  await t.rejects(Member.join(s, { name: 'node-q', resumeLease: 'abc' }), { code: 'ERR_INVALID_ARG_VALUE' });
});
