// A migration asked of the orchestrator, its leader killed (a crash point) as soon as it has recorded
// the migration's start, before it asked the source:
// a new leader finishes it, the migration runs once (one move recorded, one live copy, one 'migrate'
// decision), and sosctl migrate, waiting meanwhile, reports it done.
import t from 'tap';
import { localClusterFor, namespaceInits } from '../../testkit/local-cluster.js';
import { waitFor } from '../../testkit/wait.js';
import { request } from '../../lib/daemon/client.js';
import type { Decision } from '../../lib/orchestrator/actions.js';
import type { ProcessEntry } from '../../lib/cluster/processes.js';
import { alive } from '../../lib/migration/proc.js';

void t.test('the leader killed mid-migration: the migration happens once, the new leader records it', async (t) => {
  // Every sosd dies right after recording a migration's start (the crash point): only a leader records one.
  process.env.SOS_FAILPOINTS = 'orchestrator-migrate-recorded';
  const { c, sosctl } = await localClusterFor(t, 3, ['--json']).finally(() => delete process.env.SOS_FAILPOINTS);
  const json = async <T>(args: string[], node: number): Promise<T> => {
    const r = await sosctl([...args, '--json', '--socket', c.nodes[node].socket]);
    if (r.code !== 0) throw new Error(`sosctl ${args.join(' ')}: ${r.stderr}`);
    return JSON.parse(r.stdout) as T;
  };
  let leader: string | null = null;
  await waitFor(
    async () => (leader = (await json<{ leader: string | null }>(['orchestrator'], 0)).leader) !== null,
    'a leader',
  );
  const L = c.nodes.findIndex((n) => n.name === leader);
  const A = (L + 1) % 3; // the source
  const B = (L + 2) % 3; // the target
  const prog = 'import time; b = bytearray(64 << 20); b[::4096] = b"x" * len(b[::4096]); time.sleep(4343)';
  const run = await sosctl(['run', '--app', 'tick', '--node', c.nodes[A].name, '--json', '--', 'python3', '-c', prog]);
  t.equal(run.code, 0, run.stderr);
  const started = JSON.parse(run.stdout) as ProcessEntry;
  t.match(started, { app: 'tick', id: 1, node: c.nodes[A].name, state: 'running' });

  const moving = sosctl(['migrate', 'tick/1', '--to', c.nodes[B].name, '--json', '--socket', c.nodes[B].socket]);
  // As soon as the leader has recorded the step, before it asks the source, it dies.
  let migration = '';
  await waitFor(async () => !alive(c.nodes[L].pid), 'the leader to die at its crash point');
  const d = await json<Decision[]>(['decisions'], B);
  t.ok(
    d.some((x) => x.kind === 'migrate' && x.app === 'tick'),
    'the leader recorded the start',
  );
  t.notOk(
    d.some((x) => x.kind === 'migrated' && x.app === 'tick'),
    'not done yet when the leader dies',
  );
  const r = await moving;
  t.equal(r.code, 0, r.stderr);
  const m = JSON.parse(r.stdout) as { migration: string; from: string; to: string; pid: number };
  migration = m.migration;
  t.match(m, { from: c.nodes[A].name, to: c.nodes[B].name }, `${c.nodes[A].name} → ${c.nodes[B].name}`);
  let now: { leader: string | null } = { leader };
  await waitFor(
    async () =>
      (now = await json<{ leader: string | null }>(['orchestrator'], B)).leader !== leader && now.leader !== null,
    'a new leader',
  );

  const [e] = await json<ProcessEntry[]>(['ps', '--app', 'tick'], B);
  t.match(e, { node: c.nodes[B].name, state: 'running', pid: m.pid }, 'it runs on the target');
  t.equal(namespaceInits('4343').length, 1, 'one live copy');
  const decided = (await json<Decision[]>(['decisions', '--limit', '1000'], B)).filter((d) => d.app === 'tick');
  t.equal(decided.filter((d) => d.kind === 'migrate').length, 1, 'started once');
  t.equal(decided.filter((d) => d.kind === 'migrated').length, 1, 'recorded done once');
  const w = (await request('orchestrator.migration', { migration }, c.nodes[B].socket)) as {
    state: string;
    leader: string;
  };
  t.match(w, { state: 'done' });
  t.equal(w.leader, now.leader, `the new leader (${now.leader}) recorded it done`);
});
