/**
 * bench/uffd: how fast 4 KiB userfaultfd faults are served.
 *
 * For 1 and 4 faulting threads and 1-page and 16-page resolution windows,
 * native threads (touch()) read the first byte of every page of a 32 MiB
 * anonymous region registered MISSING, while the faults are served by:
 *
 *   c       bench/uffd/floor.c: a minimal C program, one handler thread in a
 *           blocking read(2) + UFFDIO_COPY from a populated buffer — the floor
 *   native  the project's FaultEngine (one C++ handler thread in the addon)
 *   js      a JavaScript 'pagefault' listener calling uffd.copy()
 *
 * Runs are interleaved (rotating order, every repetition) so that all three
 * see the same machine state; each figure is the median of --reps runs, after
 * one discarded warm-up round.
 *
 * Two passes: the machine as it is (all CPUs: the headline), then the whole
 * benchmark pinned to one CPU (taskset; handler and faulting threads share
 * it). On a VM a handler woken on another CPU costs tens of µs of wake-up,
 * which hides what the handler itself costs; on one CPU that cost shows.
 *
 * Prints tables, ratios against the C floor, and as the very last line one
 * JSON object: {"bench":"uffd","ratios":{...},"results":{...}}.
 *
 *   npm run bench -- uffd [--reps 9] [--size 32M] [--threads 1,4] [--batch 1,16] [--one-cpu N|none]
 */
import fs from 'node:fs';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { exec } from '../../lib/exec.js';
import {
  FaultEngine,
  PAGE_SIZE,
  PageSource,
  Region,
  Userfaultfd,
  touch,
  type PageFaultEvent,
} from '../../lib/uffd/index.js';
import { fmtNs, fmtRate, fmtRatio, max, median, parseOptions, parseSize, root, round, runJson, table } from '../run.js';

const opts = parseOptions(process.argv.slice(2), {
  reps: 'measured repetitions per configuration (default 9; plus one warm-up)',
  size: 'bytes faulted per run (default 32M)',
  threads: 'faulting thread counts (default 1,4)',
  batch: 'pages resolved per fault (default 1,16)',
  impls: 'which handlers (default c,native,js)',
  extras: 'per-fault baselines and per-ioctl costs (default true)',
  'one-cpu': 'CPU for the pinned pass (default: the last allowed CPU; none: skip the pass)',
  child: 'internal: run one pass, print only its JSON',
});
const CHILD = opts.has('child');
const REPS = Number(opts.get('reps') ?? 9);
const SIZE = parseSize(opts.get('size') ?? '32M');
const THREADS = (opts.get('threads') ?? '1,4').split(',').map(Number);
const BATCHES = (opts.get('batch') ?? '1,16').split(',').map(Number);
const IMPLS = (opts.get('impls') ?? 'c,native,js').split(',') as Impl[];
const EXTRAS = opts.get('extras') !== 'false' && !CHILD;
const PAGE = PAGE_SIZE;
const PAGES = SIZE / PAGE;
if (!(REPS >= 1) || !Number.isInteger(PAGES) || PAGES < 1) throw new Error('bad --reps or --size');
// Every faulting thread's slice must be whole windows (C floor and touch() then split the same way).
for (const b of BATCHES)
  for (const t of THREADS)
    if (!(b >= 1 && b <= 512 && t >= 1 && t <= 64) || PAGES % (b * t) !== 0)
      throw new Error(
        `--size must be a multiple of ${b * t} pages for ${t} threads and batch ${b} (threads 1..64, batch 1..512)`,
      );
for (const i of IMPLS) if (!['c', 'native', 'js'].includes(i)) throw new Error(`unknown impl ${i}`);

type Impl = 'c' | 'native' | 'js' | 'c_poll';
const LABEL: Record<Impl, string> = {
  c: 'C floor (read loop)',
  native: 'native FaultEngine',
  js: 'JS pagefault listener',
  c_poll: 'C floor, poll loop',
};

interface Sample {
  pagesPerS: number;
  elapsedNs: number;
  pages: number;
  /** Per first touch of a page, as the faulting thread saw it. */
  p50Ns: number;
  p99Ns: number;
  /** Faults the handler read. */
  faults: number;
  /** Handler time per fault read: read returned -> resolving ioctl returned (c and native). */
  serviceP50Ns?: number;
}

interface FloorResult {
  pages: number;
  elapsed_ns: number;
  pages_per_s: number;
  p50_ns: number;
  p99_ns: number;
  faults?: number;
  ioctls?: number;
  service_p50_ns?: number;
}

