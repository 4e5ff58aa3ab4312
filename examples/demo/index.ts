/**
 * The README's demo: a 3-node cluster on this machine and one workload, an unmodified key-value
 * server whose memory exceeds its node's budget (sosd pages it to a memory node on a second node),
 * live-migrated post-copy to a third node while TCP clients keep talking to it (its far memory is
 * handed over, not moved); a short report on stdout and a self-contained HTML report with the plots. Ctrl-C at any moment takes everything down again
 * (namespaces, processes, etcd); `--keep` leaves the cluster up to explore with sosctl.
 *
 *   node dist/examples/demo/index.js [--keep] [--dir D] [--out FILE] [--seconds S] [--mib M] [--budget M]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { localCluster, type LocalCluster } from '../../lib/cluster/local.js';
import { request } from '../../lib/daemon/client.js';
import { DEFAULT_LOCAL_DIR } from '../../lib/cli/local-dir.js';
import { KV_SERVER } from './workload.js';
import { writeReport, type ReportData } from './report.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const SOSCTL = path.join(here, '../../lib/cli/sosctl.js');
const CLIENT = path.join(here, 'client.js');
const MiB = 2 ** 20;

const o = new Command('demo')
  .option('--keep', 'leave the cluster up afterwards (sosctl cluster down --dir D takes it down)')
  .option('--dir <path>', 'the local cluster folder', DEFAULT_LOCAL_DIR)
  .option('--out <file>', 'the HTML report', 'serverlessos-demo.html')
  .option('--seconds <s>', 'how long the clients talk in each part', (v) => Number(v), 12)
  .option('--mib <n>', "the far-memory workload's size in MiB", (v) => Number(v), 256)
  .option('--budget <n>', 'its local memory budget in MiB', (v) => Number(v), 64)
  .parse()
  .opts<{ keep?: boolean; dir: string; out: string; seconds: number; mib: number; budget: number }>();
const dir = path.resolve(o.dir);
const env = { ...process.env, SOS_LOCAL_DIR: dir };
const T0 = Date.now();
const rel = (ms: number) => Math.round((ms - T0) / 10) / 100;

// Children run in process groups of their own: a Ctrl-C reaches the demo, which takes them down in order.
const children = new Set<ChildProcess>();
let stopping = false;
let clusterUp = false;
const stoppedError = () => Object.assign(new Error('stopped'), { stopped: true });

function start(cmd: string, args: string[], teardown = false): ChildProcess {
  // Nothing new once a signal has come but the teardown's own: it has already taken its list of children.
  if (stopping && !teardown) throw stoppedError();
  const c = spawn(cmd, args, { env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(c);
  c.once('exit', () => children.delete(c));
  return c;
}

async function stopChild(c: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (c.exitCode !== null || c.signalCode !== null) return;
  const gone = new Promise<void>((r) => c.once('exit', () => r()));
  c.kill(signal);
  const late = setTimeout(() => c.kill('SIGKILL'), 10_000);
  await gone;
  clearTimeout(late);
}

/** A sosctl command, printed as the user would type it; resolves with its output. */
function sosctl(
  args: string[],
  show = true,
  teardown = false,
): Promise<{ code: number; stdout: string; stderr: string }> {
  if (show) console.log(`$ sosctl ${args.map((a) => (a === KV_SERVER ? 'kv-server.py' : a)).join(' ')}`);
  const c = start(process.execPath, [SOSCTL, ...args], teardown);
  let stdout = '';
  let stderr = '';
  c.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  c.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve) => c.once('exit', (code) => resolve({ code: code ?? 1, stdout, stderr })));
}

async function must(args: string[], show = true): Promise<string> {
  const r = await sosctl(args, show);
  if (r.code !== 0) throw new Error(`sosctl ${args.join(' ')} failed (${r.code}): ${r.stderr.trim()}`);
  return r.stdout;
}

async function teardown(): Promise<void> {
  await Promise.all([...children].map((c) => stopChild(c)));
  if (clusterUp && !o.keep) {
    console.log(`$ sosctl cluster down --dir ${dir}`);
    await sosctl(['cluster', 'down', '--dir', dir], false, true);
    clusterUp = false;
  }
}

