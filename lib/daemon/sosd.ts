#!/usr/bin/env node
/**
 * sosd — the ServerlessOS node daemon (runs as root on every node): one process hosting every role
 * of the node as a service behind one API. `sosd --help` lists its flags; docs/sosd.md states the API.
 * The socket is made 0600 and serves root and sosd's own user only (SO_PEERCRED); an existing path
 * that is not a stale socket is refused, never replaced, and a live sosd there is "already running".
 * With --cluster-dir it joins the cluster through etcd after it listens (so a second sosd never
 * takes the first one's name). Logs are JSON lines (pino) on stderr; one line on stdout says it serves.
 * SIGTERM/SIGINT stop it for a restart: the cluster lease is kept, not revoked (see cluster-service.ts).
 */
import os from 'node:os';
import { Command, InvalidArgumentError, Option } from 'commander';
import { pino } from 'pino';
import { loadConfig, loadMember } from '../cluster/folder.js';
import { AppsService } from './apps-service.js';
import { ClusterService } from './cluster-service.js';
import { FarService } from './far-service.js';
import { checkFence } from '../orchestrator/fence.js';
import { MemoryService } from './memory-service.js';
import { MigrationService } from './migration-service.js';
import { AddressRanges } from '../migration/address-ranges.js';
import { parseSize } from '../cli/size.js';
import { DaemonServer } from './server.js';
import type { HttpOptions } from './http.js';
import { OrchestratorService } from './orchestrator-service.js';
import { CheckpointService } from './checkpoint-service.js';
import { DEFAULT_SOCKET } from './protocol.js';

/** The cluster API's port unless --api says otherwise. */
const DEFAULT_API_PORT = 7443;
/** The migration agent's port unless --migration-port says otherwise. */
const DEFAULT_MIGRATION_PORT = 7444;
/** The memory node's port unless --memory-port says otherwise. */
const DEFAULT_MEMORY_PORT = 7445;
const LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'];

/** HOST:PORT, [V6]:PORT, or off. */
function parseHttp(v: string): HttpOptions | null {
  if (v === 'off') return null;
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(v);
  if (!m || Number(m[3]) > 65535) throw new InvalidArgumentError(`wants HOST:PORT, [IPV6]:PORT or off, not '${v}'`);
  return { host: m[1] ?? m[2], port: Number(m[3]) };
}

function port(v: string): number {
  const n = Number(v);
  if (!/^\d+$/.test(v) || n > 65535) throw new InvalidArgumentError('must be a port number (0: none)');
  return n;
}

function ranges(v: string): AddressRanges {
  try {
    return AddressRanges.parse(v);
  } catch (e) {
    throw new InvalidArgumentError((e as Error).message);
  }
}

function ttl(v: string): number {
  const n = Number(v);
  if (!/^\d+$/.test(v) || n < 2 || n > 3600) throw new InvalidArgumentError('must be whole seconds from 2 to 3600');
  return n;
}

/** This host's first non-loopback IPv4 address (what peers most likely reach it at), else loopback. */
function defaultAddr(): string {
  for (const list of Object.values(os.networkInterfaces()))
    for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  return '127.0.0.1';
}

interface Flags {
  socket: string;
  http: HttpOptions | null;
  logLevel: string;
  stateDir: string;
  clusterDir?: string;
  name: string;
  addr: string;
  leaseTtl: number;
  api?: HttpOptions | null;
  migrationPort: number;
  moveRanges: AddressRanges;
  memoryCapacity?: number;
  memoryPort: number;
  cgroupPrefix: string;
  orchestrator: boolean;
}

