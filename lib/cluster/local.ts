/**
 * A whole cluster on one machine, for trying things and for tests: N network namespaces on a
 * bridge, a mutual-TLS etcd on the bridge, one sosd per namespace joined through it. Everything is
 * recorded in `<dir>/local.json` so `down` (another process, later) finds and stops it all: the
 * sosds and etcd by pid, then the namespaces. sosctl on the host reaches each sosd through its unix
 * socket (`<dir>/nodes/<name>/sosd.sock`): a socket file crosses network namespaces, TCP does not.
 */
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { writeDurableSync } from '../durable.js';
import { argValue } from '../errors.js';
import { createNet, removeNet, type NetLayout } from '../net/netns.js';
import { ClusterError } from './errors.js';
import { startEtcd, stopEtcdAt } from './etcd-server.js';
import { initCluster, issueMember, loadMember, setEtcd } from './folder.js';

export interface LocalNode {
  name: string;
  netns: string;
  addr: string;
  /** sosd's socket (serves root only). */
  socket: string;
  /** sosd's state folder (workloads, logs). */
  stateDir: string;
  pid: number;
}

export interface LocalCluster {
  dir: string;
  cluster: string;
  net: NetLayout;
  etcd: { dir: string; endpoint: string; pid: number };
  nodes: LocalNode[];
  /** The sosd entry point the nodes run. */
  sosd?: string;
  /** Each node's memory-node capacity in bytes (its sosd's --memory-capacity), when it serves far memory. */
  memoryCapacity?: number;
  /** The addresses that may move with a migrating process (every sosd's --move-ranges): `<prefix>.128/26`. */
  moveRanges?: string;
}

export interface UpOptions {
  /** The folder for everything (made 0700). */
  dir: string;
  nodes: number;
  /** The cluster's name (default `local`). */
  cluster?: string;
  /** The sosd entry point (default: this package's `dist/lib/daemon/sosd.js`). */
  sosd?: string;
  /** Called once a node's sosd runs; resolves when it serves (e.g. its socket answers). */
  ready: (node: LocalNode) => Promise<void>;
  /** Make each node a memory node of this many bytes (default: none). */
  memoryCapacity?: number;
}

const STATE = 'local.json';

/** The local cluster recorded in `dir`, or null. */
export function localCluster(dir: string): LocalCluster | null {
  try {
    return JSON.parse(fs.readFileSync(path.join(dir, STATE), 'utf8')) as LocalCluster;
  } catch {
    return null;
  }
}

function save(c: LocalCluster): void {
  // Durable: a later `down` (another process, maybe after a crash) stops what this names.
  writeDurableSync(path.join(c.dir, STATE), JSON.stringify(c, null, 2) + '\n');
}

export async function upLocal(o: UpOptions): Promise<LocalCluster> {
  if (!Number.isInteger(o.nodes) || o.nodes < 1 || o.nodes > 32) throw argValue('nodes must be from 1 to 32');
  const dir = path.resolve(o.dir);
  if (localCluster(dir))
    throw new ClusterError(`a local cluster already runs from ${dir}: sosctl cluster down first`, {
      code: 'ERR_EXISTS',
    });
  const cluster = o.cluster ?? 'local';
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const folder = path.join(dir, 'cluster');
  // A short tag per folder keeps two local clusters' namespaces apart (and veth names within IFNAMSIZ).
  const tag = crypto.createHash('sha256').update(dir).digest('hex').slice(0, 6);
  const net = await createNet({
    base: `sos-${tag}-`,
    n: o.nodes,
    prefix: `10.${crypto.randomInt(1, 255)}.${crypto.randomInt(0, 256)}`,
    bridgeAddr: true,
  });
  const state: LocalCluster = {
    dir,
    cluster,
    net,
    etcd: { dir: path.join(dir, 'etcd'), endpoint: '', pid: 0 },
    nodes: [],
    ...(o.memoryCapacity ? { memoryCapacity: o.memoryCapacity } : {}),
    // Free addresses of the bridge's /24 (nodes are .1 up, the bridge .254), for processes' own addresses.
    moveRanges: `${net.prefix}.128/26`,
  };
  save(state);
  try {
    if (!fs.existsSync(path.join(folder, 'ca.pem'))) await initCluster(folder, { cluster });
    await issueMember(folder, { name: 'etcd', role: 'node', hosts: [net.bridgeAddr!] });
    const etcd = await runEtcd(state);
    state.etcd = { dir: etcd.dir, endpoint: etcd.endpoint, pid: etcd.pid };
    save(state);
    setEtcd(folder, [etcd.endpoint], 'etcd');
    for (const n of net.nodes) {
      await issueMember(folder, { name: n.name, role: 'node', hosts: [n.addr] });
      const home = path.join(dir, 'nodes', n.name);
      fs.mkdirSync(home, { recursive: true, mode: 0o700 });
      const node: LocalNode = {
        name: n.name,
        netns: n.netns,
        addr: n.addr,
        socket: path.join(home, 'sosd.sock'),
        stateDir: path.join(home, 'state'),
        pid: 0,
      };
      node.pid = spawnSosd(state, node, o.sosd);
      state.nodes.push(node);
      save(state);
      await o.ready(node);
    }
    return state;
  } catch (e) {
    await downLocal(dir).catch(() => {});
    throw e;
  }
}

