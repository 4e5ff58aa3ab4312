// `sosctl migrate` end to end on a 3-node local cluster: a workload (a counter that prints its next
// number every 50 ms) moves node1 → node2 by pre-copy and node2 → node0 by post-copy. After each
// move `ps` names the new node, the process is still pid 1 of its namespace, in the new node's
// cgroup, its counter goes on from where it stopped (same memory) into the new node's log, and the
// old node keeps no running copy. Then: the target's migration ops refuse what the cluster did not
// record (an unrecorded id, an operator asking, a node that is not the recorded source), and bad
// requests get clear errors and exit codes; the nodes' telemetry names the application where it runs;
// `logs --follow` prints every number once across both moves.
import t from 'tap';
import { execFile, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { localClusterFor } from '../../testkit/local-cluster.js';
import { waitFor } from '../../testkit/wait.js';
import { alive } from '../../lib/migration/proc.js';
import type { ProcessEntry } from '../../lib/cluster/processes.js';
import type { Result } from '../../lib/cli/migrate-command.js';

const sosctl = path.join(path.dirname(fileURLToPath(import.meta.url)), '../../lib/cli/sosctl.js');

/** A process as `sosctl ps --json` prints it. */
type Entry = ProcessEntry;

/** `sosctl migrate --json`. */
type Moved = Result & { process: string };

const numbers = (log: string) =>
  log
    .split('\n')
    .filter((l) => /^n \d+$/.test(l))
    .map((l) => Number(l.slice(2)));

void t.test('sosctl migrate: pre-copy and post-copy between nodes, by APP/ID', async (t) => {
  const { c, env, sosctl: run, remote } = await localClusterFor(t, 3);
  const stateOf = (node: string) => c.nodes.find((n) => n.name === node)!.stateDir;
  const ps = async (): Promise<Entry[]> => {
    const r = await run(['ps', '--json']);
    if (r.code !== 0) throw new Error(r.stderr);
    return JSON.parse(r.stdout) as Entry[];
  };
  const until = waitFor;
  const logOf = (node: string) => {
    try {
      return fs.readFileSync(path.join(stateOf(node), 'apps/count/1/stdout.log'), 'utf8');
    } catch {
      return '';
    }
  };

  const started = await run([
    'run',
    '--app',
    'count',
    '--node',
    'node1',
    '--',
    '/bin/sh',
    '-c',
    'i=0; while :; do i=$((i+1)); echo "n $i"; sleep 0.05; done',
  ]);
  t.equal(started.code, 0, started.stderr);
  await until(() => numbers(logOf('node1')).length >= 5, 'the counter to run on node1');

  // A follower started now sees the whole count across both moves: every number once, in order.
  const follower = execFile(process.execPath, [sosctl, 'logs', '-f', '--stream', 'stdout', 'count/1'], { env });
  let followed = '';
  follower.stdout!.on('data', (d: Buffer) => (followed += d.toString()));
  const followerDone = new Promise<number | null>((r) => follower.once('exit', (code) => r(code)));
  t.teardown(() => void follower.kill());

  let from = 'node1';
  let last = '';
  let oldPid = (await ps())[0].pid;
  for (const [to, mode] of [
    ['node2', 'precopy'],
    ['node0', 'postcopy'],
  ] as const) {
    const r = await run(['migrate', 'count/1', '--to', to, ...(mode === 'postcopy' ? ['--postcopy'] : []), '--json']);
    t.equal(r.code, 0, r.stderr);
    const m = JSON.parse(r.stdout) as Moved;
    t.match(m, { process: 'count/1', from, to, mode }, `${from} → ${to} by ${mode}`);
    t.ok(m.downtimeMs > 0 && m.bytes > 0, 'it reports its downtime and the bytes moved');
    const [e] = await ps();
    t.match(e, { app: 'count', id: 1, node: to, pid: m.pid, state: 'running' }, `ps names ${to}`);
    const status = fs.readFileSync(`/proc/${m.pid}/status`, 'utf8');
    t.match(status, /^NSpid:\s+\d+\s+1$/m, 'still pid 1 of its own namespace');
    t.match(
      fs.readFileSync(`/proc/${m.pid}/cgroup`, 'utf8'),
      new RegExp(`:memory:/serverlessos/${c.net.bridge}/${to}/count/1\n`),
      `in ${to}'s cgroup`,
    );
    await until(() => !alive(oldPid), `the copy on ${from} to be gone`);
    // The counter goes on from where it was frozen: the same process, with its memory.
    const before = numbers(logOf(from));
    await until(() => numbers(logOf(to)).length >= 3, `the counter to run on ${to}`);
    const after = numbers(logOf(to));
    t.equal(after[0], before[before.length - 1] + 1, `${to}'s log goes on from ${from}'s last number`);
    const logs = await run(['logs', 'count/1', '--stream', 'stdout']);
    t.equal(logs.code, 0, logs.stderr);
    t.match(logs.stdout, `n ${after[0]}\n`, 'sosctl logs reads it where it runs now');
    const left = JSON.parse(fs.readFileSync(path.join(stateOf(from), 'apps/count/1/record.json'), 'utf8')) as {
      state: string;
      movedTo: string;
    };
    t.match(left, { state: 'migrated', movedTo: to }, `${from} keeps a record that it left`);
    from = to;
    oldPid = m.pid;
    last = m.migration;
  }

  // Each node's published telemetry carries its applications' usage: count is node0's now.
  const appsOf = async () => {
    const r = await run(['nodes', '--json']);
    const rows = JSON.parse(r.stdout) as {
      name: string;
      telemetry: { apps?: Record<string, { procs: number }> } | null;
    }[];
    return Object.fromEntries(rows.map((n) => [n.name, n.telemetry?.apps ?? {}]));
  };
  await until(async () => {
    const a = await appsOf();
    return a.node0?.count?.procs === 1 && !a.node1?.count && !a.node2?.count;
  }, "node0's telemetry to name count");
  t.pass('per-application usage is in the telemetry of the node it runs on');

  // The targets' migration ops, over mutual TLS from the bridge's namespace.
  const unrecorded = { migration: 'ab'.repeat(16) };
  t.match(
    await remote({ role: 'node', name: 'node0' }, 1, 'migration.expect', unrecorded),
    { ok: false, code: 'ERR_NOT_FOUND' },
    'a migration the cluster did not record is not expected',
  );
  t.match(
    await remote({ role: 'operator', name: 'operator' }, 1, 'migration.expect', unrecorded),
    { ok: false, code: 'ERR_FORBIDDEN' },
    'an operator may not ask a target to expect one',
  );
  t.match(
    await remote({ role: 'node', name: 'node1' }, 0, 'migration.expect', { migration: last }),
    { ok: false, code: 'ERR_FORBIDDEN', message: /comes from node2, not node1/ },
    'a recorded migration is expected only from its source',
  );

  const noNode = await run(['migrate', 'count/1', '--to', 'node9']);
  t.equal(noNode.code, 1);
  t.match(noNode.stderr, /no live node node9.*ERR_NOT_FOUND/);
  const self = await run(['migrate', 'count/1', '--to', 'node0']);
  t.equal(self.code, 1);
  t.match(self.stderr, /runs on node0 already/);
  const bad = await run(['migrate', 'count/1']);
  t.equal(bad.code, 2, 'a missing --to is a usage error');
  t.match(bad.stderr, /--to/);
  const none = await run(['migrate', 'count/7', '--to', 'node1']);
  t.equal(none.code, 1);
  t.match(none.stderr, /ERR_APP_NOT_FOUND/);

  const k = await run(['kill', '-s', 'KILL', 'count/1']);
  t.equal(k.code, 0, k.stderr);
  await until(async () => (await ps())[0].state === 'exited', 'the exit to be noticed where it ran');
  t.equal(await followerDone, 0, 'logs --follow ends once the process has exited');
  const seen = numbers(followed);
  t.ok(seen.length > 10, `the follower saw ${seen.length} numbers`);
  t.ok(
    seen.every((n, i) => n === seen[0] + i),
    'logs --follow printed every number once, in order, across both migrations',
    { first: seen.slice(0, 3), last: seen.slice(-3) },
  );
  t.equal(seen[0], 1, 'from the start of its log');

  const gone = await run(['migrate', 'count/1', '--to', 'node1']);
  t.equal(gone.code, 1);
  t.match(gone.stderr, /not running/);

  // A server on an address of its own moves with that address, inside the nodes' --move-ranges only.
  const addr = `${c.net.prefix}.130`;
  execFileSync('ip', ['-n', c.nodes[1].netns, 'addr', 'add', `${addr}/24`, 'dev', 'eth0']);
  const server =
    'import socket,sys\n' +
    's=socket.socket(); s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n' +
    's.bind((sys.argv[1],8080)); s.listen(8); n=0\n' +
    'while True:\n c,_=s.accept(); n+=1; c.sendall(b"web %d\\n"%n); c.close()\n';
  const web = await run(['run', '--app', 'web', '--node', 'node1', '--', 'python3', '-c', server, addr]);
  t.equal(web.code, 0, web.stderr);
  // A client on the bridge: the n-th connection the server took (its memory carries the count).
  const ask = () =>
    new Promise<string>((resolve) =>
      execFile(
        'ip',
        [
          'netns',
          'exec',
          c.net.bridge,
          'python3',
          '-c',
          'import socket,sys; c=socket.create_connection((sys.argv[1],8080),timeout=2); print(c.recv(64).decode().strip())',
          addr,
        ],
        { timeout: 10_000 },
        (e, stdout) => resolve(e ? '' : stdout.trim()),
      ),
    );
  let first = '';
  await until(async () => (first = await ask()) !== '', 'the server to answer on node1');
  const outside = await run(['migrate', 'web/1', '--to', 'node2', '--move-address', `${c.net.prefix}.20/24@eth0`]);
  t.equal(outside.code, 1, 'an address outside the move ranges does not move');
  t.match(outside.stderr, /outside node1's move ranges.*ERR_FORBIDDEN/s);
  const badForm = await run(['migrate', 'web/1', '--to', 'node2', '--move-address', addr]);
  t.equal(badForm.code, 2, 'a malformed --move-address is a usage error');
  const moved = await run(['migrate', 'web/1', '--to', 'node2', '--move-address', `${addr}/24@eth0`, '--json']);
  t.equal(moved.code, 0, moved.stderr);
  const has = (node: number) =>
    execFileSync('ip', ['-n', c.nodes[node].netns, '-o', 'addr', 'show', 'dev', 'eth0'], { encoding: 'utf8' }).includes(
      ` ${addr}/24 `,
    );
  t.ok(has(2) && !has(1), `${addr} left node1 for node2 with the process`);
  let next = '';
  await until(async () => (next = await ask()) !== '', 'the server to answer on node2');
  t.equal(next, `web ${Number(first.split(' ')[1]) + 1}`, 'the same server answers at its address on node2');
  t.match(
    (await ps()).find((e) => e.app === 'web'),
    { node: 'node2', state: 'running' },
  );
});