const FLOOR = path.join(root, 'build', 'Release', 'uffd_floor');
if (!fs.existsSync(FLOOR))
  throw new Error(`${FLOOR} is missing: build it with npx node-gyp build (scripts/bench.sh does)`);

// The source every handler copies from: page p holds the byte (p % 251) + 1,
// as in floor.c, so that touch()'s byte sum checks each run's contents.
const src = Region.anonymous(SIZE);
{
  const bytes = new Uint8Array(src.buffer);
  for (let p = 0; p < PAGES; p++) bytes.fill((p % 251) + 1, p * PAGE, (p + 1) * PAGE);
}
let expectedSum = 0;
for (let p = 0; p < PAGES; p++) expectedSum += (p % 251) + 1;
const source = PageSource.fromRegion(src);

function checkSum(what: string, byteSum: number): void {
  if (byteSum !== expectedSum) throw new Error(`${what}: wrong contents (byte sum ${byteSum}, want ${expectedSum})`);
}

async function runFloor(threads: number, batch: number, mode = 'read'): Promise<Sample> {
  const r = await runJson<FloorResult>(FLOOR, [String(SIZE), String(threads), String(batch), mode]);
  return {
    pagesPerS: r.pages_per_s,
    elapsedNs: r.elapsed_ns,
    pages: r.pages,
    p50Ns: r.p50_ns,
    p99Ns: r.p99_ns,
    faults: r.faults ?? 0,
    serviceP50Ns: r.service_p50_ns,
  };
}

async function runNative(threads: number, batch: number): Promise<Sample> {
  const region = Region.anonymous(SIZE);
  const uffd = Userfaultfd.open({ features: ['THREAD_ID'] });
  try {
    uffd.register(region, { missing: true });
    const engine = new FaultEngine(uffd, { threads: 1, batchPages: batch });
    engine.serve(region, source).start();
    let r, st;
    try {
      r = await touch(region, { threads });
    } finally {
      st = engine.stop(); // exact totals
      engine.close();
    }
    checkSum('native', r.byteSum);
    if (st.pages !== PAGES) throw new Error(`native: engine served ${st.pages} pages, want ${PAGES}`);
    return {
      pagesPerS: (r.pages * 1e9) / r.elapsedNs,
      elapsedNs: r.elapsedNs,
      pages: r.pages,
      p50Ns: r.latency.p50Ns,
      p99Ns: r.latency.p99Ns,
      faults: st.faults,
      serviceP50Ns: st.latency.p50Ns,
    };
  } finally {
    uffd.unregister(region);
    uffd.close();
    region.close();
  }
}

async function runJs(threads: number, batch: number): Promise<Sample> {
  const region = Region.anonymous(SIZE);
  const uffd = Userfaultfd.open({ features: ['THREAD_ID'] });
  const win = batch * PAGE;
  let faults = 0;
  try {
    uffd.register(region, { missing: true });
    uffd.on('pagefault', (ev: PageFaultEvent) => {
      faults++;
      const page = ev.offset! - (ev.offset! % PAGE);
      const off = page - (page % win),
        length = Math.min(win, SIZE - off);
      try {
        uffd.copy({ region, offset: off, length }, { region: src, offset: off, length });
      } catch (e) {
        if ((e as { code?: string }).code !== 'EEXIST') throw e;
        // Part of the window was there already: fill just the faulting page, or wake its thread.
        try {
          uffd.copy({ region, offset: page, length: PAGE }, { region: src, offset: page, length: PAGE });
        } catch (e2) {
          if ((e2 as { code?: string }).code !== 'EEXIST') throw e2;
          uffd.wake({ region, offset: page, length: PAGE });
        }
      }
    });
    const r = await touch(region, { threads });
    checkSum('js', r.byteSum);
    return {
      pagesPerS: (r.pages * 1e9) / r.elapsedNs,
      elapsedNs: r.elapsedNs,
      pages: r.pages,
      p50Ns: r.latency.p50Ns,
      p99Ns: r.latency.p99Ns,
      faults,
    };
  } finally {
    uffd.removeAllListeners('pagefault');
    uffd.unregister(region);
    uffd.close();
    region.close();
  }
}

function run(impl: Impl, threads: number, batch: number): Promise<Sample> {
  switch (impl) {
    case 'c':
      return runFloor(threads, batch, 'read');
    case 'c_poll':
      return runFloor(threads, batch, 'poll');
    case 'native':
      return runNative(threads, batch);
    case 'js':
      return runJs(threads, batch);
  }
}

