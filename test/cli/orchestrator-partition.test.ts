// The leader cut off from etcd while it keeps running (nftables in its namespace drops its etcd
// traffic), then etcd restarted under the cluster: a new leader within seconds, the old one stands
// down on its own (its lease unconfirmed), every decision from the cut on is the new leader's, the
// old one comes back as a follower; after etcd's restart there is one leader and it still places.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { localClusterFor } from '../../testkit/local-cluster.js';
import { waitFor } from '../../testkit/wait.js';
import { restartLocalEtcd, sosdLog } from '../../lib/cluster/local.js';
import { request } from '../../lib/daemon/client.js';
import type { Decision } from '../../lib/orchestrator/actions.js';

interface Status {
  leader: string | null;
  term: string | null;
}

void t.test('a partitioned leader stands down; one leader after an etcd restart', async (t) => {
  const { c, dir, sosctl } = await localClusterFor(t, 3, ['--json']);
  const json = async <T>(args: string[], node: number): Promise<T> => {
    const r = await sosctl([...args, '--json', '--socket', c.nodes[node].socket]);
    if (r.code !== 0) throw new Error(`sosctl ${args.join(' ')}: ${r.stderr}`);
    return JSON.parse(r.stdout) as T;
  };
  let st: Status = { leader: null, term: null };
  await waitFor(async () => (st = await json<Status>(['orchestrator'], 0)).leader !== null, 'a leader');
  const L = c.nodes.findIndex((n) => n.name === st.leader);
  const N = (L + 1) % 3;
  const old = st;
  const etcdIp = new URL(c.etcd.endpoint).hostname;
  const nft = (script: string) =>
    execFileSync('ip', ['netns', 'exec', c.nodes[L].netns, 'nft', '-f', '-'], { input: script });
  // Its etcd traffic dropped; the other nodes' APIs still reach it.
  nft(
    `table inet sos_cut {\n  chain out {\n    type filter hook output priority 0;\n    ip daddr ${etcdIp} tcp dport 2379 drop\n  }\n}\n`,
  );
  const cutAt = new Date().toISOString();
  const from = Date.now();
  await waitFor(async () => {
    st = await json<Status>(['orchestrator'], N);
    return st.leader !== null && st.leader !== old.leader;
  }, 'a new leader');
  t.ok(
    BigInt(st.term!) > BigInt(old.term!),
    `${st.leader} leads (term ${st.term}) ${Date.now() - from} ms after the cut`,
  );
  await waitFor(
    () => fs.readFileSync(sosdLog(c.nodes[L]), 'utf8').includes('no longer leads'),
    `${old.leader} to stand down`,
  );
  t.pass(`${old.leader} stood down on its own, still running`);

  const placed = await sosctl(['run', '--app', 'part', '--socket', c.nodes[N].socket, '--', 'sleep', '4545']);
  t.equal(placed.code, 0, placed.stderr);
  t.match(placed.stderr, new RegExp(`^placed by ${st.leader} \\(term ${st.term}\\)`, 'm'), 'placed by the new leader');

  nft('delete table inet sos_cut');
  await waitFor(
    async () => ((await request('cluster.status', {}, c.nodes[L].socket)) as { alive: boolean }).alive,
    `${old.leader} to be a live member again`,
  );
  const after = await json<Status>(['orchestrator'], L);
  t.same(after, { ...after, leader: st.leader, term: st.term }, 'the new leader stays; the old one follows');
  const since = (await json<Decision[]>(['decisions', '--limit', '1000'], N)).filter((d) => d.at >= cutAt);
  t.ok(
    since.length > 0 && since.every((d) => d.leader === st.leader),
    'every decision since the cut is the new leader’s',
  );

  // etcd restarted under the cluster: still one leader, and it places.
  await restartLocalEtcd(dir);
  let again: Status = { leader: null, term: null };
  await waitFor(async () => {
    try {
      again = await json<Status>(['orchestrator'], N);
      return again.leader !== null;
    } catch {
      return false; // etcd still coming back
    }
  }, 'a leader after the etcd restart');
  // Each node's etcd client may still hold its circuit breaker open for a moment (it answers
  // ERR_ETCD_UNAVAILABLE meanwhile): wait until every node answers.
  let views: Status[] = [];
  await waitFor(async () => {
    try {
      views = await Promise.all(c.nodes.map((_, i) => json<Status>(['orchestrator'], i)));
      return true;
    } catch {
      return false;
    }
  }, 'every node to answer after the etcd restart');
  t.same(new Set(views.map((v) => `${v.leader}#${v.term}`)).size, 1, `every node names one leader (${again.leader})`);
  const more = await sosctl(['run', '--app', 'part', '--socket', c.nodes[N].socket, '--', 'sleep', '4545']);
  t.equal(more.code, 0, more.stderr);
  t.match(more.stdout, /^part\/2 runs on node\d/m, 'it still places');
});
