/**
 * bench/migrate: live migration of a process between two nodes (network
 * namespaces on this machine), the library's migrate() against CRIU's command
 * line driven by hand, pre-copy and post-copy, for several resident sizes.
 * Post-copy has two CLI baselines: pages in the clear (what our code costs) and
 * over CRIU's own --tls (what the encryption migrate() always uses costs today).
 *
 * Each run starts a fresh 'memory' workload (testkit/workloads.ts: the
 * init of its own PID namespace, memMiB of anonymous memory filled with a
 * pattern, a 1 ms CLOCK_REALTIME heartbeat) on node A, moves it to node B,
 * asks it to verify every byte there, reads the largest heartbeat gap (the
 * downtime as the workload saw it) and kills it. Runs are interleaved: per
 * size and round, every (implementation, mode) pair once, the order
 * alternating between rounds; figures are medians over rounds.
 *
 * Prints a table per size, ratios ours / CLI, and as the very last line one
 * JSON object: {"bench":"migrate","ratios":{...},"postcopy_downtime_s":{...},"results":{...}}.
 *
 *   npm run bench -- migrate [--sizes 64,256,1024] [--rounds 2] [--modes precopy,postcopy] [--impls cli,cli_tls,ours]
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { makeNet, type TestNet, type TestNode } from '../../testkit/netns.js';
import { startWorkload, type Workload } from '../../testkit/workloads.js';
import { strays } from '../../testkit/migration-agents.js';
import { fmtRatio, median, parseOptions, round, table } from '../run.js';
import { cliMigrate, cliTls, criuSettings, dropLocks, type CliOptions } from './cli.js';
import { oursMigrate, oursSetup, type OursEnv } from './ours.js';

const opts = parseOptions(process.argv.slice(2), {
  sizes: 'resident sizes in MiB (default 64,256,1024)',
  rounds: 'rounds per size (default 2); each round runs every implementation and mode once',
  modes: 'precopy,postcopy (default both)',
  impls: 'cli,cli_tls,ours (default all; cli_tls: the CLI with --tls on its post-copy pages, post-copy only)',
  dir: 'scratch folder for images and workload files (default: a new folder under the OS temp dir)',
  keep: 'keep the scratch folder (default false)',
  'cli-log': "CRIU's -v level for the CLI runs (default: CRIU's own default; lib/criu uses 4)",
  warmup:
    'one discarded 16 MiB migration per implementation and mode first (default true): one-time costs (CRIU probes, page cache, JIT) stay out',
});
const SIZES = (opts.get('sizes') ?? '64,256,1024').split(',').map(Number);
const ROUNDS = Number(opts.get('rounds') ?? 2);
const MODES = (opts.get('modes') ?? 'precopy,postcopy').split(',') as Mode[];
const IMPLS = (opts.get('impls') ?? 'cli,cli_tls,ours').split(',') as Impl[];
for (const s of SIZES)
  if (!(Number.isInteger(s) && s >= 1 && s <= 16384)) throw new Error(`bad size ${s} (MiB, 1..16384)`);
if (!(Number.isInteger(ROUNDS) && ROUNDS >= 1)) throw new Error('bad --rounds');
for (const m of MODES) if (m !== 'precopy' && m !== 'postcopy') throw new Error(`unknown mode ${String(m)}`);
for (const i of IMPLS) if (i !== 'cli' && i !== 'cli_tls' && i !== 'ours') throw new Error(`unknown impl ${String(i)}`);

type Mode = 'precopy' | 'postcopy';
type Impl = 'cli' | 'cli_tls' | 'ours';
const LABEL: Record<`${Impl}_${Mode}`, string> = {
  cli_precopy: 'CRIU CLI pre-copy',
  cli_tls_precopy: 'CRIU CLI TLS pre-copy', // not run: the CLI's TLS baseline is post-copy only
  ours_precopy: 'ours pre-copy',
  cli_postcopy: 'CRIU CLI post-copy',
  cli_tls_postcopy: 'CRIU CLI TLS post-copy',
  ours_postcopy: 'ours post-copy',
};
/** The (implementation, mode) pairs that run, in table order. */
const PAIRS: [Impl, Mode][] = [];
for (const mode of MODES)
  for (const impl of IMPLS) if (!(impl === 'cli_tls' && mode === 'precopy')) PAIRS.push([impl, mode]);

