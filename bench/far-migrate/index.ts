/**
 * `npm run bench -- far-migrate [--mib 256] [--budget 32] [--reps 3]`: the live migration of a
 * far-memory workload against the same workload with all its memory local, on a real 3-node local
 * cluster (sosd in network namespaces, mutual TLS). Both are python3 holding MIB MiB of distinct data;
 * the far one keeps BUDGET MiB resident, the rest on node1's memory node (sosctl run --far-memory).
 * Each is migrated node0 → node2 and back, post-copy and pre-copy, REPS times. Figures per mode:
 * downtime, total time, the bytes CRIU moved, and for the far one the detach (its resident pages
 * written to the memory node while it is parked); the ratios far / local. Its far memory is handed
 * over, never moved: the bytes moved stay the interpreter's, whatever MIB is.
 */
import { request } from '../../lib/daemon/client.js';
import { localClusterFor } from '../../testkit/local-cluster.js';
import { waitFor } from '../../testkit/wait.js';
import { fmtRatio, median, parseOptions, round, table } from '../run.js';

const opts = parseOptions(process.argv.slice(2), {
  mib: 'MiB of data the workload holds (default 256)',
  budget: "the far workload's resident MiB at most (default 32)",
  reps: 'migrations per mode and workload (default 3)',
});
const MIB = Number(opts.get('mib') ?? 256);
const BUDGET = Number(opts.get('budget') ?? 32);
const REPS = Number(opts.get('reps') ?? 3);
const MiB = 2 ** 20;

// Distinct data in every page, then idle reads: what a cache between requests does.
const PROG = `
import os, sys, time
data = bytearray(int(sys.argv[1]) << 20)
for off in range(0, len(data), 1 << 20):
    data[off:off + (1 << 20)] = os.urandom(1 << 20)
print("ready", flush=True)
i = 0
while True:
    i = (i + 7 * 4096) % len(data)
    data[i] ^= 0
    time.sleep(0.001)
`;

interface Moved {
  downtimeMs: number;
  totalMs: number;
  bytes: number;
  farDetachMs?: number;
}

const downs: (() => unknown)[] = [];
try {
  const { c, sosctl } = await localClusterFor({ teardown: (f) => downs.push(f) }, 3, ['--memory-capacity', '2GiB']);
  const sock = (name: string) => c.nodes.find((n) => n.name === name)!.socket;
  const start = async (app: string, far: boolean): Promise<number> => {
    const farArgs = far
      ? ['--far-memory', `${BUDGET}MiB`, '--far-size', `${2 * MIB}MiB`, '--memory-nodes', 'node1', '--replicas', '1']
      : [];
    const r = await sosctl([
      'run',
      '--app',
      app,
      '--node',
      'node0',
      ...farArgs,
      '--json',
      '--',
      'python3',
      '-c',
      PROG,
      String(MIB),
    ]);
    if (r.code !== 0) throw new Error(`sosctl run ${app}: ${r.stderr}`);
    const id = (JSON.parse(r.stdout) as { id: number }).id;
    await waitFor(
      async () => {
        const l = (await request('apps.logs', { app, id, stream: 'stdout' }, sock('node0'))) as { stdout: string };
        return l.stdout.includes('ready');
      },
      `${app} fills its memory`,
      300_000,
    );
    return id;
  };
  const apps = { far: await start('far', true), local: await start('local', false) };
  const runs: Record<'far' | 'local', Record<'postcopy' | 'precopy', Moved[]>> = {
    far: { postcopy: [], precopy: [] },
    local: { postcopy: [], precopy: [] },
  };
  const where: Record<'far' | 'local', string> = { far: 'node0', local: 'node0' };
  for (let rep = 0; rep < REPS; rep++)
    for (const mode of ['postcopy', 'precopy'] as const)
      for (const app of ['far', 'local'] as const) {
        const to = where[app] === 'node0' ? 'node2' : 'node0';
        const m = (await request('apps.migrate', { app, id: apps[app], to, mode }, sock(where[app]), 600_000)) as Moved;
        where[app] = to;
        runs[app][mode].push(m);
      }

  const fig = (app: 'far' | 'local', mode: 'postcopy' | 'precopy') => {
    const r = runs[app][mode];
    return {
      downtimeMs: median(r.map((m) => m.downtimeMs)),
      totalMs: median(r.map((m) => m.totalMs)),
      movedMiB: median(r.map((m) => m.bytes / MiB)),
      detachMs: app === 'far' ? median(r.map((m) => m.farDetachMs ?? 0)) : 0,
    };
  };
  const rows: string[][] = [];
  const json: Record<string, number> = {};
  for (const mode of ['postcopy', 'precopy'] as const) {
    const f = fig('far', mode);
    const l = fig('local', mode);
    rows.push(
      [
        `${mode}: downtime (ms)`,
        f.downtimeMs.toFixed(0),
        l.downtimeMs.toFixed(0),
        fmtRatio(f.downtimeMs / l.downtimeMs),
      ],
      [`${mode}: total (ms)`, f.totalMs.toFixed(0), l.totalMs.toFixed(0), fmtRatio(f.totalMs / l.totalMs)],
      [`${mode}: moved by CRIU (MiB)`, f.movedMiB.toFixed(1), l.movedMiB.toFixed(1), fmtRatio(f.movedMiB / l.movedMiB)],
      [`${mode}: of the downtime, the detach (ms)`, f.detachMs.toFixed(0), '-', '-'],
    );
    Object.assign(json, {
      [`${mode}_far_downtime_ms`]: round(f.downtimeMs),
      [`${mode}_local_downtime_ms`]: round(l.downtimeMs),
      [`${mode}_downtime_ratio`]: round(f.downtimeMs / l.downtimeMs),
      [`${mode}_far_total_ms`]: round(f.totalMs),
      [`${mode}_local_total_ms`]: round(l.totalMs),
      [`${mode}_total_ratio`]: round(f.totalMs / l.totalMs),
      [`${mode}_far_moved_mib`]: round(f.movedMiB),
      [`${mode}_local_moved_mib`]: round(l.movedMiB),
      [`${mode}_moved_ratio`]: round(f.movedMiB / l.movedMiB),
      [`${mode}_far_detach_ms`]: round(f.detachMs),
    });
  }
  console.log(
    `far-migrate: ${MIB} MiB python3 workload, far (${BUDGET} MiB resident, the rest on node1) vs local; median of ${REPS}\n`,
  );
  console.log(table(['figure', 'far', 'local', 'far / local'], rows));
  console.log(JSON.stringify({ bench: 'far-migrate', mib: MIB, budget_mib: BUDGET, reps: REPS, ...json }));
} finally {
  for (const d of downs.reverse()) await d();
}
