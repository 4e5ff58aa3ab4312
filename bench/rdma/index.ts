/**
 * bench/rdma: RDMA READ/WRITE latency and READ bandwidth of our binding
 * against perftest, on soft-RoCE (rxe0) in the project's qemu VM.
 *
 * Boots the VM once (scripts/vm/run.sh bench/rdma/in-vm.sh), where
 * dist/bench/rdma/vm.js measures, in --rounds interleaved rounds:
 *   ours      an RC queue-pair pair of one node process looped back through
 *             rxe0: one signaled READ/WRITE at a time, polling the CQ in a
 *             tight loop (8 B, 4 KiB); WRITE also as ib_write_lat measures it
 *             (ping-pong, polling the last byte in memory, half the round
 *             trip); 64 KiB READs with --depth in flight. Each through the
 *             binding's fast path (qp.prepareSend + cq.pollInto: the ratios)
 *             and through the plain API (postSend/poll with objects)
 *   perftest  ib_read_lat / ib_write_lat (-s 8, -s 4096) and ib_read_bw
 *             (-s 65536): server in the background, client to 127.0.0.1,
 *             -d rxe0 -x 1, the same iteration counts
 * and then diagnostics of where our time goes. The VM writes
 * .cache/vm/bench-rdma.json; this host side prints the tables, the ratios
 * and, as the very last line, one JSON object:
 *   {"bench":"rdma","ratios":{"read_lat_vs_perftest":…,"write_lat_vs_perftest":…,"read_bw_vs_perftest":…,…},"results":{…}}
 * Latency ratios are ours p50 / perftest t_typical (4 KiB headline, 8 B too);
 * the bandwidth ratio is ours / perftest's BW average. Figures per round are
 * combined as medians over rounds.
 *
 *   npm run bench -- rdma [--rounds 3] [--iters 3000] [--bw-iters 400] [--depth 64] [--diag false]
 *   npm run bench -- rdma --from .cache/vm/bench-rdma.json      (report an earlier run again)
 */
import { spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fmtRatio, median, parseOptions, root, round, table } from '../run.js';
import { calibrate, type Calibration } from './calib.js';
import type { BwResult, BwRound, LatRound, LatStats, Round } from './vm.js';

const opts = parseOptions(process.argv.slice(2), {
  rounds: 'interleaved rounds of ours and perftest (default 3)',
  iters: 'latency iterations per run, ours and perftest alike (default 3000)',
  'bw-iters': '64 KiB READs per bandwidth run (default 400)',
  depth: 'READs our bandwidth run keeps in flight (default 64)',
  diag: 'diagnostics of our per-op costs (default true)',
  from: 'report an earlier result file instead of booting the VM',
});
const t0 = Date.now();
const RESULT = path.join(root, '.cache/vm/bench-rdma.json');
const CONSOLE = path.join(root, '.cache/vm/bench-rdma.console.log');
const FLOOR_SRC = path.join(root, 'bench/rdma/floor.c');
const FLOOR = path.join(root, '.cache/vm/bench-rdma-floor');

/** Build floor.c when stale (the VM runs the host's binaries: it boots on the host's root). Null when it cannot be built. */
function buildFloor(): string | null {
  if (fs.existsSync(FLOOR) && fs.statSync(FLOOR).mtimeMs >= fs.statSync(FLOOR_SRC).mtimeMs) return FLOOR;
  fs.mkdirSync(path.dirname(FLOOR), { recursive: true });
  const cc = spawnSync('cc', ['-O2', '-Wall', '-o', FLOOR, FLOOR_SRC, '-libverbs'], { encoding: 'utf8' });
  if (cc.status === 0) return FLOOR;
  console.error(
    `bench/rdma: warning: cannot build the C floor (needs cc and libibverbs-dev), skipping it: ${(cc.stderr || cc.error?.message || '').trim().split('\n')[0]}`,
  );
  return null;
}

