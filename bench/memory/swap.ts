/**
 * bench/memory, the swap part: one unmodified program (swap-workload.c: a fill of incompressible data,
 * random 8-byte updates, a sequential scan, a checksum) run with no limit, then at each local share
 * under a cgroup memory cap with swap on a disk file, under the same cap with swap on zram (lz4), and
 * under `sosctl run --local-memory` with two memory nodes in other network namespaces over TCP. Every
 * run's checksum must equal the plain run's.
 *
 * Local memory at share p: L = p% of the workload's size. sosctl's arena gets --local-memory L; the
 * cgroup cap is L plus what the program holds outside its one malloc (binary, libc, stack, and the page
 * tables of the big block: 8 MiB + size/512), so that both bound the data to the same bytes.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { makeNet, type TestNet } from '../../testkit/netns.js';
import { LineProcess } from '../../testkit/line-process.js';
import { fmtNs, fmtRatio, root, round, table } from '../run.js';
import {
  activeSwaps,
  diskSwap,
  memoryCgroup,
  memoryCgroupKind,
  onUndo,
  undoAll,
  vmstat,
  zramSwap,
  type MemoryCgroupKind,
} from './swap-setup.js';

export interface SwapOptions {
  size: number;
  updates: number;
  /** Local shares in %. */
  locals: number[];
  /** sosctl run's --replicas, one row set each; the first is the one the ratios use. */
  replicas: number[];
}

const WORKLOAD = path.join(root, 'build/Release/swap_workload');
const SOSCTL = path.join(root, 'dist/lib/cli/sosctl.js');
const NODE_MAIN = path.join(root, 'dist/lib/memory/node-main.js');
const SEED = 42;
const RUN_MS = 3_600_000; // a hang, not a slow run
const MiB = 2 ** 20;

type Mode = 'plain' | 'disk' | 'zram' | 'sosctl';

export interface SwapRun {
  mode: Mode;
  local_pct: number | null;
  replicas?: number;
  local_bytes?: number;
  cap_bytes?: number;
  fill_ns: number;
  update_ns: number;
  scan_ns: number;
  total_ns: number;
  /** The whole process from spawn to exit (sosctl's start-up and teardown included). */
  wall_ns: number;
  checksum: string;
  checksum_ok: boolean;
  /** Swap modes: the cgroup's major faults; sosctl: the pager's missing faults (first touches included). */
  faults: number | null;
  /** Pages brought back: pswpin; sosctl: pagesFetched. */
  pages_in: number | null;
  /** (total - plain total) / faults and / pages in. */
  us_per_fault: number | null;
  us_per_page_in: number | null;
  counters?: Record<string, number>;
}

export interface SwapOut {
  ratios: Record<string, number>;
  swap: Record<string, unknown> & { checksums_ok: boolean };
}

let running: LineProcess[] = [];
let net: TestNet | undefined;
let scratch: string | undefined;

/** Kill what runs, undo every change to the machine, remove the namespaces (also on error and signals). */
export async function stopSwap(): Promise<void> {
  for (const p of running) p.kill();
  running = [];
  undoAll();
  await net?.close().catch(() => undefined);
  net = undefined;
  if (scratch) fs.rmSync(scratch, { recursive: true, force: true });
  scratch = undefined;
}

const swapBytes = (size: number) => size + 256 * MiB;

/** Refuse before anything runs: swap already on, no memory controller, no zram, too little disk. */
export function swapPreflight(o: SwapOptions): MemoryCgroupKind {
  const on = activeSwaps();
  if (on.length)
    throw new Error(
      `bench/memory swap: swap is already on (${on.join(', ')}); the part needs the machine's swap to itself: swapoff first, or --parts far`,
    );
  if (!fs.existsSync('/sys/block/zram0') && !fs.existsSync('/sys/class/zram-control'))
    throw new Error('bench/memory swap: no zram (modprobe zram)');
  for (const f of [WORKLOAD, SOSCTL, NODE_MAIN])
    if (!fs.existsSync(f)) throw new Error(`bench/memory swap: ${f} is not built (scripts/install.sh)`);
  const st = fs.statfsSync('/var/tmp');
  if (st.bavail * st.bsize < swapBytes(o.size) + 1024 * MiB)
    throw new Error(`bench/memory swap: /var/tmp has too little room for a ${swapBytes(o.size) / MiB} MiB swap file`);
  return memoryCgroupKind();
}

