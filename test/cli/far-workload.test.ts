// Far-memory workloads through sosd (`sosctl run --far-memory`), on a 3-node local cluster: an
// unmodified python3 program on node0 with 4 MiB resident and its 32 MiB on the memory nodes of node1
// and node2 (two replicas). It live-migrates post-copy and then pre-copy: each time its arena is
// detached before the dump and adopted by the target's sosd after the restore, its memory the same
// (a checksum of all of it) and still on the memory nodes. A dump that fails (the program holds a
// userfaultfd of its own, which CRIU cannot dump) leaves it running on its node, served again, its
// memory the same. Its node's sosd restarted (SIGTERM) hands it to the next one. A process that is
// no far-memory workload of the node is refused by the monitor; migration.far is refused without an
// expected migration; a checkpoint is refused. When the program exits, every page is freed on both memory nodes. Without --node the orchestrator places one: the
// leader lets it into its memory node, fenced by its term (a node without a current fence may not).
import t from 'tap';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { request } from '../../lib/daemon/client.js';
import { restartLocalNode } from '../../lib/cluster/local.js';
import { joined } from '../../lib/cli/local-command.js';
import { SHIM_PATH } from '../../lib/memory/run.js';
import { localClusterFor, type Out } from '../../testkit/local-cluster.js';
import { waitFor } from '../../testkit/wait.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const PROG = path.resolve(here, '../../../test/memory/run-programs/handover.py');
const MiB = 2 ** 20;

