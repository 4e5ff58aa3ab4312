/**
 * bench/rdma, the part that runs inside the soft-RoCE VM (bench/rdma/in-vm.sh
 * starts it; bench/rdma/index.ts on the host boots the VM and reports).
 *
 * Our binding, one process, an RC queue-pair pair looped back through rxe0,
 * each measured through the binding's fast path (a prepared send posted with
 * numbers only, completions by cq.pollInto into a reused Float64Array) and
 * through the plain API (postSend of work-request objects, cq.poll):
 *   lat_cq    one signaled READ/WRITE at a time, polling the CQ in a tight
 *             loop; a sample is post-to-post (as perftest's ib_read_lat times it)
 *   pingpong  WRITE latency the way ib_write_lat measures it: A writes B's
 *             buffer, the last byte is polled in memory, B writes A's; a
 *             sample is half of that round trip
 *   bw        64 KiB READs, --depth kept in flight, every one signaled
 * and perftest's ib_read_lat / ib_write_lat / ib_read_bw (server in the
 * background, client to 127.0.0.1, -d rxe0 -x 1), interleaved with ours in
 * --rounds rounds whose order alternates. Then a few diagnostics of where our
 * time goes. Everything lands in --out as one JSON object.
 */
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { Region, rdma } from '../../lib/index.js';
import { execOutput, exec, type ExecError } from '../../lib/exec.js';
import { parseOptions } from '../run.js';
import { calibrate, perCallNs } from './calib.js';
import { parseBw, parseLat, type PerftestBw, type PerftestLat } from './perftest.js';

const opts = parseOptions(process.argv.slice(2), {
  out: 'result file (JSON), written at the end',
  nonce: 'echoed into the result file',
  rounds: 'interleaved rounds (default 3)',
  iters: 'latency iterations per run, ours and perftest alike (default 3000)',
  'bw-iters': '64 KiB READs per bandwidth run (default 400)',
  depth: 'READs in flight for our bandwidth run (default 64)',
  diag: 'diagnostics after the rounds (default true)',
  device: 'RDMA device (default rxe0)',
  'gid-index': 'GID index (default 1, the IPv4-mapped RoCEv2 GID)',
  floor: 'the compiled bench/rdma/floor.c (diagnostics run it when given)',
});
const OUT = opts.get('out');
const ROUNDS = Number(opts.get('rounds') ?? 3);
const ITERS = Number(opts.get('iters') ?? 3000);
const BW_ITERS = Number(opts.get('bw-iters') ?? 400);
const DEPTH = Number(opts.get('depth') ?? 64);
const DIAG = opts.get('diag') !== 'false';
const DEV = opts.get('device') ?? 'rxe0';
const GID_INDEX = Number(opts.get('gid-index') ?? 1);
const WARMUP = 200;
const BW_SIZE = 65536;
const PORT = 18515;
if (!(ROUNDS >= 1 && ITERS >= 100 && BW_ITERS >= 16 && DEPTH >= 1 && DEPTH <= 256))
  throw new Error('bad --rounds/--iters/--bw-iters/--depth');

const t0 = Date.now();
const log = (s: string) => console.log(`[bench/rdma ${((Date.now() - t0) / 1000).toFixed(1).padStart(5)}s] ${s}`);

// ---------------------------------------------------------------- statistics

export interface LatStats {
  n: number;
  p50Us: number;
  p99Us: number;
  avgUs: number;
  minUs: number;
  maxUs: number;
  /** Empty cq.poll() calls per operation (median): 0 means the completion was there on the first poll. */
  emptyPollsP50?: number;
}

function quantile(sorted: Float64Array, q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * (sorted.length - 1)))];
}

function latStats(samplesMs: Float64Array, polls?: Uint32Array): LatStats {
  const s = Float64Array.from(samplesMs, (x) => x * 1000).sort();
  let sum = 0;
  for (const x of s) sum += x;
  const out: LatStats = {
    n: s.length,
    p50Us: quantile(s, 0.5),
    p99Us: quantile(s, 0.99),
    avgUs: sum / s.length,
    minUs: s[0],
    maxUs: s[s.length - 1],
  };
  if (polls) out.emptyPollsP50 = quantile(Float64Array.from(polls).sort(), 0.5);
  return out;
}

/** A spin that gives up (with the reason) instead of hanging the VM. */
class Spin {
  private n = 0;
  private readonly until = Date.now() + 30_000;
  constructor(private readonly what: string) {}
  tick(): void {
    if ((++this.n & 0xffff) === 0 && Date.now() > this.until) throw new Error(`${this.what}: no progress for 30 s`);
  }
}

// ---------------------------------------------------------------- our binding

/** Two RC QPs of one process connected to each other through the device, with memory for each side. */
class Pair {
  readonly ctx: rdma.Context;
  readonly pd: rdma.ProtectionDomain;
  readonly cqA: rdma.CompletionQueue;
  readonly cqB: rdma.CompletionQueue;
  readonly a: rdma.QueuePair;
  readonly b: rdma.QueuePair;
  readonly memA: Region;
  readonly memB: Region;
  readonly mrA: rdma.MemoryRegion;
  readonly mrB: rdma.MemoryRegion;
  readonly viewA: Uint8Array;
  readonly viewB: Uint8Array;

