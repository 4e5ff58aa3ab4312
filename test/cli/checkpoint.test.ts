// A node lost under a checkpointed process, on a 3-node local cluster: `sosctl checkpoint` leaves
// the images with the two other nodes; the node's sosd is SIGKILLed (the process has nobody to
// supervise it, as when a node dies with its daemon, or is cut off); the watchdog kills the process
// before the node's lease may lapse; the orchestrator restores the checkpoint on a holder, where it
// goes on from the checkpoint's state; one copy runs at every moment; and the old node, back, does
// not take the process back. Then the same with the node only cut off from etcd, its sosd running.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { restartLocalNode } from '../../lib/cluster/local.js';
import { alive } from '../../lib/migration/proc.js';
import type { Decision } from '../../lib/orchestrator/actions.js';
import type { ProcessEntry } from '../../lib/cluster/processes.js';
import type { CheckpointResult } from '../../lib/daemon/checkpoint-service.js';
import type { CheckpointEntry } from '../../lib/cluster/checkpoints.js';
import { localClusterFor, namespaceInits } from '../../testkit/local-cluster.js';
import { waitFor } from '../../testkit/wait.js';

const MARKER = 'sos-ckpt-counter';
// Counts in the shell's memory; a restore goes on from the count the checkpoint saw.
const COUNTER = `: ${MARKER}; i=0; while :; do i=$((i+1)); echo "$i"; sleep 0.02; done`;
// A TCP server that also holds an established connection (to itself), and says its count to whoever connects.
const PORT = 7460;
const SERVER = `# ${MARKER}
import socket, threading, time
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("0.0.0.0", ${PORT}))
srv.listen()
client = socket.create_connection(("127.0.0.1", ${PORT}))
held, _ = srv.accept()
i = 0
def count():
    global i
    while True:
        i += 1
        time.sleep(0.02)
threading.Thread(target=count, daemon=True).start()
print("serving", flush=True)
while True:
    conn, _ = srv.accept()
    conn.sendall(f"{i}\\n".encode())
    conn.close()
`;

/** The count the server in `netns` says (connecting from inside that node). */
function countAt(netns: string): number {
  const ask =
    'import socket; s = socket.create_connection(("127.0.0.1", ' + PORT + ')); print(s.recv(64).decode().strip())';
  return Number(
    execFileSync('ip', ['netns', 'exec', netns, 'python3', '-c', ask], { encoding: 'utf8', stdio: 'pipe' }).trim(),
  );
}