interface VmResult {
  nonce: string | null;
  setup: Record<string, unknown> & {
    rounds: number;
    iters: number;
    bw_iters: number;
    depth: number;
    out_reads: number;
    clocksource: string;
  };
  rounds: Round[];
  diag?: Record<string, unknown> & { calibration?: Calibration };
  raw: Record<string, string>;
  vm_seconds: number;
  host?: {
    calibration: Calibration;
    loadavg_before: number[];
    loadavg_after: number[];
    wall_seconds: number;
    vm_exit: number | null;
  };
}

function fail(msg: string, detail?: string): never {
  console.log(`bench/rdma: ${msg}${detail ? `\n${detail}` : ''}`);
  console.log(JSON.stringify({ bench: 'rdma', error: msg }));
  process.exit(1);
}

async function runVm(): Promise<VmResult> {
  const nonce = crypto.randomBytes(6).toString('hex');
  const args = ['--out', path.relative(root, RESULT), '--nonce', nonce];
  for (const k of ['rounds', 'iters', 'bw-iters', 'depth', 'diag']) {
    const v = opts.get(k);
    if (v === undefined) continue;
    if (!/^[\w.-]+$/.test(v)) fail(`--${k} ${v}: not a plain value`); // the VM gets its arguments through the kernel command line
    args.push(`--${k}`, v);
  }
  const floor = opts.get('diag') === 'false' ? null : buildFloor();
  if (floor) args.push('--floor', path.relative(root, floor));
  const hostCalibration = calibrate();
  const loadBefore = os.loadavg();
  if (loadBefore[0] > 0.7 * os.cpus().length)
    console.error(
      `bench/rdma: warning: host load average ${loadBefore[0].toFixed(2)} on ${os.cpus().length} CPUs; the VM competes for them (ratios of one run stay comparable, absolute figures do not)`,
    );
  fs.rmSync(RESULT, { force: true });
  console.error(`bench/rdma: booting the soft-RoCE VM (console: ${path.relative(root, CONSOLE)})`);
  const child = spawn('bash', ['scripts/vm/run.sh', 'bench/rdma/in-vm.sh', ...args], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, SOS_VM_LOG: CONSOLE, SOS_VM_TIMEOUT: process.env.SOS_VM_TIMEOUT ?? '900' },
  });
  let tail = '';
  const relay = (d: Buffer) => {
    const text = d.toString();
    tail = (tail + text).slice(-6000);
    for (const line of text.split('\n'))
      if (/^\[(bench\/rdma|vm)|^bench\/rdma:|^soft-RoCE VM:/.test(line.trim())) console.error(line.trim());
  };
  child.stdout.on('data', relay);
  child.stderr.on('data', relay);
  const code = await new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)));
  if (code === 97) fail(`the soft-RoCE VM cannot start here: ${tail.trim().split('\n').pop()}`);
  if (code !== 0)
    fail(
      `the VM run failed (exit ${code}); console log: ${path.relative(root, CONSOLE)}`,
      tail.replace(/\r/g, '').trim().split('\n').slice(-25).join('\n'),
    );
  if (!fs.existsSync(RESULT)) fail(`the VM wrote no ${path.relative(root, RESULT)}`);
  const r = JSON.parse(fs.readFileSync(RESULT, 'utf8')) as VmResult;
  if (r.nonce !== nonce) fail(`${path.relative(root, RESULT)} is not from this run`);
  r.host = {
    calibration: hostCalibration,
    loadavg_before: loadBefore,
    loadavg_after: os.loadavg(),
    wall_seconds: (Date.now() - t0) / 1000,
    vm_exit: code,
  };
  fs.writeFileSync(RESULT, JSON.stringify(r));
  return r;
}

const from = opts.get('from');
const r = from ? (JSON.parse(fs.readFileSync(path.resolve(from), 'utf8')) as VmResult) : await runVm();

// ---------------------------------------------------------------- aggregate over rounds

const us = (v: number) => (Number.isFinite(v) ? (v >= 100 ? v.toFixed(0) : v.toFixed(1)) : '-');
const spread = (xs: number[]) => (xs.length > 1 ? `${Math.min(...xs).toFixed(2)}-${Math.max(...xs).toFixed(2)}` : '-');

