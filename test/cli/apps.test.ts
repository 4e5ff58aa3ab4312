// Workloads end to end as a user drives them, on a 2-node local cluster: `sosctl run` on either node
// (numbers unique cluster-wide), `ps` lists both with their nodes, `logs` and `kill` reach a process
// on the other node by APP/ID, a SIGKILLed sosd's successor re-adopts its running workload (same pid,
// its logs, its exit noticed), `run --wait` exits with the program's code, `cluster down` leaves no
// workload behind; bad names and unknown processes get clear errors.
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { localCluster, restartLocalNode, type LocalCluster } from '../../lib/cluster/local.js';
import { joined } from '../../lib/cli/local-command.js';
import { localClusterFor } from '../../testkit/local-cluster.js';
import { alive } from '../../lib/migration/proc.js';
import type { ProcessEntry } from '../../lib/cluster/processes.js';

/** A process as `sosctl ps --json` prints it. */
type Entry = ProcessEntry;

void t.test('sosctl run, ps, logs, kill, rm across nodes; a sosd restart re-adopts', async (t) => {
  const { dir, up, sosctl: run } = await localClusterFor(t, 2, ['--json']);
  t.equal((JSON.parse(up.stdout) as LocalCluster).nodes.length, 2);

  const ps = async (): Promise<Entry[]> => {
    const r = await run(['ps', '--json']);
    if (r.code !== 0) throw new Error(r.stderr);
    return JSON.parse(r.stdout) as Entry[];
  };
  const until = async (f: () => Promise<boolean>, what: string) => {
    const end = Date.now() + 60_000;
    while (!(await f())) {
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };

  const a = await run([
    'run',
    '--app',
    'web',
    '--node',
    'node1',
    '--json',
    '--',
    'sh',
    '-c',
    'echo hello; echo oops >&2; exec sleep 1000',
  ]);
  t.equal(a.code, 0, a.stderr);
  const web1 = JSON.parse(a.stdout) as Entry;
  t.match(web1, { app: 'web', id: 1, node: 'node1', state: 'running' });
  const b = await run(['run', '--app', 'web', '--', 'sleep', '1000']);
  t.equal(b.code, 0, b.stderr);
  t.match(b.stdout, /^web\/2 runs on node0 \(pid \d+\)$/m, 'numbered cluster-wide, on the default node');

  const listed = await ps();
  t.same(
    listed.map((e) => `${e.app}/${e.id}@${e.node}:${e.state}`),
    ['web/1@node1:running', 'web/2@node0:running'],
  );
  const table = await run(['ps']);
  t.match(table.stdout, /^PROCESS +NODE +PID +STATE +STARTED +COMMAND\nweb\/1 +node1 +\d+ running/m);

  // logs of a process on the other node, by name (sosctl asks node0's sosd, then node1's).
  await until(async () => (await run(['logs', 'web/1'])).stdout === 'hello\n', 'web/1 to print hello');
  const logs = await run(['logs', 'web/1', '--json']);
  t.same(JSON.parse(logs.stdout), { stdout: 'hello\n', stderr: 'oops\n' });
  const top = await run(['top', '--json']);
  t.equal(top.code, 0, top.stderr);
  t.same(
    (JSON.parse(top.stdout) as Entry[]).map((r) => `${r.app}/${r.id}@${r.node}`),
    ['web/1@node1', 'web/2@node0'],
    'top covers both nodes',
  );

  // node1's sosd crashes; its successor re-adopts web/1 (the same process) and still serves it.
  await restartLocalNode(dir, 'node1', { signal: 'SIGKILL', ready: (n) => joined(n) });
  t.ok(alive(web1.pid), 'the workload outlived its sosd');
  const after = (await ps()).find((e) => e.id === 1)!;
  t.match(after, { node: 'node1', pid: web1.pid, state: 'running' }, 're-adopted, same pid');
  t.equal((await run(['logs', 'web/1', '--stream', 'stdout'])).stdout, 'hello\n');

  // kill reaches it on node1; its exit is noticed and recorded for the cluster.
  const k = await run(['kill', 'web/1', '-s', 'KILL']);
  t.equal(k.code, 0, k.stderr);
  await until(async () => (await ps()).find((e) => e.id === 1)?.state === 'exited', 'web/1 to exit');
  t.match(
    (await ps()).find((e) => e.id === 1),
    { state: 'exited', signal: 'SIGKILL' },
  );
  t.notOk(alive(web1.pid));
  t.equal((await run(['rm', 'web/1'])).code, 0);
  t.same(
    (await ps()).map((e) => `${e.app}/${e.id}`),
    ['web/2'],
  );

  const w = await run(['run', '--app', 'job', '--wait', '--', 'sh', '-c', 'exit 3']);
  t.equal(w.code, 3, 'run --wait exits with the program’s code');

  const missing = await run(['logs', 'web/99']);
  t.equal(missing.code, 1);
  t.match(missing.stderr, /no process web\/99 in the cluster \(ERR_APP_NOT_FOUND\)/);
  t.equal((await run(['kill', 'Web'])).code, 2, 'a malformed APP/ID is a usage error');
  const badApp = await run(['run', '--app', 'Bad_Name', '--', 'true']);
  t.equal(badApp.code, 1);
  t.match(badApp.stderr, /ERR_BAD_ARGS/);

  const web2 = (await ps()).find((e) => e.id === 2)!;
  const bridge = localCluster(dir)!.net.bridge;
  t.ok(
    fs.readdirSync('/sys/fs/cgroup/memory/serverlessos').includes(bridge) ||
      fs.readdirSync('/sys/fs/cgroup/pids/serverlessos').includes(bridge),
    "the local cluster's workloads have a cgroup folder of their own",
  );
  const down = await run(['cluster', 'down', '--dir', dir]);
  t.equal(down.code, 0, down.stderr);
  t.notOk(alive(web2.pid), 'down ends the workloads too');
  t.same(
    fs
      .readdirSync('/sys/fs/cgroup')
      .filter((h) => fs.existsSync(path.join('/sys/fs/cgroup', h, 'serverlessos', bridge))),
    [],
    'and removes their cgroup folders',
  );
});