/** One migration, as every implementation reports it. */
export interface Sample {
  /** Start of the migration -> the process runs on B with all its memory there. */
  totalMs: number;
  /** Start -> the process runs again (on B), seen from outside. */
  downtimeMs: number;
  /** The workload's largest heartbeat gap (its own view of the downtime). */
  gapMs: number | null;
  /** CRIU's stats-dump frozen_time (pre-copy; CRIU's figure is meaningless for lazy dumps). */
  frozenMs: number | null;
  /** CRIU's stats-restore restore_time. */
  restoreMs: number | null;
  phases: Record<string, number>;
}

const root = opts.get('dir') ?? fs.mkdtempSync(path.join(os.tmpdir(), 'sos-bench-migrate-'));
fs.mkdirSync(root, { recursive: true });
const KEEP = opts.get('keep') === 'true';
let seq = 0;

function freshDir(name: string): string {
  const d = path.join(root, `${name}-${++seq}`);
  fs.rmSync(d, { recursive: true, force: true });
  fs.mkdirSync(d, { recursive: true });
  return d;
}

/** Kill a restored process tree: SIGKILL to the init of its PID namespace takes every member with it. */
async function killPid(pid: number): Promise<void> {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    return;
  }
  for (let i = 0; i < 500; i++) {
    try {
      process.kill(pid, 0);
    } catch {
      return;
    }
    await new Promise((r) => setTimeout(r, 10));
  }
}

let net: TestNet | undefined;
let ours: OursEnv | undefined;
const workloads = new Set<Workload>();
const restored = new Set<number>();
async function cleanup(): Promise<void> {
  for (const w of workloads) await w.kill().catch(() => undefined);
  for (const p of restored) await killPid(p);
  await ours?.close().catch(() => undefined);
  for (const p of strays(root)) await killPid(p);
  await net?.close().catch(() => undefined);
  if (!KEEP) fs.rmSync(root, { recursive: true, force: true });
}
// `on`, not `once`: the test helpers' own last-resort hook (testkit/cleanup.ts) re-raises the
// signal after its synchronous clean-up; our listener must still be there to take it, or the
// process would die before the asynchronous clean-up below (agents, CRIU, scratch folder) ran.
let stopping = false;
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const)
  process.on(sig, () => {
    if (stopping) return;
    stopping = true;
    const code = 128 + os.constants.signals[sig];
    setTimeout(() => process.exit(code), 30_000).unref();
    void cleanup().finally(() => process.exit(code));
  });

/** How long one migration may take before it counts as hung: generous, the machine is shared. */
const deadline = (mib: number) => 60_000 + 120 * mib;

let port = 20000 + (process.pid % 20000);
const nextPorts = (): [number, number] => {
  port += 2;
  if (port > 64000) port = 20000;
  return [port, port + 1];
};

