// `sosctl run --local-memory` and memory.run: unmodified programs (a C program built here, python3,
// node) with their large memory on memory nodes on loopback. Each prints what its plain run prints,
// while the arena's resident pages (the memfd mapping's Rss in /proc/PID/smaps) stay within the local
// bound; every remote page is freed at the end. Then fork/exec, threads, mremap/realloc, free and
// re-allocate beyond the arena's size, the program or the monitor killed mid-run, a memory node killed
// with replication on, and asking for more than the nodes hold.
import t, { type Test } from 'tap';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startMemoryNodes, reservedBytes, type MemoryNodeProc } from '../../testkit/memory-nodes.js';
import { procState } from '../../testkit/migration-agents.js';
import { until, within } from '../../testkit/wait.js';
import { run } from '../../lib/memory/index.js';

const MiB = 1 << 20;
const here = path.dirname(fileURLToPath(import.meta.url));
const PROGS = path.resolve(here, '../../../test/memory/run-programs');
const SOSCTL = path.resolve(here, '../../lib/cli/sosctl.js');
const APP = 'run-test';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sos-run-test-'));
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
const secretFile = path.join(dir, 'secret');
fs.writeFileSync(secretFile, crypto.randomBytes(32), { mode: 0o600 });
const WORKLOAD = path.join(dir, 'workload');
execFileSync('cc', ['-O2', '-pthread', '-o', WORKLOAD, path.join(PROGS, 'workload.c')]);

type MemoryNode = MemoryNodeProc;
const startNodes = (t: Test, n: number, o: { capacity?: number; leaseMs?: number } = {}) =>
  startMemoryNodes(t, n, { app: APP, secretFile, ...o });
const reserved = reservedBytes;

async function allFreed(nodes: MemoryNode[]): Promise<boolean> {
  for (const m of nodes) if ((await reserved(m)) !== 0) return false;
  return true;
}

const list = (nodes: MemoryNode[]) => nodes.map((m) => `${m.host}:${m.port}`).join(',');

interface Ran {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** The largest arena Rss seen in any process of the program, in bytes. */
  worstArena: number;
  /** Samples taken while an arena was mapped. */
  samples: number;
}

/** The program's processes: sosctl's descendants. */
function descendants(pid: number): number[] {
  const out: number[] = [];
  const walk = (p: number) => {
    let tasks: string[];
    try {
      tasks = fs.readdirSync(`/proc/${p}/task`);
    } catch {
      return;
    }
    for (const tid of tasks) {
      let kids = '';
      try {
        kids = fs.readFileSync(`/proc/${p}/task/${tid}/children`, 'latin1');
      } catch {
        continue;
      }
      for (const k of kids.split(' ').filter(Boolean).map(Number)) {
        out.push(k);
        walk(k);
      }
    }
  };
  walk(pid);
  return out;
}

/** Rss of the arena (the shim's memfd mapping) in `pid`, or -1 when it has none. */
function arenaRss(pid: number): number {
  let smaps: string;
  try {
    smaps = fs.readFileSync(`/proc/${pid}/smaps`, 'latin1');
  } catch {
    return -1;
  }
  const at = smaps.indexOf('/memfd:sos-arena');
  if (at < 0) return -1;
  const m = /\nRss:\s+(\d+) kB/.exec(smaps.slice(at));
  return m ? Number(m[1]) * 1024 : -1;
}

