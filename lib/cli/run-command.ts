/**
 * `sosctl run [--app NAME] [--node N] [--memory SIZE] [--cpus N] [--pids N] [--wait] -- PROG ARGS…`: PROG
 * started by a node's sosd as a workload (apps-command.ts), printed as APP/ID.
 *
 * `sosctl run --local-memory SIZE --memory-nodes HOST:PORT,… --secret-file F -- PROG ARGS…`: PROG in the
 * foreground under sosctl, with
 * its large memory on memory nodes (memory.run). Cluster nodes given by name serve their memory node
 * over mutual TLS (the grant says so): sosctl connects with the operator's certificate of the cluster
 * folder, and requires each node's certificate to carry that node's name. PROG's stdio is its own; sosctl exits with PROG's
 * exit code (128 + the signal's number when a signal ended it). --stats prints the paging counters on
 * stderr at the end, --json as one JSON line. Exit 125: sosctl itself failed (bad usage, PROG not found).
 */
import fs from 'node:fs';
import os from 'node:os';
import { Command, InvalidArgumentError } from 'commander';
import { run, type RunResult } from '../memory/run.js';
import type { MemoryNodeAddress } from '../memory/far-memory.js';
import { formatBytes, parseSize } from './size.js';
import { appName, startOnSosd, type StartOptions } from './apps-command.js';
import { operatorTlsFor, sosdOf, type TargetOptions } from './target.js';
import type { MemoryTlsOptions } from '../memory/tls.js';
import { generateSecret } from '../net/secret.js';
import { socketOption } from './sosd-socket.js';

/** A memory node given by address, or by the name of a cluster node whose sosd serves one. */
type NodeRef = MemoryNodeAddress | { node: string };

function nodeList(v: string): NodeRef[] {
  return v.split(',').map((s) => {
    const name = s.trim();
    if (/^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/.test(name)) return { node: name };
    const m = /^(.+):(\d{1,5})$/.exec(name);
    if (!m || Number(m[2]) > 65535) throw new InvalidArgumentError(`expected NODE or HOST:PORT[,…], got '${s}'`);
    return { host: m[1].replace(/^\[(.*)\]$/, '$1'), port: Number(m[2]) };
  });
}

/**
 * The addresses of `refs`: a named node's sosd lets the application in with `secret`
 * (`memory.grant`, over its socket or mutual TLS) and says where its memory node listens, and whether
 * it speaks TLS (a node of a cluster does): then `tls` is the operator's credentials for it.
 */
async function grant(
  refs: NodeRef[],
  app: string,
  secret: Buffer,
  o: TargetOptions,
): Promise<{ nodes: MemoryNodeAddress[]; tls?: MemoryTlsOptions }> {
  const nodes: MemoryNodeAddress[] = [];
  let tls: MemoryTlsOptions | undefined;
  let clear = false;
  for (const r of refs) {
    if (!('node' in r)) {
      nodes.push(r);
      clear = true;
      continue;
    }
    const t = await sosdOf(r.node, o);
    try {
      const g = (await t.call('memory.grant', { app, secret: secret.toString('base64') })) as MemoryNodeAddress & {
        tls?: boolean;
      };
      if (g.tls) tls ??= operatorTlsFor(r.node, o);
      else clear = true;
      nodes.push(g.tls ? { host: g.host, port: g.port, name: r.node } : { host: g.host, port: g.port });
    } finally {
      t.close();
    }
  }
  if (tls && clear)
    throw usage('memory nodes of a cluster (mutual TLS) and nodes without TLS cannot serve one run together');
  return { nodes, tls };
}

function int(name: string) {
  return (v: string): number => {
    if (!/^\d+$/.test(v)) throw new InvalidArgumentError(`${name} must be a positive integer`);
    return Number(v);
  };
}

const usage = (m: string) => Object.assign(new Error(`run: ${m}`), { exitCode: 2 });

interface Opts extends Omit<StartOptions, 'farMemory' | 'farRequest'> {
  localMemory?: number;
  farMemory?: number;
  memoryNodes?: NodeRef[];
  secretFile?: string;
  app?: string;
  replicas?: number;
  transport: 'tcp' | 'rdma';
  farSize: number;
  stats?: boolean;
  statsEvery?: number;
  json?: boolean;
}

