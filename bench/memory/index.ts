/**
 * bench/memory: far memory over TCP between network namespaces, in two parts (--parts far,swap).
 *
 * far:
 * Three namespaces on one bridge: two memory nodes (node0, node1) and a client (node2). The client runs
 * the native workload (lib/memory/workload.ts: a seeded fill of incompressible data, random 8-byte
 * updates, a sequential scan, and a second scan over pages now all clean) on an all-local region, then on far-memory regions holding 100%, 50% and
 * 25% of it locally (replicated on both nodes), and once more at 50% with node1 killed during the
 * updates. Every run's final checksum must equal the all-local one.
 *
 * Floors measured in the same run, between the same namespaces: one TCP round trip with a 4 KiB reply
 * (tcp_floor rtt) plus one 4 KiB UFFDIO_COPY (uffd_floor ioctl) is the fault floor; a plain TCP stream
 * (tcp_floor stream) is the scan floor.
 *
 * swap (swap.ts): one unmodified C program (swap-workload.c: 2 GiB of incompressible data, 1M random
 * 8-byte updates, a sequential scan, a checksum) with no limit, then at 50% and 25% local under a cgroup
 * memory cap (v2 if its memory controller is there, else v1) with swap on a disk file, the same with swap
 * on zram (lz4), and under `sosctl run --local-memory` with the two memory nodes over TCP; checksums
 * compared (a mismatch exits 1). Needs root, no swap on, and zram.
 *
 * Prints tables and, as the very last line, one JSON object:
 * {"bench":"memory","ratios":{"fault_p50_vs_floor":…,"scan_vs_tcp":…,"rescan_vs_tcp":…,
 *  "speedup_vs_disk_swap_25":…,"slowdown_vs_zram_25":…,"speedup_vs_disk_swap_50":…,"slowdown_vs_zram_50":…},
 *  "slowdown":{"100":…,"50":…,"25":…},…,"swap":{"cgroup":"v1","zram_algorithm":"lz4","checksums_ok":…,"runs":[…]}}
 * (the far part's fields only when it runs).
 *
 *   npm run bench -- memory [--parts far,swap] [--size 2G] [--updates 4M] [--locals 100,50,25] [--replicas 2]
 *     [--kill true] [--swap-size 2G] [--swap-updates 1M] [--swap-locals 50,25] [--swap-replicas 2]
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { makeNet, type TestNet, type TestNode } from '../../testkit/netns.js';
import { LineProcess } from '../../testkit/line-process.js';
import { fmtNs, fmtRatio, parseOptions, parseSize, root, round, runJson, table } from '../run.js';
import type { ClientConfig, FarRun, PhaseTimes } from './client.js';
import { stopSwap, swapPart, swapPreflight, type SwapOptions } from './swap.js';

const opts = parseOptions(process.argv.slice(2), {
  size: 'far-memory region size (default 2G)',
  updates: 'random 8-byte updates per run (default 4M)',
  locals: 'local shares in % (default 100,50,25)',
  replicas: 'memory nodes holding each page (default 2)',
  kill: 'also run at 50% with a memory node killed during the updates (default true)',
  threads: 'workload threads (default 1)',
  parts: 'what to run: far, swap or both (default far,swap)',
  'swap-size': 'swap part: the workload size (default 2G)',
  'swap-updates': 'swap part: random 8-byte updates (default 1M)',
  'swap-locals': 'swap part: local shares in % (default 50,25)',
  'swap-replicas': 'swap part: sosctl run --replicas, a row set each; the first makes the ratios (default 2)',
});
const PARTS = (opts.get('parts') ?? 'far,swap').split(',');
for (const p of PARTS) if (p !== 'far' && p !== 'swap') throw new Error(`bad part ${p} (far, swap)`);
const SWAP: SwapOptions = {
  size: parseSize(opts.get('swap-size') ?? '2G'),
  updates: parseSize(opts.get('swap-updates') ?? '1M'),
  locals: (opts.get('swap-locals') ?? '50,25').split(',').map(Number),
  replicas: (opts.get('swap-replicas') ?? '2').split(',').map(Number),
};
for (const l of SWAP.locals) if (!(l > 0 && l < 100)) throw new Error(`bad swap local share ${l}`);
for (const r of SWAP.replicas) if (r !== 1 && r !== 2) throw new Error(`bad swap replicas ${r} (1 or 2)`);
if (SWAP.size % 4096) throw new Error('--swap-size must be a multiple of 4 KiB');
const SIZE = parseSize(opts.get('size') ?? '2G');
const UPDATES = parseSize(opts.get('updates') ?? '4M');
const LOCALS = (opts.get('locals') ?? '100,50,25').split(',').map(Number);
const REPLICAS = Number(opts.get('replicas') ?? 2);
const KILL = opts.get('kill') !== 'false' && REPLICAS >= 2;
const THREADS = Number(opts.get('threads') ?? 1);
for (const l of LOCALS) if (!(l > 0 && l <= 100)) throw new Error(`bad local share ${l}`);

const dist = path.join(root, 'dist');
const TCP_FLOOR = path.join(root, 'build/Release/tcp_floor');
const UFFD_FLOOR = path.join(root, 'build/Release/uffd_floor');
const NODE_MAIN = path.join(dist, 'lib/memory/node-main.js');
const CLIENT = path.join(dist, 'bench/memory/client.js');

const inNs = (n: TestNode, file: string, args: string[]) =>
  ['nsenter', [`--net=/run/netns/${n.netns}`, file, ...args]] as const;

let net: TestNet | undefined;
const procs: LineProcess[] = [];
const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'sos-bench-memory-'));
async function farCleanup(): Promise<void> {
  for (const p of procs.splice(0)) p.kill();
  await net?.close().catch(() => undefined);
  fs.rmSync(scratch, { recursive: true, force: true });
}
async function cleanup(): Promise<void> {
  await farCleanup();
  await stopSwap();
}
for (const sig of ['SIGINT', 'SIGTERM'] as const)
  process.on(sig, () => void cleanup().finally(() => process.exit(130)));

function spawnIn(n: TestNode, file: string, args: string[], name: string, waitMs = 600_000): LineProcess {
  const [cmd, a] = inNs(n, file, args);
  const p = new LineProcess(cmd, [...a], { name, waitMs });
  procs.push(p);
  return p;
}

interface Floors {
  rttP50Ns: number;
  rttP99Ns: number;
  copyP50Ns: number;
  streamBytesPerS: number;
}

async function floors(server: TestNode, client: TestNode): Promise<Floors> {
  const port = '7791';
  const srv = spawnIn(server, TCP_FLOOR, ['serve', port], 'tcp_floor serve');
  await srv.line();
  const rtt = await runJson<{ p50_ns: number; p99_ns: number }>('nsenter', [
    `--net=/run/netns/${client.netns}`,
    TCP_FLOOR,
    'rtt',
    server.addr,
    port,
    '20000',
    '4096',
  ]);
  const stream = await runJson<{ bytes_per_s: number }>('nsenter', [
    `--net=/run/netns/${client.netns}`,
    TCP_FLOOR,
    'stream',
    server.addr,
    port,
    String(Math.max(SIZE, 2 ** 30)),
  ]);
  srv.kill();
  // One 4 KiB UFFDIO_COPY per call, nobody waiting: the ioctl's own cost.
  const copy = await runJson<{ p50_ns: number }>(UFFD_FLOOR, ['64M', '1', '1', 'ioctl']);
  return { rttP50Ns: rtt.p50_ns, rttP99Ns: rtt.p99_ns, copyP50Ns: copy.p50_ns, streamBytesPerS: stream.bytes_per_s };
}

async function main(): Promise<void> {
  // Refuse early (swap on, no zram…), not after the far part's hour.
  if (PARTS.includes('swap')) swapPreflight(SWAP);
  let out: { bench: string; ratios: Record<string, number>; [k: string]: unknown } = { bench: 'memory', ratios: {} };
  if (PARTS.includes('far')) {
    try {
      out = await far();
    } finally {
      await farCleanup(); // its memory nodes' pages freed before the swap part
    }
  }
  if (PARTS.includes('swap')) {
    if (PARTS.includes('far')) console.log('');
    const s = await swapPart(SWAP);
    out = { ...out, ratios: { ...out.ratios, ...s.ratios }, swap: s.swap };
    if (!s.swap.checksums_ok) process.exitCode = 1;
  }
  console.log(JSON.stringify(out));
}

async function far(): Promise<ReturnType<typeof report>> {
  net = await makeNet(3);
  const [n0, n1, client] = net.nodes;
  console.log(
    `bench/memory: ${SIZE / 2 ** 30} GiB region, ${UPDATES} updates, local ${LOCALS.join('/')}%, replicas ${REPLICAS}`,
  );
  const fl = await floors(n0, client);

  const secretFile = path.join(scratch, 'secret');
  fs.writeFileSync(secretFile, crypto.randomBytes(32), { mode: 0o600 });
  const capacity = String(SIZE * 2 + (256 << 20));
  const nodes = [n0, n1].slice(0, Math.max(REPLICAS, 1));
  const servers = nodes.map((n, i) =>
    spawnIn(
      n,
      process.execPath,
      [NODE_MAIN, '--host', n.addr, '--port', '7800', '--capacity', capacity, '--app', `bench=${secretFile}`],
      `memory node ${i}`,
      60_000,
    ),
  );
  const addrs: { host: string; port: number }[] = [];
  for (const s of servers) {
    const l = JSON.parse(await s.line()) as { listening?: { host: string; port: number } };
    if (!l.listening) throw new Error(`memory node: unexpected first line ${JSON.stringify(l)}`);
    addrs.push(l.listening);
  }

  const config: ClientConfig = {
    size: SIZE,
    updates: UPDATES,
    locals: LOCALS,
    nodes: addrs,
    application: 'bench',
    secretFile,
    replicas: REPLICAS,
    transport: 'tcp',
    killAt: KILL ? 50 : null,
    threads: THREADS,
    seed: 42,
  };
  const c = spawnIn(client, process.execPath, [CLIENT, JSON.stringify(config)], 'bench client', 3_600_000);
  let results: { local: PhaseTimes; far: FarRun[] } | undefined;
  for (;;) {
    const m = JSON.parse(await c.line()) as {
      phase?: string;
      localPct?: number;
      error?: string;
      results?: typeof results;
    };
    if (m.error) throw new Error(`bench client: ${m.error}`);
    if (m.results) {
      results = m.results;
      break;
    }
    if (m.phase === 'kill-now') {
      servers[1].kill();
      console.log('  killed memory node 1 during the updates');
    } else if (m.phase) console.log(`  ${m.phase}${m.localPct !== undefined ? ` ${m.localPct}%` : ''}`);
  }
  return report(fl, results);
}

function report(fl: Floors, r: { local: PhaseTimes; far: FarRun[] }) {
  const total = (p: PhaseTimes) => p.updateNs + p.scanNs;
  const rows = [
    [
      'all local',
      fmtNs(r.local.fillNs),
      fmtNs(r.local.updateNs),
      fmtNs(r.local.scanNs),
      fmtNs(r.local.rescanNs),
      '1.00x',
      '-',
      '-',
      'yes',
    ],
    ...r.far.map((f) => [
      `${f.localPct}% local${f.killed ? ' + node killed' : ''}`,
      fmtNs(f.fillNs),
      fmtNs(f.updateNs),
      fmtNs(f.scanNs),
      fmtNs(f.rescanNs),
      fmtRatio(total(f) / total(r.local)),
      fmtNs(f.faultP50Ns),
      fmtNs(f.faultP99Ns),
      f.checksumOk ? 'yes' : 'NO',
    ]),
  ];
  console.log(
    table(['run', 'fill', 'updates', 'scan', 'rescan', 'slowdown', 'fault p50', 'fault p99', 'bytes right'], rows),
  );
  console.log('\nthe scan, counted (pages; a readahead is one window fetched off the fault path):');
  console.log(
    table(
      ['run', 'faults', 'readaheads', 'frame waits', 'evicted', 'clean drops', 'written back', 'staged hits'],
      r.far.map((f) => [
        `${f.localPct}%${f.killed ? ' killed' : ''}`,
        ...[
          f.scan.faults,
          f.scan.readaheads,
          f.scan.frameWaits,
          f.scan.evictions,
          f.scan.cleanDrops,
          f.scan.writeBacks,
          f.scan.stagedHits,
        ].map(String),
      ]),
    ),
  );
  const floor = fl.rttP50Ns + fl.copyP50Ns;
  console.log(
    `\nfloor: TCP round trip 4 KiB p50 ${fmtNs(fl.rttP50Ns)} (p99 ${fmtNs(fl.rttP99Ns)}) + UFFDIO_COPY ${fmtNs(fl.copyP50Ns)} = ${fmtNs(floor)}; raw TCP stream ${(fl.streamBytesPerS / 1e9).toFixed(2)} GB/s`,
  );
  const quarter = r.far.find((f) => f.localPct === Math.min(...LOCALS) && !f.killed) ?? r.far[0];
  const scanRate = SIZE / (quarter.scanNs / 1e9);
  const rescanRate = SIZE / (quarter.rescanNs / 1e9);
  const slowdown: Record<string, number> = {};
  for (const f of r.far) if (!f.killed) slowdown[String(f.localPct)] = round(total(f) / total(r.local));
  const killed = r.far.find((f) => f.killed);
  const out = {
    bench: 'memory',
    ratios: {
      fault_p50_vs_floor: round(quarter.faultP50Ns / floor),
      scan_vs_tcp: round(scanRate / fl.streamBytesPerS),
      rescan_vs_tcp: round(rescanRate / fl.streamBytesPerS),
    },
    slowdown,
    floor: {
      rtt_p50_ns: fl.rttP50Ns,
      rtt_p99_ns: fl.rttP99Ns,
      copy_p50_ns: fl.copyP50Ns,
      tcp_bytes_per_s: round(fl.streamBytesPerS),
    },
    fault_ns: { p50: quarter.faultP50Ns, p99: quarter.faultP99Ns, at_local_pct: quarter.localPct },
    scan_bytes_per_s: round(scanRate),
    rescan_bytes_per_s: round(rescanRate),
    all_correct: r.far.every((f) => f.checksumOk),
    node_failure: killed ? { correct: killed.checksumOk, slowdown: round(total(killed) / total(r.local)) } : null,
    runs: r.far,
  };
  console.log(
    `\nfault p50 / floor ${fmtRatio(out.ratios.fault_p50_vs_floor)} (target ≤ 1.3x); scan / raw TCP ${fmtRatio(out.ratios.scan_vs_tcp)} (target ≥ 0.7x); clean rescan / raw TCP ${fmtRatio(out.ratios.rescan_vs_tcp)}`,
  );
  return out;
}

main()
  .catch((e: unknown) => {
    console.error(e);
    process.exitCode = 1;
  })
  .finally(() => void cleanup());