// ---- the interleaved main loop ----
interface Config {
  threads: number;
  batch: number;
  key: string;
  impls: Impl[];
}
const MAIN = { threads: 1, batch: 1 };
const MAIN_KEY = `t${MAIN.threads}_b${MAIN.batch}`;
const configs: Config[] = [];
for (const threads of THREADS)
  for (const batch of BATCHES) {
    const impls: Impl[] = [...IMPLS];
    // The engine's loop shape (poll, then a non-blocking read) in C, for the main configuration.
    if (IMPLS.includes('c') && threads === MAIN.threads && batch === MAIN.batch) impls.push('c_poll');
    configs.push({ threads, batch, key: `t${threads}_b${batch}`, impls });
  }

interface Summary {
  pagesPerS: number;
  bestPagesPerS: number;
  p50Ns: number;
  p99Ns: number;
  faults: number;
  serviceP50Ns?: number;
  usPerPage: number;
}
/** impl_tN_bM -> summary, as JSON (snake_case) so that a pinned child pass can hand it back. */
type PassResults = Record<
  string,
  {
    pages_per_s: number;
    best_pages_per_s: number;
    us_per_page: number;
    p50_ns: number;
    p99_ns: number;
    faults: number;
    service_p50_ns?: number;
  }
>;

function summarize(ss: readonly Sample[]): Summary {
  const svc = ss.map((s) => s.serviceP50Ns).filter((v): v is number => v !== undefined);
  const pps = median(ss.map((s) => s.pagesPerS));
  return {
    pagesPerS: pps,
    bestPagesPerS: max(ss.map((s) => s.pagesPerS)),
    p50Ns: median(ss.map((s) => s.p50Ns)),
    p99Ns: median(ss.map((s) => s.p99Ns)),
    faults: median(ss.map((s) => s.faults)),
    ...(svc.length ? { serviceP50Ns: median(svc) } : {}),
    usPerPage: 1e6 / pps,
  };
}

async function measure(): Promise<PassResults> {
  const samples = new Map<string, Sample[]>();
  for (let rep = -1; rep < REPS; rep++) {
    for (const [ci, c] of configs.entries()) {
      const k = (rep + 1 + ci) % c.impls.length;
      const order = [...c.impls.slice(k), ...c.impls.slice(0, k)];
      for (const impl of order) {
        const s = await run(impl, c.threads, c.batch);
        if (rep < 0) continue; // warm-up
        const key = `${impl}_${c.key}`;
        if (!samples.has(key)) samples.set(key, []);
        samples.get(key)!.push(s);
      }
    }
  }
  const out: PassResults = {};
  for (const [k, ss] of samples) {
    const s = summarize(ss);
    out[k] = {
      pages_per_s: round(s.pagesPerS),
      best_pages_per_s: round(s.bestPagesPerS),
      us_per_page: round(s.usPerPage, 3),
      p50_ns: round(s.p50Ns),
      p99_ns: round(s.p99Ns),
      faults: s.faults,
      ...(s.serviceP50Ns !== undefined ? { service_p50_ns: round(s.serviceP50Ns) } : {}),
    };
  }
  return out;
}

/** This benchmark again, pinned to one CPU with taskset (threads inherit the affinity). */
async function pinnedPass(cpu: string): Promise<PassResults> {
  const self = fileURLToPath(import.meta.url);
  const args = [
    '-c',
    cpu,
    process.execPath,
    self,
    '--child',
    '--reps',
    String(REPS),
    '--size',
    String(SIZE),
    '--threads',
    THREADS.join(','),
    '--batch',
    BATCHES.join(','),
    '--impls',
    IMPLS.join(','),
  ];
  const stdout = await exec('taskset', args, { maxBuffer: 16 << 20, timeout: 10 * 60_000 });
  return JSON.parse(stdout.trim().split('\n').pop()!) as PassResults;
}

function allowedCpus(): number[] {
  const list = /Cpus_allowed_list:\s*(\S+)/.exec(fs.readFileSync('/proc/self/status', 'utf8'))?.[1] ?? '';
  const cpus: number[] = [];
  for (const part of list.split(',')) {
    const [a, b] = part.split('-').map(Number);
    if (a === undefined || Number.isNaN(a)) continue;
    for (let c = a; c <= (b ?? a); c++) cpus.push(c);
  }
  return cpus;
}

if (CHILD) {
  const r = await measure();
  source.close();
  src.close();
  console.log(JSON.stringify(r));
  process.exit(0);
}