  /**
   * outReads: RDMA READs a QP may have outstanding (max_rd_atomic, and the
   * peer's max_dest_rd_atomic); 'helpers' connects with toRtr()/toRts()'s
   * defaults (1).
   */
  constructor(
    readonly outReads: number | 'helpers',
    bytes: number,
  ) {
    this.ctx = rdma.Context.open(DEV);
    this.pd = this.ctx.allocPd();
    this.cqA = this.ctx.createCq(1024);
    this.cqB = this.ctx.createCq(1024);
    this.a = this.pd.createQp(this.cqA, this.cqA, { maxSendWr: 512, maxRecvWr: 16 });
    this.b = this.pd.createQp(this.cqB, this.cqB, { maxSendWr: 512, maxRecvWr: 16 });
    const gid = this.ctx.queryGid(1, GID_INDEX);
    for (const [q, peer] of [
      [this.a, this.b],
      [this.b, this.a],
    ] as const) {
      q.toInit();
      if (outReads === 'helpers') {
        q.toRtr({ qpNum: peer.qpNum, gid }, { sgidIndex: GID_INDEX });
        q.toRts();
      } else {
        // outReads outstanding READs instead of the helpers' default 1 (perftest uses the device maximum).
        q.toRtr(
          { qpNum: peer.qpNum, gid },
          { sgidIndex: GID_INDEX, mtu: this.ctx.queryPort(1).activeMtu, maxDestRdAtomic: outReads },
        );
        q.toRts({ maxRdAtomic: outReads });
      }
    }
    this.memA = Region.anonymous(bytes);
    this.memB = Region.anonymous(bytes);
    this.mrA = this.pd.registerMemory(this.memA);
    this.mrB = this.pd.registerMemory(this.memB);
    this.viewA = this.memA.bytes();
    this.viewB = this.memB.bytes();
  }
  close(): void {
    this.ctx.close();
    this.memA.close();
    this.memB.close();
  }
}

type Op = 'RDMA_READ' | 'RDMA_WRITE';

function check(c: rdma.Completion, what: string): void {
  if (!c.ok) throw new Error(`${what}: completion ${c.status} (${c.opcode})`);
}

/** Completions as numbers (cq.pollInto), one reused array. */
const WCS = new Float64Array(64 * rdma.WC.SLOTS);
function checkSlots(n: number, what: string): void {
  for (let i = 0; i < n; i++) {
    const st = WCS[i * rdma.WC.SLOTS + rdma.WC.STATUS];
    if (st !== rdma.WC.SUCCESS) throw new Error(`${what}: completion ${rdma.wcStatusName(st)}`);
  }
}

/** latCq through the fast path: one prepared send posted as is, cq.pollInto(). */
function latCqFast(p: Pair, op: Op, size: number, iters: number): LatStats {
  const prep = p.a.prepareSend([
    { wrId: 1, opcode: op, sge: [{ mr: p.mrA, length: size }], remoteAddr: p.mrB.addr, rkey: p.mrB.rkey },
  ]);
  const stamps = new Float64Array(iters + 1);
  const polls = new Uint32Array(iters);
  const spin = new Spin(`${op} ${size} B (fast path)`);
  const cq = p.cqA;
  try {
    for (let i = -WARMUP; i < iters; i++) {
      if (i >= 0) stamps[i] = performance.now();
      prep.post();
      let empty = 0;
      while (cq.pollInto(WCS, 1) === 0) {
        empty++;
        spin.tick();
      }
      checkSlots(1, op);
      if (i >= 0) polls[i] = empty;
    }
    stamps[iters] = performance.now();
  } finally {
    prep.close();
  }
  return latStats(diffs(stamps), polls);
}

/** One signaled op at a time from A on B's memory; busy cq.poll(1). Samples are post-to-post. */
function latCq(p: Pair, op: Op, size: number, iters: number): LatStats {
  const wrs: rdma.SendWr[] = [
    { wrId: 1, opcode: op, sge: [{ mr: p.mrA, length: size }], remoteAddr: p.mrB.addr, rkey: p.mrB.rkey },
  ];
  const stamps = new Float64Array(iters + 1);
  const polls = new Uint32Array(iters);
  const spin = new Spin(`${op} ${size} B`);
  for (let i = -WARMUP; i < iters; i++) {
    if (i >= 0) stamps[i] = performance.now();
    p.a.postSend(wrs);
    let empty = 0;
    let got = p.cqA.poll(1);
    while (got.length === 0) {
      empty++;
      spin.tick();
      got = p.cqA.poll(1);
    }
    check(got[0], op);
    if (i >= 0) polls[i] = empty;
  }
  stamps[iters] = performance.now();
  return latStats(diffs(stamps), polls);
}

