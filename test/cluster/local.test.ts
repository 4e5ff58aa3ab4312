// A 3-node cluster as a user brings it up: `sosctl cluster up --nodes 3` (network namespaces on a
// bridge, a mutual-TLS etcd, one sosd in each), `sosctl nodes` through a node's sosd; a sosd killed
// (its lease expires, the others see it go) and started again (it joins again); a sosd restarted with
// SIGTERM (it keeps serving as the same member); etcd restarted under the cluster (every node is a
// live member again, by itself); `sosctl cluster down` leaves no namespace, sosd or etcd behind.
import t from 'tap';
import { execFile, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  downLocal,
  localCluster,
  restartLocalEtcd,
  sosdLog,
  restartLocalNode,
  type LocalCluster,
} from '../../lib/cluster/local.js';
import { request } from '../../lib/daemon/client.js';
import { joined } from '../../lib/cli/local-command.js';
import { onExit } from '../../testkit/cleanup.js';
import { alive } from '../../lib/migration/proc.js';

const sosctl = path.join(path.dirname(fileURLToPath(import.meta.url)), '../../lib/cli/sosctl.js');
const remoteCall = path.join(path.dirname(fileURLToPath(import.meta.url)), '../../testkit/remote-call.js');

const execFileP = (cmd: string, args: string[]): Promise<string> =>
  new Promise((resolve, reject) =>
    execFile(cmd, args, { timeout: 60_000 }, (e, stdout, stderr) =>
      e ? reject(new Error(`${e.message}: ${stderr}`)) : resolve(stdout),
    ),
  );