const t0 = Date.now();
const cpus = allowedCpus();
const oneCpuOpt = opts.get('one-cpu') ?? String(cpus[cpus.length - 1] ?? 0);
const onePass = oneCpuOpt !== 'none' && cpus.length > 1;
console.log(
  `bench/uffd: ${SIZE / 2 ** 20} MiB (${PAGES} pages of ${PAGE} B) per run, median of ${REPS} reps after 1 warm-up, ` +
    `interleaved; ${os.cpus().length} CPUs (allowed ${cpus.join(',')}), Linux ${os.release()}`,
);
console.log(`pass 1: all allowed CPUs${onePass ? `; pass 2: pinned to CPU ${oneCpuOpt}` : ''}`);
const passAll = await measure();
const passOne = onePass ? await pinnedPass(oneCpuOpt) : undefined;

// ---- extras: what a fault costs without a userfaultfd, and one resolving ioctl ----
interface Extra {
  label: string;
  value: string;
  json: Record<string, number>;
}
const extras: Extra[] = [];
if (EXTRAS) {
  const plain: Sample[] = [];
  const ioctl = new Map<number, number[]>(); // batch -> ns per ioctl (C)
  const jsCopy = new Map<number, number[]>();
  const jsZero: number[] = [];
  for (let rep = 0; rep < REPS; rep++) {
    plain.push(await runFloor(1, 1, 'none'));
    for (const b of [1, 16]) {
      const r = await runJson<FloorResult>(FLOOR, [String(SIZE), '1', String(b), 'ioctl']);
      if (!ioctl.has(b)) ioctl.set(b, []);
      ioctl.get(b)!.push(r.elapsed_ns / r.ioctls!);
      if (!jsCopy.has(b)) jsCopy.set(b, []);
      jsCopy.get(b)!.push(jsIoctlCost(b, 'copy'));
    }
    jsZero.push(jsIoctlCost(1, 'zeropage'));
  }
  const p = summarize(plain);
  extras.push({
    label: 'ordinary 4 KiB page fault (no uffd, write, 1 thread): touch p50 / p99',
    value: `${fmtNs(p.p50Ns)} / ${fmtNs(p.p99Ns)}`,
    json: { ordinary_fault_p50_ns: p.p50Ns, ordinary_fault_p99_ns: p.p99Ns },
  });
  for (const b of [1, 16]) {
    const c = median(ioctl.get(b)!),
      j = median(jsCopy.get(b)!);
    extras.push({
      label: `UFFDIO_COPY of ${b} page${b > 1 ? 's' : ''}, nobody waiting: C ioctl / JS uffd.copy()`,
      value: `${fmtNs(c)} / ${fmtNs(j)}`,
      json: { [`c_copy_b${b}_ns`]: c, [`js_copy_b${b}_ns`]: j },
    });
  }
  const z = median(jsZero);
  extras.push({
    label: 'UFFDIO_ZEROPAGE of 1 page, nobody waiting: JS uffd.zeropage()',
    value: fmtNs(z),
    json: { js_zeropage_b1_ns: z },
  });
}

/** Fill a registered region window by window from JS with nobody faulting: the mean cost of one call. */
function jsIoctlCost(batch: number, kind: 'copy' | 'zeropage'): number {
  const region = Region.anonymous(SIZE);
  const uffd = Userfaultfd.open();
  try {
    uffd.register(region, { missing: true });
    const win = batch * PAGE;
    const start = process.hrtime.bigint();
    for (let off = 0; off < SIZE; off += win) {
      if (kind === 'copy') uffd.copy({ region, offset: off, length: win }, { region: src, offset: off, length: win });
      else uffd.zeropage({ region, offset: off, length: win });
    }
    return Number(process.hrtime.bigint() - start) / (SIZE / win);
  } finally {
    uffd.unregister(region);
    uffd.close();
    region.close();
  }
}

// ---- report ----
function passTable(title: string, r: PassResults): string {
  const rows: string[][] = [];
  for (const c of configs)
    for (const impl of c.impls) {
      const s = r[`${impl}_${c.key}`];
      if (!s) continue;
      rows.push([
        `${c.threads} thr, batch ${String(c.batch).padStart(2)}  ${LABEL[impl]}`,
        fmtRate(s.pages_per_s),
        fmtRate(s.best_pages_per_s),
        `${s.us_per_page.toFixed(2)}µs`,
        fmtNs(s.p50_ns),
        fmtNs(s.p99_ns),
        String(s.faults),
        s.service_p50_ns === undefined ? '-' : fmtNs(s.service_p50_ns),
      ]);
    }
  return table([title, 'pages/s', 'best', 'per page', 'touch p50', 'touch p99', 'faults', 'service p50'], rows);
}
console.log('');
console.log(passTable('4 KiB faults, all CPUs (median)', passAll));
if (passOne) {
  console.log('');
  console.log(passTable(`4 KiB faults, pinned to CPU ${oneCpuOpt} (median)`, passOne));
}
console.log('  per page: 1 / (pages/s). touch p50/p99: the first access of a page as its faulting thread saw it');
console.log('  (batch 16: most touches hit prefetched pages). service p50: handler time per fault, read() returned ->');
console.log('  resolving ioctl returned. faults: faults the handler read (pages / batch when windows never overlap).');

