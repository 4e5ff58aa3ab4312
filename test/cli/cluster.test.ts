// sosctl's cluster commands as a user runs them: init a folder, issue etcd's and a node's
// certificates, start a mutual-TLS etcd, join the node from the folder, and `sosctl nodes` lists it
// with its telemetry (--json and the table); usage errors exit 2 with a message, an etcd that is
// down exits 1 saying so.
import t from 'tap';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadMember, setEtcd } from '../../lib/cluster/folder.js';
import { joinCluster } from '../../lib/cluster/join.js';
import { testEtcd } from '../../testkit/etcd.js';
import { setEtcdCrl } from '../../lib/cluster/etcd-server.js';

const sosctl = path.join(path.dirname(fileURLToPath(import.meta.url)), '../../lib/cli/sosctl.js');

function run(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [sosctl, ...args], { timeout: 60_000 }, (e, stdout, stderr) =>
      resolve({ code: e ? ((e as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

void t.test('init, issue, a TLS etcd, a node joined, sosctl nodes', async (t) => {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'sos-cli-'));
  t.teardown(() => fs.rmSync(base, { recursive: true, force: true }));
  const dir = path.join(base, 'cluster');
  const init = await run(['cluster', 'init', '--name', 'clitest', '--dir', dir, '--json']);
  t.equal(init.code, 0, init.stderr);
  t.match(JSON.parse(init.stdout), { cluster: 'clitest', etcd: [], operator: { role: 'operator', name: 'operator' } });
  for (const [name, hosts] of [
    ['etcd', '127.0.0.1'],
    ['node-1', '127.0.0.1'],
  ]) {
    const r = await run(['cluster', 'issue', '--name', name, '--hosts', hosts, '--dir', dir, '--json']);
    t.equal(r.code, 0, r.stderr);
    t.match(JSON.parse(r.stdout), { name, role: 'node', cluster: 'clitest', serial: /^[0-9a-f]+$/ });
  }
  const e = loadMember(dir, 'node', 'etcd');
  const etcd = await testEtcd(t, { tls: e }); // e carries the folder's (empty) CRL
  setEtcd(dir, [etcd.endpoint], 'etcd');

  const node = await joinCluster({ dir, name: 'node-1', facts: { addr: '127.0.0.1' } });
  t.teardown(() => node.close());
  await node.telemetry.tick();
  const nodes = await run(['nodes', '--dir', dir, '--json']);
  t.equal(nodes.code, 0, nodes.stderr);
  const list = JSON.parse(nodes.stdout) as { name: string; addr: string; telemetry: { cpus: number } | null }[];
  t.same(
    list.map((n) => n.name),
    ['node-1'],
  );
  t.equal(list[0].addr, '127.0.0.1');
  t.equal(list[0].telemetry?.cpus, os.availableParallelism(), 'with its telemetry');
  const table = await run(['nodes', '--dir', dir]);
  t.match(
    table.stdout,
    /^NAME\s+ADDR\s+CPU\s+MEM AVAIL\s+LEASE\nnode-1\s+127\.0\.0\.1\s+\d+%\s+\d+ MiB\s+[0-9a-f]+\n$/,
  );

  await node.close();
  const empty = await run(['nodes', '--dir', dir, '--json']);
  t.same(JSON.parse(empty.stdout), [], 'a node that left is not listed');

  // Revoked: etcd reads the folder's CRL on each new connection and refuses the node.
  const rv = await run(['cluster', 'revoke', '--name', 'node-1', '--dir', dir, '--json']);
  t.equal(rv.code, 0, rv.stderr);
  setEtcdCrl(etcd.dir, loadMember(dir, 'node', 'node-1').crlPem);
  await t.rejects(joinCluster({ dir, name: 'node-1' }), { code: 'ERR_ETCD_UNAVAILABLE' }, 'a revoked node cannot join');
  const still = await run(['nodes', '--dir', dir, '--json']);
  t.equal(still.code, 0, 'the operator, not revoked, still reads');

  await etcd.stop();
  const down = await run(['nodes', '--dir', dir]);
  t.equal(down.code, 1, 'etcd down: exit 1');
  t.match(down.stderr, /^sosctl: etcd did not answer \(https:\/\/127\.0\.0\.1:\d+\): .* \(ERR_ETCD_UNAVAILABLE\)\n$/);
});

void t.test('usage errors exit 2 and say why', async (t) => {
  for (const [args, said] of [
    [['cluster', 'init'], /required option '--name <cluster>' not specified/],
    [['cluster', 'issue', '--name', 'x', '--role', 'king'], /argument 'king' is invalid/],
    [['cluster', 'issue', '--name', 'x', '--days', '0'], /--days must be a positive integer/],
    [['cluster', 'init', '--name', 'x', '--etcd', 'localhost:2379'], /not an http\(s\) URL: localhost:2379/],
    [['cluster', 'revoke', '--dir', '/nonexistent'], /give serials, or --name NAME/],
    [['nodes', '--bogus'], /unknown option '--bogus'/],
  ] as const) {
    const r = await run([...args]);
    t.equal(r.code, 2, `${args.join(' ')}: exit 2`);
    t.match(r.stderr, said, `${args.join(' ')}: says why`);
  }
  const help = await run(['cluster', '--help']);
  t.equal(help.code, 0);
  t.match(help.stdout, /Commands:\n\s+init .*\n[\s\S]*issue[\s\S]*revoke/);
});