/** Where a node's sosd logs (its stdout and stderr). */
export const sosdLog = (node: LocalNode): string => path.join(path.dirname(node.socket), 'sosd.log');

const defaultSosd = () => path.join(path.dirname(new URL(import.meta.url).pathname), '../daemon/sosd.js');

/** Start `node`'s sosd in its namespace, detached (it outlives sosctl), logging to sosdLog; its pid. */
function spawnSosd(c: LocalCluster, node: LocalNode, sosd = c.sosd ?? defaultSosd(), env = process.env): number {
  c.sosd = sosd;
  const log = fs.openSync(sosdLog(node), 'a', 0o600);
  // prettier-ignore
  const args = [`--net=/run/netns/${node.netns}`, '--', process.execPath, sosd,
    '--socket', node.socket, '--state-dir', node.stateDir, '--cluster-dir', path.join(c.dir, 'cluster'),
    '--name', node.name, '--addr', node.addr, '--http', `${node.addr}:9464`,
    // Cgroups are the machine's, not the namespace's: each node's workloads get a folder of their own.
    '--cgroup-prefix', `serverlessos/${path.basename(c.net.bridge)}/${node.name}`,
    ...(c.memoryCapacity ? ['--memory-capacity', String(c.memoryCapacity)] : []),
    ...(c.moveRanges ? ['--move-ranges', c.moveRanges] : [])];
  try {
    // nsenter, not `ip netns exec`: that one remounts /sys for the namespace, which hides the cgroup
    // file systems mounted under /sys/fs/cgroup from sosd (and its workloads' cgroups with them).
    const child = spawn('nsenter', args, { detached: true, stdio: ['ignore', log, log], env });
    child.unref();
    return child.pid!;
  } finally {
    fs.closeSync(log);
  }
}

/**
 * Stop node `name`'s sosd (SIGTERM: it keeps its lease for the next one, SIGKILL: as a crash) and
 * start a new one with the same flags (and `env`, e.g. crash points for tests: lib/failpoint.ts);
 * resolves once `ready` says it serves.
 */
export async function restartLocalNode(
  dir: string,
  name: string,
  o: { signal?: 'SIGTERM' | 'SIGKILL'; ready: (node: LocalNode) => Promise<void>; env?: NodeJS.ProcessEnv },
): Promise<LocalNode> {
  const c = localCluster(path.resolve(dir));
  const node = c?.nodes.find((n) => n.name === name);
  if (!c || !node) throw new ClusterError(`no node ${name} in a local cluster at ${dir}`, { code: 'ERR_NOT_FOUND' });
  await stopPid(node.pid, 'node', o.signal ?? 'SIGTERM');
  node.pid = spawnSosd(c, node, undefined, o.env ?? process.env);
  save(c);
  await o.ready(node);
  return node;
}