interface Output {
  fill_ns: number;
  update_ns: number;
  scan_ns: number;
  checksum: string;
}

/** Run one workload process to its end: its JSON line, and the wall time. */
async function workload(file: string, args: string[], name: string): Promise<Output & { wall_ns: number }> {
  const t0 = process.hrtime.bigint();
  const p = new LineProcess(file, args, { name, waitMs: RUN_MS });
  running.push(p);
  const forget = onUndo(() => p.kill());
  try {
    const line = await p.line();
    const e = await p.exit();
    const wall = Number(process.hrtime.bigint() - t0);
    if (e.code !== 0) throw new Error(`${name}: exit ${e.code ?? e.signal}`);
    const out = JSON.parse(line) as Output;
    if (typeof out.checksum !== 'string') throw new Error(`${name}: unexpected output ${line}`);
    return { ...out, wall_ns: wall };
  } finally {
    forget();
    running = running.filter((x) => x !== p);
  }
}

const args = (o: SwapOptions) => [String(o.size), String(o.updates), String(SEED)];
const localBytes = (o: SwapOptions, pct: number) => Math.floor((o.size * pct) / 100 / 4096) * 4096;

function result(mode: Mode, out: Output & { wall_ns: number }, plain: SwapRun | null, x: Partial<SwapRun>): SwapRun {
  const total = out.fill_ns + out.update_ns + out.scan_ns;
  const extraUs = plain ? (total - plain.total_ns) / 1e3 : NaN;
  const per = (n: number | null | undefined) => (n ? round(extraUs / n) : null);
  return {
    mode,
    local_pct: null,
    ...x,
    fill_ns: out.fill_ns,
    update_ns: out.update_ns,
    scan_ns: out.scan_ns,
    total_ns: total,
    wall_ns: out.wall_ns,
    checksum: out.checksum,
    checksum_ok: plain ? out.checksum === plain.checksum : true,
    faults: x.faults ?? null,
    pages_in: x.pages_in ?? null,
    us_per_fault: per(x.faults),
    us_per_page_in: per(x.pages_in),
  };
}

/** The workload in a fresh memory cgroup capped at the share plus the program's own margin. */
async function capped(
  mode: 'disk' | 'zram',
  o: SwapOptions,
  kind: MemoryCgroupKind,
  pct: number,
  plain: SwapRun,
): Promise<SwapRun> {
  const local = localBytes(o, pct);
  const cap = local + 8 * MiB + Math.ceil(o.size / 512 / 4096) * 4096;
  const cg = memoryCgroup(kind, cap);
  try {
    const v0 = vmstat();
    // Moved in before it allocates: its whole life is charged to the group.
    const out = await workload(
      'sh',
      ['-c', 'echo $$ > "$0" && exec "$@"', cg.procs, WORKLOAD, ...args(o)],
      `swap_workload (${mode}, ${pct}%)`,
    );
    const v1 = vmstat();
    const st = cg.stat();
    const counters = {
      pgmajfault: st.pgmajfault,
      pswpin: v1.pswpin - v0.pswpin,
      pswpout: v1.pswpout - v0.pswpout,
      ...(kind.version === 1 ? { failcnt: Number(fs.readFileSync(`${cg.dir}/memory.failcnt`, 'utf8')) } : {}),
    };
    return result(mode, out, plain, {
      local_pct: pct,
      local_bytes: local,
      cap_bytes: cap,
      faults: counters.pgmajfault,
      pages_in: counters.pswpin,
      counters,
    });
  } finally {
    cg.remove();
  }
}

interface Totals {
  faults: number;
  pagesFetched: number;
  evictions: number;
  writeBacks: number;
  zeroFills: number;
  prefetched: number;
  bytesIn: number;
  bytesOut: number;
}

