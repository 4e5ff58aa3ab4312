// The cluster's process entries against a real etcd: numbers unique under concurrent starts from
// several nodes, entries readable by any member, fenced (a node without its lease, or one that did
// not see another node's takeover, changes nothing), malformed entries skipped by readers.
import t from 'tap';
import { openStore } from '../../lib/cluster/store.js';
import { Member } from '../../lib/cluster/membership.js';
import { ProcessRegistry, findProcess, listProcesses, type ProcessEntry } from '../../lib/cluster/processes.js';
import { testEtcd } from '../../testkit/etcd.js';
import { readMove, recordMove, type MoveEntry } from '../../lib/cluster/moves.js';

const entry = (app: string, id: number, node: string): ProcessEntry => ({
  app,
  id,
  node,
  pid: 4000 + id,
  state: 'running',
  startedAt: new Date().toISOString(),
  exitCode: null,
  signal: null,
  exitedAt: null,
  argv0: 'sleep',
});

void t.test('numbers, entries, fencing', async (t) => {
  const etcd = await testEtcd(t);
  const stores = [0, 1, 2].map(() => openStore({ endpoints: [etcd.endpoint], cluster: 'procs' }));
  t.teardown(() => stores.forEach((s) => s.close()));
  const members = await Promise.all(stores.map((s, i) => Member.join(s, { name: `n${i}`, ttlSeconds: 10 })));
  t.teardown(() => Promise.all(members.map((m) => m.leave())));
  const regs = stores.map((s, i) => new ProcessRegistry(s, members[i]));

  // 3 nodes start 10 processes of one app each, at once: 30 distinct numbers, 1..30.
  const ids = await Promise.all(regs.flatMap((r) => Array.from({ length: 10 }, () => r.allocate('web'))));
  t.same(
    [...ids].sort((a, b) => a - b),
    Array.from({ length: 30 }, (_, i) => i + 1),
    'concurrent allocations never repeat a number',
  );
  t.equal(await regs[0].allocate('db'), 1, 'each application numbers its own');
  await t.rejects(regs[0].allocate('Bad/App'), { code: 'ERR_BAD_RECORD' });

  await regs[0].put(entry('web', 1, 'n0'));
  await regs[0].put({ ...entry('web', 1, 'n0'), state: 'exited', exitCode: 0, exitedAt: new Date().toISOString() });
  t.match(await findProcess(stores[2], 'web', 1), { node: 'n0', state: 'exited', exitCode: 0 }, 'any member reads it');
  t.equal(await findProcess(stores[2], 'web', 99), null);

  // n1 takes web/2 over (as after a migration); n0's stale write is refused.
  await regs[0].put(entry('web', 2, 'n0'));
  await t.rejects(
    regs[1].put(entry('web', 2, 'n1')),
    { code: 'ERR_FENCED', message: /its entry names n0, not n1/ },
    "an entry naming another node is not a node's to write, unless it takes it over",
  );
  await regs[1].put(entry('web', 2, 'n1'), { takeOver: true });
  await t.rejects(regs[0].put({ ...entry('web', 2, 'n0'), state: 'exited' }), { code: 'ERR_FENCED' });
  // A restarted n0 (a fresh registry: no revision seen) is refused too.
  await t.rejects(new ProcessRegistry(stores[0], members[0]).put({ ...entry('web', 2, 'n0'), state: 'exited' }), {
    code: 'ERR_FENCED',
  });
  // A restore takes over only from the node the entry names.
  await t.rejects(regs[2].put(entry('web', 2, 'n2'), { from: 'n0' }), { code: 'ERR_FENCED' });
  t.match(await findProcess(stores[0], 'web', 2), { node: 'n1', state: 'running' }, 'the takeover stands');

  // A node whose lease is gone writes nothing.
  await members[2].leave();
  await t.rejects(regs[2].put(entry('web', 3, 'n2')), { code: 'ERR_FENCED' });

  // A malformed or mismatched entry is skipped by readers.
  await stores[0].kv.put('procs/web/7').value('{"app":"web","id":8}');
  await stores[0].kv.put('procs/web/9').value('not json');
  t.same(
    (await listProcesses(stores[1], 'web')).map((e) => `${e.app}/${e.id}@${e.node}`),
    ['web/1@n0', 'web/2@n1'],
  );
  await regs[1].remove('web', 2);
  t.equal(await findProcess(stores[0], 'web', 2), null, 'removed');
});

void t.test('moves: recorded once, by their source while it holds its lease; read back checked', async (t) => {
  const etcd = await testEtcd(t);
  const store = openStore({ endpoints: [etcd.endpoint], cluster: 'moves' });
  t.teardown(() => store.close());
  const a = await Member.join(store, { name: 'node0', ttlSeconds: 10 });
  const move: MoveEntry = {
    migration: 'ab'.repeat(16),
    app: 'web',
    id: 1,
    from: 'node0',
    to: 'node1',
    mode: 'postcopy',
    argv: ['/bin/sleep', '100'],
    cwd: '/',
    limits: {},
    logs: { stdout: '/s/web/1/stdout.log', stderr: '/s/web/1/stderr.log' },
    startedAt: new Date().toISOString(),
    at: new Date().toISOString(),
  };
  await recordMove(store, a, move);
  t.same(await readMove(store, move.migration), move, 'read back as written');
  await t.rejects(recordMove(store, a, move), { code: 'ERR_FENCED' }, 'an id is recorded once');
  await t.rejects(
    recordMove(store, a, { ...move, migration: 'cd'.repeat(16), from: 'node2' }),
    { code: 'ERR_FENCED' },
    'only by its source',
  );
  t.equal(await readMove(store, 'ef'.repeat(16)), null, 'none');
  t.equal(await readMove(store, 'not-an-id'), null);
  await store.kv.put(`moves/${'12'.repeat(16)}`).value('{"migration":"x"}');
  t.equal(await readMove(store, '12'.repeat(16)), null, 'a malformed entry is not read');
  await a.leave();
  await t.rejects(
    recordMove(store, a, { ...move, migration: '34'.repeat(16) }),
    { code: 'ERR_FENCED' },
    'not after its lease is gone',
  );
});
