/**
 * The workload commands: `sosctl ps`, `logs APP/ID`, `kill APP/ID`, `rm APP/ID`, `top`, and the part
 * of `run` that starts a process on a node's sosd. A process is named APP/ID cluster-wide (its
 * application and its number there, kept across migration); the commands find the node it runs on
 * from the cluster's entries (`apps.ps` on the local sosd) and ask that node's sosd (target.ts).
 */
import type { FarRequest } from '../orchestrator/desired.js';
import { Command, InvalidArgumentError, Option } from 'commander';
import { AppError } from '../apps/errors.js';
import type { CheckpointEntry } from '../cluster/checkpoints.js';
import type { ProcessEntry } from '../cluster/processes.js';
import { printDoc } from './output.js';
import { formatBytes } from './size.js';
import { socketOption } from './sosd-socket.js';
import { sosdOf, type TargetOptions } from './target.js';

export interface ProcName {
  app: string;
  id: number;
}

/** APP/ID, as `ps` prints it. */
export function procName(v: string): ProcName {
  const m = /^([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)\/([1-9]\d{0,15})$/.exec(v);
  if (!m) throw new InvalidArgumentError(`expected APP/ID such as web/1, got '${v}'`);
  return { app: m[1], id: Number(m[2]) };
}

export const clusterOptions = (c: Command) =>
  c
    .addOption(socketOption())
    .option('--dir <path>', 'the cluster folder, for nodes reached over TLS (default $SOS_CLUSTER_DIR)')
    .option('--json', 'print JSON');

export type Opts = TargetOptions & { json?: boolean };

/** Where APP/ID runs (from the cluster's entries, through the local sosd). */
export async function locate(p: ProcName, o: Opts): Promise<ProcessEntry> {
  const local = await sosdOf(undefined, o);
  const all = (await local.call('apps.ps', { app: p.app })) as ProcessEntry[];
  const e = all.find((x) => x.id === p.id);
  if (!e) throw new AppError(`no process ${p.app}/${p.id} in the cluster`, { code: 'ERR_APP_NOT_FOUND' });
  return e;
}

/**
 * Run `f` against the sosd that holds APP/ID: the local one when it does, else the node the cluster
 * says; or, given `node`, that node's (a follower reads on from offsets of that node's files only).
 */
async function onNodeOf<T>(
  p: ProcName,
  o: Opts,
  f: (call: (op: string, a: Record<string, unknown>) => Promise<unknown>) => Promise<T>,
  node?: string,
): Promise<T> {
  const local = await sosdOf(undefined, o);
  const here = (await local.call('apps.list', { app: p.app })) as ProcessEntry[];
  const mine = here.find((e) => e.id === p.id && e.state !== 'migrated');
  const t =
    mine && (node === undefined || mine.node === node) ? local : await sosdOf(node ?? (await locate(p, o)).node, o);
  try {
    return await f((op, a) => t.call(op, a));
  } finally {
    t.close();
  }
}

const ago = (iso: string | null) => {
  if (!iso) return '-';
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  return s < 120 ? `${s}s` : s < 7200 ? `${Math.round(s / 60)}m` : `${Math.round(s / 3600)}h`;
};

function psTable(rows: ProcessEntry[]): string {
  const head = `${'PROCESS'.padEnd(24)} ${'NODE'.padEnd(12)} ${'PID'.padStart(8)} ${'STATE'.padEnd(10)} ${'STARTED'.padStart(8)} COMMAND`;
  return [
    head,
    ...rows.map((r) => {
      const state = r.state === 'exited' ? `exit ${r.signal ?? r.exitCode ?? '?'}` : r.state;
      return `${`${r.app}/${r.id}`.padEnd(24)} ${r.node.padEnd(12)} ${String(r.pid).padStart(8)} ${state.padEnd(10)} ${ago(r.startedAt).padStart(8)} ${r.argv0}`;
    }),
  ].join('\n');
}

export function psCommand(): Command {
  return clusterOptions(
    new Command('ps')
      .description("the cluster's application processes: where each runs, its state")
      .exitOverride()
      .showHelpAfterError()
      .option('--app <name>', 'only this application'),
  ).action(async (o: Opts & { app?: string }) => {
    const t = await sosdOf(undefined, o);
    const rows = (await t.call('apps.ps', o.app ? { app: o.app } : {})) as ProcessEntry[];
    printDoc(o.json, rows, psTable(rows));
  });
}

export function logsCommand(): Command {
  return clusterOptions(
    new Command('logs')
      .description("a process's kept stdout and stderr (their last bytes), from the node it runs on")
      .exitOverride()
      .showHelpAfterError()
      .argument('<process>', 'APP/ID', procName)
      .addOption(
        new Option('--stream <which>', 'stdout, stderr or both').choices(['stdout', 'stderr', 'both']).default('both'),
      )
      .option('--tail <bytes>', 'the last this many bytes of each stream', (v) => {
        if (!/^\d+$/.test(v)) throw new InvalidArgumentError('--tail must be a number of bytes');
        return Number(v);
      })
      .option('-f, --follow', 'then print what it writes, until it exits (across migrations: from its new node)'),
  ).action(async (p: ProcName, o: Opts & { stream: string; tail?: number; follow?: boolean }) => {
    if (o.follow) return follow(p, o);
    const logs = (await onNodeOf(p, o, (call) =>
      call('apps.logs', {
        app: p.app,
        id: p.id,
        stream: o.stream,
        ...(o.tail === undefined ? {} : { tailBytes: o.tail }),
      }),
    )) as { stdout: string | null; stderr: string | null };
    if (o.json) return console.log(JSON.stringify({ stdout: logs.stdout, stderr: logs.stderr }));
    if (logs.stdout) process.stdout.write(logs.stdout);
    if (logs.stderr) process.stderr.write(logs.stderr);
  });
}

interface LogsReply {
  stdout: string | null;
  stderr: string | null;
  offsets: { stdout: number; stderr: number };
}

const FOLLOW_MS = 250;
/** The most one poll of a followed stream returns (the rest comes with the next). */
const FOLLOW_CHUNK = 1 << 20;

/** `logs --follow`: the tail, then each stream from where the last read ended, until the process has exited. */
async function follow(p: ProcName, o: Opts & { stream: string; tail?: number }): Promise<void> {
  const write = (r: LogsReply) => {
    if (o.json) return console.log(JSON.stringify({ stdout: r.stdout, stderr: r.stderr }));
    if (r.stdout) process.stdout.write(r.stdout);
    if (r.stderr) process.stderr.write(r.stderr);
  };
  let where = await locate(p, o);
  // Always on the node `where` names: offsets are of that node's files (it may move meanwhile).
  const read = (from?: LogsReply['offsets']) =>
    onNodeOf(
      p,
      o,
      (call) =>
        call('apps.logs', {
          app: p.app,
          id: p.id,
          stream: o.stream,
          ...(from ? { from, tailBytes: FOLLOW_CHUNK } : o.tail === undefined ? {} : { tailBytes: o.tail }),
        }),
      where.node,
    ) as Promise<LogsReply>;
  let r = await read();
  write(r);
  for (;;) {
    const running = where.state === 'running';
    await new Promise((res) => setTimeout(res, FOLLOW_MS));
    const now = await locate(p, o);
    let from = r.offsets;
    if (now.node !== where.node) {
      // Moved: what the old node's files got since the last read, then the new node's from their start.
      const old = await sosdOf(where.node, o);
      try {
        write(
          (await old.call('apps.logs', {
            app: p.app,
            id: p.id,
            stream: o.stream,
            from,
            tailBytes: FOLLOW_CHUNK,
          })) as LogsReply,
        );
      } catch {
        // the old node is gone: its last lines with it
      } finally {
        old.close();
      }
      from = { stdout: 0, stderr: 0 };
    }
    where = now;
    r = await read(from);
    write(r);
    // One more read after it stopped running: what it wrote last.
    if (!running && where.state !== 'running' && !r.stdout && !r.stderr) return;
  }
}

export function killCommand(): Command {
  return clusterOptions(
    new Command('kill')
      .description(
        "signal a process wherever it runs (as its namespace's init it gets only signals it handles, and SIGKILL)",
      )
      .exitOverride()
      .showHelpAfterError()
      .argument('<process>', 'APP/ID', procName)
      .option(
        '-s, --signal <name>',
        'the signal',
        (v) => {
          const s = v.toUpperCase().startsWith('SIG') ? v.toUpperCase() : `SIG${v.toUpperCase()}`;
          if (!/^SIG[A-Z0-9]{2,8}$/.test(s)) throw new InvalidArgumentError(`not a signal name: ${v}`);
          return s;
        },
        'SIGTERM',
      ),
  ).action(async (p: ProcName, o: Opts & { signal: string }) => {
    const r = await onNodeOf(p, o, (call) => call('apps.kill', { app: p.app, id: p.id, signal: o.signal }));
    printDoc(o.json, r, `${p.app}/${p.id}: ${o.signal} sent`);
  });
}

export function checkpointCommand(): Command {
  return clusterOptions(
    new Command('checkpoint')
      .description(
        'checkpoint a process (it keeps running): other nodes hold the images, and the orchestrator restores it on one of them if its node leaves the cluster',
      )
      .exitOverride()
      .showHelpAfterError()
      .argument('<process>', 'APP/ID', procName),
  ).action(async (p: ProcName, o: Opts) => {
    const r = (await onNodeOf(p, o, (call) => call('apps.checkpoint', { app: p.app, id: p.id }))) as {
      seq: number;
      holders: string[];
      bytes: number;
      dumpMs: number;
      ms: number;
    };
    printDoc(
      o.json,
      r,
      `${p.app}/${p.id}: checkpoint ${r.seq}, ${formatBytes(r.bytes)}, held by ${r.holders.join(', ')} (dump ${r.dumpMs.toFixed(0)} ms, ${r.ms.toFixed(0)} ms in all)`,
    );
  });
}

export function checkpointsCommand(): Command {
  return clusterOptions(
    new Command('checkpoints')
      .description('the newest checkpoint of each process, and the nodes holding it')
      .exitOverride()
      .showHelpAfterError()
      .option('--app <name>', 'only this application'),
  ).action(async (o: Opts & { app?: string }) => {
    const t = await sosdOf(undefined, o);
    const rows = (await t.call('apps.checkpoints', o.app ? { app: o.app } : {})) as CheckpointEntry[];
    const head = `${'PROCESS'.padEnd(24)} ${'SEQ'.padStart(4)} ${'TAKEN ON'.padEnd(12)} ${'SIZE'.padStart(10)} ${'AGE'.padStart(6)} HOLDERS`;
    const lines = rows.map(
      (r) =>
        `${`${r.app}/${r.id}`.padEnd(24)} ${String(r.seq).padStart(4)} ${r.node.padEnd(12)} ${formatBytes(r.bytes).padStart(10)} ${ago(r.at).padStart(6)} ${r.holders.join(',')}`,
    );
    printDoc(o.json, rows, [head, ...lines].join('\n'));
  });
}

export function rmCommand(): Command {
  return clusterOptions(
    new Command('rm')
      .description('forget an exited process: its record, cgroup and logs')
      .exitOverride()
      .showHelpAfterError()
      .argument('<process>', 'APP/ID', procName),
  ).action(async (p: ProcName, o: Opts) => {
    const r = await onNodeOf(p, o, (call) => call('apps.remove', { app: p.app, id: p.id }));
    printDoc(o.json, r, `${p.app}/${p.id} removed`);
  });
}

interface Usage {
  app: string;
  id: number;
  node: string;
  memoryBytes: number | null;
  cpuSeconds: number | null;
  pids: number | null;
}

export function topCommand(): Command {
  return clusterOptions(
    new Command('top')
      .description('what each running process uses now (memory, CPU time, tasks), from the nodes they run on')
      .exitOverride()
      .showHelpAfterError()
      .option('--app <name>', 'only this application')
      .option(
        '-w, --watch [seconds]',
        'refresh every this many seconds (default 2) until Ctrl-C; on a terminal only',
        (v) => {
          const n = Number(v);
          if (!(n >= 0.2 && n <= 3600)) throw new InvalidArgumentError('--watch wants seconds from 0.2 to 3600');
          return n;
        },
      ),
  ).action(async (o: Opts & { app?: string; watch?: number | true }) => {
    if (o.watch === undefined || o.json || !process.stdout.isTTY) return console.log(await topOnce(o));
    const every = (o.watch === true ? 2 : o.watch) * 1000;
    for (;;) {
      const text = await topOnce(o);
      // Home, then clear to the end: the table is redrawn in place, no flicker of a full clear.
      process.stdout.write(`\x1b[H${text}\n\x1b[J`);
      await new Promise((r) => setTimeout(r, every));
    }
  });
}

/** One `top` table (or, with --json, its rows as JSON). */
async function topOnce(o: Opts & { app?: string }): Promise<string> {
  const local = await sosdOf(undefined, o);
  const procs = ((await local.call('apps.ps', o.app ? { app: o.app } : {})) as ProcessEntry[]).filter(
    (p) => p.state === 'running',
  );
  const filter = o.app ? { app: o.app } : {};
  // The local sosd's own first; then each other node that runs some.
  const rows = (await local.call('apps.usage', filter)) as Usage[];
  const done = new Set(rows.map((r) => r.node));
  for (const node of [...new Set(procs.map((p) => p.node))].filter((n) => !done.has(n))) {
    const t = await sosdOf(node, o);
    try {
      rows.push(...((await t.call('apps.usage', filter)) as Usage[]));
    } finally {
      t.close();
    }
  }
  rows.sort((a, b) => a.app.localeCompare(b.app) || a.id - b.id);
  const text = [
    `${'PROCESS'.padEnd(24)} ${'NODE'.padEnd(12)} ${'MEMORY'.padStart(10)} ${'CPU TIME'.padStart(10)} TASKS`,
    ...rows.map(
      (r) =>
        `${`${r.app}/${r.id}`.padEnd(24)} ${r.node.padEnd(12)} ${(r.memoryBytes === null ? '-' : formatBytes(r.memoryBytes)).padStart(10)} ${(r.cpuSeconds === null ? '-' : `${r.cpuSeconds.toFixed(2)}s`).padStart(10)} ${r.pids ?? '-'}`,
    ),
  ].join('\n');
  return o.json ? JSON.stringify(rows, null, 2) : text;
}

export interface StartOptions extends Opts {
  app?: string;
  node?: string;
  env: string[];
  cwd?: string;
  memory?: number;
  cpus?: number;
  pids?: number;
  wait?: boolean;
  /** Seconds to wait for the orchestrator to place it (default 60). */
  placeTimeout?: number;
  /** Its large memory on memory nodes, paged by the node's sosd (sosctl run --far-memory). */
  farMemory?: {
    localBytes: number;
    farBytes: number;
    replicas?: number;
    nodes: { host: string; port: number; name?: string }[];
    secret: string;
    tls: boolean;
  };
  /** The same for the orchestrator to place (desired state's farMemory). */
  farRequest?: FarRequest;
}

interface Placement {
  step: { state: string; reason: string; leader: string; term: string; error?: { code: string } } | null;
  entry: ProcessEntry | null;
}

/**
 * Submit `req` to the cluster's orchestrator through the local sosd and wait until it runs
 * somewhere; null when that sosd has no orchestrator (not in a cluster): then it runs there.
 */
async function placeByOrchestrator(req: Record<string, unknown>, o: StartOptions): Promise<ProcessEntry | null> {
  const local = await sosdOf(undefined, o);
  let spec: { app: string; id: number };
  try {
    spec = (await local.call('orchestrator.submit', req)) as typeof spec;
  } catch (e) {
    if ((e as { code?: string }).code === 'ERR_UNKNOWN_OP') return null;
    throw e;
  }
  const name = `${spec.app}/${spec.id}`;
  const end = Date.now() + (o.placeTimeout ?? 60) * 1000;
  for (;;) {
    const g = (await local.call('orchestrator.get', { app: spec.app, id: spec.id })) as Placement;
    if (g.step && (g.step.state === 'failed' || g.step.state === 'lost'))
      throw new AppError(`${name} was not placed: ${g.step.reason}`, { code: g.step.error?.code ?? 'ERR_NOT_PLACED' });
    if (g.entry) {
      if (!o.json && g.step)
        process.stderr.write(`placed by ${g.step.leader} (term ${g.step.term}): ${g.step.reason}\n`);
      return g.entry;
    }
    if (Date.now() > end) {
      const last = g.step
        ? `the last step: ${g.step.state} on its node, ${g.step.reason}`
        : 'no orchestrator placed it';
      // It stays desired: a leader places it later (sosctl desired shows it; sosctl rm drops it).
      throw new AppError(`${name} is not running after ${o.placeTimeout ?? 60} s (${last})`, { code: 'ETIMEDOUT' });
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** `sosctl run` without --local-memory: start PROG on a node's sosd; with --wait, exit with its code. */
/** The application a program runs as: --app, else its file name made a name. */
export function appName(prog: string, app?: string): string {
  return (
    app ??
    (prog.split('/').pop() ?? 'app')
      .toLowerCase()
      .replace(/[^a-z0-9-]+/g, '-')
      .replace(/^-+|-+$/g, '')
      .slice(0, 63)
  );
}

export async function startOnSosd(prog: string, args: string[], o: StartOptions): Promise<void> {
  const app = appName(prog, o.app);
  const env: Record<string, string> = {};
  for (const kv of o.env) {
    const i = kv.indexOf('=');
    if (i <= 0) throw Object.assign(new Error(`--env wants NAME=VALUE, got '${kv}'`), { exitCode: 2 });
    env[kv.slice(0, i)] = kv.slice(i + 1);
  }
  const limits = {
    ...(o.memory === undefined ? {} : { memoryBytes: o.memory }),
    ...(o.cpus === undefined ? {} : { cpu: { quotaUs: Math.round(o.cpus * 100_000), periodUs: 100_000 } }),
    ...(o.pids === undefined ? {} : { pids: o.pids }),
  };
  const req = {
    app,
    argv: [prog, ...args],
    ...(o.env.length ? { env } : {}),
    ...(o.cwd ? { cwd: o.cwd } : {}),
    ...(Object.keys(limits).length ? { limits } : {}),
    ...(o.farMemory ? { farMemory: o.farMemory } : {}),
  };
  if (o.farMemory && o.node === undefined)
    throw Object.assign(new Error('run: a far-memory configuration goes to a node (--node)'), { exitCode: 2 });
  if (o.farRequest) {
    if (o.node !== undefined)
      throw Object.assign(new Error('run: a far-memory request goes to the orchestrator'), { exitCode: 2 });
    Object.assign(req, { farMemory: o.farRequest });
  }
  // Without --node, in a cluster: the orchestrator places it (desired state first, then a node).
  const placed = o.node === undefined ? await placeByOrchestrator(req, o) : null;
  if (o.farRequest && !placed)
    throw Object.assign(new Error('run: --far-memory without --node needs a cluster, whose orchestrator places it'), {
      exitCode: 2,
    });
  const t = await sosdOf(placed?.node ?? o.node, o);
  try {
    const r = placed ?? ((await t.call('apps.run', req)) as ProcessEntry);
    if (!o.wait) return printDoc(o.json, r, `${r.app}/${r.id} runs on ${r.node} (pid ${r.pid})`);
    if (!o.json) process.stderr.write(`${r.app}/${r.id} runs on ${r.node} (pid ${r.pid}); waiting for its exit\n`);
    let e = r;
    while (e.state !== 'exited') {
      await new Promise((res) => setTimeout(res, 200));
      e = (await t.call('apps.get', { app: r.app, id: r.id })) as ProcessEntry;
    }
    if (o.json) console.log(JSON.stringify(e, null, 2));
    process.exitCode = e.exitCode ?? 1;
  } finally {
    t.close();
  }
}