async function runOne(
  impl: Impl,
  mode: Mode,
  mib: number,
  a: TestNode,
  b: TestNode,
  cliBase: Omit<CliOptions, 'ports'>,
): Promise<Sample> {
  const w = await startWorkload('memory', { dir: freshDir(`wl${mib}`), netns: a.netns, memMiB: mib });
  workloads.add(w);
  let pid: number | undefined;
  try {
    await w.resetGap(); // only the migration's gap counts
    let s: Omit<Sample, 'gapMs'>;
    if (impl !== 'ours') {
      const src = freshDir('cli-src'),
        dst = freshDir('cli-dst');
      // Outside the image folders (their tar copy would carry the keys) and outside the timing.
      const certs = impl === 'cli_tls' ? freshDir('cli-tls') : null;
      const tls = certs ? { tls: await cliTls(certs) } : {};
      const r = await cliMigrate(
        mode,
        w.pid,
        a,
        b,
        src,
        dst,
        { ...cliBase, ports: nextPorts(), ...tls },
        deadline(mib),
      ).finally(() => {
        if (certs) fs.rmSync(certs, { recursive: true, force: true });
      });
      pid = r.pid;
      restored.add(pid);
      await dropLocks(a);
      s = {
        totalMs: r.totalMs,
        downtimeMs: r.downtimeMs,
        phases: r.phases,
        frozenMs: mode === 'precopy' && r.dump ? r.dump.frozenTimeUs / 1000 : null,
        restoreMs: r.restore ? r.restore.restoreTimeUs / 1000 : null,
      };
      fs.rmSync(src, { recursive: true, force: true });
      fs.rmSync(dst, { recursive: true, force: true });
    } else {
      let r;
      try {
        r = await oursMigrate(ours!, mode, w.pid, a, b, deadline(mib));
      } catch (e) {
        // A migration that hung or broke the agents: start them afresh for the next run.
        await ours!.close();
        for (const p of strays(root)) await killPid(p);
        ours = await oursSetup(net!, root);
        throw e;
      }
      pid = r.pid;
      restored.add(pid);
      s = r;
    }
    const gapMs = await w.gapMs();
    await w.verify(pid); // every byte arrived (post-copy: all pages pulled)
    return { ...s, gapMs };
  } finally {
    await w.kill().catch(() => undefined);
    workloads.delete(w);
    if (pid !== undefined) {
      await killPid(pid);
      restored.delete(pid);
    }
  }
}

const t0 = performance.now();
const samples = new Map<string, Sample[]>();
const failures: { impl: Impl; mode: Mode; mib: number; round: number; error: string }[] = [];
const key = (impl: Impl, mode: Mode, mib: number) => `${impl}_${mode}_${mib}`;
let cliBase: Omit<CliOptions, 'ports'>;
try {
  net = await makeNet(2);
  const [a, b] = net.nodes;
  ours = IMPLS.includes('ours') ? await oursSetup(net, root) : undefined;
  cliBase = await criuSettings();
  if (opts.has('cli-log')) {
    const lvl = Number(opts.get('cli-log'));
    if (!(Number.isInteger(lvl) && lvl >= 0 && lvl <= 4)) throw new Error('--cli-log must be 0..4');
    cliBase = { ...cliBase, logLevel: lvl };
  }
  console.log(
    `bench/migrate: sizes ${SIZES.join(', ')} MiB, ${ROUNDS} round(s), ${MODES.join(' + ')}, ${IMPLS.join(' vs ')}; ` +
      `node A ${a.netns} (${a.addr}) -> node B ${b.netns} (${b.addr}); ${os.cpus().length} CPUs, Linux ${os.release()}`,
  );
  console.log(
    `  CRIU ${cliBase.criu}${cliBase.env.CRIU_FAULT ? ` (CRIU_FAULT=${cliBase.env.CRIU_FAULT})` : ''}, flags ${cliBase.flags.join(' ') || '(none)'}${cliBase.logLevel === null ? '' : `, -v${cliBase.logLevel}`}, scratch ${root}`,
  );
  if (opts.get('warmup') !== 'false')
    for (const [impl, mode] of PAIRS) {
      await runOne(impl, mode, 16, a, b, cliBase).catch((e: unknown) => {
        process.stderr.write(
          `  warm-up ${LABEL[`${impl}_${mode}`]} failed: ${e instanceof Error ? e.message : String(e)}\n`,
        );
      });
    }
  for (const mib of SIZES) {
    for (let r = 0; r < ROUNDS; r++) {
      const pairs = [...PAIRS];
      if (r % 2) pairs.reverse(); // alternate who goes first
      for (const [impl, mode] of pairs) {
        if (stopping) await new Promise(() => {}); // a signal's clean-up is running and will exit
        let s: Sample;
        try {
          s = await runOne(impl, mode, mib, a, b, cliBase);
        } catch (e) {
          // One failed migration must not hide the others' figures: count it, say why, go on.
          const msg = e instanceof Error ? e.message : String(e);
          failures.push({ impl, mode, mib, round: r + 1, error: msg.slice(0, 400) });
          process.stderr.write(`  ${mib} MiB round ${r + 1}: ${LABEL[`${impl}_${mode}`]} FAILED: ${msg}\n`);
          continue;
        }
        const k = key(impl, mode, mib);
        if (!samples.has(k)) samples.set(k, []);
        samples.get(k)!.push(s);
        process.stderr.write(
          `  ${mib} MiB round ${r + 1}: ${LABEL[`${impl}_${mode}`].padEnd(22)} total ${(s.totalMs / 1000).toFixed(2)} s, ` +
            `downtime ${(s.downtimeMs / 1000).toFixed(2)} s, gap ${s.gapMs === null ? '-' : (s.gapMs / 1000).toFixed(2)} s\n`,
        );
      }
    }
  }
} finally {
  await cleanup();
}