function onSignal(sig: NodeJS.Signals): void {
  if (stopping) return;
  stopping = true;
  console.log(`\n${sig}: taking the demo down`);
  o.keep = false;
  // A cluster still coming up is recorded as it goes: wait for `up` to finish, then take it all down.
  void (async () => {
    const up = [...children].find((c) => c.spawnargs.includes('up'));
    if (up) await new Promise<void>((r) => (up.exitCode !== null ? r() : up.once('exit', () => r())));
    clusterUp = clusterUp || localCluster(dir) !== null;
    await teardown();
    process.exit(130);
  })();
}
process.on('SIGINT', onSignal);
process.on('SIGTERM', onSignal);

const aborted = () => {
  if (stopping) throw stoppedError();
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The clients, in the bridge's namespace (the hosts' side of the cluster); their samples as they come. */
function clients(c: LocalCluster, host: string, pages: number, lat: [number, number][], errors: Tally) {
  const p = start('ip', [
    'netns',
    'exec',
    c.net.bridge,
    process.execPath,
    CLIENT,
    host,
    '7000',
    '4',
    '200',
    String(pages),
  ]);
  readline.createInterface({ input: p.stdout! }).on('line', (l) => {
    try {
      const m = JSON.parse(l) as { lat: [number, number][]; errors: number; checked: number; wrong: number };
      lat.push(...m.lat);
      errors.n += m.errors;
      errors.checked += m.checked;
      errors.wrong += m.wrong;
    } catch {
      // not ours
    }
  });
  return p;
}

/** The clients' failed requests, and the repeated ones checked against their first answer. */
interface Tally {
  n: number;
  checked: number;
  wrong: number;
}

const quantile = (xs: number[], q: number) => {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
};

async function workload(c: LocalCluster) {
  const [n0, n1, n2] = c.nodes;
  // One workload: an unmodified program larger than its node's budget, its memory on another node's
  // memory node, live-migrated post-copy to a third node while TCP clients keep talking to it.
  console.log(
    `A key-value server with ${o.mib} MiB of data in ${o.budget} MiB of ${n0.name}'s memory, the rest on ${n1.name}'s memory node;\n` +
      `clients talk to it while it moves to ${n2.name} (post-copy), its far memory staying on ${n1.name}\n`,
  );
  // Its own address, in the nodes' move ranges: it moves with the process.
  const addr = `${c.net.prefix}.140`;
  await new Promise<void>((resolve, reject) =>
    start('ip', ['-n', n0.netns, 'addr', 'add', `${addr}/24`, 'dev', 'eth0']).once('exit', (code) =>
      code === 0 ? resolve() : reject(new Error(`ip addr add ${addr} on ${n0.name} failed`)),
    ),
  );
  // (kv-server.py: examples/demo/workload.ts, given to python3 -c)
  const placed = await must([
    'run',
    '--app',
    'kv',
    '--node',
    n0.name,
    '--far-memory',
    `${o.budget}MiB`,
    '--far-size',
    `${o.mib * 2}MiB`,
    '--memory-nodes',
    n1.name,
    '--replicas',
    '1',
    '--',
    'python3',
    '-c',
    KV_SERVER,
    '0.0.0.0',
    '7000',
    String(o.mib),
  ]);
  const m = /^(\S+)\/(\d+) runs on (\S+) \(pid (\d+)\)/m.exec(placed);
  if (!m) throw new Error(`unexpected sosctl run output: ${placed}`);
  const id = Number(m[2]);
  console.log(`  ${placed.trim()}`);
  const src = n0;
  const dst = n2;
  let runsOn = src;
  const farStats: { t: number; residentBytes: number; faults: number }[] = [];
  const remote: { t: number; bytes: number }[] = [];
  let faultBase = 0;
  let lastFaults = 0;
  const sample = setInterval(() => {
    const t = Date.now();
    void request('apps.usage', { app: 'kv' }, runsOn.socket)
      .then((u) => {
        const arenas = (u as { id: number; far?: { stats: { residentPages: number; faults: number } }[] }[]).find(
          (x) => x.id === id,
        )?.far;
        if (!arenas?.length) return;
        // The target's region counts from zero: add what the source's counted.
        const faults = arenas.reduce((n, x) => n + x.stats.faults, 0);
        if (faults < lastFaults) faultBase += lastFaults;
        lastFaults = faults;
        farStats.push({
          t,
          residentBytes: arenas.reduce((n, x) => n + x.stats.residentPages * 4096, 0),
          faults: faultBase + faults,
        });
      })
      .catch(() => undefined);
    void request('memory.stats', {}, n1.socket)
      .then((s) =>
        remote.push({ t, bytes: (s as { usage?: Record<string, { heldBytes: number }> }).usage?.kv?.heldBytes ?? 0 }),
      )
      .catch(() => undefined);
  }, 250);
  try {
    // It fills its data first, paging out all but its budget: then it listens and says so.
    for (;;) {
      aborted();
      const l = (await request('apps.logs', { app: 'kv', id, stream: 'stdout' }, src.socket)) as {
        stdout?: string;
      };
      if (l.stdout?.includes('ready')) break;
      const e = (await request('apps.get', { app: 'kv', id }, src.socket)) as { state: string };
      if (e.state !== 'running') throw new Error(`kv/${id} exited before it listened`);
      await sleep(100);
    }
    const lat: [number, number][] = [];
    const errors: Tally = { n: 0, checked: 0, wrong: 0 };
    const cl = clients(c, addr, (o.mib * MiB) / 4096, lat, errors);
    while (!lat.length) {
      aborted();
      await sleep(50);
    }
    const end = Date.now() + o.seconds * 1000;
    await sleep((o.seconds * 1000) / 2);
    aborted();
    console.log(`$ sosctl migrate kv/${id} --to ${dst.name} --postcopy --move-address ${addr}/24@eth0`);
    const migration = crypto.randomBytes(16).toString('hex');
    const progress: { t: number; bytes: number; phase: string }[] = [];
    const poll = setInterval(() => {
      void request('apps.migration', { migration }, src.socket)
        .then((p) => {
          const q = p as { phase: string; bytes: number };
          progress.push({ t: Date.now(), bytes: q.bytes, phase: q.phase });
        })
        .catch(() => undefined);
    }, 25);
    const migrateAt = Date.now();
    const moved = (await request(
      'apps.migrate',
      {
        app: 'kv',
        id,
        to: dst.name,
        mode: 'postcopy',
        migration,
        moveAddress: { address: addr, prefix: 24, dev: 'eth0' },
      },
      src.socket,
      300_000,
    ).finally(() => clearInterval(poll))) as Moved;
    runsOn = dst;
    const doneAt = Date.now();
    console.log(
      `  kv/${id} runs on ${dst.name} now (pid ${moved.pid}): downtime ${Math.round(moved.downtimeMs)} ms, total ${Math.round(moved.totalMs)} ms, ${(moved.bytes / MiB).toFixed(1)} MiB moved; its far memory stayed on ${n1.name}`,
    );
    await sleep(Math.max(0, end - Date.now()));
    aborted();
    await stopChild(cl);
    return { id, src, dst, addr, lat, errors, farStats, remote, progress, moved, doneAt, migrateAt };
  } finally {
    clearInterval(sample);
  }
}