interface LatAgg {
  ours_p50_us: number;
  ours_p99_us: number;
  perftest_typical_us: number;
  perftest_p99_us: number;
  perftest_avg_us: number;
  ratio: number;
  ratio_rounds: number[];
}
function latAgg(key: string, pick: (x: LatRound) => LatStats | undefined): LatAgg | undefined {
  const rs = r.rounds
    .map((x) => x[key] as LatRound | undefined)
    .filter((x): x is LatRound => x !== undefined && pick(x) !== undefined);
  if (!rs.length) return undefined;
  const ours = rs.map((x) => pick(x)!);
  const pt = rs.map((x) => x.perftest);
  const a = {
    ours_p50_us: median(ours.map((o) => o.p50Us)),
    ours_p99_us: median(ours.map((o) => o.p99Us)),
    perftest_typical_us: median(pt.map((p) => p.typicalUs)),
    perftest_p99_us: median(pt.map((p) => p.p99Us ?? NaN)),
    perftest_avg_us: median(pt.map((p) => p.avgUs)),
    ratio_rounds: rs.map((x) => round(pick(x)!.p50Us / x.perftest.typicalUs, 3)),
  };
  return { ...a, ratio: a.ours_p50_us / a.perftest_typical_us };
}

interface BwAgg {
  ours_MiBs: number;
  perftest_MiBs: number;
  perftest_peak_MiBs: number;
  ratio: number;
  ratio_rounds: number[];
}
function bwAgg(key: string, pick: (x: BwRound) => BwResult | undefined = (x) => x.ours): BwAgg | undefined {
  const rs = r.rounds
    .map((x) => x[key] as BwRound | undefined)
    .filter((x): x is BwRound => x !== undefined && pick(x) !== undefined);
  if (!rs.length) return undefined;
  const a = {
    ours_MiBs: median(rs.map((x) => pick(x)!.MiBs)),
    perftest_MiBs: median(rs.map((x) => x.perftest.avgMiBs)),
    perftest_peak_MiBs: median(rs.map((x) => x.perftest.peakMiBs)),
    ratio_rounds: rs.map((x) => round(pick(x)!.MiBs / x.perftest.avgMiBs, 3)),
  };
  return { ...a, ratio: a.ours_MiBs / a.perftest_MiBs };
}

const lat = {
  read_lat_8: latAgg('read_lat_8', (x) => x.ours),
  read_lat_4096: latAgg('read_lat_4096', (x) => x.ours),
  write_lat_8: latAgg('write_lat_8', (x) => x.ours_pingpong),
  write_lat_4096: latAgg('write_lat_4096', (x) => x.ours_pingpong),
  write_lat_8_cq: latAgg('write_lat_8', (x) => x.ours),
  write_lat_4096_cq: latAgg('write_lat_4096', (x) => x.ours),
  read_lat_8_plain: latAgg('read_lat_8', (x) => x.ours_plain),
  read_lat_4096_plain: latAgg('read_lat_4096', (x) => x.ours_plain),
  write_lat_8_plain: latAgg('write_lat_8', (x) => x.ours_pingpong_plain),
  write_lat_4096_plain: latAgg('write_lat_4096', (x) => x.ours_pingpong_plain),
};
const bwr = bwAgg('read_bw_65536');
const bwPlain = bwAgg('read_bw_65536', (x) => x.ours_plain);

// ---------------------------------------------------------------- report

