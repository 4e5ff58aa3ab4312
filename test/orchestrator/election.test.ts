// The orchestrator's election against a real etcd: one leader at a time; a leader that leaves,
// resigns or dies is followed by another under a new term; once etcd dropped a leader's lease (a
// partition past its TTL) a step under its fence is recorded nowhere, and nodes refuse it.
import t, { type Test } from 'tap';
import { openStore, type Store } from '../../lib/cluster/store.js';
import { Member } from '../../lib/cluster/membership.js';
import { Election } from '../../lib/orchestrator/election.js';
import { checkFence, currentLeader, type Fence } from '../../lib/orchestrator/fence.js';
import { recordAction } from '../../lib/orchestrator/actions.js';
import { testEtcd } from '../../testkit/etcd.js';
import { nextEvent } from '../../testkit/wait.js';

async function setup(t: Test, names: string[], ttlSeconds = 10) {
  const etcd = await testEtcd(t);
  const open = (): Store => {
    const s = openStore({ endpoints: [etcd.endpoint], cluster: 'orch' });
    t.teardown(() => s.close());
    return s;
  };
  const out: { name: string; store: Store; member: Member; election: Election }[] = [];
  for (const name of names) {
    const store = open();
    const member = await Member.join(store, { name, ttlSeconds });
    const election = new Election(store, member); // the watch, not the 2 s pass, makes it prompt
    t.teardown(async () => {
      await election.stop();
      await member.leave();
    });
    out.push({ name, store, member, election });
  }
  return { etcd, open, members: out };
}

const elected = (e: Election) => nextEvent<Fence>(e, 'elected', 30_000);

void t.test('one leader; the next one after it leaves, under a higher term', async (t) => {
  const { open, members } = await setup(t, ['a', 'b', 'c']);
  const first = Promise.race(members.map((m) => elected(m.election).then((f) => ({ m, f }))));
  for (const m of members) m.election.start();
  const { m: leader, f } = await first;
  t.equal(f.leader, leader.name);
  // Give the others several passes: none of them takes the key.
  await new Promise((r) => setTimeout(r, 500));
  t.same(
    members.filter((m) => m.election.fence).map((m) => m.name),
    [leader.name],
    'exactly one leads',
  );
  const s = open();
  t.match(await currentLeader(s), { leader: leader.name, term: f.term });
  await t.resolves(checkFence(s, f), 'its fence is current');

  const others = members.filter((m) => m !== leader);
  const next = Promise.race(others.map((m) => elected(m.election).then((g) => ({ m, g }))));
  const deposed = nextEvent<string>(leader.election, 'deposed', 30_000);
  await leader.member.leave(); // its lease revoked: the key goes with it
  t.match(await deposed, /lease/, 'the old leader knows it no longer leads');
  const { m: second, g } = await next;
  t.ok(BigInt(g.term) > BigInt(f.term), `a higher term (${f.term} → ${g.term})`);
  t.not(second.name, leader.name);
  await t.rejects(checkFence(s, f), { code: 'ERR_FENCED', message: new RegExp(`${second.name} leads`) });

  // Resigning hands over at once (no TTL to wait for).
  const third = Promise.race(
    others.filter((m) => m !== second).map((m) => elected(m.election).then((h) => ({ m, h }))),
  );
  await second.election.stop();
  const { h } = await third;
  t.ok(BigInt(h.term) > BigInt(g.term), 'resigned: the last candidate leads');
});

void t.test("a partitioned leader's fence: etcd and nodes refuse it", async (t) => {
  const { open, members } = await setup(t, ['p', 'q'], 30);
  const [p, q] = members;
  p.election.start();
  const fp = await elected(p.election);
  q.election.start();
  // etcd drops p's lease (as when p is cut off past its TTL); p has not noticed yet.
  const other = open();
  const qLeads = elected(q.election);
  await other.client.leaseClient.leaseRevoke({ ID: p.member.leaseId });
  const fq = await qLeads;
  // Whatever p believes now, a step it took under fp (in flight when it was cut off) carries fp.
  const a = {
    app: 'web',
    id: 1,
    kind: 'place' as const,
    node: 'p',
    state: 'intended' as const,
    reason: 'test',
    leader: fp.leader,
    term: fp.term,
    at: new Date().toISOString(),
  };
  await t.rejects(
    recordAction(p.store, fp, a, '0', { kind: 'place', reason: 'x' }),
    { code: 'ERR_FENCED' },
    "p's step is not recorded",
  );
  await t.rejects(checkFence(other, fp), { code: 'ERR_FENCED' }, "a node refuses p's fence");
  const rev = await recordAction(q.store, fq, { ...a, leader: fq.leader, term: fq.term }, '0', {
    kind: 'place',
    reason: 'y',
  });
  t.ok(Number(rev) > 0, "q's step is recorded");
  await t.rejects(
    recordAction(p.store, fp, { ...a, state: 'done' }, rev, { kind: 'done', reason: 'z' }),
    { code: 'ERR_FENCED' },
    "p cannot overwrite q's step either",
  );
});

void t.test('bad options', async (t) => {
  const { members } = await setup(t, ['x']);
  t.throws(() => new Election(members[0].store, members[0].member, { retryMs: 1 }), { code: 'ERR_INVALID_ARG_VALUE' });
});