const flags = new Command('sosd')
  .description('the ServerlessOS node daemon')
  .option(
    '--socket <path>',
    "the local API's unix socket (a stale socket there is replaced, nothing else)",
    DEFAULT_SOCKET,
  )
  .addOption(
    new Option('--http <host:port>', 'serve GET /metrics and GET /healthz there ([::1]:PORT for IPv6; off: none)')
      .argParser(parseHttp)
      .default(parseHttp('127.0.0.1:9464'), '127.0.0.1:9464'),
  )
  .addOption(
    new Option('--log-level <level>', 'JSON log lines on stderr from this level').choices(LEVELS).default('info'),
  )
  .option('--state-dir <path>', 'what must survive a restart (the cluster lease, workloads)', '/var/lib/serverlessos')
  .option(
    '--cgroup-prefix <path>',
    "the cgroup folder its workloads' groups go under, in each hierarchy",
    'serverlessos',
  )
  .option(
    '--cluster-dir <path>',
    'join the cluster of this folder (sosctl cluster init/issue); none: this machine only',
  )
  .option('--name <name>', "this node's name in the cluster (its certificate's)", os.hostname().toLowerCase())
  .option('--addr <ip>', 'the address peers reach this node at', defaultAddr())
  .addOption(
    new Option('--api <host:port>', "with --cluster-dir: serve the cluster's members over mutual TLS there (off: none)")
      .argParser(parseHttp)
      .default(undefined, '--addr:7443'),
  )
  .addOption(
    new Option(
      '--migration-port <port>',
      "with --cluster-dir: the migration agent's port on --addr (its secret goes to node peers over the API; 0: none)",
    )
      .argParser(port)
      .default(DEFAULT_MIGRATION_PORT),
  )
  .addOption(
    new Option(
      '--move-ranges <cidrs>',
      'the IP addresses that may move with a migrating process, out of this node or into it (CIDR[,CIDR…])',
    )
      .argParser(ranges)
      .default(AddressRanges.none, 'none'),
  )
  .addOption(
    new Option(
      '--memory-capacity <size>',
      'serve as a memory node holding up to this many bytes of far memory (e.g. 4GiB; default: none)',
    ).argParser(parseSize('--memory-capacity')),
  )
  .addOption(
    new Option('--memory-port <port>', "the memory node's port on --addr").argParser(port).default(DEFAULT_MEMORY_PORT),
  )
  .addOption(
    new Option('--lease-ttl <seconds>', 'membership lease TTL: how soon the others notice this node gone')
      .argParser(ttl)
      .default(2),
  )
  .option('--no-orchestrator', "with --cluster-dir: do not campaign to lead the cluster's orchestrator")
  .showHelpAfterError('(sosd --help lists the flags)')
  .exitOverride((e) => process.exit(e.exitCode === 0 ? 0 : 2))
  .parse()
  .opts<Flags>();

// Synchronous writes: a line logged just before process.exit() is not lost.
const log = pino(
  {
    name: 'sosd',
    level: flags.logLevel,
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
  },
  pino.destination({ dest: 2, sync: true }),
);
process.on('uncaughtException', (e) => {
  log.fatal({ err: e }, `uncaught exception: ${e.message}`);
  process.exit(1);
});

function fatal(e: unknown): never {
  // A path that is not a socket, a daemon already there, a port in use, no etcd…: said plainly.
  const err = e as Error & { code?: string; path?: string };
  log.fatal({ code: err.code, path: err.path }, err.message);
  process.exit(1);
}

const server = new DaemonServer(flags.socket, { log, ...(flags.http ? { http: flags.http } : {}) });
await server.listen().catch(fatal);

// The memory node first: its port is one of the facts the node publishes when it joins.
let memory: MemoryService | null = null;
// In a cluster, the memory node's connections are mutual TLS with the node's own certificate.
const memoryTls = (m = flags.clusterDir ? loadMember(flags.clusterDir, 'node', flags.name) : undefined) => {
  if (!m) return undefined;
  return { caPem: m.caPem, certPem: m.certPem, keyPem: m.keyPem, crlPem: m.crlPem, cluster: m.cluster };
};
if (flags.memoryCapacity) {
  const capacity = flags.memoryCapacity;
  // Inside the async function: a certificate that cannot be read fails the start like a port in use.
  memory = await (async () =>
    MemoryService.start({ host: flags.addr, port: flags.memoryPort, capacity, log, tls: memoryTls() }))().catch(
    async (e) => {
      await server.close();
      return fatal(e);
    },
  );
  server.registerAll(memory.ops());
}

