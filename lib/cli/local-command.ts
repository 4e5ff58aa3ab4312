/**
 * `sosctl cluster up --nodes N` and `sosctl cluster down`: a whole cluster on this machine (N network
 * namespaces on a bridge, a mutual-TLS etcd, one sosd per namespace; lib/cluster/local.ts), the
 * embedded default that needs nothing else. `up` returns once every sosd has joined.
 */
import fs from 'node:fs';
import path from 'node:path';
import { Command, InvalidArgumentError, Option } from 'commander';
import { downLocal, localCluster, sosdLog, upLocal, type LocalNode } from '../cluster/local.js';
import { parseSize } from './size.js';
import { DEFAULT_LOCAL_DIR } from './local-dir.js';
import { ClusterError } from '../cluster/errors.js';
import { request } from '../daemon/client.js';

const localDir = () => new Option('--dir <path>', 'the local cluster folder').default(DEFAULT_LOCAL_DIR);

function nodes(v: string): number {
  if (!/^\d+$/.test(v) || Number(v) < 1 || Number(v) > 32) throw new InvalidArgumentError('must be from 1 to 32');
  return Number(v);
}

function runs(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

/** Resolve once `node`'s sosd says it is a live member; reject with its log's tail when it exits first. */
export async function joined(node: LocalNode, timeoutMs = 60_000): Promise<void> {
  const log = sosdLog(node);
  const end = Date.now() + timeoutMs;
  for (;;) {
    const st = (await request('cluster.status', {}, node.socket, 2000).catch(() => null)) as { alive?: boolean } | null;
    if (st?.alive) return;
    if (!runs(node.pid) || Date.now() > end) {
      const tail = fs.readFileSync(log, 'utf8').trim().split('\n').slice(-5).join('\n');
      throw new ClusterError(
        `sosd of ${node.name} ${runs(node.pid) ? `did not join within ${timeoutMs / 1000} s` : 'exited'}; its log (${log}) ends:\n${tail}`,
        { code: 'ERR_NODE_START' },
      );
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** SIGKILL every running workload of `node` and wait for their exits (best effort: its sosd may be gone). */
async function endWorkloads(node: LocalNode): Promise<void> {
  const list = (await request('apps.list', {}, node.socket).catch(() => [])) as {
    app: string;
    id: number;
    state: string;
  }[];
  for (const p of list.filter((x) => x.state === 'running')) {
    await request('apps.kill', { app: p.app, id: p.id, signal: 'SIGKILL' }, node.socket).catch(() => undefined);
    await request('apps.wait', { app: p.app, id: p.id }, node.socket, 30_000).catch(() => undefined);
  }
}

export function upCommand(): Command {
  return new Command('up')
    .exitOverride()
    .showHelpAfterError()
    .description('a local cluster on this machine: N network namespaces, an etcd, one sosd in each')
    .addOption(new Option('--nodes <n>', 'how many nodes (1-32)').argParser(nodes).default(3))
    .option('--name <cluster>', "the cluster's name", 'local')
    .addOption(
      new Option('--memory-capacity <size>', 'each node serves as a memory node of this size (none: 0)')
        .argParser((v) => (v === '0' ? 0 : parseSize('--memory-capacity')(v)))
        .default(512 * 2 ** 20, '512MiB'),
    )
    .addOption(localDir())
    .option('--json', 'print JSON')
    .action(async (o: { nodes: number; name: string; dir: string; json?: boolean; memoryCapacity: number }) => {
      const c = await upLocal({
        dir: o.dir,
        nodes: o.nodes,
        cluster: o.name,
        memoryCapacity: o.memoryCapacity,
        ready: (n) => joined(n),
      });
      if (o.json) return console.log(JSON.stringify(c, null, 2));
      console.log(`cluster ${c.cluster} up: etcd ${c.etcd.endpoint}, ${c.nodes.length} nodes`);
      for (const n of c.nodes)
        console.log(`  ${n.name.padEnd(12)} ${n.addr.padEnd(15)} netns ${n.netns}  sosd ${n.socket}`);
      const at = c.dir === path.resolve(DEFAULT_LOCAL_DIR) ? '' : `SOS_LOCAL_DIR=${c.dir} `;
      console.log(`  ${at}sosctl nodes   # sosctl talks to ${c.nodes[0].name}'s sosd (--socket for another)`);
      console.log(`  sosctl cluster down --dir ${c.dir}   # stops it all`);
    });
}

export function downCommand(): Command {
  return new Command('down')
    .exitOverride()
    .showHelpAfterError()
    .description('stop the local cluster: its sosds, etcd and namespaces (the folder and its CA stay)')
    .addOption(localDir())
    .option('--json', 'print JSON')
    .action(async (o: { dir: string; json?: boolean }) => {
      const c = localCluster(o.dir);
      // Nothing left behind: each node's workloads end first (they would outlive their sosd).
      for (const n of c?.nodes ?? []) await endWorkloads(n);
      const stopped = await downLocal(o.dir);
      if (o.json) return console.log(JSON.stringify({ stopped, nodes: c?.nodes.length ?? 0 }));
      console.log(
        stopped ? `cluster ${c!.cluster} down (${c!.nodes.length} nodes)` : `no local cluster runs from ${o.dir}`,
      );
    });
}