function run(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [sosctl, ...args],
      { timeout: 120_000, env: { ...process.env, ...env } },
      (e, stdout, stderr) => resolve({ code: e ? ((e as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

interface Listed {
  name: string;
  lease: string;
  addr: string;
}

const nodesSeenBy = async (c: LocalCluster, i: number): Promise<string[]> =>
  ((await request('cluster.nodes', {}, c.nodes[i].socket)) as Listed[]).map((n) => n.name).sort();

/** Poll `f` until it returns true (etcd and leases move on their own time; no guessed sleeps). */
async function until(f: () => Promise<boolean>, what: string, ms = 60_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await f().catch(() => false))) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

void t.test('sosctl cluster up/down: membership, a sosd killed and restarted, etcd restarted', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sos-local-'));
  const cancel = onExit(() => execFileSync(process.execPath, [sosctl, 'cluster', 'down', '--dir', dir]));
  t.teardown(async () => {
    await downLocal(dir);
    cancel();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const up = await run(['cluster', 'up', '--nodes', '3', '--dir', dir, '--json']);
  t.equal(up.code, 0, up.stderr);
  const c = JSON.parse(up.stdout) as LocalCluster;
  t.same(
    c.nodes.map((n) => n.name),
    ['node0', 'node1', 'node2'],
  );
  const again = await run(['cluster', 'up', '--nodes', '3', '--dir', dir]);
  t.equal(again.code, 1, 'a second up on the same folder is refused');
  t.match(again.stderr, /already runs from .*cluster down first \(ERR_EXISTS\)/);
  t.equal((await run(['cluster', 'up', '--nodes', '0', '--dir', dir])).code, 2, '--nodes 0 is a usage error');

  // sosctl reaches the nodes through their sosds' sockets (the host has no route into the namespaces).
  const listed = await run(['nodes', '--json'], { SOS_LOCAL_DIR: dir });
  t.equal(listed.code, 0, listed.stderr);
  const rows = JSON.parse(listed.stdout) as Listed[];
  t.same(rows.map((r) => r.name).sort(), ['node0', 'node1', 'node2']);
  t.same(rows.map((r) => r.addr).sort(), c.nodes.map((n) => n.addr).sort(), 'each publishes its address');
  const table = await run(['nodes', '--socket', c.nodes[2].socket]);
  t.match(table.stdout, /^NAME +ADDR +CPU +MEM AVAIL +LEASE\nnode0 +10\./);

  // Each sosd serves the members over mutual TLS on its address: an operator may list the nodes, a
  // node may not (ERR_FORBIDDEN), and a revoked operator is refused once the sosds reload (SIGHUP).
  const remote = async (role: string, name: string, i: number, op: string) => {
    const out = await execFileP('ip', [
      'netns',
      'exec',
      c.net.bridge,
      process.execPath,
      remoteCall,
      path.join(dir, 'cluster'),
      role,
      name,
      c.nodes[i].addr,
      '7443',
      op,
    ]);
    return JSON.parse(out) as { ok: boolean; result?: Listed[]; code?: string; message?: string };
  };
  const asOperator = await remote('operator', 'operator', 1, 'cluster.nodes');
  t.equal(asOperator.ok, true, asOperator.message ?? 'served');
  t.same(
    asOperator.result!.map((n) => n.name).sort(),
    ['node0', 'node1', 'node2'],
    'an operator lists the nodes over TLS',
  );
  t.match(await remote('node', 'node0', 1, 'cluster.nodes'), { ok: false, code: 'ERR_FORBIDDEN' }, 'a node may not');
  t.match(await remote('node', 'node0', 1, 'status'), { ok: false, code: 'ERR_FORBIDDEN' }, 'status is local-only');
  t.equal(
    (await run(['cluster', 'issue', '--role', 'operator', '--name', 'ops2', '--dir', path.join(dir, 'cluster')])).code,
    0,
  );
  t.equal((await remote('operator', 'ops2', 0, 'cluster.nodes')).ok, true, 'a new operator is admitted');
  t.equal(
    (await run(['cluster', 'revoke', '--role', 'operator', '--name', 'ops2', '--dir', path.join(dir, 'cluster')])).code,
    0,
  );
  for (const n of c.nodes) process.kill(n.pid, 'SIGHUP');
  await until(async () => !(await remote('operator', 'ops2', 0, 'cluster.nodes')).ok, 'node0 to refuse ops2');
  t.pass('revoked and reloaded: the operator is refused');
  t.equal((await remote('operator', 'operator', 0, 'cluster.nodes')).ok, true, 'the other operator still is served');

  // A crashed sosd: its lease expires and the others see it go; started again, it joins again.
  const lease1 = ((await request('cluster.status', {}, c.nodes[1].socket)) as { lease: string }).lease;
  process.kill(c.nodes[2].pid, 'SIGKILL');
  await until(async () => (await nodesSeenBy(c, 0)).join() === 'node0,node1', 'node2 to be gone');
  t.pass('node2 killed: node0 no longer lists it');
  await restartLocalNode(dir, 'node2', { ready: (n) => joined(n) });
  await until(async () => (await nodesSeenBy(c, 1)).length === 3, 'node2 back');
  t.pass('node2 restarted: a member again');

  // A graceful restart: a new sosd pid, the same node, and the lease id kept on disk for it.
  const oldPid = localCluster(dir)!.nodes[1].pid;
  const n1 = await restartLocalNode(dir, 'node1', { signal: 'SIGTERM', ready: (n) => joined(n) });
  t.not(n1.pid, oldPid, 'a new sosd');
  t.notOk(alive(oldPid), 'the old one exited');
  const kept = JSON.parse(fs.readFileSync(path.join(n1.stateDir, 'cluster-lease.json'), 'utf8')) as { lease: string };
  const st1 = (await request('cluster.status', {}, n1.socket)) as { lease: string; alive: boolean };
  t.equal(BigInt(kept.lease).toString(16), st1.lease, 'the lease it holds is the one kept on disk');
  t.ok(lease1, 'node1 had a lease before');

  // etcd restarted under the cluster: every sosd finds its way back without being touched.
  await restartLocalEtcd(dir);
  for (const i of [0, 1, 2])
    await until(
      async () =>
        ((await request('cluster.status', {}, c.nodes[i].socket)) as { alive: boolean }).alive &&
        (await nodesSeenBy(c, i)).length === 3,
      `node${i} alive after etcd's restart`,
    ).catch((e: Error) => {
      // Once in CI node1 never came back: what its sosd said is the finding.
      const log = fs.readFileSync(sosdLog(c.nodes[i]), 'utf8').split('\n').slice(-40).join('\n');
      throw new Error(`${e.message}; the end of its sosd log:\n${log}`);
    });
  t.pass('after etcd restarted, all 3 are live members again and see each other');

  const now = localCluster(dir)!;
  const down = await run(['cluster', 'down', '--dir', dir]);
  t.equal(down.code, 0, down.stderr);
  t.match(down.stdout, /cluster local down \(3 nodes\)/);
  t.same(
    now.nodes.filter((n) => alive(n.pid)).map((n) => n.name),
    [],
    'no sosd left',
  );
  t.notOk(alive(now.etcd.pid), 'etcd stopped');
  const left = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' });
  t.same(
    [now.net.bridge, ...now.net.nodes.map((n) => n.netns)].filter((ns) => left.includes(ns)),
    [],
    'no namespace left',
  );
  t.match((await run(['cluster', 'down', '--dir', dir])).stdout, /no local cluster runs from/);
});