const ratios: Record<string, number> = {};
const pps = (r: PassResults | undefined, impl: Impl, key: string) => r?.[`${impl}_${key}`]?.pages_per_s ?? NaN;
const ratioRows: string[][] = [];
for (const c of configs) {
  const row = [`${c.threads} thr, batch ${c.batch}`];
  for (const [suffix, r] of [
    ['', passAll],
    ['_1cpu', passOne],
  ] as const) {
    for (const impl of ['native', 'js'] as const) {
      const v = pps(r, impl, c.key) / pps(r, 'c', c.key);
      if (r) row.push(fmtRatio(v));
      if (Number.isFinite(v)) ratios[`${impl}_vs_c_${c.key}${suffix}`] = round(v, 3);
    }
  }
  ratioRows.push(row);
}
for (const suffix of ['', '_1cpu']) {
  for (const impl of ['native', 'js']) {
    const v = ratios[`${impl}_vs_c_${MAIN_KEY}${suffix}`];
    if (v !== undefined) ratios[`${impl}_vs_c${suffix}`] = v;
  }
  const r = suffix ? passOne : passAll;
  const poll = pps(r, 'c_poll', MAIN_KEY) / pps(r, 'c', MAIN_KEY);
  if (Number.isFinite(poll)) ratios[`c_poll_vs_c${suffix}`] = round(poll, 3);
}
// Headline keys first in the JSON.
const ordered: Record<string, number> = {};
for (const k of ['native_vs_c', 'js_vs_c', 'native_vs_c_1cpu', 'js_vs_c_1cpu', 'c_poll_vs_c', 'c_poll_vs_c_1cpu'])
  if (ratios[k] !== undefined) ordered[k] = ratios[k];
Object.assign(ordered, ratios);

console.log('');
const head = ['pages/s vs the C floor', 'native/C', 'JS/C'];
if (passOne) head.push('native/C 1cpu', 'JS/C 1cpu');
console.log(table(head, ratioRows));
const say = (suffix: string, where: string) => {
  const n = ordered[`native_vs_c${suffix}`],
    j = ordered[`js_vs_c${suffix}`],
    p = ordered[`c_poll_vs_c${suffix}`];
  if (n === undefined) return;
  console.log(
    `  ${where}: native ${fmtRatio(n)} of the C floor (target >= 0.90x)${j !== undefined ? `, JS ${fmtRatio(j)}` : ''}` +
      `${p !== undefined ? `; the C floor with the engine's poll-then-read loop: ${fmtRatio(p)}` : ''}`,
  );
};
say('', 'main config (1 faulting thread, batch 1), all CPUs');
say('_1cpu', 'main config, one CPU');

if (extras.length) {
  console.log('');
  console.log(
    table(
      ['per-fault and per-ioctl costs (median; ioctl costs are means per call)', 'value'],
      extras.map((e) => [e.label, e.value]),
    ),
  );
}
console.log(`\n${((Date.now() - t0) / 1000).toFixed(1)} s`);

const results: Record<string, unknown> = {};
for (const [suffix, r] of [
  ['', passAll],
  ['_1cpu', passOne],
] as const)
  for (const c of configs)
    for (const impl of c.impls)
      if (r?.[`${impl}_${c.key}`]) results[`${impl}_${c.key}${suffix}`] = r[`${impl}_${c.key}`];
if (extras.length)
  results.costs = Object.fromEntries(extras.flatMap((e) => Object.entries(e.json).map(([k, v]) => [k, round(v)])));
results.setup = {
  size: SIZE,
  page: PAGE,
  reps: REPS,
  cpus: os.cpus().length,
  cpus_allowed: cpus.join(','),
  one_cpu: onePass ? Number(oneCpuOpt) : null,
  kernel: os.release(),
  engine_threads: 1,
};

source.close();
src.close();
console.log(JSON.stringify({ bench: 'uffd', ratios: ordered, results }));