function diffs(stamps: Float64Array, scale = 1): Float64Array {
  const d = new Float64Array(stamps.length - 1);
  for (let i = 0; i < d.length; i++) d[i] = (stamps[i + 1] - stamps[i]) * scale;
  return d;
}

/**
 * WRITE latency as ib_write_lat measures it: A writes `size` bytes into B's
 * buffer, its last byte carrying a counter that is polled in memory; then B
 * writes back. Each side's completion is reaped every iteration (perftest
 * waits for it too). A sample is half the round trip, as perftest reports.
 */
function pingPong(p: Pair, size: number, iters: number): LatStats {
  const SEND = 0,
    RECV = 1 << 20; // offsets in each side's memory
  if (size > RECV) throw new Error('size too large');
  const last = size - 1;
  const wrA: rdma.SendWr[] = [
    {
      wrId: 2,
      opcode: 'RDMA_WRITE',
      sge: [{ mr: p.mrA, offset: SEND, length: size }],
      remoteAddr: p.mrB.addr + RECV,
      rkey: p.mrB.rkey,
    },
  ];
  const wrB: rdma.SendWr[] = [
    {
      wrId: 3,
      opcode: 'RDMA_WRITE',
      sge: [{ mr: p.mrB, offset: SEND, length: size }],
      remoteAddr: p.mrA.addr + RECV,
      rkey: p.mrA.rkey,
    },
  ];
  p.viewA.fill(0, RECV, RECV + size);
  p.viewB.fill(0, RECV, RECV + size);
  const stamps = new Float64Array(iters + 1);
  const spin = new Spin(`ping-pong ${size} B`);
  const reap = (cq: rdma.CompletionQueue) => {
    let got = cq.poll(1);
    while (got.length === 0) {
      spin.tick();
      got = cq.poll(1);
    }
    check(got[0], 'ping-pong WRITE');
  };
  for (let i = -WARMUP; i < iters; i++) {
    if (i >= 0) stamps[i] = performance.now();
    const mark = ((i + WARMUP) % 255) + 1; // never 0, never the previous value
    p.viewA[SEND + last] = mark;
    p.a.postSend(wrA);
    while (Atomics.load(p.viewB, RECV + last) !== mark) spin.tick();
    p.viewB[SEND + last] = mark;
    p.b.postSend(wrB);
    while (Atomics.load(p.viewA, RECV + last) !== mark) spin.tick();
    reap(p.cqA);
    reap(p.cqB);
  }
  stamps[iters] = performance.now();
  return latStats(diffs(stamps, 0.5));
}

/** pingPong through the fast path: prepared sends, completions by pollInto. */
function pingPongFast(p: Pair, size: number, iters: number): LatStats {
  const SEND = 0,
    RECV = 1 << 20;
  const last = size - 1;
  const wa = p.a.prepareSend([
    {
      wrId: 2,
      opcode: 'RDMA_WRITE',
      sge: [{ mr: p.mrA, offset: SEND, length: size }],
      remoteAddr: p.mrB.addr + RECV,
      rkey: p.mrB.rkey,
    },
  ]);
  const wb = p.b.prepareSend([
    {
      wrId: 3,
      opcode: 'RDMA_WRITE',
      sge: [{ mr: p.mrB, offset: SEND, length: size }],
      remoteAddr: p.mrA.addr + RECV,
      rkey: p.mrA.rkey,
    },
  ]);
  p.viewA.fill(0, RECV, RECV + size);
  p.viewB.fill(0, RECV, RECV + size);
  const stamps = new Float64Array(iters + 1);
  const spin = new Spin(`ping-pong ${size} B (fast path)`);
  const reap = (cq: rdma.CompletionQueue) => {
    while (cq.pollInto(WCS, 1) === 0) spin.tick();
    checkSlots(1, 'ping-pong WRITE');
  };
  try {
    for (let i = -WARMUP; i < iters; i++) {
      if (i >= 0) stamps[i] = performance.now();
      const mark = ((i + WARMUP) % 255) + 1;
      p.viewA[SEND + last] = mark;
      wa.post();
      while (Atomics.load(p.viewB, RECV + last) !== mark) spin.tick();
      p.viewB[SEND + last] = mark;
      wb.post();
      while (Atomics.load(p.viewA, RECV + last) !== mark) spin.tick();
      reap(p.cqA);
      reap(p.cqB);
    }
    stamps[iters] = performance.now();
  } finally {
    wa.close();
    wb.close();
  }
  return latStats(diffs(stamps, 0.5));
}

export interface BwResult {
  MiBs: number;
  iters: number;
  bytes: number;
  depth: number;
  seconds: number;
}