const s = r.setup;
console.log(
  `bench/rdma: soft-RoCE ${String(s.device)} in the qemu VM (TCG, ${String(s.cpus)} vCPUs, kernel ${String(s.kernel)}, clocksource ${s.clocksource}); ` +
    `${s.rounds} rounds, ours and perftest interleaved; ${s.iters} latency iterations per run (ours after ${String(s.warmup)} warm-up ops); ` +
    `${s.bw_iters} x 64 KiB READs per bandwidth run, ours ${s.depth} in flight (perftest: TX depth 128); outstanding READs per QP ${s.out_reads} both`,
);
console.log(
  `perftest ${String(s.perftest)
    .split('\n')[0]
    .replace(
      /^Version:\s*/,
      '',
    )} (server on CPU 0, client to 127.0.0.1 on CPU 1); node ${String(s.node)}; figures are medians over rounds`,
);
console.log('');
const latRows: [string, LatAgg | undefined][] = [
  ['READ 8 B', lat.read_lat_8],
  ['READ 4 KiB', lat.read_lat_4096],
  ['WRITE 8 B, ping-pong (as ib_write_lat)', lat.write_lat_8],
  ['WRITE 4 KiB, ping-pong (as ib_write_lat)', lat.write_lat_4096],
  ['WRITE 8 B, one signaled op + CQ', lat.write_lat_8_cq],
  ['WRITE 4 KiB, one signaled op + CQ', lat.write_lat_4096_cq],
  ['plain API: READ 8 B', lat.read_lat_8_plain],
  ['plain API: READ 4 KiB', lat.read_lat_4096_plain],
  ['plain API: WRITE 8 B, ping-pong', lat.write_lat_8_plain],
  ['plain API: WRITE 4 KiB, ping-pong', lat.write_lat_4096_plain],
];
console.log(
  table(
    ['latency (µs)', 'ours p50', 'ours p99', 'perftest typical', 'perftest p99', 'ours/perftest', 'per round'],
    latRows
      .filter(([, a]) => a)
      .map(([name, a]) => [
        name,
        us(a!.ours_p50_us),
        us(a!.ours_p99_us),
        us(a!.perftest_typical_us),
        us(a!.perftest_p99_us),
        fmtRatio(a!.ratio),
        spread(a!.ratio_rounds),
      ]),
  ),
);
console.log(
  '  Rows without "plain API" use the fast path (a prepared send posted with numbers, cq.pollInto); "plain API" rows post',
);
console.log('  work-request objects with qp.postSend() and take completion objects from cq.poll().');
console.log(
  '  READ: post -> completion polled, post-to-post per sample, like ib_read_lat. WRITE ping-pong: A writes B, the last byte',
);
console.log(
  '  is polled in memory, B writes back; a sample is half the round trip, which is what ib_write_lat reports (its',
);
console.log(
  '  "one-way" figure). "one signaled op + CQ" is a whole WRITE (data + ACK + completion) against that half round trip.',
);
if (bwr) {
  console.log('');
  console.log(
    table(
      ['READ 64 KiB bandwidth (MiB/s)', 'ours', 'perftest average', 'perftest peak', 'ours/perftest', 'per round'],
      [
        [
          'READ 64 KiB',
          bwr.ours_MiBs.toFixed(1),
          bwr.perftest_MiBs.toFixed(1),
          bwr.perftest_peak_MiBs.toFixed(1),
          fmtRatio(bwr.ratio),
          spread(bwr.ratio_rounds),
        ],
        ...(bwPlain
          ? [
              [
                'plain API: READ 64 KiB',
                bwPlain.ours_MiBs.toFixed(1),
                bwPlain.perftest_MiBs.toFixed(1),
                bwPlain.perftest_peak_MiBs.toFixed(1),
                fmtRatio(bwPlain.ratio),
                spread(bwPlain.ratio_rounds),
              ],
            ]
          : []),
      ],
    ),
  );
}

const ratios: Record<string, number> = {};
const put = (k: string, v: number | undefined) => {
  if (v !== undefined && Number.isFinite(v)) ratios[k] = round(v, 3);
};
put('read_lat_vs_perftest', lat.read_lat_4096?.ratio);
put('write_lat_vs_perftest', lat.write_lat_4096?.ratio);
put('read_bw_vs_perftest', bwr?.ratio);
put('read_lat_8_vs_perftest', lat.read_lat_8?.ratio);
put('write_lat_8_vs_perftest', lat.write_lat_8?.ratio);
put('write_lat_cq_vs_perftest', lat.write_lat_4096_cq?.ratio);
put('write_lat_8_cq_vs_perftest', lat.write_lat_8_cq?.ratio);
put('plain_read_lat_vs_perftest', lat.read_lat_4096_plain?.ratio);
put('plain_write_lat_vs_perftest', lat.write_lat_4096_plain?.ratio);
put('plain_read_lat_8_vs_perftest', lat.read_lat_8_plain?.ratio);
put('plain_write_lat_8_vs_perftest', lat.write_lat_8_plain?.ratio);
put('plain_read_bw_vs_perftest', bwPlain?.ratio);
console.log('');
console.log(
  `ratios: READ latency (4 KiB) ${fmtRatio(ratios.read_lat_vs_perftest)} (target <= 1.20x), WRITE latency (4 KiB, ping-pong) ` +
    `${fmtRatio(ratios.write_lat_vs_perftest)} (target <= 1.20x), READ bandwidth (64 KiB) ${fmtRatio(ratios.read_bw_vs_perftest)} (target >= 0.90x); ` +
    `8 B: READ ${fmtRatio(ratios.read_lat_8_vs_perftest)}, WRITE ${fmtRatio(ratios.write_lat_8_vs_perftest)}`,
);

