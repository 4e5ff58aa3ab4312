#!/usr/bin/env node
/**
 * sosd — the ServerlessOS node daemon (runs as root on every node).
 * Today it serves the node's capabilities on a local socket; the cluster
 * issues grow it into the agent that hosts memory, migrations and limits.
 *   sosd [--socket PATH] [--http HOST:PORT|off] [--log-level LEVEL]
 * The socket is made 0600 and serves root and sosd's own user only (SO_PEERCRED);
 * an existing PATH that is not a stale socket is refused, never replaced.
 * `/metrics` and `/healthz` are served over HTTP on --http (default 127.0.0.1:9464).
 * Logs are JSON lines (pino) on stderr; one line on stdout says it serves.
 */
import { pino } from 'pino';
import { DaemonServer } from './server.js';
import type { HttpOptions } from './http.js';
import { DEFAULT_SOCKET } from './protocol.js';

const DEFAULT_HTTP = '127.0.0.1:9464';
const LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'];
const USAGE = `usage: sosd [--socket PATH] [--http HOST:PORT|off] [--log-level LEVEL]
  --socket PATH      the local API's unix socket (default ${DEFAULT_SOCKET}; a stale socket there is replaced, nothing else)
  --http HOST:PORT   serve GET /metrics and GET /healthz there (default ${DEFAULT_HTTP}; [::1]:PORT for IPv6; off: none)
  --log-level LEVEL  ${LEVELS.join('|')} (default info); logs are JSON lines on stderr`;

function usage(problem: string): never {
  process.stderr.write(`sosd: ${problem}\n${USAGE}\n`);
  process.exit(2);
}

/** HOST:PORT, [V6]:PORT, or off. */
function parseHttp(v: string): HttpOptions | null {
  if (v === 'off') return null;
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(v);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) usage(`--http wants HOST:PORT, [IPV6]:PORT or off, not ${JSON.stringify(v)}`);
  return { host: m[1] ?? m[2], port };
}

const argv = process.argv.slice(2);
let socket = DEFAULT_SOCKET;
let httpOpt: HttpOptions | null = parseHttp(DEFAULT_HTTP);
let level = 'info';
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  const value = () => (i + 1 < argv.length ? argv[++i] : usage(`${a} needs a value`));
  if (a === '--socket') socket = value();
  else if (a === '--http') httpOpt = parseHttp(value());
  else if (a === '--log-level') {
    level = value();
    if (!LEVELS.includes(level)) usage(`--log-level is one of ${LEVELS.join(', ')}, not ${JSON.stringify(level)}`);
  } else if (a === '--help' || a === '-h') {
    process.stdout.write(USAGE + '\n');
    process.exit(0);
  } else usage(`unknown argument ${a}`);
}

// Synchronous writes: a line logged just before process.exit() is not lost.
const log = pino(
  {
    name: 'sosd',
    level,
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
  },
  pino.destination({ dest: 2, sync: true }),
);
process.on('uncaughtException', (e) => {
  log.fatal({ err: e }, `uncaught exception: ${e.message}`);
  process.exit(1);
});

const server = new DaemonServer(socket, { log, ...(httpOpt ? { http: httpOpt } : {}) });
try {
  await server.listen();
} catch (e) {
  // A path that is not a socket, a daemon already there, a port in use…: said plainly, the path left as it was.
  const err = e as Error & { code?: string; path?: string };
  log.fatal({ code: err.code, path: err.path }, err.message);
  process.exit(1);
}
const h = server.httpAddress;
const metricsUrl = h ? `http://${h.host.includes(':') ? `[${h.host}]` : h.host}:${h.port}/metrics` : null;
log.info({ socket, http: metricsUrl, ops: server.opList }, 'listening');
// The readiness line (scripts and tests wait for it).
process.stdout.write(
  `sosd: listening on ${socket} (pid ${process.pid})${metricsUrl ? `; metrics on ${metricsUrl}` : ''}\n`,
);
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    log.info({ signal: sig }, 'stopping');
    void server.close().then(() => process.exit(0));
  });
}
