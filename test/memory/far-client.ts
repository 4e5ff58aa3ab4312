// The client side of test/memory/far-netns.test.ts, run in its own network namespace: a far-memory region
// on memory nodes in other namespaces (memory.region, replicated), random reads and writes checked against
// a reference copy, the resident bound read from /proc/self/smaps between batches. JSON lines on stdout:
// {"phase":"kill-now"} halfway (the parent then kills a node), then {"done":{...}}.
import fs from 'node:fs';
import { memory } from '../../lib/index.js';
import { randomOps, residentBytes, xorshift } from './pager-workload.js';

interface Config {
  size: number;
  localBytes: number;
  ops: number;
  nodes: { host: string; port: number }[];
  secretFile: string;
  replicas: number;
  kill: boolean;
}

const say = (o: object) => process.stdout.write(JSON.stringify(o) + '\n');

async function main(): Promise<void> {
  const c = JSON.parse(process.argv[2]) as Config;
  const fm = await memory.region(c.size, {
    localBytes: c.localBytes,
    nodes: c.nodes,
    application: 'far-test',
    secret: fs.readFileSync(c.secretFile),
    replicas: c.replicas,
  });
  const events: string[] = [];
  fm.on('nodeLost', (e) => events.push(`lost ${e.node} ${e.code}`));
  fm.on('replicated', (e) => events.push(`replicated ${e.node}`));
  fm.on('degraded', (e) => events.push(`degraded ${e.live}/${e.wanted}`));
  const view = new Uint32Array(fm.buffer);
  const ref = new Uint32Array(c.size / 4);
  const rnd = xorshift(2026);
  let bad = 0;
  let worst = 0;
  const batches = 20;
  for (let b = 0; b < batches; b++) {
    bad += randomOps(view, ref, rnd, Math.ceil(c.ops / batches));
    worst = Math.max(worst, residentBytes(fm.region.address, c.size));
    if (c.kill && b === batches / 2 - 1) say({ phase: 'kill-now' }); // the parent kills a node while we go on
    await new Promise(setImmediate); // let the loss and the re-replication run between batches
  }
  // A lost node's replacement is being filled from the survivor: wait for it.
  if (c.kill) {
    const until = Date.now() + 120_000;
    while (!events.some((e) => e.startsWith('replicated')) && Date.now() < until)
      await new Promise((r) => setTimeout(r, 20));
  }
  // Every word, in order: pages come back from whichever replica holds them.
  let wrong = 0;
  for (let i = 0; i < ref.length; i++) if (view[i] !== ref[i]) wrong++;
  worst = Math.max(worst, residentBytes(fm.region.address, c.size));
  const s = fm.stats();
  say({
    done: {
      bad,
      wrong,
      worstResident: worst,
      stats: {
        faults: s.faults,
        writeBacks: s.writeBacks,
        cleanDrops: s.cleanDrops,
        evictions: s.evictions,
        poisoned: s.poisoned,
        fetchErrors: s.fetchErrors,
        storeErrors: s.storeErrors,
        failovers: s.failovers,
        usedPages: s.usedPages,
      },
      replicas: s.replicas,
      events,
    },
  });
  await fm.close();
  say({ closed: true });
}

main().catch((e: unknown) => {
  say({ error: e instanceof Error ? `${e.name} ${(e as { code?: string }).code}: ${e.message}` : String(e) });
  process.exit(1);
});
