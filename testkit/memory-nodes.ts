/**
 * Memory nodes for tests: each lib/memory/node-main.js in a child process on loopback, letting in one
 * application with the secret in `secretFile`; its reserved bytes asked with SIGUSR1.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { LineProcess } from './line-process.js';

const NODE_MAIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../lib/memory/node-main.js');

export interface MemoryNodeProc {
  proc: LineProcess;
  host: string;
  port: number;
}

/** `n` memory nodes (killed at teardown), each `capacity` bytes (default 1 GiB). */
export async function startMemoryNodes(
  t: { teardown(f: () => void): void },
  n: number,
  o: { app: string; secretFile: string; capacity?: number; leaseMs?: number },
): Promise<MemoryNodeProc[]> {
  const nodes: MemoryNodeProc[] = [];
  t.teardown(() => nodes.forEach((m) => m.proc.kill()));
  for (let i = 0; i < n; i++) {
    const args = [
      NODE_MAIN,
      '--port',
      '0',
      '--capacity',
      String(o.capacity ?? 2 ** 30),
      '--app',
      `${o.app}=${o.secretFile}`,
    ];
    if (o.leaseMs) args.push('--lease-ms', String(o.leaseMs));
    const proc = new LineProcess(process.execPath, args, { name: `memory node ${i}` });
    const l = JSON.parse(await proc.line()) as { listening: { host: string; port: number } };
    nodes.push({ proc, ...l.listening });
  }
  return nodes;
}

/** Bytes the node holds reserved for regions now. */
export async function reservedBytes(m: MemoryNodeProc): Promise<number> {
  m.proc.proc.kill('SIGUSR1');
  for (;;) {
    const l = JSON.parse(await m.proc.line()) as { stats?: { reserved: number } };
    if (l.stats) return l.stats.reserved;
  }
}
