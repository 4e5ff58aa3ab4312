#!/usr/bin/env node
/**
 * The migration agent as a process, for nodes that are network namespaces
 * (start it with `nsenter --net=/run/netns/NODE node agent-main.js …` so its
 * sockets live there) until sosd hosts it. `agent-main.js --help` and
 * docs/migration.md ("agent-main.js: commands and flags") document every flag.
 *
 * stdout carries JSON lines only (what testkit/migration-agents.ts and the
 * benchmark read); logs and usage errors go to stderr. Exit codes: 0 done,
 * 1 the migration failed ({"error":…} on stdout), 2 the command could not
 * run (bad usage, an unreadable secret, a port in use…; the reason on stderr).
 *
 * Each command is one block below: its options (parsed and checked by
 * agent-args.ts) and its action, which imports what it runs (a usage error
 * or --help does not load the agent).
 */
import fs from 'node:fs';
import { Command, CommanderError, Option } from 'commander';
import type { MoveAddress } from './address.js';
import * as arg from './agent-args.js';
import { SECRET_BYTES, writeSecretFile } from '../net/secret.js';
import type { MigrationError } from './errors.js';

function out(o: unknown) {
  process.stdout.write(JSON.stringify(o) + '\n');
}

/** A failure that is the caller's doing: the reason on stderr, exit 2. */
function usage(message: string): never {
  process.stderr.write(`agent-main: ${message}\n`);
  process.exit(2);
}

function readSecret(file: string): Buffer {
  try {
    return fs.readFileSync(file);
  } catch (e) {
    usage(`cannot read --secret-file ${file}: ${(e as Error).message}`);
  }
}

const secretFile = () =>
  new Option(
    '--secret-file <file>',
    `the secret shared by agents and clients (make one with \`secret\`) (required)`,
  ).makeOptionMandatory();

const program: Command = new Command('agent-main.js')
  .description('The ServerlessOS migration agent (listen) and its client (migrate).')
  .exitOverride()
  .showHelpAfterError('(add --help for the flags)')
  .showSuggestionAfterError()
  .configureHelp({ helpWidth: 110 })
  .configureOutput({ outputError: (s, write) => write(`agent-main: ${s}`) })
  .addHelpText('after', () => {
    const each = program.commands.map((c: Command) => `\n${c.helpInformation()}`).join('');
    return `\nExit codes: 0 done, 1 the migration failed ({"error":…} on stdout), 2 bad usage or cannot start.\n${each}`;
  });

// listen: serve migrations to and from this node until SIGTERM/SIGINT.
program
  .command('listen')
  .description('run an agent: prints {"listening":{"host","port"}} once ready, then logs to stderr')
  .addOption(secretFile())
  .requiredOption('--work-dir <dir>', 'folder for images in transit (a subfolder per migration) (required)')
  .option('--host <addr>', 'address to listen on', arg.host, '127.0.0.1')
  .option('--port <port>', 'TCP port, 0..65535 (0: any free one, printed)', arg.listenPort, 0)
  .option('--flush-neigh <ns,…>', 'flush the neighbour tables of these network namespaces after a move', arg.namespaces)
  .option('--refuse <reason>', 'refuse every incoming migration with this reason (a draining node)', arg.text)
  .option(
    '--idle-timeout-ms <ms>',
    'a connection silent this long counts as cut, ≥ 100 (default 15000)',
    arg.idleTimeoutMs,
  )
  .option(
    '--in-doubt-ms <ms>',
    'how long an outgoing migration asks a target gone silent after the commit, ≥ 0 (default 30000)',
    arg.inDoubtMs,
  )
  .option(
    '--max-incoming <n>',
    'incoming migrations at once, 1..1024; more are refused (default 4)',
    arg.intIn(1, 1024),
  )
  .option(
    '--max-outgoing <n>',
    'outgoing migrations at once, 1..1024; more are refused with ERR_TOO_MANY (default 4)',
    arg.intIn(1, 1024),
  )
  .action(
    async (o: {
      secretFile: string;
      workDir: string;
      host: string;
      port: number;
      flushNeigh?: string[];
      refuse?: string;
      idleTimeoutMs?: number;
      inDoubtMs?: number;
      maxIncoming?: number;
      maxOutgoing?: number;
    }) => {
      const { MigrationAgent } = await import('./agent.js');
      const { flushNeighbours } = await import('./address.js');
      const agent = await MigrationAgent.listen({
        secret: readSecret(o.secretFile),
        workDir: o.workDir,
        host: o.host,
        port: o.port,
        ...(o.flushNeigh ? { announce: flushNeighbours(o.flushNeigh) } : {}),
        ...(o.refuse ? { admit: () => o.refuse } : {}),
        ...(o.idleTimeoutMs !== undefined ? { idleTimeoutMs: o.idleTimeoutMs } : {}),
        ...(o.inDoubtMs !== undefined ? { inDoubtMs: o.inDoubtMs } : {}),
        ...(o.maxIncoming !== undefined ? { maxIncoming: o.maxIncoming } : {}),
        ...(o.maxOutgoing !== undefined ? { maxOutgoing: o.maxOutgoing } : {}),
        log: (l) => process.stderr.write(`[agent] ${new Date().toISOString()} ${l}\n`),
      });
      out({ listening: { host: agent.host, port: agent.port } });
      const stop = () => void agent.close().then(() => process.exit(0));
      process.on('SIGTERM', stop);
      process.on('SIGINT', stop);
    },
  );

