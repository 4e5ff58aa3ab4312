#!/usr/bin/env node
/**
 * A memory node as a process (until sosd hosts it):
 *   node-main.js --capacity 1073741824 --host 0.0.0.0 --port 7400 --app NAME=SECRET_FILE [--app …] [--lease-ms N]
 *                [--rdma [--rdma-device NAME] [--rdma-gid-index N]]
 * Prints one JSON line {"listening":{host,port}} on stdout once it serves, then {"stats":…} every
 * --stats-ms (if given) and on SIGUSR1; logs go to stderr. SIGTERM or SIGINT closes it (exit 0).
 * Exit 2: bad usage, an unreadable or weak secret, an address in use (the reason on stderr).
 */
import fs from 'node:fs';
import { Command, InvalidArgumentError } from 'commander';
import { MemoryNode } from './node.js';

function int(name: string) {
  return (v: string): number => {
    if (!/^\d+$/.test(v) || !Number.isSafeInteger(Number(v)))
      throw new InvalidArgumentError(`${name} must be an integer`);
    return Number(v);
  };
}

function appArg(v: string, prev: Record<string, Buffer>): Record<string, Buffer> {
  const m = /^([A-Za-z0-9._-]{1,64})=(.+)$/.exec(v);
  if (!m) throw new InvalidArgumentError('expected NAME=SECRET_FILE');
  let secret: Buffer;
  try {
    secret = fs.readFileSync(m[2]);
  } catch (e) {
    throw new InvalidArgumentError(`cannot read ${m[2]}: ${(e as Error).message}`);
  }
  return { ...prev, [m[1]]: secret };
}

const program = new Command('memory-node')
  .requiredOption('--capacity <bytes>', 'bytes of pages to hold', int('--capacity'))
  .option('--host <addr>', 'address to listen on', '127.0.0.1')
  .option('--port <n>', 'TCP port (0: any)', int('--port'), 0)
  .option('--app <name=file>', 'an application and its secret file (repeatable)', appArg, {})
  .option('--lease-ms <n>', 'region lease', int('--lease-ms'))
  .option('--stats-ms <n>', 'print stats this often', int('--stats-ms'))
  .option('--rdma', 'serve one-sided RDMA to attached clients too')
  .option('--rdma-device <name>', 'the RDMA device (default: the first)')
  .option('--rdma-gid-index <n>', 'GID index of the address to use', int('--rdma-gid-index'))
  .exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : 2));
program.parse();
const o = program.opts<{
  capacity: number;
  host: string;
  port: number;
  app: Record<string, Buffer>;
  leaseMs?: number;
  statsMs?: number;
  rdma?: boolean;
  rdmaDevice?: string;
  rdmaGidIndex?: number;
}>();
const rdma =
  o.rdma || o.rdmaDevice !== undefined || o.rdmaGidIndex !== undefined
    ? { device: o.rdmaDevice, gidIndex: o.rdmaGidIndex }
    : undefined;

let node: MemoryNode;
try {
  node = new MemoryNode({
    capacity: o.capacity,
    host: o.host,
    port: o.port,
    applications: o.app,
    leaseMs: o.leaseMs,
    rdma,
  });
  const a = await node.listen();
  process.stdout.write(JSON.stringify({ listening: a }) + '\n');
} catch (e) {
  process.stderr.write(`memory-node: ${(e as Error).message}\n`);
  process.exit(2);
}
const print = () => process.stdout.write(JSON.stringify({ stats: node.stats() }) + '\n');
// The native server's threads hold no libuv handle: this timer keeps the process serving until a signal.
const timer = setInterval(() => (o.statsMs ? print() : undefined), o.statsMs ?? 2 ** 31 - 1);
process.on('SIGUSR1', print);
const stop = () => {
  clearInterval(timer);
  node.close();
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