// ---------------------------------------------------------------- diagnostics

const d = r.diag;
if (d) {
  const st = (k: string) => d[k] as LatStats | undefined;
  const bwd = (k: string) => d[k] as BwResult | undefined;
  const num = (k: string) => d[k] as number | undefined;
  const rows: string[][] = [];
  const vmC = d.calibration,
    hostC = r.host?.calibration;
  if (vmC) {
    const line = (label: string, k: keyof Calibration) =>
      rows.push([
        label,
        `${(vmC[k] / 1000).toFixed(2)} µs`,
        hostC ? `host ${(hostC[k] / 1000).toFixed(3)} µs = ${(vmC[k] / hostC[k]).toFixed(0)}x slower in the VM` : '',
      ]);
    line('clock read (performance.now; VM: hpet, a syscall)', 'clock_ns');
    line('N-API call returning an object (rdma.status())', 'napi_ns');
    line('JS: copy one work request + SGE (what postSend does per WR)', 'js_ns');
  }
  const ns = (k: string) => (num(k) !== undefined ? `${(num(k)! / 1000).toFixed(2)} µs` : '-');
  rows.push([
    'empty poll: cq.poll(1) typed API / raw binding / cq.pollInto()',
    `${ns('poll_empty_ns')} / ${ns('poll_empty_raw_ns')} / ${ns('poll_into_empty_ns')}`,
    '',
  ]);
  const p50 = (k: string) => (st(k) ? `${us(st(k)!.p50Us)} µs` : '-');
  rows.push([
    'READ 8 B p50: fast path / plain API / raw binding / pollSpin',
    `${p50('read_lat_8_fast')} / ${p50('read_lat_8_lib')} / ${p50('read_lat_8_raw')} / ${p50('read_lat_8_pollspin')}`,
    lat.read_lat_8 ? `perftest ${us(lat.read_lat_8.perftest_typical_us)} µs` : '',
  ]);
  rows.push([
    'READ 4 KiB p50: fast path / plain API / raw binding',
    `${p50('read_lat_4096_fast')} / ${p50('read_lat_4096_lib')} / ${p50('read_lat_4096_raw')}`,
    lat.read_lat_4096 ? `perftest ${us(lat.read_lat_4096.perftest_typical_us)} µs` : '',
  ]);
  for (const k of ['read', 'write']) {
    const w = st(`${k}_8_post_to_completion`),
      wf = st(`${k}_8_post_to_completion_fast`);
    rows.push([
      `${k.toUpperCase()} 8 B p50: inside postSend() / return -> completion polled`,
      `${p50(`${k}_8_in_postsend`)} / ${p50(`${k}_8_post_to_completion`)}`,
      w?.emptyPollsP50 !== undefined ? `empty polls before the completion: ${w.emptyPollsP50} (p50)` : '',
    ]);
    rows.push([
      `${k.toUpperCase()} 8 B p50, fast path: inside post() / return -> pollInto found it`,
      `${p50(`${k}_8_in_post_fast`)} / ${p50(`${k}_8_post_to_completion_fast`)}`,
      wf?.emptyPollsP50 !== undefined ? `empty polls before the completion: ${wf.emptyPollsP50} (p50)` : '',
    ]);
  }
  const cpuRow = (label: string, k: string) => {
    const cpu = d[k] as { user: number; system: number; wall: number } | undefined;
    if (cpu) rows.push([label, `${us(cpu.user)} / ${us(cpu.system)} µs (${us(cpu.wall)} µs)`, '']);
  };
  cpuRow('READ 8 B CPU per op, plain API: user / kernel (wall)', 'read_lat_8_cpu_us');
  cpuRow('READ 8 B CPU per op, fast path: user / kernel (wall)', 'read_lat_8_fast_cpu_us');
  if (num('postsend_per_wr_ns') !== undefined)
    rows.push([
      'argument handling per WR: postSend() typed / raw; prepared post()',
      `${ns('postsend_per_wr_ns')} / ${ns('postsend_per_wr_raw_ns')}; ${ns('prepared_post_per_wr_ns')}`,
      'no syscall: measured on refused batches',
    ]);
  if (num('poll_one_completion_ns') !== undefined)
    rows.push(['cq.poll(1) returning one completion', ns('poll_one_completion_ns'), '']);
  const floor = d.c_floor as Record<string, { p50_us: number; post_p50_us: number }> | undefined;
  if (floor) {
    const f = (k: string) => (floor[k] ? `${us(floor[k].p50_us)} µs` : '-');
    rows.push([
      'C floor (floor.c, same loop) p50: READ 8 B / READ 4 KiB / WRITE 8 B',
      `${f('read_8')} / ${f('read_4096')} / ${f('write_8')}`,
      lat.read_lat_8 && lat.read_lat_4096
        ? `perftest ${us(lat.read_lat_8.perftest_typical_us)} / ${us(lat.read_lat_4096.perftest_typical_us)} µs`
        : '',
    ]);
    const g = (k: string) => (floor[k] ? `${us(floor[k].p50_us)} (post ${us(floor[k].post_p50_us)})` : '-');
    rows.push([
      'C floor READ 8 B p50, reading 4096 pages per op (data)',
      `${g('read_8_pages_4096')} µs`,
      'untimed, between ops',
    ]);
    rows.push([
      'C floor READ 8 B p50, running 4096 / 16384 functions per op (code)',
      `${g('read_8_blocks_4096')} / ${g('read_8_blocks_16384')} µs`,
      'untimed, between ops',
    ]);
  }
  const mib = (k: string) => (bwd(k) ? `${bwd(k)!.MiBs.toFixed(1)}` : '-');
  rows.push([
    'READ 64 KiB MiB/s: 1 / 128 in flight; toRtr()/toRts() helpers',
    `${mib('read_bw_65536_depth1')} / ${mib('read_bw_65536_depth128')}; ${mib('read_bw_65536_helpers')}`,
    `helpers: max_rd_atomic 1, ${s.depth} posted`,
  ]);
  console.log('');
  console.log(table(['diagnostics (inside the VM unless said)', 'value', ''], rows));
}

