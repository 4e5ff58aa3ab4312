/**
 * bench/cluster's memory part: a far-memory region (memory.region) in this process on three memory
 * nodes (node-main processes on loopback), each page on two. Its pages are written once, so most
 * live only on the nodes; then a faulting read of a page not resident is timed, before and after
 * the memory node holding a replica of every page is SIGKILLed: the time from its death (its exit
 * seen) to the first page served from the surviving replica is `memory_failover_s`. Also: when the
 * region says the node is lost, and when a fresh replica has been filled from the survivor.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { region } from '../../lib/memory/far-memory.js';
import { LineProcess } from '../../testkit/line-process.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const NODE_MAIN = path.resolve(here, '../../lib/memory/node-main.js');
const PAGE = 4096;

export interface MemoryFailover {
  /** A faulting read served by a live node, before the kill (median of `samples`, ms). */
  faultMs: number;
  /** The node's exit → the first faulting read served from the survivor (s). */
  failoverS: number;
  /** The node's exit → the region's 'nodeLost' (s), or null when it did not say so. */
  lostS: number | null;
  /** The node's exit → a fresh replica filled from the survivor (s), or null when none came within 120 s. */
  replicatedS: number | null;
  sizeMiB: number;
}

export async function memoryFailover(sizeMiB = 64, samples = 50): Promise<MemoryFailover> {
  const size = sizeMiB * 2 ** 20;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sos-bench-memfail-'));
  const secretFile = path.join(dir, 'secret');
  fs.writeFileSync(secretFile, crypto.randomBytes(32), { mode: 0o600 });
  const procs: LineProcess[] = [];
  try {
    const nodes: { host: string; port: number }[] = [];
    for (let i = 0; i < 3; i++) {
      const p = new LineProcess(
        process.execPath,
        [NODE_MAIN, '--port', '0', '--capacity', String(size * 2), '--app', `bench=${secretFile}`],
        { name: `memory node ${i}` },
      );
      procs.push(p);
      const l = JSON.parse(await p.line()) as { listening: { host: string; port: number } };
      nodes.push(l.listening);
    }
    const fm = await region(size, {
      localBytes: size / 8,
      nodes,
      application: 'bench',
      secret: fs.readFileSync(secretFile),
      replicas: 2,
    });
    const events = new Map<string, number>();
    fm.on('nodeLost', () => events.set('lost', performance.now()));
    fm.on('replicated', () => events.set('replicated', performance.now()));
    const bytes = new Uint8Array(fm.buffer);
    // Every page written once: with an eighth resident, the first pages now live only on the nodes.
    for (let o = 0; o < size; o += PAGE) bytes[o] = (o / PAGE) & 0xff;
    await new Promise((r) => setTimeout(r, 200)); // write-backs settle
    const read = (page: number) => {
      const at = performance.now();
      const v = bytes[page * PAGE];
      if (v !== (page & 0xff)) throw new Error(`page ${page} read ${v}`);
      return performance.now() - at;
    };
    // Random pages of the first half (long evicted), no stride for the prefetcher to follow.
    const order = Array.from({ length: size / PAGE / 2 }, (_, i) => i);
    for (let i = order.length - 1; i > 0; i--) {
      const j = crypto.randomInt(i + 1);
      [order[i], order[j]] = [order[j], order[i]];
    }
    const spread = (i: number) => order[i];
    const before = Array.from({ length: samples }, (_, i) => read(spread(i))).sort((a, b) => a - b);
    // Node 0 holds a replica of every page (the region was allocated on the first two).
    const exited = new Promise<number>((r) => procs[0].proc.once('exit', () => r(performance.now())));
    procs[0].proc.kill('SIGKILL');
    const dead = await exited;
    read(spread(samples)); // the first faulting read after the death: served by the survivor
    const served = performance.now();
    const end = Date.now() + 120_000;
    while (!events.has('replicated') && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
    for (let i = samples + 1; i < samples + 20; i++) read(spread(i)); // and the next ones, still right
    await fm.close();
    return {
      faultMs: before[Math.floor(before.length / 2)],
      failoverS: (served - dead) / 1000,
      lostS: events.has('lost') ? (events.get('lost')! - dead) / 1000 : null,
      replicatedS: events.has('replicated') ? (events.get('replicated')! - dead) / 1000 : null,
      sizeMiB,
    };
  } finally {
    for (const p of procs) p.kill();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
