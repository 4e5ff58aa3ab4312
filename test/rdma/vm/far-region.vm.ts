// Inside the soft-RoCE VM: memory.region over one-sided RDMA (issue 11). Three memory nodes as processes,
// a far region replicated on two of them with local memory far below its size; random reads and writes
// checked against a reference copy, the resident bound read from /proc/self/smaps while it runs. The node
// every read goes to is SIGKILLed halfway: the workload finishes with every byte right, the loss is
// reported and the spare node takes the lost replica. The nodes count no page byte over TCP (pages moved
// by RDMA READ and WRITE only), and close() frees every remote page.
import t from 'tap';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import * as memory from '../../../lib/memory/index.js';
import type { MemoryNodeStats } from '../../../lib/memory/node.js';
import { LineProcess } from '../../../testkit/line-process.js';
import { randomOps, residentBytes, xorshift } from '../../memory/pager-workload.js';
import { DEV, GID_INDEX } from './env.js';

const MiB = 1 << 20;
// Small: node runs about ten times slower under TCG, and 87% of random accesses miss the local 4 MiB.
const SIZE = 32 * MiB;
const LOCAL = 4 * MiB;
const OPS = 20_000;
const BATCHES = 10;
const NODE_MAIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../lib/memory/node-main.js');

/** A node process's counters: it prints them as one line on SIGUSR1. */
async function nodeStats(p: LineProcess): Promise<MemoryNodeStats> {
  process.kill(p.pid, 'SIGUSR1');
  return (JSON.parse(await p.line()) as { stats: MemoryNodeStats }).stats;
}

void t.test(
  'a far region over RDMA: every byte right through a node kill, no page over TCP, close frees',
  async (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sos-farrdma-'));
    const secret = crypto.randomBytes(32);
    const secretFile = path.join(dir, 'secret');
    fs.writeFileSync(secretFile, secret, { mode: 0o600 });
    const procs: LineProcess[] = [];
    t.teardown(() => {
      for (const p of procs) p.kill();
      fs.rmSync(dir, { recursive: true, force: true });
    });
    const nodes: { host: string; port: number }[] = [];
    for (const i of [0, 1, 2]) {
      const args = [NODE_MAIN, '--capacity', String(2 * SIZE), '--app', `far=${secretFile}`, '--rdma'];
      const p = new LineProcess(process.execPath, [...args, '--rdma-device', DEV, '--rdma-gid-index', `${GID_INDEX}`], {
        name: `memory node ${i}`,
      });
      procs.push(p);
      nodes.push((JSON.parse(await p.line()) as { listening: { host: string; port: number } }).listening);
    }
    const label = (i: number) => `${nodes[i].host}:${nodes[i].port}`;

    const fm = await memory.region(SIZE, {
      localBytes: LOCAL,
      nodes,
      replicas: 2,
      transport: 'rdma',
      rdma: { device: DEV, gidIndex: GID_INDEX },
      application: 'far',
      secret,
    });
    t.teardown(() => fm.close());
    const events: string[] = [];
    fm.on('nodeLost', (e) => events.push(`lost ${e.node}`));
    fm.on('degraded', (e) => events.push(`degraded ${e.live}/${e.wanted}`));
    const replicated = once(fm, 'replicated') as Promise<[{ node: string }]>;
    const placed = await Promise.all(procs.map(nodeStats));
    t.same(
      placed.map((s) => s.rdmaExports),
      [1, 1, 0],
      'a queue pair on each of the first two nodes, none on the spare',
    );

    const view = new Uint32Array(fm.buffer);
    const refBuf = Buffer.alloc(SIZE);
    const ref = new Uint32Array(refBuf.buffer, refBuf.byteOffset, SIZE / 4);
    const rnd = xorshift(11);
    let bad = 0;
    let worst = 0;
    for (let b = 0; b < BATCHES; b++) {
      bad += randomOps(view, ref, rnd, OPS / BATCHES);
      worst = Math.max(worst, residentBytes(fm.region.address, SIZE));
      // Node 0 serves every read: killed, its queue pair and registration vanish; the next batch runs into it.
      if (b === BATCHES / 2 - 1) procs[0].kill();
      await new Promise(setImmediate); // the loss and the re-replication run on this loop between batches
    }
    t.equal(bad, 0, 'every read during the run matched the reference');
    t.ok(worst <= LOCAL, `resident bound held (worst ${worst} of ${LOCAL} bytes, smaps)`);

    // The spare is filled from the survivor in the background; the final check reads whichever replica serves.
    const [ev] = await replicated;
    t.equal(ev.node, label(2), 'the lost replica re-made on the spare node');
    t.same(events, [`lost ${label(0)}`], 'the loss reported, and nothing else');
    t.equal(Buffer.compare(Buffer.from(fm.buffer), refBuf), 0, 'every byte right at the end');
    t.ok(residentBytes(fm.region.address, SIZE) <= LOCAL, 'resident bound held after reading it all');
    const s = fm.stats();
    t.ok(s.evictions > 0 && s.writeBacks > 0, 'pages were evicted and written back');
    t.equal(s.poisoned + s.fetchErrors + s.storeErrors, 0, 'the pager saw no error: the set failed over');
    t.same(
      s.replicas.filter((r) => r.state === 'live').map((r) => r.label),
      [label(1), label(2)],
      'two live replicas again',
    );

    // One-sided: the pager moved its pages, yet neither live node sent or took a page over its TCP connection.
    t.ok(s.bytesIn > 0 && s.bytesOut > 0, `the pager fetched ${s.bytesIn} and wrote back ${s.bytesOut} bytes`);
    for (const i of [1, 2]) {
      const n = await nodeStats(procs[i]);
      t.equal(n.rdmaExports, 1, `node ${i}: one RDMA attachment`);
      t.same([n.applications.far.bytesIn, n.applications.far.bytesOut], [0, 0], `node ${i}: no page bytes over TCP`);
    }

    await fm.close();
    for (const i of [1, 2]) {
      const n = await nodeStats(procs[i]);
      t.same(
        [n.applications.far.regions, n.applications.far.heldBytes],
        [0, 0],
        `node ${i}: no region and no page held after close()`,
      );
    }
    // The queue pairs go with their connections, which the nodes see close on their own loop.
    await t.resolveMatch(
      waitFor(async () =>
        (await Promise.all([1, 2].map((i) => nodeStats(procs[i])))).every((n) => n.rdmaExports === 0),
      ),
      true,
      'RDMA attachments gone',
    );
  },
);

/** Resolves true once `cond` holds (polled on the event loop's timers, never a fixed sleep for a result). */
async function waitFor(cond: () => Promise<boolean>): Promise<boolean> {
  while (!(await cond())) await new Promise((r) => setTimeout(r, 20));
  return true;
}
