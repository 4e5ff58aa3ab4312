/**
 * `sosctl migrate APP/ID --to NODE [--postcopy]`: live-migrate a process to another node. The
 * command asks the sosd of the node it runs on (`apps.migrate`, which records the move in etcd and
 * runs it with the target's sosd), and meanwhile follows it (`apps.migration`) with a progress bar on
 * stderr when stderr is a terminal. It prints where the process runs and what the move cost.
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

interface Result {
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

type MigrateOpts = Opts & { to: string; postcopy?: boolean; progress: boolean; moveAddress?: MoveAddress };

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
      .option('--no-progress', 'no progress bar (there is none when stderr is not a terminal)'),
  ).action(async (p: ProcName, o: MigrateOpts) => {
    const where = await locate(p, o);
    if (where.state !== 'running')
      throw new AppError(`${p.app}/${p.id} is not running (${where.state})`, { code: 'ERR_APP_EXITED' });
    const t = await sosdOf(where.node, o);
    const migration = crypto.randomBytes(16).toString('hex');
    const bar =
      o.progress && !o.json && process.stderr.isTTY
        ? new cliProgress.SingleBar(
            {
              format: `${p.app}/${p.id} ${where.node} → ${o.to} {phase} | {moved} | {pages} pages`,
              stream: process.stderr,
              hideCursor: true,
              clearOnComplete: true,
            },
            cliProgress.Presets.shades_classic,
          )
        : null;
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
      r = (await t.call(
        'apps.migrate',
        {
          app: p.app,
          id: p.id,
          to: o.to,
          mode: o.postcopy ? 'postcopy' : 'precopy',
          migration,
          ...(o.moveAddress ? { moveAddress: o.moveAddress } : {}),
        },
        MIGRATE_TIMEOUT_MS,
      )) as Result;
    } finally {
      done = true;
      await follow;
      bar?.stop();
      t.close();
    }
    printDoc(
      o.json,
      { process: `${p.app}/${p.id}`, ...r },
      `${p.app}/${p.id} runs on ${r.to} now (pid ${r.pid} there), moved from ${r.from} by ${r.mode}: ` +
        `downtime ${r.downtimeMs.toFixed(0)} ms, total ${r.totalMs.toFixed(0)} ms, ${formatBytes(r.bytes)} (${r.pages} pages)`,
    );
  });
}
