/**
 * `sosctl migrate APP/ID --to NODE [--postcopy] [--direct]`: live-migrate a process to another node.
 * In a cluster the orchestrator takes it (`orchestrator.migrate`: asked for in etcd, started once by
 * the leader, fenced by its term, across a failover too); `--direct`, or a sosd without an
 * orchestrator: the sosd of the node it runs on (`apps.migrate`, which records the move in etcd and
 * runs it with the target's sosd). Either way it is followed (`apps.migration`) with a progress bar
 * on stderr when stderr is a terminal, and it prints where the process runs and what the move cost.
 */
import crypto from 'node:crypto';
import { Command, InvalidArgumentError } from 'commander';
import cliProgress from 'cli-progress';
import { AppError } from '../apps/errors.js';
import type { MoveAddress } from '../migration/address.js';
import { moveAddress } from '../migration/agent-args.js';
import { clusterOptions, locate, procName, type Opts, type ProcName } from './apps-command.js';
import { printDoc } from './output.js';
import { formatBytes } from './size.js';
import { sosdOf } from './target.js';

/** What `sosctl migrate --json` prints, besides `process`. */
export interface Result {
  migration: string;
  from: string;
  to: string;
  mode: string;
  pid: number;
  downtimeMs: number;
  totalMs: number;
  bytes: number;
  pages: number;
}

interface Progress {
  phase: string;
  bytes: number;
  pages: number;
  state: string;
}

/** A migration can take long (post-copy of a big heap): the reply may come this late. */
const MIGRATE_TIMEOUT_MS = 6 * 3600_000;
const POLL_MS = 200;

function node(v: string): string {
  if (!/^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/.test(v)) throw new InvalidArgumentError(`not a node name: '${v}'`);
  return v;
}

type MigrateOpts = Opts & {
  to: string;
  postcopy?: boolean;
  progress: boolean;
  moveAddress?: MoveAddress;
  direct?: boolean;
};

interface Wanted {
  migration: string;
  state: 'wanted' | 'started' | 'done' | 'failed';
  from?: string;
  to: string;
  mode: string;
  reason?: string;
  result?: { pid: number; downtimeMs: number; totalMs: number; bytes: number; pages?: number };
  error?: { code: string; message: string };
}

/** A progress bar on stderr when it is a terminal (and wanted). */
function progressBar(o: MigrateOpts, what: string) {
  return o.progress && !o.json && process.stderr.isTTY
    ? new cliProgress.SingleBar(
        {
          format: `${what} {phase} | {moved} | {pages} pages`,
          stream: process.stderr,
          hideCursor: true,
          clearOnComplete: true,
        },
        cliProgress.Presets.shades_classic,
      )
    : null;
}

/**
 * Through the orchestrator: the migration asked for in etcd (the local sosd's orchestrator.migrate),
 * then followed until the leader records how it ended; null when that sosd has no orchestrator.
 */
async function viaOrchestrator(p: ProcName, o: MigrateOpts, args: Record<string, unknown>): Promise<Result | null> {
  const local = await sosdOf(undefined, o);
  let w: Wanted;
  try {
    w = (await local.call('orchestrator.migrate', args)) as Wanted;
  } catch (e) {
    if ((e as { code?: string }).code === 'ERR_UNKNOWN_OP') return null;
    throw e;
  }
  const bar = progressBar(o, `${p.app}/${p.id} → ${o.to}`);
  bar?.start(1, 0, { phase: 'wanted', moved: formatBytes(0), pages: 0 });
  try {
    while (w.state !== 'done' && w.state !== 'failed') {
      await new Promise((r) => setTimeout(r, POLL_MS));
      w = (await local.call('orchestrator.migration', { migration: w.migration })) as Wanted;
      if (bar && w.from) {
        const src = await sosdOf(w.from, o).catch(() => null);
        const s = (await src?.call('apps.migration', { migration: w.migration }).catch(() => null)) as Progress | null;
        src?.close();
        if (s) bar.update(0, { phase: s.phase, moved: formatBytes(s.bytes), pages: s.pages });
      }
    }
  } finally {
    bar?.stop();
    local.close();
  }
  if (w.state === 'failed')
    throw new AppError(`${p.app}/${p.id} did not migrate: ${w.reason ?? 'failed'}`, {
      code: w.error?.code ?? 'ERR_MIGRATION',
    });
  const r = w.result ?? { pid: 0, downtimeMs: 0, totalMs: 0, bytes: 0 };
  return {
    migration: w.migration,
    from: w.from ?? '?',
    to: w.to,
    mode: w.mode,
    pid: r.pid,
    downtimeMs: r.downtimeMs,
    totalMs: r.totalMs,
    bytes: r.bytes,
    pages: r.pages ?? Math.ceil(r.bytes / 4096),
  };
}