/** `iters` READs of `size` bytes from B's memory, `depth` in flight, each signaled; MiB/s from first post to last completion. */
function bw(p: Pair, size: number, iters: number, depth: number): BwResult {
  const slots: rdma.SendWr[] = [];
  for (let j = 0; j < depth; j++)
    slots.push({
      wrId: j,
      opcode: 'RDMA_READ',
      sge: [{ mr: p.mrA, offset: j * size, length: size }],
      remoteAddr: p.mrB.addr + j * size,
      rkey: p.mrB.rkey,
    });
  const spin = new Spin(`READ bw ${size} B`);
  let posted = Math.min(depth, iters);
  let done = 0;
  const again: rdma.SendWr[] = [];
  const start = performance.now();
  p.a.postSend(slots.slice(0, posted));
  while (done < iters) {
    const cs = p.cqA.poll(64);
    if (cs.length === 0) {
      spin.tick();
      continue;
    }
    again.length = 0;
    for (const c of cs) {
      check(c, 'READ bw');
      done++;
      if (posted < iters) {
        again.push(slots[Number(c.wrId)]);
        posted++;
      }
    }
    if (again.length) p.a.postSend(again);
  }
  const seconds = (performance.now() - start) / 1000;
  return { MiBs: (iters * size) / 2 ** 20 / seconds, iters, bytes: size, depth, seconds };
}

/** bw through the fast path: a prepared batch of `depth` READs whose first k are re-aimed at the freed slots and posted with post(k). */
function bwFast(p: Pair, size: number, iters: number, depth: number): BwResult {
  const batch = p.a.prepareSend(
    Array.from({ length: depth }, (_, j) => ({
      wrId: j,
      opcode: 'RDMA_READ' as const,
      sge: [{ mr: p.mrA, offset: j * size, length: size }],
      remoteAddr: p.mrB.addr + j * size,
      rkey: p.mrB.rkey,
    })),
  );
  const spin = new Spin(`READ bw ${size} B (fast path)`);
  const S = rdma.WC.SLOTS,
    baseB = p.mrB.addr;
  let posted = Math.min(depth, iters);
  let done = 0;
  try {
    const start = performance.now();
    batch.post(posted);
    while (done < iters) {
      const n = p.cqA.pollInto(WCS, 64);
      if (n === 0) {
        spin.tick();
        continue;
      }
      checkSlots(n, 'READ bw');
      done += n;
      let k = 0;
      for (let i = 0; i < n && posted < iters; i++, k++, posted++) {
        const slot = WCS[i * S + rdma.WC.WR_ID];
        batch
          .setWrId(k, slot)
          .setRemoteAddr(k, baseB + slot * size)
          .setSge(k, 0, slot * size, size);
      }
      if (k) batch.post(k);
    }
    const seconds = (performance.now() - start) / 1000;
    return { MiBs: (iters * size) / 2 ** 20 / seconds, iters, bytes: size, depth, seconds };
  } finally {
    batch.close();
  }
}

// ---------------------------------------------------------------- perftest

/** perftest's outputs, by run. */
const raw: Record<string, string> = {};

function listening(port: number): boolean {
  const hex = `:${port.toString(16).toUpperCase().padStart(4, '0')} `;
  for (const f of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text = '';
    try {
      text = fs.readFileSync(f, 'utf8');
    } catch {
      continue;
    }
    // local_address is the 2nd field, st the 4th; 0A = LISTEN.
    for (const line of text.split('\n').slice(1)) {
      const f2 = line.trim().split(/\s+/);
      if (f2.length > 3 && f2[1].endsWith(hex.trim()) && f2[3] === '0A') return true;
    }
  }
  return false;
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => {
      clearTimeout(t);
      resolve();
    });
  });

/**
 * Run a perftest tool: its server in the background, the client against it; the client's output.
 * With 2+ CPUs the server is pinned to CPU 0 and the client to CPU 1: ib_write_lat's two sides
 * both spin, and two spinners sharing one vCPU hand over only at scheduler ticks (ms per sample).
 */
async function perftest(tool: string, args: readonly string[]): Promise<string> {
  const common = ['-d', DEV, '-x', String(GID_INDEX), '-F', '-p', String(PORT)];
  const pin = (cpu: number, argv: string[]): [string, string[]] =>
    os.cpus().length >= 2 ? ['taskset', ['-c', String(cpu), ...argv]] : [argv[0], argv.slice(1)];
  const [serverFile, serverArgs] = pin(0, [tool, ...common, ...args]);
  const [clientFile, clientArgs] = pin(1, [tool, ...common, ...args, '127.0.0.1']);
  const server = spawn(serverFile, serverArgs, { stdio: ['ignore', 'pipe', 'pipe'] });
  let serverOut = '';
  server.stdout.on('data', (d: Buffer) => (serverOut += d.toString()));
  server.stderr.on('data', (d: Buffer) => (serverOut += d.toString()));
  let exitCode: number | null | undefined;
  const exited = new Promise<void>((resolve) =>
    server.on('exit', (code) => {
      exitCode = code;
      resolve();
    }),
  );
  try {
    const until = Date.now() + 20_000;
    while (!listening(PORT)) {
      if (exitCode !== undefined)
        throw new Error(`${tool} server exited (${exitCode}) before listening:\n${serverOut}`);
      if (Date.now() > until) throw new Error(`${tool} server not listening on ${PORT} after 20 s:\n${serverOut}`);
      await sleep(20);
    }
    const { stdout, stderr } = await execOutput(clientFile, clientArgs, { timeout: 180_000, maxBuffer: 16 << 20 });
    const grace = new AbortController();
    await Promise.race([exited, sleep(20_000, grace.signal)]);
    grace.abort(); // no timer left behind to hold the process
    if (exitCode === undefined) throw new Error(`${tool} server still running 20 s after its client ended`);
    return `${stdout}${stderr}`;
  } finally {
    if (exitCode === undefined) server.kill('SIGKILL');
  }
}