/** Start the local cluster's etcd in the bridge's namespace, on its folder (a restart keeps its data). */
function runEtcd(c: LocalCluster) {
  return startEtcd({
    dir: c.etcd.dir,
    netns: c.net.bridge,
    host: c.net.bridgeAddr,
    tls: loadMember(path.join(c.dir, 'cluster'), 'node', 'etcd'),
  });
}

/** Stop the local cluster's etcd and start it again on the same data and address (the sosds stay up). */
export async function restartLocalEtcd(dir: string): Promise<void> {
  const c = localCluster(path.resolve(dir));
  if (!c) throw new ClusterError(`no local cluster at ${dir}`, { code: 'ERR_NOT_FOUND' });
  await stopEtcdAt(c.etcd.dir);
  const etcd = await runEtcd(c);
  c.etcd.pid = etcd.pid;
  save(c);
}

/** Stop everything `upLocal` started from `dir`: the sosds, etcd, the namespaces. False when nothing was recorded. */
export async function downLocal(dir: string): Promise<boolean> {
  const c = localCluster(path.resolve(dir));
  if (!c) return false;
  for (const n of c.nodes) await stopPid(n.pid, 'node');
  await stopEtcdAt(c.etcd.dir);
  await removeNet(c.net);
  // Workloads of a node whose sosd was dead (killed, crashed) were not ended by it: their cgroups hold them.
  await killCgroupFolders(path.join('serverlessos', c.net.bridge));
  removeCgroupFolders(path.join('serverlessos', c.net.bridge));
  fs.rmSync(path.join(c.dir, STATE), { force: true });
  return true;
}

/** The cgroup hierarchies of this machine (v2: the root; v1: one per controller). */
function hierarchies(): string[] {
  const root = '/sys/fs/cgroup';
  if (!fs.existsSync(root)) return [];
  return [
    root,
    ...fs
      .readdirSync(root, { withFileTypes: true })
      .filter((e) => e.isDirectory())
      .map((e) => path.join(root, e.name)),
  ];
}

/** Every pid in a group at or below `dir`. */
function pidsBelow(dir: string): number[] {
  const out: number[] = [];
  const walk = (d: string) => {
    let ents: fs.Dirent[];
    try {
      ents = fs.readdirSync(d, { withFileTypes: true });
      for (const l of fs.readFileSync(path.join(d, 'cgroup.procs'), 'utf8').split('\n')) if (l) out.push(Number(l));
    } catch {
      return;
    }
    for (const e of ents) if (e.isDirectory()) walk(path.join(d, e.name));
  };
  walk(dir);
  return out;
}

/** SIGKILL every process in the groups below `rel` (every hierarchy) until none is left (10 s at most). */
async function killCgroupFolders(rel: string): Promise<void> {
  const end = Date.now() + 10_000;
  for (;;) {
    const pids = new Set(hierarchies().flatMap((h) => pidsBelow(path.join(h, rel))));
    if (pids.size === 0 || Date.now() > end) return;
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone meanwhile
      }
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** rmdir `rel` (and the empty groups below it) in every cgroup hierarchy; a busy one stays. */
function removeCgroupFolders(rel: string): void {
  const rmdirTree = (d: string) => {
    let ents: fs.Dirent[];
    try {
      ents = fs.readdirSync(d, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of ents) if (e.isDirectory()) rmdirTree(path.join(d, e.name));
    try {
      fs.rmdirSync(d);
    } catch {
      // busy or not empty: a workload still runs there
    }
  };
  for (const h of hierarchies()) rmdirTree(path.join(h, rel));
}

/** `signal` (SIGTERM) `pid` when it still runs `comm`, SIGKILL after 10 s; resolves once it is gone. */
async function stopPid(pid: number, comm: string, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  const runs = () => {
    try {
      return new RegExp(`^\\d+ \\(${comm}\\) [^Z]`).test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
    } catch {
      return false;
    }
  };
  if (!pid || !runs()) return;
  process.kill(pid, signal);
  const end = Date.now() + 10_000;
  while (runs()) {
    if (Date.now() > end) {
      process.kill(pid, 'SIGKILL');
      break;
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  while (runs()) await new Promise((r) => setTimeout(r, 20));
}
