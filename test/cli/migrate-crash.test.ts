// Exactly one copy through a crash: a workload with 160 MiB of memory migrates node0 → node1 while
// the source's sosd is SIGKILLed in the middle (once its dump or transfer is under way) and started
// again. Whichever way the migration went, afterwards exactly one copy runs, `ps` names its node, the
// other node keeps no live copy, and the source's record says which (running, or migrated).
import t from 'tap';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { restartLocalNode } from '../../lib/cluster/local.js';
import { joined } from '../../lib/cli/local-command.js';
import { request } from '../../lib/daemon/client.js';
import { localClusterFor, namespaceInits } from '../../testkit/local-cluster.js';
import { waitFor } from '../../testkit/wait.js';

const PROG = [
  'b = bytearray(160 << 20)',
  'for i in range(0, len(b), 4096): b[i] = 1',
  'import time',
  'i = 0',
  'while True:',
  '    i += 1',
  '    print("n", i, flush=True)',
  '    time.sleep(0.05)',
].join('\n');

/** Live copies of the workload: python3 running PROG as pid 1 of its namespace. */
const copies = () => namespaceInits('python3\0-c\0b = bytearray(160');

void t.test("the source's sosd killed mid-migration: one copy runs, and ps says where", async (t) => {
  const { c, sosctl: run } = await localClusterFor(t, 2, ['--memory-capacity', '0']);
  const until = waitFor;
  const [src, dst] = c.nodes;

  const started = await run(['run', '--app', 'big', '--node', 'node0', '--', 'python3', '-c', PROG]);
  t.equal(started.code, 0, started.stderr);
  const log = path.join(src.stateDir, 'apps/big/1/stdout.log');
  await until(() => fs.existsSync(log) && fs.readFileSync(log, 'utf8').includes('n 3\n'), 'the workload to run');
  t.same(copies().length, 1, 'one copy before');

  // Ask node0's sosd directly (sosctl would die with it), then kill it once the move is under way.
  const migration = crypto.randomBytes(16).toString('hex');
  const asked = request('apps.migrate', { app: 'big', id: 1, to: 'node1', migration }, src.socket, 180_000).then(
    (r) => ({ ok: true as const, r }),
    (e: Error) => ({ ok: false as const, e }),
  );
  let phase = '';
  await until(async () => {
    const p = (await request('apps.migration', { migration }, src.socket).catch(() => null)) as {
      phase: string;
      state: string;
    } | null;
    phase = p ? `${p.phase}/${p.state}` : phase;
    return p !== null && (p.phase === 'dump' || p.phase === 'transfer' || p.state !== 'running');
  }, 'the migration to get under way');
  await restartLocalNode(c.dir, 'node0', { signal: 'SIGKILL', ready: (n) => joined(n) });
  const answer = await asked;
  t.notOk(answer.ok && phase.endsWith('/running'), `the request saw its sosd die (killed at ${phase})`);

  // Settled: exactly one copy, named by ps, the other side's record agreeing.
  const ps = async () => {
    const r = await run(['ps', '--json']);
    return r.code === 0 ? (JSON.parse(r.stdout) as { node: string; pid: number; state: string }[]) : [];
  };
  const record = () =>
    JSON.parse(fs.readFileSync(path.join(src.stateDir, 'apps/big/1/record.json'), 'utf8')) as {
      state: string;
      pid: number;
    };
  await until(async () => {
    const live = copies();
    const [e] = await ps();
    const rec = record();
    return (
      live.length === 1 &&
      e?.state === 'running' &&
      e.pid === live[0] &&
      !fs.existsSync(path.join(src.stateDir, 'apps/big/1/moving.json')) &&
      (e.node === 'node0' ? rec.state === 'running' && rec.pid === live[0] : rec.state === 'migrated')
    );
  }, 'the migration to settle on one copy');
  const [e] = await ps();
  t.pass(`settled: one copy, on ${e.node} (pid ${e.pid}), killed at ${phase}`);
  t.same(copies(), [e.pid], 'exactly one copy runs');
  const logs = await run(['logs', 'big/1', '--stream', 'stdout']);
  t.equal(logs.code, 0, logs.stderr);
  await until(async () => {
    const a = (await run(['logs', 'big/1', '--stream', 'stdout'])).stdout.length;
    await new Promise((r) => setTimeout(r, 300));
    return (await run(['logs', 'big/1', '--stream', 'stdout'])).stdout.length > a;
  }, 'the survivor to go on counting');
  t.pass('and it goes on running');
  void dst;
});