/**
 * A perftest run parsed; retried (3 tries) when its table holds no numbers: perftest derives the TSC
 * rate from a short sampling of gettimeofday, which a busy emulated CPU can spoil ("Correlation
 * coefficient r^2: … < 0.9", then inf everywhere).
 */
async function perftestParsed<T>(
  key: string,
  tool: string,
  args: readonly string[],
  parse: (text: string, tool: string) => T,
): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    const text = await perftest(tool, args);
    raw[attempt === 1 ? key : `${key} try ${attempt}`] = text;
    try {
      return parse(text, tool);
    } catch (e) {
      if (attempt >= 3) throw e;
      log(
        `${tool} ${args.join(' ')}: no result (${text.match(/Correlation coefficient[^\n]*/)?.[0] ?? 'no numeric table'}), again`,
      );
    }
  }
}

// ---------------------------------------------------------------- rounds

interface LatCase {
  key: string;
  op: Op;
  size: number;
  tool: string;
}
const LAT_CASES: LatCase[] = [
  { key: 'read_lat_8', op: 'RDMA_READ', size: 8, tool: 'ib_read_lat' },
  { key: 'read_lat_4096', op: 'RDMA_READ', size: 4096, tool: 'ib_read_lat' },
  { key: 'write_lat_8', op: 'RDMA_WRITE', size: 8, tool: 'ib_write_lat' },
  { key: 'write_lat_4096', op: 'RDMA_WRITE', size: 4096, tool: 'ib_write_lat' },
];

/** ours: the fast path; ours_plain: postSend/poll with objects. */
export interface LatRound {
  ours: LatStats;
  ours_pingpong?: LatStats;
  ours_plain?: LatStats;
  ours_pingpong_plain?: LatStats;
  perftest: PerftestLat;
}
export interface BwRound {
  ours: BwResult;
  ours_plain?: BwResult;
  perftest: PerftestBw;
}
export type Round = Record<string, LatRound | BwRound>;

const dev = (() => {
  using c = rdma.Context.open(DEV);
  return { attr: c.query(), port: c.queryPort(1), gid: c.queryGid(1, GID_INDEX) };
})();
const OUT_READS = Math.min(dev.attr.maxQpRdAtom, 128);
const MEM = Math.max(DEPTH, 128) * BW_SIZE; // 128 slots for the depth-128 diagnostic; ping-pong uses the 2nd MiB
const pair = new Pair(OUT_READS, MEM);
const rounds: Round[] = [];
log(
  `${DEV}: GID ${dev.gid}, active MTU ${dev.port.activeMtu}, max_qp_rd_atom ${dev.attr.maxQpRdAtom}; ${ROUNDS} rounds, ${ITERS} latency iterations, ${BW_ITERS} x 64 KiB READs`,
);

for (let r = 0; r < ROUNDS; r++) {
  const round: Round = {};
  const oursFirst = r % 2 === 0;
  for (const c of LAT_CASES) {
    let ours: LatStats | undefined,
      pp: LatStats | undefined,
      plain: LatStats | undefined,
      ppPlain: LatStats | undefined,
      pt: PerftestLat | undefined;
    for (const who of oursFirst ? ['ours', 'perftest'] : ['perftest', 'ours']) {
      if (who === 'ours') {
        ours = latCqFast(pair, c.op, c.size, ITERS);
        plain = latCq(pair, c.op, c.size, ITERS);
        if (c.op === 'RDMA_WRITE') {
          pp = pingPongFast(pair, c.size, ITERS);
          ppPlain = pingPong(pair, c.size, ITERS);
        }
      } else {
        pt = await perftestParsed(`${c.key} round ${r}`, c.tool, ['-s', String(c.size), '-n', String(ITERS)], parseLat);
      }
    }
    round[c.key] = {
      ours: ours!,
      ours_plain: plain!,
      ...(pp ? { ours_pingpong: pp, ours_pingpong_plain: ppPlain! } : {}),
      perftest: pt!,
    };
    log(
      `round ${r + 1}/${ROUNDS} ${c.key}: ours p50 ${ours!.p50Us.toFixed(1)} µs (plain API ${plain!.p50Us.toFixed(1)})` +
        `${pp ? `, ping-pong ${pp.p50Us.toFixed(1)} (plain ${ppPlain!.p50Us.toFixed(1)})` : ''}, perftest typical ${pt!.typicalUs.toFixed(1)} µs`,
    );
  }
  let ours: BwResult | undefined, plain: BwResult | undefined, pt: PerftestBw | undefined;
  for (const who of oursFirst ? ['ours', 'perftest'] : ['perftest', 'ours']) {
    if (who === 'ours') {
      ours = bwFast(pair, BW_SIZE, BW_ITERS, DEPTH);
      plain = bw(pair, BW_SIZE, BW_ITERS, DEPTH);
    } else {
      pt = await perftestParsed(
        `read_bw_${BW_SIZE} round ${r}`,
        'ib_read_bw',
        ['-s', String(BW_SIZE), '-n', String(BW_ITERS)],
        parseBw,
      );
    }
  }
  round[`read_bw_${BW_SIZE}`] = { ours: ours!, ours_plain: plain!, perftest: pt! };
  log(
    `round ${r + 1}/${ROUNDS} read_bw_${BW_SIZE}: ours ${ours!.MiBs.toFixed(1)} MiB/s (plain API ${plain!.MiBs.toFixed(1)}), perftest ${pt!.avgMiBs.toFixed(1)} MiB/s`,
  );
  rounds.push(round);
}

