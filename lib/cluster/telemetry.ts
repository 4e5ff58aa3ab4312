/**
 * A node's usage figures, published under `telemetry/<name>` with the membership lease. Sized for
 * 30 nodes and more: one small JSON value, rounded so that noise is not news, written only when a
 * figure moved by more than its step or when the last write is `refreshMs` old (so a reader can
 * tell a quiet node from a stale one by `at`). Figures from other services (per-application usage,
 * remote-memory capacity) come from `sources`.
 */
import fs from 'node:fs';
import os from 'node:os';
import { argValue } from '../errors.js';
import { TELEMETRY, telemetryKey } from './keys.js';
import type { Member } from './membership.js';
import type { Store } from './store.js';
import { parseTelemetryRecord } from './records.js';

/** What a node publishes (bytes, seconds, fractions). */
export interface Telemetry {
  v: 1;
  /** When it was measured (ms since the epoch). */
  at: number;
  /** CPU busy fraction since the last sample, 0..1 (two decimals). */
  cpu: number;
  cpus: number;
  /** Memory: total and available bytes (MiB-rounded). */
  memTotal: number;
  memAvail: number;
  /** Bytes per second received and sent, all interfaces but lo (KiB-rounded). */
  rxBps: number;
  txBps: number;
  /** Added by sources, e.g. apps: { name: { cpu, mem } }, farMemory: { capacity, used }. */
  [k: string]: unknown;
}

export interface PublisherOptions {
  /** How often to sample (default 5000 ms). */
  intervalMs?: number;
  /** Write at least this often even when nothing moved (default 30 000 ms). */
  refreshMs?: number;
  /** More figures to publish, merged in at each sample (small values only). */
  sources?: (() => Record<string, unknown>)[];
}

/** Cumulative counters between two samples (CPU jiffies, network bytes). */
export interface Counters {
  busy: number;
  total: number;
  rx: number;
  tx: number;
  at: number;
}

function counters(): Counters {
  const cpu = fs.readFileSync('/proc/stat', 'utf8').split('\n', 1)[0].split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal: idle and iowait are not busy
  const total = cpu.slice(0, 8).reduce((a, b) => a + b, 0);
  const busy = total - cpu[3] - cpu[4];
  let rx = 0;
  let tx = 0;
  for (const line of fs.readFileSync('/proc/net/dev', 'utf8').split('\n').slice(2)) {
    const m = /^\s*([^:]+):\s*(.*)$/.exec(line);
    if (!m || m[1] === 'lo') continue;
    const f = m[2].split(/\s+/).map(Number);
    rx += f[0];
    tx += f[8];
  }
  return { busy, total, rx, tx, at: Date.now() };
}

function meminfo(): { total: number; avail: number } {
  const text = fs.readFileSync('/proc/meminfo', 'utf8');
  const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(text)?.[1] ?? 0) * 1024;
  return { total: kb('MemTotal'), avail: kb('MemAvailable') };
}

const MiB = 1 << 20;
const round = (v: number, step: number) => Math.round(v / step) * step;

/** Sample this node now, against the previous counters (CPU and network rates need two samples). */
export function sample(prev: Counters | null): { t: Telemetry; now: Counters } {
  const now = counters();
  const mem = meminfo();
  const dt = prev ? (now.at - prev.at) / 1000 : 0;
  const dTotal = prev ? now.total - prev.total : 0;
  const t: Telemetry = {
    v: 1,
    at: now.at,
    cpu: prev && dTotal > 0 ? round((now.busy - prev.busy) / dTotal, 0.01) : 0,
    cpus: os.availableParallelism(),
    memTotal: round(mem.total, MiB),
    memAvail: round(mem.avail, MiB),
    rxBps: prev && dt > 0 ? round((now.rx - prev.rx) / dt, 1024) : 0,
    txBps: prev && dt > 0 ? round((now.tx - prev.tx) / dt, 1024) : 0,
  };
  return { t, now };
}

/** Whether `next` says something `last` did not: a figure moved beyond its step (rounding keeps noise out). */
function moved(last: Telemetry | null, next: Telemetry): boolean {
  if (!last) return true;
  if (Math.abs(next.cpu - last.cpu) >= 0.05) return true;
  if (Math.abs(next.memAvail - last.memAvail) >= 16 * MiB) return true;
  if (Math.abs(next.rxBps - last.rxBps) + Math.abs(next.txBps - last.txBps) >= 64 * 1024) return true;
  const rest = (x: Telemetry) =>
    JSON.stringify(Object.entries(x).filter(([k]) => !['at', 'cpu', 'memAvail', 'rxBps', 'txBps'].includes(k)));
  return rest(last) !== rest(next);
}

/** Publishes a member's telemetry until stopped; writes nothing while the member is not live. */
export class TelemetryPublisher {
  private prev: Counters | null = null;
  private last: Telemetry | null = null;
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;
  /** Writes made and bytes written (values only), for the daemon's metrics. */
  writes = 0;
  bytes = 0;

  constructor(
    private readonly member: Member,
    private readonly opts: PublisherOptions = {},
  ) {
    const every = opts.intervalMs ?? 5000;
    if (!Number.isInteger(every) || every < 100) throw argValue('intervalMs must be an integer >= 100');
    this.prev = counters();
    // A new lease has no telemetry key: the next sample writes one whatever it says.
    member.on('joined', () => (this.last = null));
    this.timer = setInterval(() => void this.tick(), every);
    this.timer.unref();
  }

  /** Sample and, when something moved (or the refresh is due), write. Resolves once written. */
  async tick(): Promise<boolean> {
    if (this.stopped) return false;
    const { t, now } = sample(this.prev);
    this.prev = now;
    for (const s of this.opts.sources ?? []) Object.assign(t, s());
    const stale = !this.last || t.at - this.last.at >= (this.opts.refreshMs ?? 30_000);
    if (!this.member.alive || (!stale && !moved(this.last, t))) return false;
    const value = JSON.stringify(t);
    try {
      await this.member.putLeased(telemetryKey(this.member.name), value);
    } catch {
      return false; // lease lost or etcd away: the member's own loop reports it; the next sample retries
    }
    this.last = t;
    this.writes++;
    this.bytes += value.length;
    return true;
  }

  /** Add a source of figures (its keys are merged into each sample; keep them coarse: a change is a write). */
  addSource(s: () => Record<string, unknown>): void {
    (this.opts.sources ??= []).push(s);
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
  }
}

/** Every live node's latest telemetry, by name. */
export async function listTelemetry(store: Store): Promise<Map<string, Telemetry>> {
  const all = await store.kv.getAll().prefix(TELEMETRY).strings();
  const out = new Map<string, Telemetry>();
  for (const [k, v] of Object.entries(all)) {
    const name = k.slice(TELEMETRY.length);
    try {
      out.set(name, parseTelemetryRecord<Telemetry>(name, v));
    } catch {
      // malformed: not acted on
    }
  }
  return out;
}