const wall = r.host?.wall_seconds;
console.log('');
console.log(
  `${from ? `reported from ${from}; ` : ''}in the VM ${r.vm_seconds.toFixed(1)} s of measuring` +
    `${wall !== undefined ? `; ${wall.toFixed(1)} s with the boot` : ''}${r.host ? `; host load average ${r.host.loadavg_before[0].toFixed(2)} before, ${r.host.loadavg_after[0].toFixed(2)} after` : ''}` +
    `${from ? '' : `; this report ${((Date.now() - t0) / 1000).toFixed(1)} s`}`,
);

/** Numbers to 4 significant digits, recursively (compact JSON). */
function rounded(v: unknown): unknown {
  if (typeof v === 'number') return Number.isInteger(v) ? v : round(v);
  if (Array.isArray(v)) return v.map(rounded);
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, rounded(x)]));
  return v;
}
const results: Record<string, unknown> = {};
for (const [k, v] of Object.entries(lat)) if (v) results[k] = rounded(v);
if (bwr) results.read_bw_65536 = rounded(bwr);
if (d) results.diag = rounded(d);
results.setup = s;
if (r.host)
  results.host = rounded({
    loadavg_before: r.host.loadavg_before[0],
    loadavg_after: r.host.loadavg_after[0],
    calibration: r.host.calibration,
    wall_seconds: r.host.wall_seconds,
  });
results.vm_seconds = round(r.vm_seconds);
console.log(JSON.stringify({ bench: 'rdma', ratios, results }));