// migrate: ask the agent at --agent to migrate its process --pid to the agent at --to.
program
  .command('migrate')
  .description('ask an agent to migrate one of its processes: one {"progress":…} line per event, then {"result":…}')
  .addOption(secretFile())
  .requiredOption('--agent <host:port>', "the source node's agent (required)", arg.hostPort)
  .requiredOption(
    '--pid <pid>',
    'the process to move (the init of its PID namespace) on the source node (required)',
    arg.pid,
  )
  .requiredOption('--to <host:port>', "the target node's agent (required)", arg.hostPort)
  .addOption(new Option('--mode <mode>', 'pre-copy or post-copy').choices(['precopy', 'postcopy']).default('precopy'))
  .addOption(
    new Option('--strategy <strategy>', 'how the pages go across (default: auto)').choices([
      'auto',
      'commit',
      'handover',
    ]),
  )
  .option('--move-address <ADDR/PREFIX@DEV[@TARGETDEV]>', 'move this IP address with the process', arg.moveAddress)
  .option('--no-tcp', 'do not carry ESTABLISHED TCP connections')
  .action(
    async (o: {
      secretFile: string;
      agent: { host: string; port: number };
      pid: number;
      to: { host: string; port: number };
      mode: 'precopy' | 'postcopy';
      strategy?: 'auto' | 'commit' | 'handover';
      moveAddress?: MoveAddress;
      tcp: boolean;
    }) => {
      const secret = readSecret(o.secretFile);
      const { requestMigration } = await import('./client.js');
      try {
        const result = await requestMigration(o.agent, secret, o.pid, {
          to: o.to,
          mode: o.mode,
          ...(o.moveAddress ? { moveAddress: o.moveAddress } : {}),
          tcpEstablished: o.tcp,
          ...(o.strategy ? { strategy: o.strategy } : {}),
          onProgress: (p) => out({ progress: p }),
        });
        out({ result });
      } catch (e) {
        const err = e as MigrationError;
        out({
          error: { code: err.code, message: err.message, step: err.step, runningOn: err.runningOn, pid: err.pid },
        });
        process.exitCode = 1;
      }
    },
  );

// resolve: settle outgoing migrations left in doubt (what a listening agent also does every 5 s).
program
  .command('resolve')
  .description(
    'ask the targets of migrations left in doubt in <work-dir>/out what became of them, and kill or resume the ' +
      'stopped source copy accordingly: one {"resolution":…} line each (exit 1 if any stays in doubt)',
  )
  .addOption(secretFile())
  .requiredOption('--work-dir <dir>', "the source agent's work folder (required)")
  .option('--id <id>', 'only this migration (32 hex digits)', arg.migrationId)
  .option('--wait-ms <ms>', 'keep asking an unreachable target this long, ≥ 0 (default 0)', arg.inDoubtMs, 0)
  .action(async (o: { secretFile: string; workDir: string; id?: string; waitMs: number }) => {
    const { resolveInDoubt, resolveMigration } = await import('./resolve.js');
    const path = await import('node:path');
    const opts = { workDir: path.join(o.workDir, 'out'), secret: readSecret(o.secretFile), waitMs: o.waitMs };
    const all = o.id ? [await resolveMigration(o.id, opts)] : await resolveInDoubt(opts);
    for (const r of all) out({ resolution: r });
    if (all.some((r) => r.runningOn === 'stopped-source')) process.exitCode = 1;
  });

// secret: write a fresh random secret, readable by its owner only; an existing file is never replaced.
program
  .command('secret')
  .description(`write a new ${SECRET_BYTES}-byte random secret to <file> (mode 0600; refuses an existing file)`)
  .argument('<file>', 'where to write it')
  .action(async (file: string) => {
    try {
      await writeSecretFile(file);
    } catch (e) {
      const code = (e as { code?: string }).code;
      usage(code === 'EEXIST' ? `${file} exists: refusing to overwrite it` : (e as Error).message);
    }
    out({ secret: { file, bytes: SECRET_BYTES } });
  });

try {
  await program.parseAsync();
} catch (e) {
  // Commander already printed its own errors (and the help); it exits 0 only for --help.
  if (e instanceof CommanderError) process.exit(e.exitCode === 0 ? 0 : 2);
  process.stderr.write(`agent-main: ${(e as Error).message}\n`);
  process.exit(2);
}