interface Moved {
  pid: number;
  downtimeMs: number;
  /** Of the downtime: its arenas' detach (every resident page written to the memory node). */
  farDetachMs?: number;
  totalMs: number;
  bytes: number;
  phases: { phase: string; ms: number }[];
}

async function main(): Promise<void> {
  console.log('ServerlessOS demo: a cluster of 3 nodes (network namespaces) on this machine\n');
  if (localCluster(dir))
    throw new Error(`a local cluster already runs from ${dir}: sosctl cluster down --dir ${dir}, or give --dir`);
  clusterUp = true;
  const c = JSON.parse(
    await must(['cluster', 'up', '--nodes', '3', '--memory-capacity', '1GiB', '--dir', dir, '--json']),
  ) as LocalCluster;
  aborted();
  const n1 = c.nodes[1];
  console.log(`  ${c.nodes.map((n) => `${n.name} ${n.addr}`).join(', ')}; etcd on ${c.etcd.endpoint}\n`);
  const { id, src, dst, addr, lat, errors, farStats, remote, progress, moved, doneAt, migrateAt } = await workload(c);

  // The figures.
  // Each phase's `ms` is when it began, counted from the migration's start.
  const startedAt = doneAt - moved.totalMs;
  const phases = moved.phases
    .map((p, i) => ({
      phase: p.phase,
      from: rel(startedAt + p.ms),
      to: rel(startedAt + (moved.phases[i + 1]?.ms ?? moved.totalMs)),
    }))
    .filter((p) => p.phase !== 'done');
  // Post-copy resumes the process on the target when its pages start to flow: the downtime ends there.
  const resumed = phases.find((p) => p.phase === 'pages')?.from ?? rel(doneAt);
  const downtime = { from: Math.max(rel(startedAt), resumed - moved.downtimeMs / 1000), to: resumed };
  const faultsPerS = farStats.map((s, i) =>
    i === 0 ? 0 : Math.round(((s.faults - farStats[i - 1].faults) * 1000) / Math.max(1, s.t - farStats[i - 1].t)),
  );
  const remoteAt = (t: number) => {
    let b = 0;
    for (const r of remote) if (r.t <= t) b = r.bytes;
    return b;
  };
  const ms = lat.map((l) => l[1]);
  // While paged on the source: the requests before the migration began.
  const before = lat.filter((l) => l[0] < migrateAt);
  const farMs = before.map((l) => l[1]);
  const peakRemote = Math.max(0, ...remote.map((r) => r.bytes));
  const worst = Math.max(0, ...ms);
  const budget = o.budget;
  const report: ReportData = {
    title: 'ServerlessOS demo',
    summary: [
      ['cluster', `3 nodes (${c.nodes.map((n) => n.name).join(', ')}), etcd, one sosd each`],
      ['workload', `kv/${id}: ${o.mib} MiB key-value server (python3, unmodified), local budget ${budget} MiB`],
      ['its far memory (peak)', `${(peakRemote / MiB).toFixed(0)} MiB on ${n1.name}'s memory node`],
      ['faults served', String(farStats.at(-1)?.faults ?? 0)],
      [
        'requests while paged, before the move',
        `${farMs.length}, p50 ${quantile(farMs, 0.5).toFixed(2)} ms, p99 ${quantile(farMs, 0.99).toFixed(2)} ms`,
      ],
      [
        'migration',
        `${src.name} → ${dst.name}, post-copy, with its address ${addr}; its far memory handed over, not moved`,
      ],
      [
        'downtime',
        `${Math.round(moved.downtimeMs)} ms, of it ${Math.round(moved.farDetachMs ?? 0)} ms writing its resident pages to ${n1.name} (total ${Math.round(moved.totalMs)} ms, ${(moved.bytes / MiB).toFixed(1)} MiB moved by CRIU)`,
      ],
      [
        'requests in all',
        `${ms.length}, p50 ${quantile(ms, 0.5).toFixed(2)} ms, p99 ${quantile(ms, 0.99).toFixed(2)} ms, worst ${worst.toFixed(0)} ms, ${errors.n} errors`,
      ],
      ['answers checked again', `${errors.checked} repeated requests, ${errors.wrong} answered differently`],
    ],
    far: {
      t: farStats.map((s) => rel(s.t)),
      residentMiB: farStats.map((s) => Math.round((s.residentBytes / MiB) * 10) / 10),
      remoteMiB: farStats.map((s) => Math.round((remoteAt(s.t) / MiB) * 10) / 10),
      faultsPerS,
      budgetMiB: budget,
    },
    farLatency: { t: before.map((l) => rel(l[0])), ms: farMs },
    migration: {
      t: progress.map((p) => rel(p.t)),
      movedMiB: progress.map((p) => Math.round((p.bytes / MiB) * 100) / 100),
      phases,
      downtime,
      from: src.name,
      to: dst.name,
    },
    latency: { t: lat.map((l) => rel(l[0])), ms },
    explore: o.keep
      ? [
          `alias sosctl='node ${SOSCTL}'`,
          `export SOS_LOCAL_DIR=${dir}`,
          'sosctl nodes',
          'sosctl ps',
          `sosctl logs kv/${id}`,
          'sosctl decisions',
          `sosctl migrate kv/${id} --to ${src.name} --postcopy --move-address ${addr}/24@eth0`,
          `sosctl cluster down --dir ${dir}`,
        ]
      : [],
  };
  const out = path.resolve(o.out);
  writeReport(out, report);
  console.log('\nReport');
  for (const [k, v] of report.summary) console.log(`  ${k.padEnd(36)} ${v}`);
  console.log(`\nThe report with its plots: ${out}`);
  if (o.keep) console.log(`The cluster stays up. To explore it:\n  ${report.explore.join('\n  ')}`);
  fs.writeFileSync(`${out}.json`, JSON.stringify(report));
}

main()
  .then(async () => {
    await teardown();
    process.exit(0);
  })
  .catch(async (e: Error & { stopped?: boolean }) => {
    if (e.stopped || stopping) return; // the signal handler takes it down and exits
    console.error(`demo: ${e.message}`);
    await teardown();
    process.exit(1);
  });