/** Two memory nodes and a client namespace; sosctl run in the client. */
async function farNodes(o: SwapOptions): Promise<(pct: number, replicas: number, plain: SwapRun) => Promise<SwapRun>> {
  net = await makeNet(3);
  const [n0, n1, client] = net.nodes;
  scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'sos-bench-swap-'));
  const secret = path.join(scratch, 'secret');
  fs.writeFileSync(secret, crypto.randomBytes(32), { mode: 0o600 });
  // The arena reserves --far-size on each node; a finished run's region is freed as it exits.
  const far = Math.ceil((o.size * 1.5) / 4096) * 4096;
  const capacity = String(2 * far);
  const addrs: string[] = [];
  for (const [i, n] of [n0, n1].entries()) {
    const s = new LineProcess(
      'nsenter',
      [
        `--net=/run/netns/${n.netns}`,
        process.execPath,
        NODE_MAIN,
        '--host',
        n.addr,
        '--port',
        '7800',
        '--capacity',
        capacity,
        '--app',
        `bench=${secret}`,
      ],
      { name: `memory node ${i}`, waitMs: 60_000 },
    );
    running.push(s);
    onUndo(() => s.kill());
    const l = JSON.parse(await s.line()) as { listening?: { host: string; port: number } };
    if (!l.listening) throw new Error(`memory node ${i}: unexpected first line ${JSON.stringify(l)}`);
    addrs.push(`${l.listening.host}:${l.listening.port}`);
  }
  return async (pct, replicas, plain) => {
    const local = localBytes(o, pct);
    const stats = path.join(scratch!, `stats-${pct}-${replicas}`);
    const name = `sosctl run (${pct}%, ${replicas} replicas)`;
    // sosctl's stdout is the program's; its --stats --json line goes to stderr, kept in a file.
    const sosctl = [
      `--net=/run/netns/${client.netns}`,
      process.execPath,
      SOSCTL,
      'run',
      '--local-memory',
      String(local),
      '--memory-nodes',
      addrs.join(','),
      '--secret-file',
      secret,
      '--app',
      'bench',
      '--replicas',
      String(replicas),
      '--far-size',
      String(far),
      '--stats',
      '--json',
      '--',
      WORKLOAD,
      ...args(o),
    ];
    let out;
    try {
      out = await workload('sh', ['-c', 'exec "$@" 2>"$0"', stats, 'nsenter', ...sosctl], name);
    } catch (e) {
      const err = fs.existsSync(stats) ? fs.readFileSync(stats, 'utf8').trim() : '';
      throw new Error(`${(e as Error).message}${err ? `\n${name} stderr:\n${err}` : ''}`);
    }
    const lines = fs.readFileSync(stats, 'utf8').trim().split('\n');
    for (const l of lines.slice(0, -1)) console.error(`  sosctl: ${l}`);
    const t = (JSON.parse(lines.at(-1)!) as { total: Totals }).total;
    const counters = {
      faults: t.faults,
      pagesFetched: t.pagesFetched,
      prefetched: t.prefetched,
      zeroFills: t.zeroFills,
      evictions: t.evictions,
      writeBacks: t.writeBacks,
      bytesIn: t.bytesIn,
      bytesOut: t.bytesOut,
    };
    return result('sosctl', out, plain, {
      local_pct: pct,
      replicas,
      local_bytes: local,
      faults: t.faults,
      pages_in: t.pagesFetched,
      counters,
    });
  };
}

/** The whole part: every run, the table, and the ratios for the final JSON line. */
export async function swapPart(o: SwapOptions): Promise<SwapOut> {
  const kind = swapPreflight(o);
  const runs: SwapRun[] = [];
  let zram = { algorithm: '', note: undefined as string | undefined };
  try {
    console.log(
      `bench/memory swap: ${o.size / MiB} MiB, ${o.updates} updates, local ${o.locals.join('/')}%, cgroup v${kind.version} (${kind.parent})`,
    );
    console.log('  plain');
    const plain = result('plain', await workload(WORKLOAD, args(o), 'swap_workload (plain)'), null, {});
    runs.push(plain);

    console.log(`  disk swap: writing a ${swapBytes(o.size) / MiB} MiB swap file`);
    const disk = await diskSwap(swapBytes(o.size));
    try {
      for (const pct of o.locals) {
        console.log(`  disk swap ${pct}%`);
        runs.push(await capped('disk', o, kind, pct, plain));
      }
    } finally {
      disk.close();
    }

    const z = await zramSwap(swapBytes(o.size));
    zram = { algorithm: z.algorithm, note: z.note };
    try {
      for (const pct of o.locals) {
        console.log(`  zram (${z.algorithm}) ${pct}%`);
        z.resetPeak();
        const r = await capped('zram', o, kind, pct, plain);
        const u = z.usage();
        // About 1 for incompressible data: zram keeps such pages whole.
        r.counters = { ...r.counters, zram_mem_used_max: u.memUsedMax, zram_huge_pages_since: u.hugePagesSince };
        runs.push(r);
      }
    } finally {
      z.close();
    }

    const sosctl = await farNodes(o);
    for (const replicas of o.replicas)
      for (const pct of o.locals) {
        console.log(`  sosctl run ${pct}%, ${replicas} replicas`);
        runs.push(await sosctl(pct, replicas, plain));
      }
  } finally {
    await stopSwap();
  }
  return report(o, kind, zram, runs);
}

