// Migration records in etcd, against a real etcd: durable (another client reads them, they outlive
// the writer's membership), fenced by the writer's lease (a node whose lease etcd revoked changes
// nothing, even before it notices) and by revision (a second writer that did not see the latest
// record is refused), pruned to `keep` final records.
import t from 'tap';
import crypto from 'node:crypto';
import { openStore, type Store } from '../../lib/cluster/store.js';
import { Member } from '../../lib/cluster/membership.js';
import { EtcdRecordStore } from '../../lib/cluster/migration-records.js';
import type { MigrationRecord } from '../../lib/migration/record.js';
import { testEtcd } from '../../testkit/etcd.js';
import { startEtcd } from '../../lib/cluster/etcd-server.js';
import { untilEtcdAnswers } from '../../lib/cluster/etcd-retry.js';

const id = () => crypto.randomBytes(16).toString('hex');
const rec = (i: string, state: MigrationRecord['state'] = 'started'): MigrationRecord => ({
  id: i,
  role: 'source',
  state,
  mode: 'precopy',
  pid: 1234,
  updated: '',
});

async function setup(t: { teardown(f: () => unknown): void }): Promise<{ s: Store; other: Store; m: Member }> {
  const etcd = await testEtcd(t);
  const s = openStore({ endpoints: [etcd.endpoint], cluster: 'mig' });
  const other = openStore({ endpoints: [etcd.endpoint], cluster: 'mig' });
  t.teardown(() => {
    s.close();
    other.close();
  });
  const m = await Member.join(s, { name: 'node-m', ttlSeconds: 10 });
  t.teardown(() => m.leave());
  return { s, other, m };
}

void t.test('durable: read by another client, kept after the writer leaves', async (t) => {
  const { s, other, m } = await setup(t);
  const r = new EtcdRecordStore(s, m);
  const a = id();
  await r.put(rec(a));
  await r.put({ ...rec(a), state: 'committing' });
  const reader = new EtcdRecordStore(other, m);
  t.match(await reader.get(a), { id: a, state: 'committing', role: 'source', pid: 1234 });
  t.equal((await reader.list()).length, 1);
  t.equal(await reader.get(id()), null, 'an unknown id is null');
  await t.rejects(r.get('../x'), { code: 'ERR_BAD_MESSAGE' });
  await m.leave();
  t.match(await reader.get(a), { state: 'committing' }, "the record outlives its writer's membership");
  await t.rejects(r.put({ ...rec(a), state: 'done' }), { code: 'ERR_FENCED', message: /node-m is not a live member/ });
  t.match(await reader.get(a), { state: 'committing' }, 'a refused put changed nothing');
});

void t.test("fenced by the writer's lease, even before it notices the loss", async (t) => {
  const { s, other, m } = await setup(t);
  const r = new EtcdRecordStore(s, m);
  const a = id();
  await r.put(rec(a));
  // Another client revokes the lease: node-m's record is gone, node-m itself has not noticed yet.
  await other.client.leaseClient.leaseRevoke({ ID: m.leaseId });
  t.ok(m.alive, 'the member has not noticed yet');
  await t.rejects(r.put({ ...rec(a), state: 'committing' }), {
    code: 'ERR_FENCED',
    message: /no longer holds its lease/,
  });
  t.match(await new EtcdRecordStore(other, m).get(a), { state: 'started' }, 'nothing changed');
});

void t.test('fenced by revision: a writer that did not see the latest record is refused', async (t) => {
  const { s, m } = await setup(t);
  const w1 = new EtcdRecordStore(s, m);
  const w2 = new EtcdRecordStore(s, m);
  const a = id();
  await w1.put(rec(a));
  t.match(await w2.get(a), { state: 'started' });
  await w1.put({ ...rec(a), state: 'committing' });
  await t.rejects(w2.put({ ...rec(a), state: 'aborted' }), {
    code: 'ERR_FENCED',
    message: /another writer changed the record/,
  });
  t.match(await w1.get(a), { state: 'committing' }, "the first writer's decision stands");
  t.match(await w2.get(a), { state: 'committing' });
  await w2.put({ ...rec(a), state: 'done' });
  t.match(await w1.get(a), { state: 'done' }, 'after reading the latest, the second writer may write');
  const b = id();
  await w1.put(rec(b));
  await t.rejects(w2.put(rec(b)), { code: 'ERR_FENCED' }, 'creating a record another writer created is refused too');
  const restarted = new EtcdRecordStore(s, m);
  t.equal((await restarted.list()).length, 2, 'a restarted writer lists the records');
  await restarted.put({ ...rec(b), state: 'aborted' });
  t.match(await w1.get(b), { state: 'aborted' }, 'and may update what it listed');
});

void t.test('final records are pruned to keep', async (t) => {
  const { s, m } = await setup(t);
  const r = new EtcdRecordStore(s, m, 2);
  const live = id();
  await r.put(rec(live));
  const ids = [id(), id(), id(), id()];
  for (const i of ids) await r.put(rec(i, 'done'));
  const left = (await r.list()).map((x) => x.id).sort();
  t.same(left, [live, ...ids.slice(2)].sort(), 'the newest two final records and the live one');
  await r.remove(live);
  t.equal(await r.get(live), null);
});

void t.test('etcd down: every call fails with ERR_ETCD_UNAVAILABLE; untilEtcdAnswers waits it out', async (t) => {
  const etcd = await testEtcd(t);
  const s = openStore({ endpoints: [etcd.endpoint], cluster: 'mig' });
  t.teardown(() => s.close());
  // A TTL far longer than the restart: the lease lives on in etcd's data.
  const m = await Member.join(s, { name: 'node-d', ttlSeconds: 30 });
  t.teardown(() => m.leave());
  const r = new EtcdRecordStore(s, m);
  const a = id();
  await r.put(rec(a));
  await etcd.stop();
  const down = { code: 'ERR_ETCD_UNAVAILABLE', message: /^etcd did not answer/ };
  await t.rejects(r.list(), down, 'list');
  await t.rejects(r.get(a), down, 'get');
  await t.rejects(r.remove(a), down, 'remove');
  await t.rejects(r.put({ ...rec(a), state: 'committing' }), down, 'put');
  // The first failure starts etcd again on the same folder and ports; the listing then completes.
  const port = (u: string) => Number(new URL(u).port);
  let again: Awaited<ReturnType<typeof startEtcd>> | null = null;
  t.teardown(() => again?.stop());
  const retried: string[] = [];
  const list = await untilEtcdAnswers(
    () => r.list(),
    (e) => {
      retried.push(e.code);
      if (retried.length === 1)
        void startEtcd({ dir: etcd.dir, clientPort: port(etcd.endpoint), peerPort: port(etcd.peerEndpoint) }).then(
          (e) => (again = e),
        );
    },
  );
  t.same(
    list.map((x) => [x.id, x.state]),
    [[a, 'started']],
    'the record, once etcd answers',
  );
  t.ok(retried.length >= 1 && retried.every((c) => c === 'ERR_ETCD_UNAVAILABLE'), 'retried on ERR_ETCD_UNAVAILABLE');
  await t.rejects(
    untilEtcdAnswers(
      () => r.get('../x'),
      () => t.fail('not retried'),
    ),
    { code: 'ERR_BAD_MESSAGE' },
    'any other error is thrown at once',
  );
});
