// Memory nodes hosted by sosd, on a 2-node local cluster (`cluster up --memory-capacity`): each node
// publishes its memory node's port and its capacity; `sosctl run --local-memory --memory-nodes
// node0,node1` (run from the bridge's namespace, where the nodes' addresses are reachable) has both
// sosds let the run in with a fresh secret and pages an unmodified python3 program's memory to them:
// its output is a plain run's. Only operators may let an application in; a short secret is refused.
import t from 'tap';
import { execFile, execFileSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { request } from '../../lib/daemon/client.js';
import { localClusterFor, type Out } from '../../testkit/local-cluster.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const sosctl = path.join(here, '../../lib/cli/sosctl.js');
const INTS = path.resolve(here, '../../../test/memory/run-programs/ints.py');
const MiB = 2 ** 20;

void t.test('sosd as a memory node: granted by name, used by sosctl run --local-memory', async (t) => {
  const { c, env, sosctl: run, remote } = await localClusterFor(t, 2, ['--memory-capacity', '64MiB']);
  const exec = (cmd: string, args: string[]): Promise<Out> =>
    new Promise((resolve) =>
      execFile(cmd, args, { timeout: 180_000, env, maxBuffer: 16 * MiB }, (e, stdout, stderr) =>
        resolve({ code: e ? ((e as { code?: number }).code ?? 1) : 0, stdout, stderr }),
      ),
    );

  const listed = await run(['nodes', '--json']);
  t.equal(listed.code, 0, listed.stderr);
  const rows = JSON.parse(listed.stdout) as { name: string; memory?: number }[];
  t.same(
    rows.map((r) => [r.name, r.memory]).sort(),
    [
      ['node0', 7445],
      ['node1', 7445],
    ],
    "each node publishes its memory node's port",
  );
  const stats = (await request('memory.stats', {}, c.nodes[1].socket)) as { capacity: number; port: number };
  t.match(stats, { capacity: 64 * MiB, port: 7445, host: c.nodes[1].addr, tls: true }, 'memory.stats: mutual TLS');

  const plain = execFileSync('python3', [INTS, '200000'], { encoding: 'utf8' });
  const paged = await exec('ip', [
    'netns',
    'exec',
    c.net.bridge,
    process.execPath,
    sosctl,
    'run',
    '--local-memory',
    String(4 * MiB),
    '--far-size',
    String(48 * MiB),
    '--memory-nodes',
    'node0,node1',
    '--app',
    'ints',
    '--stats',
    '--json',
    '--',
    'python3',
    INTS,
    '200000',
  ]);
  t.equal(paged.code, 0, paged.stderr.slice(0, 2000));
  t.equal(paged.stdout, plain, "the output of a plain run, with its memory on the nodes' memory nodes");
  const line = paged.stderr.trim().split('\n').pop() ?? '{}';
  const fetched = (JSON.parse(line) as { total: { pagesFetched: number } }).total.pagesFetched;
  t.ok(fetched > 0, `its pages came back from the memory nodes (${fetched} fetched)`);

  // Only operators (and the orchestrator) let an application in; the secret is checked.
  const asNode = await remote({ role: 'node', name: 'node0' }, 1, 'memory.grant', {
    app: 'x',
    secret: Buffer.alloc(32, 1).toString('base64'),
  });
  t.match(asNode, { ok: false, code: 'ERR_FORBIDDEN' }, 'a node may not let an application in');
  await t.rejects(
    request('memory.grant', { app: 'x', secret: Buffer.alloc(16).toString('base64') }, c.nodes[1].socket),
    { code: 'ERR_BAD_ARGS' },
    'a short secret is refused',
  );
  const g = (await request(
    'memory.grant',
    { app: 'x', secret: Buffer.alloc(32, 2).toString('base64') },
    c.nodes[1].socket,
  )) as { host: string; port: number };
  t.match(
    g,
    { host: c.nodes[1].addr, port: 7445, tls: true },
    'a grant says where the memory node listens, and that it is TLS',
  );
  const after = (await request('memory.stats', {}, c.nodes[0].socket)) as { tlsRefused: number };
  t.equal(after.tlsRefused, 0, "sosctl's operator certificate was taken");
  t.match(await request('memory.revoke', { app: 'x' }, c.nodes[1].socket), { revoked: true });
});