void t.test('a checkpointed process is restored on a holder when its node is lost', async (t) => {
  const { dir, c, sosctl, remote, json, leader: leaderOf } = await localClusterFor(t, 3);
  const leader = await leaderOf();
  // On a node that does not lead, so that the orchestrator outlives it.
  const victim = c.nodes.find((n) => n.name !== leader)!;
  const others = c.nodes.filter((n) => n !== victim).map((n) => n.name);
  const run = await sosctl(['run', '--app', 'ctr', '--node', victim.name, '--json', '--', 'sh', '-c', COUNTER]);
  t.equal(run.code, 0, run.stderr);
  const started = JSON.parse(run.stdout) as ProcessEntry;
  const proc = `ctr/${started.id}`;
  const counts = async (): Promise<number[]> => {
    const r = await sosctl(['logs', proc, '--stream', 'stdout']);
    return r.code === 0 ? r.stdout.split('\n').filter(Boolean).map(Number) : [];
  };
  await waitFor(async () => (await counts()).length >= 10, `${proc} to count`);

  // Refused before anything is dumped: no such process, a bad name.
  t.not((await sosctl(['checkpoint', 'ctr/999'])).code, 0, 'no checkpoint of a process that does not exist');

  const ck = await json<CheckpointResult>(['checkpoint', proc]);
  t.equal(ck.seq, 1, 'the first checkpoint');
  t.same([...ck.holders].sort(), others, `held by both other nodes ${JSON.stringify(ck.missed)}`);
  t.ok(ck.bytes > 0, `${ck.bytes} bytes of images (dump ${ck.dumpMs.toFixed(0)} ms, ${ck.ms.toFixed(0)} ms in all)`);
  const ck2 = await json<CheckpointResult>(['checkpoint', proc]);
  t.equal(ck2.seq, 2, 'a second checkpoint replaces the first');
  const listed = await json<CheckpointEntry[]>(['checkpoints']);
  t.match(listed, [{ app: 'ctr', id: started.id, seq: 2, node: victim.name }], 'sosctl checkpoints lists the newest');
  t.match((await sosctl(['checkpoints'])).stdout, new RegExp(`^ctr/${started.id} +2 +${victim.name} `, 'm'));
  const before = await counts();
  t.ok(before.length >= 10 && before.at(-1)! > before[0], 'it kept running through both');
  t.same(namespaceInits(MARKER).length, 1, 'one copy runs');

  // Who may send images, and who may restore (over mutual TLS, from the bridge's namespace).
  const idx = (name: string) => c.nodes.findIndex((n) => n.name === name);
  const which = { app: 'ctr', id: started.id, seq: 2 };
  const chunk = { ...which, seq: 9, file: 'core-1.img', offset: 0, data: 'AAAA' };
  t.match(
    await remote({ role: 'node', name: others[0] }, idx(others[1]), 'checkpoint.put', chunk),
    { ok: false, code: 'ERR_FORBIDDEN', message: new RegExp(`does not run on ${others[0]}`) },
    'only the node the process runs on may send its images',
  );
  t.match(
    await remote({ role: 'operator', name: 'operator' }, idx(others[1]), 'checkpoint.put', chunk),
    { ok: false, code: 'ERR_FORBIDDEN' },
    'an operator may not send images',
  );
  t.match(
    await remote({ role: 'node', name: victim.name }, idx(others[1]), 'checkpoint.put', { ...chunk, file: '../x' }),
    { ok: false, code: 'ERR_BAD_ARGS' },
    'a file name outside the images folder is refused',
  );
  t.match(
    await remote({ role: 'node', name: victim.name }, idx(others[1]), 'checkpoint.put', { ...chunk, data: 'AA*A' }),
    { ok: false, code: 'ERR_BAD_ARGS', message: /base64/ },
    'data that is not base64 is refused',
  );
  t.match(
    await remote({ role: 'node', name: victim.name }, idx(others[1]), 'checkpoint.commit', {
      ...which,
      seq: 9,
      files: [],
    }),
    { ok: false, code: 'ERR_NOT_FOUND' },
    'a commit of nothing sent is refused',
  );
  const fence = { leader: others[0], term: '1' };
  t.match(
    await remote({ role: 'node', name: others[1] }, idx(others[0]), 'apps.restore', { ...which, fence }),
    { ok: false, code: 'ERR_FORBIDDEN', message: /only as the leading orchestrator/ },
    "a node may not ask for a restore with another's fence",
  );
  t.match(
    await remote({ role: 'node', name: others[0] }, idx(others[1]), 'apps.restore', { ...which, fence }),
    { ok: false, code: 'ERR_FENCED' },
    'nor with a term that is not the current one',
  );

  const oldPid = started.pid;
  process.kill(victim.pid, 'SIGKILL'); // its sosd: the process runs on, unsupervised
  await waitFor(() => !alive(oldPid), `the watchdog to kill ${proc} on ${victim.name} (its lease lapsing)`);
  t.pass(`${proc} on ${victim.name} was killed by its watchdog`);

  let moved: ProcessEntry | undefined;
  await waitFor(async () => {
    const ps = await json<ProcessEntry[]>(['ps']).catch(() => []);
    moved = ps.find((e) => e.app === 'ctr' && e.id === started.id && e.node !== victim.name && e.state === 'running');
    return moved !== undefined;
  }, `${proc} to be restored on another node`);
  t.ok(others.includes(moved!.node), `restored on ${moved!.node}, a holder`);
  await waitFor(async () => (await counts()).length >= 5, `${proc} to count on ${moved!.node}`);
  const after = await counts();
  t.ok(after[0] > 1, `it goes on from the checkpoint's count (${after[0]}), not from 1`);
  t.ok(after[0] <= before.at(-1)! + 1, 'from a count it had reached before (the checkpoint), not a later one');
  t.same(namespaceInits(MARKER).length, 1, 'one copy runs');

  const decisions = await json<Decision[]>(['decisions']);
  const mine = decisions.filter((d) => d.app === 'ctr' && d.id === started.id);
  t.same(
    mine.map((d) => d.kind),
    ['restore', 'restored'],
    `restore recorded before it was done, once (${mine.map((d) => d.reason).join(' | ')})`,
  );
  t.match(mine[0].reason, new RegExp(`${victim.name} left the cluster .*checkpoint 2 .*held by ${moved!.node}`));
  const nodeLost = decisions.find((d) => d.kind === 'node-lost' && d.node === victim.name);
  t.match(nodeLost?.reason ?? '', /0 of its processes lost, 1 to restore from checkpoints/);
  // The watchdog's mark: it killed the process before the cluster saw the node go.
  const fenced = path.join(victim.stateDir, 'apps', 'ctr', String(started.id), 'fenced');
  const killedAt = fs.statSync(fenced).mtimeMs;
  t.ok(killedAt < Date.parse(nodeLost!.at), 'killed before the node was taken for lost');
  t.ok(killedAt < Date.parse(mine[0].at), 'killed before the restore was decided');

  // The old node's sosd back: it finds its copy killed and must not name the process back.
  await restartLocalNode(dir, victim.name, {
    signal: 'SIGKILL',
    ready: () =>
      waitFor(
        async () => (await json<{ name: string }[]>(['nodes']).catch(() => [])).some((n) => n.name === victim.name),
        `${victim.name} to join again`,
      ),
  });
  const ps = await json<ProcessEntry[]>(['ps']);
  t.match(
    ps.find((e) => e.app === 'ctr' && e.id === started.id),
    { node: moved!.node, state: 'running' },
    'the cluster still names the restored copy',
  );
  t.same(namespaceInits(MARKER).length, 1, 'one copy runs');
  const more = await counts();
  t.ok(more.length > after.length, 'and it keeps counting');
});