// ---------------------------------------------------------------- diagnostics

/** Where our per-operation time goes (READ, the op whose completion needs the responder). */
function diagnostics(): Record<string, unknown> {
  const n = Math.max(1000, Math.floor(ITERS / 2));
  const out: Record<string, unknown> = { calibration: calibrate() };
  out.poll_empty_ns = perCallNs(() => pair.cqA.poll(1));
  out.poll_empty_raw_ns = perCallNs(() => pair.cqA.raw.poll(1));
  out.poll_into_empty_ns = perCallNs(() => pair.cqA.pollInto(WCS, 1));
  // READ 8 B with no clock read per op.
  {
    const wrs: rdma.SendWr[] = [
      {
        wrId: 1,
        opcode: 'RDMA_READ',
        sge: [{ mr: pair.mrA, length: 8 }],
        remoteAddr: pair.mrB.addr,
        rkey: pair.mrB.rkey,
      },
    ];
    const spin = new Spin('cpu READ');
    const one = () => {
      pair.a.postSend(wrs);
      let got = pair.cqA.poll(1);
      while (got.length === 0) {
        spin.tick();
        got = pair.cqA.poll(1);
      }
      check(got[0], 'cpu READ');
    };
    // CPU time per op, user and kernel (process.cpuUsage; tick-based, so over many ops).
    for (let i = 0; i < WARMUP; i++) one();
    const c0 = process.cpuUsage(),
      w0 = performance.now();
    for (let i = 0; i < n; i++) one();
    const c1 = process.cpuUsage(c0),
      w1 = performance.now();
    out.read_lat_8_cpu_us = { user: c1.user / n, system: c1.system / n, wall: ((w1 - w0) * 1000) / n };
    // The same through the fast path.
    const prep = pair.a.prepareSend(wrs);
    const fast = () => {
      prep.post();
      while (pair.cqA.pollInto(WCS, 1) === 0) spin.tick();
      checkSlots(1, 'cpu READ (fast path)');
    };
    for (let i = 0; i < WARMUP; i++) fast();
    const f0 = process.cpuUsage(),
      v0 = performance.now();
    for (let i = 0; i < n; i++) fast();
    const f1 = process.cpuUsage(f0),
      v1 = performance.now();
    prep.close();
    out.read_lat_8_fast_cpu_us = { user: f1.user / n, system: f1.system / n, wall: ((v1 - v0) * 1000) / n };
  }
  // prepared.post()'s own work without the kernel: a ctl value out of range is refused after
  // every work request before it was converted (slope over batch sizes, as for postSend below).
  {
    const valid: rdma.SendWr = {
      wrId: 1,
      opcode: 'RDMA_READ',
      sge: [{ mr: pair.mrA, length: 8 }],
      remoteAddr: pair.mrB.addr,
      rkey: pair.mrB.rkey,
    };
    const make = (k: number) => {
      const p = pair.a.prepareSend(Array<rdma.SendWr>(k + 1).fill(valid));
      p.setWrId(k, -1); // the last one is refused
      return () => {
        try {
          p.post();
        } catch {
          return;
        }
        throw new Error('an invalid prepared work request was posted');
      };
    };
    out.prepared_post_per_wr_ns = (perCallNs(make(9), 2000) - perCallNs(make(1), 2000)) / 8;
  }

  // postSend's argument handling without the kernel: a batch whose last work request is invalid is
  // read in full and refused before ibv_post_send. The slope over batch sizes is the cost of one WR.
  {
    const valid: rdma.SendWr = {
      wrId: 1,
      opcode: 'RDMA_READ',
      sge: [{ mr: pair.mrA, length: 8 }],
      remoteAddr: pair.mrB.addr,
      rkey: pair.mrB.rkey,
    };
    const bad = { ...valid, opcode: 'NOPE' } as unknown as rdma.SendWr;
    const rawValid = { ...valid, sge: [{ mr: pair.mrA.raw, length: 8 }] };
    const rawBad = { ...rawValid, opcode: 'NOPE' };
    const refused = (f: () => void) => () => {
      try {
        f();
      } catch {
        return;
      }
      throw new Error('an invalid work request was posted');
    };
    const slope = (make: (k: number) => () => void) => (perCallNs(make(9), 2000) - perCallNs(make(1), 2000)) / 8;
    out.postsend_per_wr_ns = slope((k) => {
      const wrs = [...Array<rdma.SendWr>(k).fill(valid), bad];
      return refused(() => pair.a.postSend(wrs));
    });
    out.postsend_per_wr_raw_ns = slope((k) => {
      const wrs = [...Array<object>(k).fill(rawValid), rawBad];
      return refused(() => pair.a.raw.postSend(wrs));
    });
  }

  // cq.poll(1) when a completion is there: what turning one ibv_wc into a JS object costs.
  {
    const k = 64;
    const wrs: rdma.SendWr[] = [];
    for (let i = 0; i < k; i++)
      wrs.push({
        wrId: i,
        opcode: 'RDMA_WRITE',
        sge: [{ mr: pair.mrA, length: 8 }],
        remoteAddr: pair.mrB.addr,
        rkey: pair.mrB.rkey,
      });
    let total = 0,
      polled = 0;
    for (let rep = 0; rep < 10; rep++) {
      pair.a.postSend(wrs);
      const settle = performance.now() + 20; // all 64 complete meanwhile (checked below)
      while (performance.now() < settle);
      const s0 = performance.now();
      let got = 0;
      for (let i = 0; i < k; i++) got += pair.cqA.poll(1).length;
      total += performance.now() - s0;
      polled += got;
      if (got < k) {
        const spin = new Spin('drain');
        while (got < k) {
          spin.tick();
          got += pair.cqA.poll(16).length;
        }
      }
    }
    out.poll_one_completion_ns = (total * 1e6) / polled;
  }

  // The same loop as latCq on the raw native objects: the floor for any JS caller of this binding.
  const rawLat = (size: number) => {
    const wrs = [
      {
        wrId: 1,
        opcode: 'RDMA_READ',
        sge: [{ mr: pair.mrA.raw, length: size }],
        remoteAddr: pair.mrB.addr,
        rkey: pair.mrB.rkey,
      },
    ];
    const qp = pair.a.raw,
      cq = pair.cqA.raw;
    const stamps = new Float64Array(n + 1);
    const spin = new Spin('raw READ');
    for (let i = -WARMUP; i < n; i++) {
      if (i >= 0) stamps[i] = performance.now();
      qp.postSend(wrs);
      let got = cq.poll(1);
      while (got.length === 0) {
        spin.tick();
        got = cq.poll(1);
      }
      check(got[0], 'raw READ');
    }
    stamps[n] = performance.now();
    return latStats(diffs(stamps));
  };
  out.read_lat_8_raw = rawLat(8);
  out.read_lat_4096_raw = rawLat(4096);
  out.read_lat_8_lib = latCq(pair, 'RDMA_READ', 8, n);
  out.read_lat_4096_lib = latCq(pair, 'RDMA_READ', 4096, n);
  out.read_lat_8_fast = latCqFast(pair, 'RDMA_READ', 8, n);
  out.read_lat_4096_fast = latCqFast(pair, 'RDMA_READ', 4096, n);

  // Busy-polling in C++ (cq.pollSpin) instead of a JS loop of cq.poll.
  {
    const wrs: rdma.SendWr[] = [
      {
        wrId: 1,
        opcode: 'RDMA_READ',
        sge: [{ mr: pair.mrA, length: 8 }],
        remoteAddr: pair.mrB.addr,
        rkey: pair.mrB.rkey,
      },
    ];
    const stamps = new Float64Array(n + 1);
    const spin = new Spin('pollSpin READ');
    for (let i = -WARMUP; i < n; i++) {
      if (i >= 0) stamps[i] = performance.now();
      pair.a.postSend(wrs);
      let got = pair.cqA.pollSpin(1, 10_000);
      while (got.length === 0) {
        spin.tick();
        got = pair.cqA.pollSpin(1, 10_000);
      }
      check(got[0], 'pollSpin READ');
    }
    stamps[n] = performance.now();
    out.read_lat_8_pollspin = latStats(diffs(stamps));
  }

  // Split of one op: inside postSend() (JS layer + ibv_post_send + the kernel doorbell), then waiting for the completion.
  for (const [op, key] of [
    ['RDMA_READ', 'read'],
    ['RDMA_WRITE', 'write'],
  ] as const) {
    const wrs: rdma.SendWr[] = [
      { wrId: 1, opcode: op, sge: [{ mr: pair.mrA, length: 8 }], remoteAddr: pair.mrB.addr, rkey: pair.mrB.rkey },
    ];
    const post = new Float64Array(n),
      wait = new Float64Array(n);
    const polls = new Uint32Array(n);
    const spin = new Spin('split');
    for (let i = -WARMUP; i < n; i++) {
      const s = performance.now();
      pair.a.postSend(wrs);
      const m = performance.now();
      let empty = 0;
      let got = pair.cqA.poll(1);
      while (got.length === 0) {
        empty++;
        spin.tick();
        got = pair.cqA.poll(1);
      }
      const e = performance.now();
      check(got[0], 'split');
      if (i >= 0) {
        post[i] = m - s;
        wait[i] = e - m;
        polls[i] = empty;
      }
    }
    out[`${key}_8_in_postsend`] = latStats(post);
    out[`${key}_8_post_to_completion`] = latStats(wait, polls);
    // The same split through the fast path.
    const prep = pair.a.prepareSend(wrs);
    for (let i = -WARMUP; i < n; i++) {
      const s = performance.now();
      prep.post();
      const m = performance.now();
      let empty = 0;
      while (pair.cqA.pollInto(WCS, 1) === 0) {
        empty++;
        spin.tick();
      }
      const e = performance.now();
      checkSlots(1, 'split (fast path)');
      if (i >= 0) {
        post[i] = m - s;
        wait[i] = e - m;
        polls[i] = empty;
      }
    }
    prep.close();
    out[`${key}_8_in_post_fast`] = latStats(post);
    out[`${key}_8_post_to_completion_fast`] = latStats(wait, polls);
  }

  // Bandwidth with the toRtr()/toRts() helpers as they are (one READ outstanding per QP).
  const helpers = new Pair('helpers', MEM);
  try {
    out.read_bw_65536_helpers = bw(helpers, BW_SIZE, Math.max(16, Math.floor(BW_ITERS / 2)), DEPTH);
  } finally {
    helpers.close();
  }
  // The same latency loop in C (bench/rdma/floor.c); then with a data footprint (PAGES pages read per
  // op) or an instruction footprint (BLOCKS distinct functions run per op) between ops, untimed.
  const floor = opts.get('floor');
  if (floor) {
    const runs: Record<string, unknown> = {};
    const cases = [
      ['read', 8, 0, 0, 2000],
      ['read', 4096, 0, 0, 2000],
      ['write', 8, 0, 0, 2000],
      ['read', 8, 4096, 0, 1000],
      ['read', 8, 0, 4096, 1000],
      ['read', 8, 0, 16384, 1000],
    ] as const;
    for (const [op, size, pages, blocks, iters] of cases) {
      const r = execFileSync(
        floor,
        [DEV, String(GID_INDEX), op, String(size), String(iters), String(pages), String(blocks)],
        { encoding: 'utf8', timeout: 120_000 },
      );
      runs[`${op}_${size}${pages ? `_pages_${pages}` : ''}${blocks ? `_blocks_${blocks}` : ''}`] = JSON.parse(
        r.trim().split('\n').pop()!,
      ) as unknown;
    }
    out.c_floor = runs;
  }

  // Our bandwidth with one READ in flight, and with perftest's depth (128).
  out.read_bw_65536_depth1 = bw(pair, BW_SIZE, Math.max(16, Math.floor(BW_ITERS / 4)), 1);
  out.read_bw_65536_depth128 = bw(pair, BW_SIZE, Math.max(128, Math.floor(BW_ITERS / 2)), 128);
  return out;
}

