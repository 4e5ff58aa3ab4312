/**
 * Parsers for what members read back from etcd. Any member may write there, so a value is a peer's
 * input: size-limited, JSON, the right shape, the name matching its key; anything else is
 * ERR_BAD_RECORD (and readers skip it rather than act on it).
 */
import { ClusterError } from './errors.js';

/** Largest value accepted (a node record or telemetry is a few hundred bytes). */
export const MAX_RECORD = 16 * 1024;
const NAME = /^[a-z0-9][a-z0-9.-]{0,62}$/;

function bad(what: string): never {
  throw new ClusterError(what, { code: 'ERR_BAD_RECORD' });
}

function object(text: unknown, what: string): Record<string, unknown> {
  if (typeof text !== 'string') bad(`${what}: not text`);
  if (text.length > MAX_RECORD) bad(`${what}: larger than ${MAX_RECORD} bytes`);
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    bad(`${what}: not JSON`);
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) bad(`${what}: not a JSON object`);
  return v as Record<string, unknown>;
}

const finite = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);

/** A `nodes/<name>` value: v 1, the name its key says, a hex lease, a join time. */
export function parseNodeRecord<T extends { v: 1; name: string; lease: string; joinedAt: number }>(
  name: string,
  text: unknown,
): T {
  const what = `node record ${JSON.stringify(name).slice(0, 80)}`;
  if (!NAME.test(name)) bad(`${what}: not a node name`);
  const r = object(text, what);
  if (r.v !== 1) bad(`${what}: v must be 1`);
  if (r.name !== name) bad(`${what}: names another node`);
  if (typeof r.lease !== 'string' || !/^[0-9a-f]{1,16}$/.test(r.lease)) bad(`${what}: lease must be hex`);
  if (!finite(r.joinedAt) || r.joinedAt < 0) bad(`${what}: joinedAt must be a time`);
  return r as T;
}

/** A `telemetry/<name>` value: v 1 and finite, non-negative figures. */
export function parseTelemetryRecord<T extends { v: 1; at: number }>(name: string, text: unknown): T {
  const what = `telemetry of ${JSON.stringify(name).slice(0, 80)}`;
  if (!NAME.test(name)) bad(`${what}: not a node name`);
  const r = object(text, what);
  if (r.v !== 1) bad(`${what}: v must be 1`);
  for (const k of ['at', 'cpu', 'cpus', 'memTotal', 'memAvail', 'rxBps', 'txBps'])
    if (!finite(r[k]) || r[k] < 0) bad(`${what}: ${k} must be a non-negative number`);
  if ((r.cpu as number) > 1) bad(`${what}: cpu must be a fraction`);
  return r as T;
}
