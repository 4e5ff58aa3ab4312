// Measures a far region over a memfd-backed source at 100/50/25% local:
// random 8-byte updates from JavaScript, then two sequential native scans.
// Not part of the suite: node dist/test/memory/pager-bench.js [MiB] [updates] [async|sync] [move|copy]
import crypto from 'node:crypto';
import { FarRegion, PageSource, Region, touch, type DirtyTracking } from '../../lib/index.js';
import { xorshift } from './pager-workload.js';

const MB = 1 << 20;
const size = Number(process.argv[2] ?? 256) * MB;
const updates = Number(process.argv[3] ?? 1_000_000);
const mode = (process.argv[4] ?? 'async') as DirtyTracking;
const eviction = (process.argv[5] ?? 'auto') as 'auto' | 'move' | 'copy';
const backing = Region.memfd(size, { name: 'far-bench' });
for (let off = 0; off < size; off += 64 * MB) crypto.randomFillSync(backing.bytes(off, Math.min(64 * MB, size - off)));
const source = PageSource.fromFile(backing.fd, { size });
const rows = [];
for (const pct of [100, 50, 25]) {
  const far = FarRegion.create(size, { localBytes: (size * pct) / 100, source, dirtyTracking: mode, eviction });
  const f = new Float64Array(far.buffer);
  const rnd = xorshift(pct);
  let t0 = process.hrtime.bigint();
  for (let i = 0; i < updates; i++) f[rnd() % f.length] += 1;
  const randomNs = Number(process.hrtime.bigint() - t0);
  const r = far.stats();
  t0 = process.hrtime.bigint();
  await touch(far.region);
  const scanNs = Number(process.hrtime.bigint() - t0);
  const s = far.stats();
  // A second pass: the pages it evicts were fetched clean by the first (drops, no write-back).
  t0 = process.hrtime.bigint();
  await touch(far.region);
  const rescanNs = Number(process.hrtime.bigint() - t0);
  const s2 = far.stats();
  rows.push({
    local: `${pct}%`,
    mode,
    eviction: far.eviction,
    updatesPerSec: Math.round(updates / (randomNs / 1e9)),
    randomFaults: r.faults,
    randomPagesPerSec: Math.round(r.pagesFetched / (randomNs / 1e9)),
    randomFaultP50us: r.faultLatency.p50Ns / 1000,
    randomFaultP99us: r.faultLatency.p99Ns / 1000,
    randomEvictionsPerSec: Math.round(r.evictions / (randomNs / 1e9)),
    scanPagesPerSec: Math.round(size / 4096 / (scanNs / 1e9)),
    scanFaults: s.faults - r.faults,
    scanEvictionsPerSec: Math.round((s.evictions - r.evictions) / (scanNs / 1e9)),
    rescanPagesPerSec: Math.round(size / 4096 / (rescanNs / 1e9)),
    rescanEvictionsPerSec: Math.round((s2.evictions - s.evictions) / (rescanNs / 1e9)),
    rescanCleanDrops: s2.cleanDrops - s.cleanDrops,
    writeBacks: s.writeBacks,
    cleanDrops: s.cleanDrops,
    prefetchHits: s.prefetchHits,
    prefetchWaste: s.prefetchWaste,
  });
  far.close();
}
source.close();
backing.close();
console.table(rows);
console.log(JSON.stringify(rows));