export function runCommand(): Command {
  return new Command('run')
    .description(
      'start a program on a node (a workload: its own PID namespace and cgroup, its output kept), or with --local-memory run it here with its large memory on memory nodes',
    )
    .usage(
      '[--app NAME] [--node NODE] [options] -- PROG [ARGS...]\n       sosctl run --local-memory SIZE --memory-nodes HOST:PORT,... --secret-file FILE [options] -- PROG [ARGS...]',
    )
    .option(
      '--local-memory <size>',
      'in the foreground under sosctl: resident bytes of paged memory at most, per process (with --memory-nodes, --secret-file)',
      parseSize('--local-memory'),
    )
    .option(
      '--far-memory <size>',
      "as a workload (with --memory-nodes naming cluster nodes; without --node the orchestrator places it): resident bytes of paged memory at most, per process; its node's sosd pages the rest to the memory nodes, and a migration hands it over",
      parseSize('--far-memory'),
    )
    .option(
      '--memory-nodes <list>',
      'with --local-memory: memory nodes in order of preference: cluster nodes by name (their sosd lets the run in with a fresh secret) or HOST:PORT (with --secret-file)',
      nodeList,
    )
    .option('--secret-file <path>', "with --local-memory: the application's secret on the memory nodes")
    .option('--app <name>', "the application's name (default: the program's name; with --local-memory: sosctl-run)")
    .option(
      '--node <name>',
      "on this node's sosd, directly (default: in a cluster the orchestrator places it; else the local sosd)",
    )
    .option(
      '--place-timeout <seconds>',
      'how long to wait for the orchestrator to place it (default 60)',
      int('--place-timeout'),
    )
    .option(
      '--env <name=value>',
      'an environment variable (repeatable; default: PATH only)',
      (v, all: string[]) => [...all, v],
      [] as string[],
    )
    .option('--cwd <path>', 'the folder it runs in (default /)')
    .option('--memory <size>', 'its memory limit (cgroup)', parseSize('--memory'))
    .option('--cpus <n>', 'its CPU limit in CPUs, e.g. 0.5 (cgroup)', (v) => {
      if (!/^\d+(\.\d+)?$/.test(v) || Number(v) < 0.01)
        throw new InvalidArgumentError('--cpus must be a number of CPUs, at least 0.01');
      return Number(v);
    })
    .option('--pids <n>', 'its most tasks (cgroup)', int('--pids'))
    .option('--wait', 'wait for its exit and exit with its code')
    .addOption(socketOption())
    .option('--dir <path>', 'the cluster folder, for a --node reached over TLS')
    .option('--replicas <n>', 'memory nodes holding each page (default 2, at most the nodes given)', int('--replicas'))
    .option(
      '--transport <kind>',
      'tcp or rdma',
      (v) => {
        if (v !== 'tcp' && v !== 'rdma') throw new InvalidArgumentError("--transport must be 'tcp' or 'rdma'");
        return v;
      },
      'tcp',
    )
    .option(
      '--far-size <size>',
      'far memory one process may hold (reserved on the nodes)',
      parseSize('--far-size'),
      8 * 2 ** 30,
    )
    .option('--stats', 'with --local-memory: print the paging counters on stderr at the end')
    .option(
      '--stats-every <ms>',
      'with --local-memory: also print them every MS milliseconds, one JSON line each on stderr ({ t, residentBytes, … })',
      int('--stats-every'),
    )
    .option('--json', 'print JSON (with --stats: one JSON line)')
    .argument('<prog>', 'the program')
    .argument('[args...]', 'its arguments')
    .passThroughOptions()
    .action(async (prog: string, args: string[], o: Opts) => {
      if (o.farMemory !== undefined) {
        if (o.localMemory !== undefined)
          throw usage('--far-memory (on a node) and --local-memory (here) exclude each other');
        if (!o.memoryNodes || o.memoryNodes.some((n) => !('node' in n)))
          throw usage('--far-memory needs --memory-nodes naming cluster nodes');
        const app = appName(prog, o.app);
        const secret = generateSecret();
        const localBytes = Math.ceil(o.farMemory / 4096) * 4096;
        const farBytes = Math.ceil(o.farSize / 4096) * 4096;
        if (o.node === undefined)
          // Placed by the orchestrator: desired state carries the memory nodes and the secret, the
          // leader lets it in on them when it places it.
          return await startOnSosd(prog, args, {
            ...o,
            farMemory: undefined,
            farRequest: {
              localBytes,
              farBytes,
              ...(o.replicas ? { replicas: o.replicas } : {}),
              memoryNodes: o.memoryNodes.map((n) => (n as { node: string }).node),
              secret: secret.toString('base64'),
            },
          });
        const { nodes, tls } = await grant(o.memoryNodes, app, secret, o);
        return await startOnSosd(prog, args, {
          ...o,
          farMemory: {
            localBytes,
            farBytes,
            ...(o.replicas ? { replicas: o.replicas } : {}),
            nodes,
            secret: secret.toString('base64'),
            tls: !!tls,
          },
        });
      }
      if (o.localMemory === undefined) {
        if (o.memoryNodes || o.secretFile) throw usage('--memory-nodes and --secret-file go with --local-memory');
        return await startOnSosd(prog, args, { ...o, farMemory: undefined });
      }
      if (!o.memoryNodes) throw usage('--local-memory needs --memory-nodes');
      const byAddress = o.memoryNodes.some((n) => !('node' in n));
      if (byAddress && !o.secretFile) throw usage('memory nodes given as HOST:PORT need --secret-file');
      let secret: Buffer;
      try {
        secret = o.secretFile ? fs.readFileSync(o.secretFile) : generateSecret();
      } catch (e) {
        throw Object.assign(new Error(`cannot read --secret-file ${o.secretFile}: ${(e as Error).message}`), {
          exitCode: 125,
        });
      }
      const application = o.app ?? 'sosctl-run';
      let nodes: MemoryNodeAddress[];
      let tls: MemoryTlsOptions | undefined;
      try {
        ({ nodes, tls } = await grant(o.memoryNodes, application, secret, o));
      } catch (e) {
        throw Object.assign(e as Error, { exitCode: (e as { exitCode?: number }).exitCode ?? 125 });
      }
      const r = run([prog, ...args], {
        localBytes: Math.ceil(o.localMemory / 4096) * 4096,
        farBytes: Math.ceil(o.farSize / 4096) * 4096,
        nodes,
        application,
        secret,
        tls,
        replicas: o.replicas,
        transport: o.transport,
      });
      const ticker = o.statsEvery
        ? setInterval(() => process.stderr.write(`${JSON.stringify({ t: Date.now(), ...r.totals() })}\n`), o.statsEvery)
        : null;
      const forward = (s: NodeJS.Signals) => r.kill(s);
      for (const s of ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT'] as const) process.on(s, forward);
      r.on('error', (e) => process.stderr.write(`sosctl run: ${e.message}\n`));
      r.on('nodeLost', (n) =>
        process.stderr.write(`sosctl run: memory node ${n.node} lost (${n.code}); serving from replicas\n`),
      );
      let res: RunResult;
      try {
        res = await r.result;
      } catch (e) {
        throw Object.assign(e as Error, { exitCode: 125 });
      } finally {
        if (ticker) clearInterval(ticker);
      }
      if (o.stats || o.json) process.stderr.write(o.json ? `${JSON.stringify(res)}\n` : statsTable(res));
      process.exitCode = res.code ?? 128 + (os.constants.signals[res.signal!] ?? 0);
    });
}

function statsTable(r: RunResult): string {
  const t = r.total;
  const rows: [string, string][] = [
    ['processes attached', String(t.processes)],
    ['faults', String(t.faults)],
    ['pages fetched', String(t.pagesFetched)],
    ['  of them prefetched', String(t.prefetched)],
    ['  zero-filled', String(t.zeroFills)],
    ['evictions', String(t.evictions)],
    ['write-backs', String(t.writeBacks)],
    ['bytes in', formatBytes(t.bytesIn)],
    ['bytes out', formatBytes(t.bytesOut)],
    ['fetch / store errors', `${t.fetchErrors} / ${t.storeErrors}`],
  ];
  return `sosctl run: paging counters\n${rows.map(([k, v]) => `  ${k.padEnd(22)} ${v}`).join('\n')}\n`;
}