function report(
  o: SwapOptions,
  kind: MemoryCgroupKind,
  zram: { algorithm: string; note?: string },
  runs: SwapRun[],
): SwapOut {
  const plain = runs[0];
  const label = (r: SwapRun) => {
    if (r.mode === 'plain') return 'plain, no limit';
    if (r.mode === 'disk') return 'cgroup + disk swap';
    if (r.mode === 'zram') return `cgroup + zram (${zram.algorithm})`;
    return `sosctl run, ${r.replicas} replica${r.replicas === 1 ? '' : 's'}`;
  };
  const num = (v: number | null) => (v === null ? '-' : String(v));
  console.log(
    '\n' +
      table(
        [
          'run',
          'local',
          'fill',
          'updates',
          'scan',
          'total',
          'wall',
          'vs plain',
          'faults',
          'pages in',
          'µs/fault',
          'sum ok',
        ],
        runs.map((r) => [
          label(r),
          r.local_pct === null ? 'all' : `${r.local_pct}%`,
          fmtNs(r.fill_ns),
          fmtNs(r.update_ns),
          fmtNs(r.scan_ns),
          fmtNs(r.total_ns),
          fmtNs(r.wall_ns),
          fmtRatio(r.total_ns / plain.total_ns),
          num(r.faults),
          num(r.pages_in),
          r.us_per_fault === null ? '-' : r.us_per_fault.toFixed(1),
          r.checksum_ok ? 'yes' : 'NO',
        ]),
      ),
  );
  console.log(
    "faults: the cgroup's major faults (swap-ins waited for); sosctl: its missing faults, first touches included.\n" +
      'pages in: pages read from swap (pswpin) / fetched from memory nodes. µs/fault: (total - plain total) / faults.',
  );
  if (zram.note) console.log(`zram: ${zram.note}`);

  const ratios: Record<string, number> = {};
  const find = (mode: Mode, pct: number) =>
    runs.find((r) => r.mode === mode && r.local_pct === pct && (mode !== 'sosctl' || r.replicas === o.replicas[0]));
  const lines: string[] = [];
  for (const pct of o.locals) {
    const ours = find('sosctl', pct)!;
    const disk = find('disk', pct)!;
    const z = find('zram', pct)!;
    ratios[`speedup_vs_disk_swap_${pct}`] = round(disk.total_ns / ours.total_ns);
    ratios[`slowdown_vs_zram_${pct}`] = round(ours.total_ns / z.total_ns);
    lines.push(
      `at ${pct}% local: sosctl run ${fmtRatio(disk.total_ns / ours.total_ns)} faster than disk swap (target ≥ 3x), ${fmtRatio(ours.total_ns / z.total_ns)} of zram's time (target < 1x)`,
    );
  }
  console.log(`\n${lines.join('\n')}`);
  const ok = runs.every((r) => r.checksum_ok);
  if (!ok) console.log('CHECKSUM MISMATCH: a run computed other bytes than the plain run');
  return {
    ratios,
    swap: {
      size: o.size,
      updates: o.updates,
      seed: SEED,
      cgroup: `v${kind.version}`,
      zram_algorithm: zram.algorithm,
      ...(zram.note ? { zram_note: zram.note } : {}),
      checksum: plain.checksum,
      checksums_ok: ok,
      runs,
    },
  };
}
