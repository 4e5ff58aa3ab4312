/**
 * sosd's HTTP listener, for Prometheus and health checks only: `GET /metrics` (the daemon's registry in
 * Prometheus text format) and `GET /healthz` (200 while the local socket serves, else 503). Anything else
 * is 404, any other method 405. It reads no request body and serves nothing else: the API is the socket.
 */
import http from 'node:http';
import { ListenError } from './errors.js';
import type { DaemonMetrics } from './metrics.js';

/** Where to listen: a host (an address or a name) and a port (0: one the kernel picks). */
export interface HttpOptions {
  host: string;
  port: number;
}

/** Where the listener is bound. */
export interface HttpAddress {
  host: string;
  port: number;
}

interface Served {
  metrics: DaemonMetrics;
  /** Whether the daemon serves (its socket listens). */
  healthy: () => boolean;
  /** When the daemon started (ms since the epoch). */
  started: number;
}

/** Listen on `opts.host:opts.port`; a ListenError (code: the errno name, e.g. `EADDRINUSE`) when it cannot. */
export async function startHttp(opts: HttpOptions, served: Served): Promise<http.Server> {
  const server = http.createServer((req, res) => route(req, res, served));
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;
  const where = opts.host.includes(':') ? `[${opts.host}]:${opts.port}` : `${opts.host}:${opts.port}`;
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) =>
      reject(
        new ListenError(`cannot serve HTTP on ${where}: ${e.message}`, where, {
          code: e.code ?? 'ERR_INTERNAL',
          cause: e,
        }),
      ),
    );
    server.listen(opts.port, opts.host, () => resolve());
  });
  return server;
}

function route(req: http.IncomingMessage, res: http.ServerResponse, served: Served): void {
  let pathname: string;
  try {
    pathname = new URL(req.url ?? '/', 'http://sosd').pathname;
  } catch {
    pathname = '';
  }
  const known = pathname === '/metrics' || pathname === '/healthz';
  if (!known) return send(res, 404, 'text/plain; charset=utf-8', 'not found: sosd serves /metrics and /healthz\n');
  if (req.method !== 'GET') {
    res.setHeader('Allow', 'GET');
    return send(res, 405, 'text/plain; charset=utf-8', `method ${req.method} not allowed: GET only\n`);
  }
  if (pathname === '/healthz') {
    const ok = served.healthy();
    const body = {
      status: ok ? 'ok' : 'unavailable',
      pid: process.pid,
      uptimeSeconds: Math.floor((Date.now() - served.started) / 1000),
    };
    return send(res, ok ? 200 : 503, 'application/json', JSON.stringify(body) + '\n');
  }
  served.metrics.scrape().then(
    (text) => send(res, 200, served.metrics.contentType, text),
    (e: unknown) => send(res, 500, 'text/plain; charset=utf-8', `cannot collect metrics: ${(e as Error).message}\n`),
  );
}

function send(res: http.ServerResponse, status: number, type: string, body: string): void {
  res.writeHead(status, {
    'Content-Type': type,
    'Content-Length': Buffer.byteLength(body),
    'Cache-Control': 'no-store',
  });
  res.end(body);
}
