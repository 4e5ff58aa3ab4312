/**
 * `sosctl run [--app NAME] [--node N] [--memory SIZE] [--cpus N] [--pids N] [--wait] -- PROG ARGS…`: PROG
 * started by a node's sosd as a workload (apps-command.ts), printed as APP/ID.
 *
 * `sosctl run --local-memory SIZE --memory-nodes HOST:PORT,… --secret-file F -- PROG ARGS…`: PROG in the
 * foreground under sosctl, with
 * its large memory on memory nodes (memory.run). PROG's stdio is its own; sosctl exits with PROG's
 * exit code (128 + the signal's number when a signal ended it). --stats prints the paging counters on
 * stderr at the end, --json as one JSON line. Exit 125: sosctl itself failed (bad usage, PROG not found).
 */
import fs from 'node:fs';
import os from 'node:os';
import { Command, InvalidArgumentError } from 'commander';
import { run, type RunResult } from '../memory/run.js';
import type { MemoryNodeAddress } from '../memory/far-memory.js';
import { formatBytes, parseSize } from './size.js';
import { startOnSosd, type StartOptions } from './apps-command.js';
import { socketOption } from './sosd-socket.js';

function nodeList(v: string): MemoryNodeAddress[] {
  return v.split(',').map((s) => {
    const m = /^(.+):(\d{1,5})$/.exec(s.trim());
    if (!m || Number(m[2]) > 65535) throw new InvalidArgumentError(`expected HOST:PORT[,HOST:PORT…], got '${s}'`);
    return { host: m[1].replace(/^\[(.*)\]$/, '$1'), port: Number(m[2]) };
  });
}

function int(name: string) {
  return (v: string): number => {
    if (!/^\d+$/.test(v)) throw new InvalidArgumentError(`${name} must be a positive integer`);
    return Number(v);
  };
}

const usage = (m: string) => Object.assign(new Error(`run: ${m}`), { exitCode: 2 });

interface Opts extends StartOptions {
  localMemory?: number;
  memoryNodes?: MemoryNodeAddress[];
  secretFile?: string;
  app?: string;
  replicas?: number;
  transport: 'tcp' | 'rdma';
  farSize: number;
  stats?: boolean;
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
      '--memory-nodes <list>',
      'with --local-memory: memory nodes, HOST:PORT,... in order of preference',
      nodeList,
    )
    .option('--secret-file <path>', "with --local-memory: the application's secret on the memory nodes")
    .option('--app <name>', "the application's name (default: the program's name; with --local-memory: sosctl-run)")
    .option('--node <name>', 'on this node (default: the local sosd)')
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
    .option('--json', 'print JSON (with --stats: one JSON line)')
    .argument('<prog>', 'the program')
    .argument('[args...]', 'its arguments')
    .passThroughOptions()
    .action(async (prog: string, args: string[], o: Opts) => {
      if (o.localMemory === undefined) {
        if (o.memoryNodes || o.secretFile) throw usage('--memory-nodes and --secret-file go with --local-memory');
        return await startOnSosd(prog, args, o);
      }
      if (!o.memoryNodes || !o.secretFile) throw usage('--local-memory needs --memory-nodes and --secret-file');
      let secret: Buffer;
      try {
        secret = fs.readFileSync(o.secretFile);
      } catch (e) {
        throw Object.assign(new Error(`cannot read --secret-file ${o.secretFile}: ${(e as Error).message}`), {
          exitCode: 125,
        });
      }
      const r = run([prog, ...args], {
        localBytes: Math.ceil(o.localMemory / 4096) * 4096,
        farBytes: Math.ceil(o.farSize / 4096) * 4096,
        nodes: o.memoryNodes,
        application: o.app ?? 'sosctl-run',
        secret,
        replicas: o.replicas,
        transport: o.transport,
      });
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
