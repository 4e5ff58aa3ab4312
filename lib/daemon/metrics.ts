/**
 * sosd's metrics: one prom-client Registry of the daemon's own (never prom-client's global one), served
 * as Prometheus text on `GET /metrics` (lib/daemon/http.ts). Names follow Prometheus' conventions: the
 * `sos_` prefix, base units (seconds, bytes), counters ending in `_total`, and only bounded labels (an
 * op the daemon registered, an error code, an outcome): never a PID, a page, a path or a peer.
 *
 * Other services in the daemon add their own metrics to the same registry:
 * `new Counter({ name: 'sos_x_total', help: '…', registers: [metrics.registry] })`.
 */
import fs from 'node:fs';
import os from 'node:os';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** How a request ended, the `outcome` label of `sos_daemon_requests_total`. */
export type Outcome = 'ok' | 'error' | 'bad_args' | 'internal' | 'rejected' | 'forbidden';

/**
 * What became of a TLS connection, the `outcome` label of `sos_daemon_tls_connections_total`: accepted
 * (verified and served), too_many (closed at accept: a connection bound), handshake_timeout,
 * handshake_failed (no certificate, a broken handshake), certificate_refused (unknown CA, revoked, expired),
 * identity_refused (verified but of another cluster, or no role), idle (closed for silence),
 * revoked_open (open when a new CRL revoked its certificate).
 */
export type TlsOutcome =
  | 'accepted'
  | 'too_many'
  | 'handshake_timeout'
  | 'handshake_failed'
  | 'certificate_refused'
  | 'identity_refused'
  | 'idle'
  | 'revoked_open';

/** The `op` label of a request whose op is not one the daemon registered (or could not be read). */
export const UNKNOWN_OP = 'unknown';

// prom-client's default metrics that are gauges named `_total` (their per-type twins stay): promtool's
// lint refuses a `_total` suffix on anything but a counter.
const NOT_COUNTERS = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'];

export interface DaemonMetricsOptions {
  /** Where /proc/meminfo is read from on each scrape (default `/proc/meminfo`; tests point it elsewhere). */
  meminfo?: string;
  /** Collect prom-client's default process metrics, prefixed `sos_` (default true). */
  processMetrics?: boolean;
}

/** The daemon's registry and the metrics the socket server counts into. */
export class DaemonMetrics {
  /** The daemon's registry: register further metrics here. */
  readonly registry = new Registry();
  readonly requests: Counter<'op' | 'outcome'>;
  readonly duration: Histogram<'op'>;
  readonly framesRejected: Counter<'reason'>;
  readonly connections: Counter;
  readonly connectionsRefused: Counter;
  readonly connectionsOpen: Gauge;
  readonly up: Gauge;
  readonly startTime: Gauge;
  readonly tlsConnections: Counter<'outcome'>;
  readonly tlsPending: Gauge;
  readonly tlsOpen: Gauge;

  constructor(options: DaemonMetricsOptions = {}) {
    const registers = [this.registry];
    if (options.processMetrics ?? true) {
      collectDefaultMetrics({ register: this.registry, prefix: 'sos_' });
      for (const name of NOT_COUNTERS) this.registry.removeSingleMetric(`sos_${name}`);
    }
    this.requests = new Counter({
      name: 'sos_daemon_requests_total',
      help: 'Requests answered on the local socket and the TLS listener, by op (a registered op, or "unknown") and outcome (ok, error, bad_args, internal, rejected, forbidden).',
      labelNames: ['op', 'outcome'],
      registers,
    });
    this.duration = new Histogram({
      name: 'sos_daemon_request_duration_seconds',
      help: 'Time from a request line to its reply, for requests naming a registered op.',
      labelNames: ['op'],
      buckets: [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30],
      registers,
    });
    this.framesRejected = new Counter({
      name: 'sos_daemon_frames_rejected_total',
      help: 'Request frames refused before any handler ran, by error code (ERR_BAD_JSON, ERR_BAD_FRAME, ERR_VERSION, ERR_UNKNOWN_OP, ERR_FRAME_TOO_LARGE, ERR_BAD_ARGS, ERR_FORBIDDEN).',
      labelNames: ['reason'],
      registers,
    });
    this.connections = new Counter({
      name: 'sos_daemon_connections_total',
      help: 'Connections accepted on the local socket (peer root or the daemon user).',
      registers,
    });
    this.connectionsRefused = new Counter({
      name: 'sos_daemon_connections_refused_total',
      help: 'Connections refused on the local socket: a peer that is neither root nor the daemon user, or cannot be told.',
      registers,
    });
    this.connectionsOpen = new Gauge({
      name: 'sos_daemon_connections_open',
      help: 'Connections open on the local socket now.',
      registers,
    });
    this.up = new Gauge({ name: 'sos_daemon_up', help: '1 while the local socket serves, else 0.', registers });
    this.startTime = new Gauge({
      name: 'sos_daemon_start_time_seconds',
      help: 'When the local socket started serving, in seconds since the Unix epoch (0 before).',
      registers,
    });
    this.tlsConnections = new Counter({
      name: 'sos_daemon_tls_connections_total',
      help: 'TLS connections by what became of them (accepted, too_many, handshake_timeout, handshake_failed, certificate_refused, identity_refused, idle, revoked_open).',
      labelNames: ['outcome'],
      registers,
    });
    this.tlsPending = new Gauge({
      name: 'sos_daemon_tls_handshakes_pending',
      help: 'TLS connections accepted whose peer has not finished the handshake yet.',
      registers,
    });
    this.tlsOpen = new Gauge({
      name: 'sos_daemon_tls_connections_open',
      help: 'TLS connections open now whose peer certificate was verified.',
      registers,
    });
    const meminfo = options.meminfo ?? '/proc/meminfo';
    new Gauge({
      name: 'sos_node_memory_total_bytes',
      help: "The node's memory (MemTotal of /proc/meminfo), read on each scrape.",
      registers,
      collect() {
        this.set(readMeminfo(meminfo).get('MemTotal') ?? os.totalmem());
      },
    });
    new Gauge({
      name: 'sos_node_memory_available_bytes',
      help: "The node's available memory (MemAvailable of /proc/meminfo), read on each scrape.",
      registers,
      collect() {
        this.set(readMeminfo(meminfo).get('MemAvailable') ?? os.freemem());
      },
    });
    new Gauge({
      name: 'sos_node_cpus',
      help: 'CPUs this node has online.',
      registers,
      collect() {
        this.set(os.cpus().length);
      },
    });
  }

  /** The Prometheus text exposition of everything registered. */
  scrape(): Promise<string> {
    return this.registry.metrics();
  }

  /** Its content type (`text/plain; version=0.0.4; charset=utf-8`). */
  get contentType(): string {
    return this.registry.contentType;
  }
}

/** /proc/meminfo's fields in bytes (`MemTotal: 16314040 kB` → 16705576960); empty when unreadable. */
export function readMeminfo(file = '/proc/meminfo'): Map<string, number> {
  const out = new Map<string, number>();
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    return out;
  }
  for (const m of text.matchAll(/^([A-Za-z0-9_()]+):\s+(\d+)(?:\s+kB)?$/gm))
    out.set(m[1], Number(m[2]) * (m[0].endsWith('kB') ? 1024 : 1));
  return out;
}
