/**
 * `sosctl run --local-memory SIZE --memory-nodes HOST:PORT,… --secret-file F -- PROG ARGS…`: PROG with
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

interface Opts {
  localMemory: number;
  memoryNodes: MemoryNodeAddress[];
  secretFile: string;
  app: string;
  replicas?: number;
  transport: 'tcp' | 'rdma';
  farSize: number;
  stats?: boolean;
  json?: boolean;
}

export function runCommand(): Command {
  return new Command('run')
    .description('run an unmodified program with its large memory on memory nodes')
    .usage('--local-memory SIZE --memory-nodes HOST:PORT,... --secret-file FILE [options] -- PROG [ARGS...]')
    .requiredOption(
      '--local-memory <size>',
      'resident bytes of paged memory at most, per process',
      parseSize('--local-memory'),
    )
    .requiredOption('--memory-nodes <list>', 'memory nodes, HOST:PORT,... in order of preference', nodeList)
    .requiredOption('--secret-file <path>', "the application's secret on the memory nodes")
    .option('--app <name>', 'the application name on the memory nodes', 'sosctl-run')
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
    .option('--stats', 'print the paging counters on stderr at the end')
    .option('--json', 'with --stats: one JSON line')
    .argument('<prog>', 'the program')
    .argument('[args...]', 'its arguments')
    .passThroughOptions()
    .action(async (prog: string, args: string[], o: Opts) => {
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
        application: o.app,
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