export function migrateCommand(): Command {
  return clusterOptions(
    new Command('migrate')
      .description(
        'live-migrate a process to another node (it keeps its APP/ID, pid 1 in its namespace, its TCP connections)',
      )
      .exitOverride()
      .showHelpAfterError()
      .argument('<process>', 'APP/ID', procName)
      .requiredOption('--to <node>', 'the node to move it to', node)
      .option('--postcopy', 'resume on the target at once and pull memory pages after (default: pre-copy)')
      .option(
        '--move-address <addr>',
        "ADDR/PREFIX@DEV[@TARGETDEV]: an IP address that moves with it (in both nodes' --move-ranges)",
        moveAddress,
      )
      .option('--no-progress', 'no progress bar (there is none when stderr is not a terminal)')
      .option('--direct', "ask the sosd it runs on, not the cluster's orchestrator"),
  ).action(async (p: ProcName, o: MigrateOpts) => {
    const where = await locate(p, o);
    if (where.state !== 'running')
      throw new AppError(`${p.app}/${p.id} is not running (${where.state})`, { code: 'ERR_APP_EXITED' });
    const request = {
      app: p.app,
      id: p.id,
      to: o.to,
      mode: o.postcopy ? 'postcopy' : 'precopy',
      ...(o.moveAddress ? { moveAddress: o.moveAddress } : {}),
    };
    const byLeader = o.direct ? null : await viaOrchestrator(p, o, request);
    if (byLeader) return print(p, o, byLeader);
    const t = await sosdOf(where.node, o);
    const migration = crypto.randomBytes(16).toString('hex');
    const bar = progressBar(o, `${p.app}/${p.id} ${where.node} → ${o.to}`);
    bar?.start(1, 0, { phase: 'connect', moved: formatBytes(0), pages: 0 });
    let done = false;
    const follow = (async () => {
      while (!done) {
        await new Promise((r) => setTimeout(r, POLL_MS));
        if (done) break;
        const s = (await t.call('apps.migration', { migration }).catch(() => null)) as Progress | null;
        if (s) bar?.update(0, { phase: s.phase, moved: formatBytes(s.bytes), pages: s.pages });
      }
    })();
    let r: Result;
    try {
      r = (await t.call('apps.migrate', { ...request, migration }, MIGRATE_TIMEOUT_MS)) as Result;
    } finally {
      done = true;
      await follow;
      bar?.stop();
      t.close();
    }
    print(p, o, r);
  });
}

function print(p: ProcName, o: MigrateOpts, r: Result): void {
  printDoc(
    o.json,
    { process: `${p.app}/${p.id}`, ...r },
    `${p.app}/${p.id} runs on ${r.to} now (pid ${r.pid} there), moved from ${r.from} by ${r.mode}: ` +
      `downtime ${r.downtimeMs.toFixed(0)} ms, total ${r.totalMs.toFixed(0)} ms, ${formatBytes(r.bytes)} (${r.pages} pages)`,
  );
}
