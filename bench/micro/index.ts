/**
 * bench/micro — the cost of the API layers on calls that can repeat, with
 * the `benchmark` package: the typed TypeScript API against the raw native
 * binding (the floor for a JS caller) for the same kernel work.
 *
 *   npm run bench -- micro [--max-time 0.5]
 *
 * Per-fault paths cannot repeat (each fault needs a fresh missing page);
 * bench/uffd measures those.
 */
import Benchmark from 'benchmark';
import { FaultEngine, PageSource, Region, Userfaultfd } from '../../lib/index.js';
import { fmtNs, fmtRatio, parseOptions, round, table } from '../run.js';

const opts = parseOptions(process.argv.slice(2), { 'max-time': 'seconds per case (default 0.5)' });
const maxTime = Number(opts.get('max-time') ?? 0.5);
const PAGE = 4096;

const r = Region.anonymous(16 * PAGE);
r.bytes().fill(1); // populated: write-protect toggles act on real pages
const u = Userfaultfd.open({ features: ['PAGEFAULT_FLAG_WP'] });
u.register(r, { missing: true, wp: true });
const raw = u.native;
const addr = r.address;
const engine = new FaultEngine(u).serve(r, PageSource.zero()).start();
const rawEngine = (engine as unknown as { native: { stats(): unknown } }).native;
const page = { region: r, offset: 0, length: PAGE };

// name → [typed API, raw binding]
const cases: Record<string, [() => void, () => void]> = {
  'UFFDIO_WRITEPROTECT on+off, 1 page': [
    () => {
      u.writeprotect(page, true);
      u.writeprotect(page, false);
    },
    () => {
      raw.writeprotect(addr, PAGE, 1);
      raw.writeprotect(addr, PAGE, 0);
    },
  ],
  'UFFDIO_WAKE, 1 page, nobody waiting': [() => u.wake(page), () => raw.wake(addr, PAGE)],
  'engine.stats()': [() => engine.stats(), () => rawEngine.stats()],
  'region.buffer (cached view)': [() => r.buffer, () => r.native.buffer()],
};

interface Row {
  name: string;
  tsNs: number;
  rawNs: number;
  tsRme: number;
  rawRme: number;
}
const rows: Row[] = [];
for (const [name, [ts, nat]] of Object.entries(cases)) {
  const a = new Benchmark(`${name} (api)`, ts, { maxTime }).run();
  const b = new Benchmark(`${name} (raw)`, nat, { maxTime }).run();
  rows.push({ name, tsNs: a.stats.mean * 1e9, rawNs: b.stats.mean * 1e9, tsRme: a.stats.rme, rawRme: b.stats.rme });
}
engine.close();
u.close();
r.close();

console.log(`bench/micro: benchmark.js, ${maxTime} s per case; mean time per call (± relative margin of error)\n`);
console.log(
  table(
    ['call', 'TypeScript API', 'raw binding', 'API / raw'],
    rows.map((x) => [
      x.name,
      `${fmtNs(x.tsNs)} ±${x.tsRme.toFixed(1)}%`,
      `${fmtNs(x.rawNs)} ±${x.rawRme.toFixed(1)}%`,
      fmtRatio(x.tsNs / x.rawNs),
    ]),
  ),
);
const key = (s: string) =>
  s
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '_')
    .replace(/^_|_$/g, '');
console.log(
  JSON.stringify({
    bench: 'micro',
    ratios: Object.fromEntries(rows.map((x) => [`${key(x.name)}_api_vs_raw`, round(x.tsNs / x.rawNs, 3)])),
    results: Object.fromEntries(
      rows.map((x) => [key(x.name), { api_ns: Math.round(x.tsNs), raw_ns: Math.round(x.rawNs) }]),
    ),
  }),
);
