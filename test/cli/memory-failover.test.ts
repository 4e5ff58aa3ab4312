// A node killed while a far-memory region has pages on it, on a 3-node local cluster: an unmodified
// program whose memory is on two nodes' memory nodes (sosctl run --local-memory) goes on with every
// byte right from the surviving replica, and the orchestrator records the node's departure with the
// far memory that went with it.
import t from 'tap';
import { spawn } from 'node:child_process';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { localClusterFor } from '../../testkit/local-cluster.js';
import { waitFor } from '../../testkit/wait.js';
import type { Decision } from '../../lib/orchestrator/actions.js';

const sosctlJs = path.join(path.dirname(fileURLToPath(import.meta.url)), '../../lib/cli/sosctl.js');

// 48 MiB, each page stamped with its number; its hash checked again, three times, after "go".
const PROG = `
import hashlib, sys
n = int(sys.argv[1]) << 20
data = bytearray(n)
for off in range(0, n, 4096):
    data[off:off + 8] = (off // 4096).to_bytes(8, "little")
want = hashlib.sha256(data).hexdigest()
print("filled", flush=True)
sys.stdin.readline()
for r in range(3):
    print("round", r, "ok" if hashlib.sha256(data).hexdigest() == want else "WRONG", flush=True)
`;

void t.test('a memory node killed under a far-memory program: it goes on from the replicas', async (t) => {
  const { c, env, json, leader: leaderOf } = await localClusterFor(t, 3, ['--memory-capacity', '256MiB']);
  const leader = await leaderOf();
  // The program in the leader's namespace, its memory on the other two; one of those is killed.
  const host = c.nodes.find((n) => n.name === leader)!;
  const [victim, survivor] = c.nodes.filter((n) => n !== host);
  const p = spawn(
    'ip',
    // prettier-ignore
    ['netns', 'exec', host.netns, process.execPath, sosctlJs, 'run', '--app', 'far', '--local-memory', '8MiB',
      '--far-size', '128MiB', '--memory-nodes', `${victim.name},${survivor.name}`, '--', 'python3', '-c', PROG, '48'],
    { env, stdio: ['pipe', 'pipe', 'pipe'] },
  );
  t.teardown(() => void p.kill('SIGKILL'));
  let stderr = '';
  p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const lines: string[] = [];
  readline.createInterface({ input: p.stdout }).on('line', (l) => lines.push(l));
  const exited = new Promise<number | null>((r) => p.once('exit', (code) => r(code)));
  await waitFor(() => lines.includes('filled') || p.exitCode !== null, 'the program to fill its memory');
  t.ok(lines.includes('filled'), `the program filled its memory ${stderr}`);
  // The victim's telemetry says it holds far memory: the orchestrator knows what goes with it.
  await waitFor(async () => {
    const nodes = await json<{ name: string; telemetry?: { farMemory?: { held: number } } }[]>(['nodes']);
    return (nodes.find((n) => n.name === victim.name)?.telemetry?.farMemory?.held ?? 0) > 0;
  }, `${victim.name} to publish the far memory it holds`);

  process.kill(victim.pid, 'SIGKILL'); // its sosd, and the memory node it hosts
  p.stdin.write('go\n');
  t.equal(await exited, 0, `the program exits 0 (${stderr.trim().split('\n').slice(-3).join(' | ')})`);
  t.same(lines.slice(1), ['round 0 ok', 'round 1 ok', 'round 2 ok'], 'every byte right, from the surviving replica');
  t.match(stderr, new RegExp(`memory node .* lost .*serving from replicas`), 'sosctl says a memory node was lost');

  let lost: Decision | undefined;
  await waitFor(async () => {
    lost = (await json<Decision[]>(['decisions', '--socket', host.socket])).find(
      (d) => d.kind === 'node-lost' && d.node === victim.name,
    );
    return lost !== undefined;
  }, `the orchestrator to record ${victim.name}'s departure`);
  t.match(
    lost!.reason,
    /left the cluster \(its lease expired\): 0 of its processes lost; its memory node held \d+ MiB of far memory, served on from replicas/,
  );
  t.equal(lost!.leader, leader, 'recorded by the leader, under its term');
});