void t.test('a checkpointed process on a node cut off from etcd: killed there, restored elsewhere', async (t) => {
  const { c, sosctl, json, leader: leaderOf } = await localClusterFor(t, 3);
  const leader = await leaderOf();
  const victim = c.nodes.find((n) => n.name !== leader)!;
  // A TCP server this time: its connections are taken too, and come back closed; its listener open.
  const run = await sosctl(['run', '--app', 'cut', '--node', victim.name, '--json', '--', 'python3', '-c', SERVER]);
  t.equal(run.code, 0, run.stderr);
  const started = JSON.parse(run.stdout) as ProcessEntry;
  await waitFor(
    async () => (await sosctl(['logs', `cut/${started.id}`, '--stream', 'stdout'])).stdout.includes('serving'),
    'the server to listen',
  );
  await waitFor(() => countAt(victim.netns) >= 50, 'the server to count to 50');
  const ck = await json<CheckpointResult>(['checkpoint', `cut/${started.id}`]);
  t.equal(ck.seq, 1, `checkpoint 1, held by ${ck.holders.join(', ')}, with an established connection`);
  const atCheckpoint = countAt(victim.netns);

  // Its etcd traffic dropped: its sosd runs on and can renew nothing.
  const etcdIp = new URL(c.etcd.endpoint).hostname;
  const nft = (script: string) =>
    execFileSync('ip', ['netns', 'exec', victim.netns, 'nft', '-f', '-'], { input: script, stdio: 'pipe' });
  nft(
    `table inet sos_cut {\n  chain out {\n    type filter hook output priority 0;\n    ip daddr ${etcdIp} tcp dport 2379 drop\n  }\n}\n`,
  );
  t.teardown(() => {
    try {
      nft('delete table inet sos_cut');
    } catch {
      // healed already
    }
  });
  await waitFor(() => !alive(started.pid), `the watchdog to kill cut/${started.id} on ${victim.name}`);
  t.ok(alive(victim.pid), `killed while ${victim.name}'s sosd still runs`);
  let moved: ProcessEntry | undefined;
  await waitFor(async () => {
    const ps = await json<ProcessEntry[]>(['ps']).catch(() => []);
    moved = ps.find((e) => e.app === 'cut' && e.id === started.id && e.node !== victim.name && e.state === 'running');
    return moved !== undefined;
  }, `cut/${started.id} to be restored on another node`);
  t.ok(ck.holders.includes(moved!.node), `restored on ${moved!.node}`);
  t.same(namespaceInits(MARKER).length, 1, 'one copy runs');
  const holder = c.nodes.find((n) => n.name === moved!.node)!;
  const restoredCount = countAt(holder.netns);
  t.ok(
    restoredCount >= 50,
    `it listens on ${holder.name} and counts on from the checkpoint (${restoredCount}; ${atCheckpoint} after it was taken)`,
  );

  nft('delete table inet sos_cut');
  await waitFor(
    async () => (await json<{ name: string }[]>(['nodes']).catch(() => [])).some((n) => n.name === victim.name),
    `${victim.name} to join again once healed`,
  );
  const after = (await json<ProcessEntry[]>(['ps'])).find((e) => e.app === 'cut' && e.id === started.id);
  t.match(after, { node: moved!.node, state: 'running' }, 'the cluster still names the restored copy');
  t.same(namespaceInits(MARKER).length, 1, 'one copy runs');
});

