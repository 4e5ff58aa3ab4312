// Exactly one copy through a crash of the target: node1's sosd dies (a crash point) the moment it
// has recorded the commit of an incoming migration, before the process runs there or is recorded as
// a workload. Started again, it resumes the held tree, adopts it from the arrival folder it kept,
// and takes the cluster's entry over; the source learns the migration is done and records that the
// workload left. Afterwards one copy runs, on node1, and it goes on from where it was frozen.
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { restartLocalNode } from '../../lib/cluster/local.js';
import { joined } from '../../lib/cli/local-command.js';
import { request } from '../../lib/daemon/client.js';
import { localClusterFor, namespaceInits } from '../../testkit/local-cluster.js';
import { waitFor } from '../../testkit/wait.js';

const MARK = 'target-crash=1';

const copies = () => namespaceInits(MARK);

const numbers = (file: string) => {
  try {
    return fs
      .readFileSync(file, 'utf8')
      .split('\n')
      .filter((l) => /^n \d+$/.test(l))
      .map((l) => Number(l.slice(2)));
  } catch {
    return [];
  }
};

const runs = (pid: number) => {
  try {
    return !/\) [ZX] /.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
};

void t.test("the target's sosd dies at the commit: restarted, it adopts the process; one copy", async (t) => {
  const { c, sosctl } = await localClusterFor(t, 2, ['--memory-capacity', '0']);
  const [src, dst] = c.nodes;
  // node1 again, armed to die right after it records a commit.
  const armed = await restartLocalNode(c.dir, 'node1', {
    ready: (n) => joined(n),
    env: { ...process.env, SOS_FAILPOINTS: 'target-committed' },
  });

  const started = await sosctl([
    'run',
    '--app',
    'tick',
    '--node',
    'node0',
    '--',
    '/bin/sh',
    '-c',
    `${MARK}; i=0; while :; do i=$((i+1)); echo "n $i"; sleep 0.05; done`,
  ]);
  t.equal(started.code, 0, started.stderr);
  const srcLog = path.join(src.stateDir, 'apps/tick/1/stdout.log');
  const dstLog = path.join(dst.stateDir, 'apps/tick/1/stdout.log');
  await waitFor(() => numbers(srcLog).length >= 3, 'the workload to run on node0');

  const asked = request('apps.migrate', { app: 'tick', id: 1, to: 'node1' }, src.socket, 180_000).then(
    (r) => ({ ok: true as const, r }),
    (e: Error & { code?: string }) => ({ ok: false as const, code: e.code, message: e.message }),
  );
  await waitFor(() => !runs(armed.pid), "node1's sosd to be gone");
  t.ok(
    fs.existsSync(path.join(dst.stateDir, 'apps/tick/1/arriving.json')),
    'the target kept its arrival folder, with its marker',
  );
  t.notOk(fs.existsSync(path.join(dst.stateDir, 'apps/tick/1/record.json')), 'but no workload record yet');
  // Started again at once (as systemd would): the source, still waiting for the final answer, may hear it.
  await restartLocalNode(c.dir, 'node1', { ready: (n) => joined(n) });
  const answer = await asked;
  t.comment(`the source's answer: ${answer.ok ? 'done' : `${answer.code}: ${answer.message}`}`);
  const ps = async () => {
    const r = await sosctl(['ps', '--json']);
    return r.code === 0 ? (JSON.parse(r.stdout) as { node: string; pid: number; state: string }[]) : [];
  };
  const srcRecord = () =>
    JSON.parse(fs.readFileSync(path.join(src.stateDir, 'apps/tick/1/record.json'), 'utf8')) as { state: string };
  const settled = waitFor(async () => {
    const live = copies();
    const [e] = await ps();
    return (
      live.length === 1 &&
      e?.node === 'node1' &&
      e.state === 'running' &&
      e.pid === live[0] &&
      srcRecord().state === 'migrated' &&
      !fs.existsSync(path.join(src.stateDir, 'apps/tick/1/moving.json'))
    );
  }, 'one copy, on node1, named by ps, and the source recording it left');
  await settled.catch(async (e: Error) => {
    // What each side holds, for the failure's report.
    const tail = (f: string) => (fs.existsSync(f) ? fs.readFileSync(f, 'utf8').slice(-4000) : '(none)');
    t.comment(
      `copies ${JSON.stringify(copies())} ps ${JSON.stringify(await ps())} source ${JSON.stringify(srcRecord())}`,
    );
    t.comment(`node0 sosd.log:\n${tail(path.join(path.dirname(src.socket), 'sosd.log'))}`);
    t.comment(`node1 sosd.log:\n${tail(path.join(path.dirname(dst.socket), 'sosd.log'))}`);
    throw e;
  });
  const [e] = await ps();
  t.same(copies(), [e.pid], 'exactly one copy runs, on node1');
  t.notOk(fs.existsSync(path.join(dst.stateDir, 'apps/tick/1/arriving.json')), 'the arrival is a workload now');
  const rec = JSON.parse(fs.readFileSync(path.join(dst.stateDir, 'apps/tick/1/record.json'), 'utf8')) as {
    state: string;
    pid: number;
    movedFrom: string;
  };
  t.match(rec, { state: 'running', pid: e.pid, movedFrom: 'node0' }, "node1's record adopts it");
  const before = numbers(srcLog);
  await waitFor(() => numbers(dstLog).length >= 3, 'the counter to go on on node1');
  t.equal(numbers(dstLog)[0], before[before.length - 1] + 1, "it goes on from node0's last number");
  const k = await sosctl(['kill', '-s', 'KILL', 'tick/1']);
  t.equal(k.code, 0, k.stderr);
  await waitFor(async () => (await ps())[0]?.state === 'exited', 'node1 to notice its exit');
  t.pass('node1 watches it: its exit is noticed');
});
