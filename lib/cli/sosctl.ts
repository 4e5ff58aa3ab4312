#!/usr/bin/env node
/**
 * sosctl — the ServerlessOS command line.
 *   sosctl probe                 what this machine offers (no daemon needed)
 *   sosctl status [--socket P]   ask the local sosd
 *   sosctl node [--socket P]     the node's capabilities, from sosd
 *   sosctl run [--app A] [--node N] -- PROG ARGS…   a workload on a node's sosd: APP/ID
 *   sosctl ps | top | logs APP/ID | kill APP/ID | rm APP/ID   the cluster's processes
 *   sosctl run --local-memory SIZE --memory-nodes LIST --secret-file F -- PROG ARGS…
 *   sosctl cluster init|issue|revoke|up|down …   the cluster folder (CA, certificates, CRL), a local cluster
 *   sosctl nodes [--dir D]       the live nodes, from etcd
 * Exit codes: 0 done; 1 the request failed; 2 bad usage; run --wait and run --local-memory: PROG's own
 * (125: sosctl failed). docs/sosctl.md lists them.
 */
import { Command } from 'commander';
import { nodeInfo } from '../node-info.js';
import { request } from '../daemon/client.js';
import { socketOption, sosdSocket } from './sosd-socket.js';
import { printDoc } from './output.js';
import { runCommand } from './run-command.js';
import { clusterCommand, nodesCommand } from './cluster-command.js';
import {
  checkpointCommand,
  checkpointsCommand,
  killCommand,
  logsCommand,
  psCommand,
  rmCommand,
  topCommand,
} from './apps-command.js';
import { migrateCommand } from './migrate-command.js';
import { decisionsCommand, desiredCommand, orchestratorCommand } from './orchestrator-command.js';

const program = new Command('sosctl')
  .description('the ServerlessOS command line')
  .enablePositionalOptions()
  .exitOverride()
  .showHelpAfterError();
program
  .command('probe')
  .description('what this machine offers (no daemon needed)')
  .option('--json', 'print JSON')
  .action((o: { json?: boolean }) => printDoc(o.json, nodeInfo()));
for (const [name, op, what] of [
  ['status', 'status', "the local sosd's status"],
  ['node', 'node.info', "the node's capabilities, from sosd"],
] as const)
  program
    .command(name)
    .description(what)
    .addOption(socketOption())
    .option('--json', 'print JSON')
    .action(async (o: { socket?: string; json?: boolean }) =>
      printDoc(o.json, await request(op, {}, sosdSocket(o.socket))),
    );
program.addCommand(runCommand().exitOverride());
program.addCommand(clusterCommand());
program.addCommand(nodesCommand());
for (const c of [
  psCommand(),
  migrateCommand(),
  logsCommand(),
  killCommand(),
  checkpointCommand(),
  checkpointsCommand(),
  rmCommand(),
  topCommand(),
  orchestratorCommand(),
  decisionsCommand(),
  desiredCommand(),
])
  program.addCommand(c);

program.parseAsync().then(
  () => process.exit(process.exitCode ?? 0),
  (e: Error & { code?: string; exitCode?: number }) => {
    if (e.code?.startsWith('commander.')) process.exit(e.exitCode === 0 ? 0 : 2); // commander said why
    console.error(`sosctl: ${e.message}${e.code ? ` (${e.code})` : ''}`);
    process.exit(e.exitCode ?? 1);
  },
);