void t.test('the leader killed as soon as it has decided a restore: the new leader finishes it, once', async (t) => {
  // Every sosd dies right after recording a restore (the crash point): only a leader records one.
  process.env.SOS_FAILPOINTS = 'orchestrator-restore-recorded';
  const h = await localClusterFor(t, 3).finally(() => delete process.env.SOS_FAILPOINTS);
  const { c, sosctl, leader: leaderOf } = h;
  const L = await leaderOf();
  const [victim, other] = c.nodes.filter((n) => n.name !== L);
  const at = (n: { socket: string }) => ['--socket', n.socket];
  const json = async <T>(args: string[], via = other): Promise<T> => {
    const r = await sosctl([...args, '--json', ...at(via)]);
    if (r.code !== 0) throw new Error(`sosctl ${args.join(' ')}: ${r.stderr}`);
    return JSON.parse(r.stdout) as T;
  };
  // A process on the leader: the holder with fewer processes, `other`, is the one chosen to restore.
  const sleeper = await sosctl(['run', '--app', 'load', '--node', L, ...at(other), '--', 'sleep', '4545']);
  t.equal(sleeper.code, 0, sleeper.stderr);
  // prettier-ignore
  const run = await sosctl(['run', '--app', 'lf', '--node', victim.name, '--json', ...at(other), '--', 'sh', '-c', COUNTER]);
  t.equal(run.code, 0, run.stderr);
  const started = JSON.parse(run.stdout) as ProcessEntry;
  const ck = await json<CheckpointResult>(['checkpoint', `lf/${started.id}`]);
  t.same([...ck.holders].sort(), [L, other.name].sort(), 'held by the leader and the other node');

  process.kill(victim.pid, 'SIGKILL');
  const mine = async () =>
    (await json<Decision[]>(['decisions', '--limit', '1000']).catch(() => [])).filter(
      (d) => d.app === 'lf' && d.id === started.id,
    );
  let decided: Decision | undefined;
  await waitFor(async () => (decided = (await mine()).find((d) => d.kind === 'restore')) !== undefined, 'a restore');
  t.equal(decided!.node, other.name, `the restore was decided on ${other.name}`);
  t.equal(decided!.leader, L, 'by the leader, which died right after');
  await waitFor(() => !alive(c.nodes.find((n) => n.name === L)!.pid), `${L}'s sosd to be gone`);

  let moved: ProcessEntry | undefined;
  await waitFor(async () => {
    const ps = await json<ProcessEntry[]>(['ps']).catch(() => []);
    moved = ps.find((e) => e.app === 'lf' && e.id === started.id && e.state === 'running' && e.node === other.name);
    return moved !== undefined;
  }, `lf/${started.id} to run on ${other.name}`);
  await waitFor(async () => (await mine()).some((d) => d.kind === 'restored'), 'the restore to be recorded done');
  const all = await mine();
  t.same(
    all.map((d) => `${d.kind} by ${d.leader}`),
    [`restore by ${L}`, `restored by ${other.name}`],
    'decided once by the old leader, finished once by the new one',
  );
  t.same(namespaceInits(MARKER).length, 1, 'one copy runs');
});