const exec = (cmd: string, args: string[], env?: NodeJS.ProcessEnv): Promise<Out> =>
  new Promise((resolve) =>
    execFile(cmd, args, { timeout: 120_000, env }, (e, stdout, stderr) =>
      resolve({ code: e ? ((e as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    ),
  );

void t.test('a far-memory workload migrates with its memory left on the memory nodes', async (t) => {
  const { dir, c, sosctl, remote } = await localClusterFor(t, 3, ['--memory-capacity', '256MiB']);
  const [n0, n1, n2] = c.nodes;
  const held = async () => {
    const out: { heldBytes: number; reservedBytes: number }[] = [];
    for (const n of [n1, n2]) {
      const s = (await request('memory.stats', {}, n.socket)) as {
        usage: Record<string, { heldBytes: number; reservedBytes: number }>;
      };
      out.push(s.usage.far ?? { heldBytes: 0, reservedBytes: 0 });
    }
    return out;
  };

  const ran = await sosctl(
    // prettier-ignore
    ['run', '--app', 'far', '--node', 'node0', '--far-memory', '4MiB', '--far-size', '64MiB',
      '--memory-nodes', 'node1,node2', '--json', '--', 'python3', PROG, '--tcp'],
  );
  t.equal(ran.code, 0, ran.stderr);
  const id = (JSON.parse(ran.stdout) as { id: number }).id;
  let port = 0;
  await waitFor(async () => {
    const l = (await request('apps.logs', { app: 'far', id, stream: 'stdout' }, n0.socket)) as { stdout: string };
    port = Number(/ready (\d+)/.exec(l.stdout)?.[1] ?? 0);
    return port > 0;
  }, 'the program listens');
  const ask = async (netns: string, cmd: string): Promise<string> => {
    const r = await exec('ip', [
      'netns',
      'exec',
      netns,
      'python3',
      '-c',
      `import socket; s=socket.create_connection(('127.0.0.1',${port})); s.sendall(b'${cmd}\\n'); print(s.makefile().readline().strip())`,
    ]);
    if (r.code !== 0) throw new Error(`asking ${cmd} in ${netns}: ${r.stderr}`);
    return r.stdout.trim();
  };

  const first = await ask(n0.netns, 'sum');
  t.match(first, /^sum [0-9a-f]{64} True$/, 'its checksum, its spin thread running');
  const usage = (await request('apps.usage', { app: 'far' }, n0.socket)) as {
    far?: { arenaBytes: number; stats: { residentPages: number; evictions: number } }[];
  }[];
  const arena = usage[0].far?.[0];
  t.equal(arena?.arenaBytes, 64 * MiB, 'node0 serves its arena');
  t.ok(arena && arena.stats.residentPages * 4096 <= 4 * MiB, 'at most 4 MiB of it resident');
  t.ok(arena && arena.stats.evictions > 0, 'the rest was paged out');
  const h = await held();
  t.ok(
    h.every((x) => x.heldBytes >= 32 * MiB),
    `its 32 MiB on both memory nodes (${h.map((x) => x.heldBytes).join(', ')} bytes)`,
  );

  // Asked of its sosd directly, whose answer has the detach's share of the downtime.
  const post = (await request(
    'apps.migrate',
    { app: 'far', id, to: 'node2', mode: 'postcopy' },
    n0.socket,
    300_000,
  )) as {
    downtimeMs: number;
    farDetachMs: number;
  };
  t.ok(
    post.farDetachMs > 0 && post.downtimeMs >= post.farDetachMs,
    `its detach (${post.farDetachMs} ms) is counted in the downtime (${post.downtimeMs} ms)`,
  );
  t.equal(await ask(n2.netns, 'sum'), first, 'post-copy to node2: the same memory');
  const u2 = (await request('apps.usage', { app: 'far' }, n2.socket)) as { far?: unknown[] }[];
  t.equal(u2[0]?.far?.length, 1, "node2's sosd serves its arena now");
  t.equal(await ask(n2.netns, 'write 7'), 'written');
  const second = await ask(n2.netns, 'sum');
  t.not(second, first, 'written on node2');

  const pre = await sosctl(['migrate', `far/${id}`, '--to', 'node1']);
  t.equal(pre.code, 0, pre.stderr);
  t.equal(await ask(n1.netns, 'sum'), second, 'pre-copy to node1: the same memory, the write kept');

  // CRIU cannot dump a userfaultfd the program holds itself: the migration fails, the program runs on.
  t.match(await ask(n1.netns, 'uffd'), /^uffd \d+$/);
  const failed = await sosctl(['migrate', `far/${id}`, '--to', 'node0']);
  t.not(failed.code, 0, 'that migration fails');
  t.match(failed.stderr, /runs on node1/, failed.stderr);
  t.equal(await ask(n1.netns, 'sum'), second, 'it runs on, on node1, its memory served again');
  t.equal(await ask(n1.netns, 'close-uffd'), 'closed');
  const back = await sosctl(['migrate', `far/${id}`, '--to', 'node0', '--postcopy']);
  t.equal(back.code, 0, back.stderr);
  t.equal(await ask(n0.netns, 'sum'), second, 'and migrates once it can');

  // node0's sosd stopped and started again: it detaches the arena for the next one, which adopts it.
  await restartLocalNode(dir, 'node0', { signal: 'SIGTERM', ready: (n) => joined(n) });
  t.equal(await ask(n0.netns, 'sum'), second, "across a restart of its node's sosd: the same memory");
  const u0 = (await request('apps.usage', { app: 'far' }, n0.socket)) as { far?: unknown[] }[];
  t.equal(u0[0]?.far?.length, 1, 'the new sosd serves its arena');

  // Refusals: a process that is not a far-memory workload of the node; migration.far unasked.
  const stranger = await exec('ip', ['netns', 'exec', n0.netns, 'python3', '-c', 'bytearray(1 << 20)'], {
    ...process.env,
    LD_PRELOAD: SHIM_PATH,
    SOS_RUN_SOCK: '@sos-far-monitor',
    SOS_RUN_ARENA: String(64 * MiB),
  });
  t.not(stranger.code, 0, 'a stranger gets no far memory');
  t.match(stranger.stderr, /not a far-memory workload of this node/);
  const unasked = await remote({ role: 'node', name: 'node1' }, 0, 'migration.far', {
    migration: '0'.repeat(32),
    config: {
      localBytes: 4 * MiB,
      farBytes: 64 * MiB,
      nodes: [{ host: n1.addr, port: 7445 }],
      secret: 'A'.repeat(44),
      tls: true,
    },
    arenas: [],
  });
  t.match(unasked, { ok: false, code: 'ERR_NOT_FOUND' }, 'migration.far without an expected migration');
  const malformed = await remote({ role: 'node', name: 'node1' }, 0, 'migration.far', {
    migration: '0'.repeat(32),
    config: { localBytes: 3, farBytes: 64 * MiB, nodes: [], secret: 'x', tls: true },
    arenas: [{ nsPid: 0 }],
  });
  t.match(malformed, { ok: false, code: 'ERR_BAD_ARGS' }, 'a malformed one');

  const cp = await sosctl(['checkpoint', `far/${id}`]);
  t.not(cp.code, 0, 'a checkpoint is refused: its far memory would go on changing on the nodes');
  t.match(cp.stderr, /cannot be checkpointed/);
  t.equal(await ask(n0.netns, 'sum'), second, 'and the program runs on untouched');

  await ask(n0.netns, 'exit').catch(() => '');
  await waitFor(async () => {
    const e = (await request('apps.get', { app: 'far', id }, n0.socket)) as { state: string };
    return e.state === 'exited';
  }, 'the program exits');
  await waitFor(
    async () => (await held()).every((x) => x.heldBytes === 0 && x.reservedBytes === 0),
    'every page freed',
  );
  t.pass('every page is freed on both memory nodes');

  // Without --node the orchestrator places it: desired state names its memory node, the leader lets
  // it in there (fenced by its term) and has the chosen node's sosd page it.
  const placed = await sosctl(
    // prettier-ignore
    ['run', '--app', 'far2', '--far-memory', '4MiB', '--far-size', '64MiB', '--memory-nodes', 'node1',
      '--replicas', '1', '--json', '--', 'python3', PROG, '--tcp'],
  );
  t.equal(placed.code, 0, placed.stderr);
  const e2 = JSON.parse(placed.stdout) as { id: number; node: string };
  const on = c.nodes.find((n) => n.name === e2.node)!;
  t.not(e2.node, 'node1', 'not on its memory node');
  const decided = await sosctl(['decisions', '--json']);
  const reasons = (JSON.parse(decided.stdout) as { app: string; kind: string; reason: string }[])
    .filter((d) => d.app === 'far2' && d.kind === 'place')
    .map((d) => d.reason);
  t.match(reasons, [/among the nodes that hold none of its memory/], 'the decision says why');
  await waitFor(async () => {
    const l = (await request('apps.logs', { app: 'far2', id: e2.id, stream: 'stdout' }, on.socket)) as {
      stdout: string;
    };
    port = Number(/ready (\d+)/.exec(l.stdout)?.[1] ?? 0);
    return port > 0;
  }, 'the placed program listens');
  t.match(await ask(on.netns, 'sum'), /^sum [0-9a-f]{64} True$/, `placed on ${on.name}, it answers`);
  const u = (await request('apps.usage', { app: 'far2' }, on.socket)) as { far?: unknown[] }[];
  t.equal(u[0]?.far?.length, 1, `${on.name}'s sosd pages it`);
  const s1 = (await request('memory.stats', {}, n1.socket)) as { usage: Record<string, { heldBytes: number }> };
  t.ok(s1.usage.far2?.heldBytes >= 28 * MiB, `its memory is on node1 (${s1.usage.far2?.heldBytes} bytes)`);
  // Only the leading orchestrator, with its current fence, lets an application in as a node.
  const secret = Buffer.alloc(32, 7).toString('base64');
  const noFence = await remote({ role: 'node', name: 'node2' }, 1, 'memory.grant', { app: 'x', secret });
  t.match(noFence, { ok: false, code: 'ERR_FORBIDDEN' }, 'a node without a fence may not');
  const stale = await remote({ role: 'node', name: 'node2' }, 1, 'memory.grant', {
    app: 'x',
    secret,
    fence: { leader: 'node2', term: '1' },
  });
  t.match(stale, { ok: false, code: 'ERR_FENCED' }, 'nor one with a fence not current');
  await ask(on.netns, 'exit').catch(() => '');
});