// ---- report ----
const s2 = (ms: number | null | undefined) =>
  ms === null || ms === undefined || !Number.isFinite(ms) ? '-' : (ms / 1000).toFixed(2);
const med = (ss: Sample[], f: (s: Sample) => number | null) => {
  const xs = ss.map(f).filter((v): v is number => v !== null);
  return xs.length ? median(xs) : null;
};
interface Summary {
  total_s: number;
  downtime_s: number;
  gap_s: number | null;
  frozen_s: number | null;
  restore_s: number | null;
  phases_s: Record<string, number>;
  runs: number;
}
const results: Record<string, Summary> = {};
for (const [k, ss] of samples) {
  const phases: Record<string, number> = {};
  for (const p of Object.keys(ss[0].phases)) phases[p] = round(median(ss.map((s) => s.phases[p] ?? 0)) / 1000, 3);
  const r3 = (v: number | null) => (v === null ? null : round(v / 1000, 3));
  results[k] = {
    total_s: r3(med(ss, (s) => s.totalMs))!,
    downtime_s: r3(med(ss, (s) => s.downtimeMs))!,
    gap_s: r3(med(ss, (s) => s.gapMs)),
    frozen_s: r3(med(ss, (s) => s.frozenMs)),
    restore_s: r3(med(ss, (s) => s.restoreMs)),
    phases_s: phases,
    runs: ss.length,
  };
}

const ratios: Record<string, number> = {};
const ratio = (mode: Mode, mib: number, f: keyof Summary, base: Impl = 'cli') => {
  const o = results[key('ours', mode, mib)]?.[f],
    c = results[key(base, mode, mib)]?.[f];
  return typeof o === 'number' && typeof c === 'number' && c > 0 ? o / c : NaN;
};
const big = Math.max(...SIZES);
for (const mode of MODES) {
  const v = ratio(mode, big, 'total_s');
  if (Number.isFinite(v)) ratios[`${mode}_vs_criu_cli`] = round(v, 3);
}
const tlsBig = ratio('postcopy', big, 'total_s', 'cli_tls');
if (Number.isFinite(tlsBig)) ratios.postcopy_vs_criu_cli_tls = round(tlsBig, 3);
for (const mode of MODES)
  for (const mib of SIZES) {
    const t = ratio(mode, mib, 'total_s'),
      d = ratio(mode, mib, 'gap_s');
    if (Number.isFinite(t)) ratios[`${mode}_total_${mib}`] = round(t, 3);
    if (Number.isFinite(d)) ratios[`${mode}_gap_${mib}`] = round(d, 3);
  }
for (const mib of SIZES) {
  const t = ratio('postcopy', mib, 'total_s', 'cli_tls'),
    d = ratio('postcopy', mib, 'gap_s', 'cli_tls');
  if (Number.isFinite(t)) ratios[`postcopy_tls_total_${mib}`] = round(t, 3);
  if (Number.isFinite(d)) ratios[`postcopy_tls_gap_${mib}`] = round(d, 3);
}