/** `sosctl run` with `args` before `--`, PROG after; samples the arenas' Rss while it runs. */
function sosctl(args: string[], prog: string[], onStart?: (pid: number) => void): Promise<Ran> {
  const c = spawn(process.execPath, [SOSCTL, 'run', ...args, '--', ...prog], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  c.stdout.setEncoding('latin1').on('data', (d: string) => (stdout += d));
  c.stderr.setEncoding('latin1').on('data', (d: string) => (stderr += d));
  let worstArena = 0;
  let samples = 0;
  const timer = setInterval(() => {
    for (const p of descendants(c.pid!)) {
      const rss = arenaRss(p);
      if (rss < 0) continue;
      samples++;
      worstArena = Math.max(worstArena, rss);
    }
  }, 20);
  onStart?.(c.pid!);
  return new Promise((resolve) =>
    c.once('close', (code, signal) => {
      clearInterval(timer);
      resolve({ code, signal, stdout, stderr, worstArena, samples });
    }),
  );
}

function plain(prog: string[]): string {
  const r = spawnSync(prog[0], prog.slice(1), { encoding: 'latin1', maxBuffer: 64 * MiB });
  if (r.status !== 0) throw new Error(`${prog.join(' ')} exited ${r.status}: ${r.stderr}`);
  return r.stdout;
}

const totals = (r: Ran) => (JSON.parse(r.stderr.trim().split('\n').pop()!) as { total: Record<string, number> }).total;

// Each case: the program, its local bound, and what else to check.
const cases: { name: string; prog: string[]; local: number; far?: number; check?: (t: Test, r: Ran) => void }[] = [
  { name: 'a C program filling 32 MiB', prog: [WORKLOAD, 'fill', '32'], local: 4 * MiB },
  {
    name: 'python3: a list of a million ints, a bytearray, a dict',
    prog: ['python3', path.join(PROGS, 'ints.py'), '1000000'],
    local: 8 * MiB,
  },
  {
    name: 'node: Buffers and a typed array of 64 MiB',
    prog: [process.execPath, path.join(PROGS, 'buffers.mjs'), '64'],
    local: 8 * MiB,
  },
  { name: 'a C program with four threads', prog: [WORKLOAD, 'threads', '32'], local: 4 * MiB },
  { name: 'a C program growing buffers with mremap and realloc', prog: [WORKLOAD, 'grow', '32'], local: 4 * MiB },
  {
    name: 'a C program freeing and re-allocating 4.5x its arena',
    prog: [WORKLOAD, 'churn', '32'],
    local: 4 * MiB,
    far: 32 * MiB,
    check: (t, r) => t.match(r.stdout, / nonzero 0\n/, 'every fresh allocation read as zeros'),
  },
  {
    name: 'a C program that forks, and forks and execs itself',
    prog: [WORKLOAD, 'fork', '32'],
    local: 4 * MiB,
    check: (t, r) => t.equal(totals(r).processes, 2, 'the exec child attached an arena of its own'),
  },
];

void t.test('unmodified programs on memory nodes', async (t) => {
  const nodes = await startNodes(t, 2);
  for (const c of cases)
    await t.test(c.name, async (t) => {
      const want = plain(c.prog);
      const r = await sosctl(
        [
          '--local-memory',
          String(c.local),
          '--memory-nodes',
          list(nodes),
          '--secret-file',
          secretFile,
          '--app',
          APP,
          '--far-size',
          String(c.far ?? 256 * MiB),
          '--stats',
          '--json',
        ],
        c.prog,
      );
      t.equal(r.code, 0, `exit code 0 ${r.stderr.slice(0, 400)}`);
      t.equal(r.stdout, want, 'the output of a plain run');
      const total = totals(r);
      t.ok(total.processes >= 1 && total.evictions > 0 && total.pagesFetched > 0, 'its memory was paged');
      t.equal(total.fetchErrors + total.storeErrors, 0, 'no paging error');
      t.ok(r.samples > 0, `its arena was sampled (${r.samples} times)`);
      t.ok(r.worstArena <= c.local, `resident arena pages within the bound (worst ${r.worstArena} of ${c.local})`);
      c.check?.(t, r);
      t.ok(await allFreed(nodes), 'every remote page freed');
    });
});

void t.test('the program killed mid-run: the result settles, remote pages are freed', async (t) => {
  const nodes = await startNodes(t, 2);
  const r = run([WORKLOAD, 'loop', '16'], {
    localBytes: 2 * MiB,
    farBytes: 64 * MiB,
    nodes,
    application: APP,
    secret: fs.readFileSync(secretFile),
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  r.stdout!.setEncoding('latin1').on('data', (d: string) => (out += d));
  await until(() => out.includes('\npass 1 '), 120_000, 'a first pass over its memory');
  t.ok((await reserved(nodes[0])) >= 64 * MiB, 'the arena is reserved on the nodes');
  t.ok(r.kill('SIGKILL'), 'killed');
  const res = await within(r.result, 60_000, 'the run to settle');
  t.equal(res.signal, 'SIGKILL', 'the signal that ended it');
  t.ok(res.total.evictions > 0, 'it had been paging');
  t.ok(await allFreed(nodes), 'every remote page freed');
  t.equal(procState(r.pid), null, 'no process left');
});

void t.test('sosctl run whose program is killed: sosctl ends with 128 + 9, nothing is left', async (t) => {
  const nodes = await startNodes(t, 2);
  let sosctlPid = 0;
  const ran = sosctl(
    [
      '--local-memory',
      '2MiB',
      '--memory-nodes',
      list(nodes),
      '--secret-file',
      secretFile,
      '--app',
      APP,
      '--far-size',
      '64MiB',
    ],
    [WORKLOAD, 'loop', '16'],
    (pid) => (sosctlPid = pid),
  );
  let prog = 0;
  await until(
    () => {
      prog = descendants(sosctlPid).find((p) => arenaRss(p) > 0) ?? 0;
      return prog > 0;
    },
    120_000,
    'the program to map its arena',
  );
  process.kill(prog, 'SIGKILL');
  const r = await within(ran, 60_000, 'sosctl to end');
  t.equal(r.code, 137, "sosctl's exit code says SIGKILL");
  t.equal(procState(sosctlPid), null, 'no monitor left behind');
  t.ok(await allFreed(nodes), 'every remote page freed');
});

void t.test('the monitor killed mid-run: the program is stopped, its pages lapse on the nodes', async (t) => {
  const nodes = await startNodes(t, 2, { leaseMs: 1000 });
  let sosctlPid = 0;
  const ran = sosctl(
    [
      '--local-memory',
      '2MiB',
      '--memory-nodes',
      list(nodes),
      '--secret-file',
      secretFile,
      '--app',
      APP,
      '--far-size',
      '64MiB',
    ],
    [WORKLOAD, 'loop', '16'],
    (pid) => (sosctlPid = pid),
  );
  let prog = 0;
  await until(
    () => {
      prog = descendants(sosctlPid).find((p) => arenaRss(p) > 0) ?? 0;
      return prog > 0;
    },
    120_000,
    'the program to map its arena',
  );
  process.kill(sosctlPid, 'SIGKILL');
  const r = await within(ran, 30_000, 'sosctl to end');
  t.equal(r.signal, 'SIGKILL', 'sosctl killed');
  await until(() => [null, 'Z'].includes(procState(prog)), 60_000, 'the program to be stopped by its shim');
  t.pass('the program is gone');
  for (const m of nodes) {
    let left = await reserved(m);
    for (const end = Date.now() + 60_000; left !== 0 && Date.now() < end;) {
      await new Promise((r) => setTimeout(r, 50));
      left = await reserved(m);
    }
    t.equal(left, 0, 'the lapsed lease freed the pages');
  }
});

void t.test('a memory node killed mid-run, 2 replicas of 3 nodes: the output is unchanged', async (t) => {
  const nodes = await startNodes(t, 3);
  const prog = [WORKLOAD, 'fill', '32', '9'];
  const want = plain(prog);
  const r = run(prog, {
    localBytes: 4 * MiB,
    farBytes: 64 * MiB,
    nodes,
    replicas: 2,
    application: APP,
    secret: fs.readFileSync(secretFile),
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const lost: string[] = [];
  r.on('nodeLost', (n) => lost.push(n.node));
  let out = '';
  r.stdout!.setEncoding('latin1').on('data', (d: string) => (out += d));
  await until(() => (r.processes()[0]?.stats.writeBacks ?? 0) > 2000, 120_000, 'pages written back to the nodes');
  nodes[0].proc.kill();
  const res = await within(r.result, 300_000, 'the run');
  t.equal(res.code, 0, 'exit code 0');
  t.equal(out, want, 'the output of a plain run');
  t.same(lost, [`${nodes[0].host}:${nodes[0].port}`], 'the loss was reported');
  t.equal(res.total.fetchErrors, 0, 'every fetch was served by a replica');
  t.ok(await allFreed(nodes.slice(1)), 'every remote page freed on the nodes left');
});

void t.test('asking for more than the memory nodes hold: a clear error, no hang', async (t) => {
  const nodes = await startNodes(t, 2, { capacity: 16 * MiB });
  const base = ['--local-memory', '4MiB', '--memory-nodes', list(nodes), '--secret-file', secretFile, '--app', APP];
  const full = await within(sosctl([...base, '--far-size', '64MiB'], [WORKLOAD, 'fill', '8']), 120_000, 'sosctl');
  t.equal(full.code, 3, "the program's own exit code: its malloc failed");
  t.match(full.stderr, /sosctl run: .*no room left/, 'sosctl said the nodes are full');
  t.match(full.stderr, /malloc: Cannot allocate memory/, 'the program saw ENOMEM');
  const big = await within(sosctl([...base, '--far-size', '16MiB'], [WORKLOAD, 'fill', '32']), 120_000, 'sosctl');
  t.equal(big.code, 3, 'an allocation larger than the arena fails');
  t.match(big.stderr, /far memory exhausted.*raise --far-size/, 'sosctl said how to fix it');
  t.ok(await allFreed(nodes), 'nothing left reserved');
});

void t.test('bad usage: exit 2 with a message; a program that does not exist: exit 125', async (t) => {
  const bad = spawnSync(process.execPath, [SOSCTL, 'run', '--local-memory', 'lots', '--', 'true'], {
    encoding: 'latin1',
  });
  t.equal(bad.status, 2, 'exit 2');
  t.match(bad.stderr, /--local-memory must be a size/, 'says what is wrong');
  const nodes = await startNodes(t, 1);
  const none = await sosctl(
    ['--local-memory', '4MiB', '--memory-nodes', list(nodes), '--secret-file', secretFile, '--app', APP],
    [path.join(dir, 'no-such-program')],
  );
  t.equal(none.code, 125, 'exit 125');
  t.match(none.stderr, /cannot run .*no-such-program.*ENOENT/, 'says which program and why');
});