let cluster: ClusterService | null = null;
// This node's certificate, key, CA and CRL as last loaded (SIGHUP loads them again).
let nodeCreds: ReturnType<typeof loadMember>;
let api: { host: string; port: number } | null = null;
if (flags.clusterDir) {
  const dir = flags.clusterDir;
  const creds = () => loadMember(dir, 'node', flags.name);
  nodeCreds = creds();
  const where = flags.api === undefined ? { host: flags.addr, port: DEFAULT_API_PORT } : flags.api;
  try {
    if (where) api = await server.listenTls({ ...where, credentials: nodeCreds, cluster: loadConfig(dir).cluster });
    cluster = await ClusterService.start({
      dir,
      name: flags.name,
      addr: flags.addr,
      apiPort: api?.port ?? null,
      migrationPort: api && flags.migrationPort ? flags.migrationPort : null,
      memoryPort: memory?.address.port ?? null,
      stateDir: flags.stateDir,
      ttlSeconds: flags.leaseTtl,
      log,
    });
  } catch (e) {
    await server.close();
    fatal(e);
  }
  server.registerAll(cluster.ops());
  // SIGHUP: the cluster folder's files again — a rotated certificate, a new CRL — without a restart.
  process.on('SIGHUP', () => {
    void (async () => {
      const fresh = creds();
      const closed = await server.setTlsCredentials(fresh);
      nodeCreds = fresh; // the migration agent's next connections too
      const tls = memoryTls(fresh); // the files were read once, for every role
      if (memory && tls) memory.setTls(tls);
      log.info({ closed }, 'reloaded the certificate and CRL');
    })().catch((e: Error) => log.error({ err: e }, `reload failed, the old credentials stay: ${e.message}`));
  });
}

// Workloads: re-adopted from the state folder before any op can start new ones.
const apps = await AppsService.start({
  stateDir: flags.stateDir,
  node: flags.name,
  cgroupPrefix: flags.cgroupPrefix,
  cluster: cluster?.node ?? null,
  log,
}).catch(async (e) => {
  await cluster?.detach();
  await server.close();
  return fatal(e);
});
server.registerAll(apps.ops());
cluster?.node.telemetry.addSource(apps.telemetrySource());
// The paging monitor of far-memory workloads (its memory-node connections: this node's certificate).
const far = await FarService.start({ workloads: apps.workloads, log, tls: () => memoryTls()! }).catch((e: Error) => {
  log.warn({ err: e.message }, 'no far-memory monitor here (another sosd in this network namespace?)');
  return null;
});
apps.far = far;
// The leading orchestrator lets far-memory processes into this memory node, fenced by its term.
if (memory && cluster) {
  const store = cluster.node.store;
  memory.checkFence = (f) => checkFence(store, f);
}
await far?.resume(); // what the last sosd detached when it stopped
if (memory) cluster?.node.telemetry.addSource(memory.telemetrySource());

// Migration: with a cluster (its moves are recorded in etcd; the agents speak mutual TLS) and an API (peers ask there).
let migration: MigrationService | null = null;
if (cluster && api && flags.migrationPort) {
  migration = await MigrationService.start({
    stateDir: flags.stateDir,
    clusterDir: flags.clusterDir!,
    credentials: () => nodeCreds,
    cluster: cluster.node,
    apps,
    far,
    host: flags.addr,
    port: flags.migrationPort,
    moveRanges: flags.moveRanges,
    log,
  }).catch(async (e) => {
    apps.close();
    await cluster?.detach();
    await server.close();
    return fatal(e);
  });
  server.registerAll(migration.ops());
}

// Checkpoints: with a cluster (their holders are other nodes, their records in etcd) and an API.
let checkpoints: CheckpointService | null = null;
if (cluster && api) {
  checkpoints = CheckpointService.start({
    stateDir: flags.stateDir,
    clusterDir: flags.clusterDir!,
    cluster: cluster.node,
    apps,
    log,
  });
  server.registerAll(checkpoints.ops());
}

// The orchestrator: every node of a cluster campaigns, the elected one places desired processes.
let orchestrator: OrchestratorService | null = null;
if (cluster && api && flags.orchestrator) {
  orchestrator = new OrchestratorService({
    clusterDir: flags.clusterDir!,
    name: flags.name,
    cluster: cluster.node,
    log,
  });
  server.registerAll(orchestrator.ops());
}

const h = server.httpAddress;
const metricsUrl = h ? `http://${h.host.includes(':') ? `[${h.host}]` : h.host}:${h.port}/metrics` : null;
log.info({ socket: flags.socket, http: metricsUrl, api, ops: server.opList }, 'listening');
// The readiness line (scripts and tests wait for it).
process.stdout.write(
  `sosd: listening on ${flags.socket} (pid ${process.pid})${metricsUrl ? `; metrics on ${metricsUrl}` : ''}${api ? `; cluster API on ${api.host}:${api.port}` : ''}\n`,
);
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    log.info({ signal: sig }, 'stopping');
    void (async () => {
      // The workloads go on running: the next sosd re-adopts them. A leader resigns first.
      await orchestrator?.close();
      await migration?.close();
      checkpoints?.close();
      memory?.close();
      await far?.close();
      apps.close();
      await cluster?.detach();
      await server.close();
      process.exit(0);
    })();
  });
}
