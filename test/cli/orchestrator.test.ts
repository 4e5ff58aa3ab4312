// The orchestrator on a 3-node local cluster, end to end through sosctl: one leader; processes placed
// by it (desired state first, one per node by the default policy, each decision with its reason);
// its sosd killed mid-reconcile: a new leader within seconds finishes every step, none repeated or
// dropped; nodes refuse the deposed leader's fence and a node certificate without one; cluster down
// ends the workloads of the dead sosd too.
import t from 'tap';
import { localClusterFor, namespaceInits } from '../../testkit/local-cluster.js';
import { waitFor } from '../../testkit/wait.js';
import type { Decision, Action } from '../../lib/orchestrator/actions.js';
import type { ProcessEntry } from '../../lib/cluster/processes.js';

interface Status {
  leader: string | null;
  term: string | null;
}

void t.test('placement, a leader killed mid-reconcile, fencing', async (t) => {
  const { c, sosctl, remote, dir } = await localClusterFor(t, 3, ['--json']);
  const via = (i: number) => ['--socket', c.nodes[i].socket];
  const json = async <T>(args: string[]): Promise<T> => {
    const r = await sosctl([...args, '--json']);
    if (r.code !== 0) throw new Error(`sosctl ${args.join(' ')}: ${r.stderr}`);
    return JSON.parse(r.stdout) as T;
  };
  let st: Status = { leader: null, term: null };
  await waitFor(async () => (st = await json<Status>(['orchestrator', ...via(0)])).leader !== null, 'a leader');
  t.match(st.leader, /^node[012]$/, `${st.leader} leads, term ${st.term}`);

  // Three processes: the default policy puts one on each node.
  const spread: ProcessEntry[] = [];
  for (let i = 0; i < 3; i++) {
    const r = await sosctl(['run', '--app', 'spread', ...via(0), '--', 'sleep', '4141']);
    t.equal(r.code, 0, r.stderr);
    t.match(r.stderr, /^placed by node\d \(term \d+\): fewest processes: node\d runs 0/m, 'the reason is printed');
    spread.push(...(await json<ProcessEntry[]>(['ps', '--app', 'spread', ...via(0)])).filter((e) => e.id === i + 1));
  }
  t.same(spread.map((e) => e.node).sort(), ['node0', 'node1', 'node2'], 'one per node');
  const decided = await json<Decision[]>(['decisions', ...via(1)]);
  t.same(
    decided.filter((d) => d.app === 'spread').map((d) => `${d.kind} ${d.id}`),
    ['place 1', 'done 1', 'place 2', 'done 2', 'place 3', 'done 3'],
    'each placement decided once, then done',
  );
  t.ok(
    decided.every((d) => d.leader === st.leader && d.term === st.term),
    'under the leader and its term',
  );

  // Six at once, and the leader's sosd killed as soon as it has decided the first of them.
  const leader = c.nodes.findIndex((n) => n.name === st.leader);
  const other = (leader + 1) % 3;
  const old = st;
  const runs = Array.from({ length: 6 }, () =>
    sosctl(['run', '--app', 'burst', '--place-timeout', '120', ...via(other), '--', 'sleep', '4242']),
  );
  await waitFor(
    async () => (await json<Decision[]>(['decisions', ...via(other)])).some((d) => d.app === 'burst'),
    'the first decision about burst',
  );
  const killedAt = Date.now();
  process.kill(c.nodes[leader].pid, 'SIGKILL');
  await waitFor(async () => {
    st = await json<Status>(['orchestrator', ...via(other)]);
    return st.leader !== null && st.leader !== old.leader;
  }, 'a new leader');
  t.ok(BigInt(st.term!) > BigInt(old.term!), `${st.leader} leads, term ${old.term} → ${st.term}`);
  t.comment(`new leader ${Date.now() - killedAt} ms after the kill`);
  await Promise.all(runs);

  // Every step finished (none left intended: nothing dropped), and none taken twice.
  let desired: { app: string; id: number; step: Action | null }[] = [];
  await waitFor(async () => {
    desired = (await json<typeof desired>(['desired', ...via(other)])).filter((d) => d.app === 'burst');
    return desired.length === 6 && desired.every((d) => d.step && d.step.state !== 'intended');
  }, 'every burst step done or lost');
  const dead = c.nodes[leader].name;
  for (const d of desired)
    t.ok(
      d.step!.state === 'done' || (d.step!.state === 'lost' && d.step!.node === dead),
      `burst/${d.id}: ${d.step!.state} on ${d.step!.node}`,
    );
  const log = await json<Decision[]>(['decisions', '--limit', '1000', ...via(other)]);
  for (let id = 1; id <= 6; id++) {
    const done = log.filter((d) => d.app === 'burst' && d.id === id && d.kind === 'done');
    t.ok(done.length <= 1, `burst/${id} placed once (${done.length} done)`);
  }
  // Each APP/ID in the cluster's entries once, and as many processes on the machine as entries: none twice.
  const entries = await json<ProcessEntry[]>(['ps', '--app', 'burst', ...via(other)]);
  t.same(
    entries.map((e) => e.id),
    [1, 2, 3, 4, 5, 6],
  );
  const inits = namespaceInits('4242');
  t.equal(
    inits.length,
    entries.length,
    `no process started twice, on any node (${inits.length} processes for ${JSON.stringify(entries.map((e) => `${e.app}/${e.id}@${e.node}:${e.pid}`))}; pids ${inits.join(' ')})`,
  );

  // Nodes refuse the deposed leader's fence, a node certificate without a fence, and a fence not its own.
  const live = c.nodes.find((n, i) => i !== leader && n.name !== st.leader)!.name;
  const ask = (as: string, args: object) => remote({ role: 'node', name: as }, other, 'apps.run', args);
  const job = { app: 'fenced', argv: ['true'] };
  t.match(
    await ask(old.leader!, { ...job, id: 1, fence: { leader: old.leader, term: old.term } }),
    { ok: false, code: 'ERR_FENCED', message: /is not the current one/ },
    "the deposed leader's fence",
  );
  t.match(await ask(live, job), { ok: false, code: 'ERR_FORBIDDEN' }, 'a node without a fence');
  t.match(
    await ask(live, { ...job, id: 1, fence: { leader: st.leader, term: st.term } }),
    { ok: false, code: 'ERR_FORBIDDEN' },
    "another node's fence",
  );

  // The killed sosd's workloads outlived it; cluster down ends them too (by their cgroups).
  t.equal((await sosctl(['cluster', 'down', '--dir', dir])).code, 0);
  t.same(namespaceInits('4242'), [], 'cluster down leaves no workload behind, also of a dead sosd');
});