for (const mib of SIZES) {
  const rows: string[][] = [];
  for (const [impl, mode] of PAIRS) {
    const s = results[key(impl, mode, mib)];
    if (!s) continue;
    rows.push([
      LABEL[`${impl}_${mode}`],
      s2(s.total_s * 1000),
      s2(s.downtime_s * 1000),
      s2(s.gap_s === null ? null : s.gap_s * 1000),
      s2(s.frozen_s === null ? null : s.frozen_s * 1000),
      s2(s.restore_s === null ? null : s.restore_s * 1000),
      Object.entries(s.phases_s)
        .map(([p, v]) => `${p} ${v.toFixed(2)}`)
        .join(', '),
    ]);
  }
  for (const mode of MODES) {
    const t = ratio(mode, mib, 'total_s'),
      d = ratio(mode, mib, 'downtime_s'),
      g = ratio(mode, mib, 'gap_s');
    if (Number.isFinite(t)) rows.push([`ours/CLI ${mode}`, fmtRatio(t), fmtRatio(d), fmtRatio(g), '', '', '']);
  }
  const tt = ratio('postcopy', mib, 'total_s', 'cli_tls'),
    td = ratio('postcopy', mib, 'downtime_s', 'cli_tls'),
    tg = ratio('postcopy', mib, 'gap_s', 'cli_tls');
  if (Number.isFinite(tt)) rows.push(['ours/CLI TLS postcopy', fmtRatio(tt), fmtRatio(td), fmtRatio(tg), '', '', '']);
  console.log('');
  console.log(
    table(
      [`${mib} MiB (median of ${ROUNDS}, seconds)`, 'total', 'downtime', 'gap', 'frozen', 'restore', 'phases'],
      rows,
    ),
  );
}
console.log(
  '  total: migration start -> the process runs on B with all memory there (post-copy: the last page moved).',
);
console.log(
  "  downtime: start -> the process runs again on B, from outside. gap: the workload's largest heartbeat gap",
);
console.log(
  "  (CLOCK_REALTIME). frozen / restore: CRIU's stats-dump frozen_time (pre-copy only) and stats-restore restore_time.",
);

const postcopyDowntime: Record<string, number> = {};
for (const mib of SIZES) {
  const s = results[key('ours', 'postcopy', mib)];
  if (s) postcopyDowntime[String(mib)] = s.gap_s ?? s.downtime_s;
}
const say: string[] = [];
for (const mode of MODES) {
  const v = ratios[`${mode}_vs_criu_cli`];
  if (v !== undefined) say.push(`${mode} total ours/CLI at ${big} MiB ${fmtRatio(v)} (target <= 1.10x)`);
}
if (ratios.postcopy_vs_criu_cli_tls !== undefined)
  say.push(`postcopy total ours/CLI TLS at ${big} MiB ${fmtRatio(ratios.postcopy_vs_criu_cli_tls)} (target <= 1.10x)`);
if (Object.keys(postcopyDowntime).length)
  say.push(
    `post-copy downtime (ours, workload gap) ${Object.entries(postcopyDowntime)
      .map(([k, v]) => `${k} MiB ${v.toFixed(2)} s`)
      .join(', ')} (target: flat in size)`,
  );
console.log('');
for (const l of say) console.log(`  ${l}`);
if (failures.length)
  console.log(
    `  ${failures.length} migration(s) FAILED: ${failures.map((f) => `${f.impl} ${f.mode} ${f.mib} MiB round ${f.round}`).join('; ')}`,
  );
console.log(`\n${((performance.now() - t0) / 1000).toFixed(1)} s`);
console.log(
  JSON.stringify({
    bench: 'migrate',
    ratios,
    postcopy_downtime_s: postcopyDowntime,
    results,
    failures,
    setup: {
      sizes_mib: SIZES,
      rounds: ROUNDS,
      modes: MODES,
      impls: IMPLS,
      cpus: os.cpus().length,
      kernel: os.release(),
      criu_flags: cliBase!.flags,
    },
  }),
);