let diag: Record<string, unknown> | undefined;
if (DIAG) {
  log('diagnostics');
  diag = diagnostics();
}
pair.close();

const clocksource = (() => {
  try {
    return fs.readFileSync('/sys/devices/system/clocksource/clocksource0/current_clocksource', 'utf8').trim();
  } catch {
    return 'unknown';
  }
})();
// ib_read_lat --version prints "Version: 6.06" and exits 1.
const perftestVersion = await exec('ib_read_lat', ['--version']).then(
  (out) => out.trim(),
  (e: ExecError) => e.stdout.trim() || 'unknown',
);
const result = {
  nonce: opts.get('nonce') ?? null,
  setup: {
    device: DEV,
    gid_index: GID_INDEX,
    gid: dev.gid,
    active_mtu: dev.port.activeMtu,
    max_qp_rd_atom: dev.attr.maxQpRdAtom,
    out_reads: OUT_READS,
    rounds: ROUNDS,
    iters: ITERS,
    bw_iters: BW_ITERS,
    bw_size: BW_SIZE,
    depth: DEPTH,
    warmup: WARMUP,
    kernel: os.release(),
    cpus: os.cpus().length,
    clocksource,
    node: process.version,
    perftest: perftestVersion,
  },
  rounds,
  diag,
  raw,
  vm_seconds: (Date.now() - t0) / 1000,
};
if (OUT) {
  fs.mkdirSync(path.dirname(OUT), { recursive: true });
  fs.writeFileSync(`${OUT}.tmp`, JSON.stringify(result));
  fs.renameSync(`${OUT}.tmp`, OUT);
  log(`wrote ${OUT}`);
} else {
  console.log(JSON.stringify(result));
}
