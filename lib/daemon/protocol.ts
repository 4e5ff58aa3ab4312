/**
 * The node daemon's local API: newline-delimited JSON over a unix socket.
 * Requests are { v: 1, id, op, args? }; replies { v: 1, id, ok, result? |
 * error? }. Every frame is size-limited and validated; a bad frame gets an
 * error reply naming the problem and the connection stays usable.
 */
import { FrameError } from './errors.js';

export const PROTOCOL_VERSION = 1;
export const MAX_FRAME = 64 * 1024;
export const DEFAULT_SOCKET = '/run/serverlessos/sosd.sock';

export interface Request {
  v: 1;
  id: number;
  op: string;
  args?: Record<string, unknown>;
}
export interface Reply {
  v: 1;
  id: number | null;
  ok: boolean;
  result?: unknown;
  error?: { code: string; message: string };
}

/**
 * Parse and validate one request line. `ops` are the ops served; `listed` the ones an ERR_UNKNOWN_OP
 * message names (default: all of them; a TLS peer is told only of those it may call).
 */
export function parseRequest(line: string, ops: ReadonlySet<string>, listed?: Iterable<string>): Request {
  if (line.length > MAX_FRAME) throw new FrameError('ERR_FRAME_TOO_LARGE', `frame exceeds ${MAX_FRAME} bytes`);
  let raw: unknown;
  try {
    raw = JSON.parse(line);
  } catch {
    throw new FrameError('ERR_BAD_JSON', 'frame is not valid JSON');
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw))
    throw new FrameError('ERR_BAD_FRAME', 'frame must be a JSON object');
  const r = raw as Record<string, unknown>;
  const id = typeof r.id === 'number' && Number.isSafeInteger(r.id) ? r.id : null;
  if (id === null) throw new FrameError('ERR_BAD_FRAME', 'id must be a safe integer');
  // A version that is not a whole number is a malformed frame, not another version: "1" is not 1.
  if (typeof r.v !== 'number' || !Number.isSafeInteger(r.v))
    throw new FrameError(
      'ERR_BAD_FRAME',
      r.v === undefined
        ? `v is missing: it must be the number ${PROTOCOL_VERSION}`
        : // Not String(): on a JSON object such as {"toString":1} it throws a TypeError.
          `v must be the number ${PROTOCOL_VERSION}, not ${typeof r.v === 'string' ? 'the string ' : ''}${quote(r.v)}`,
      id,
    );
  if (r.v !== PROTOCOL_VERSION)
    throw new FrameError(
      'ERR_VERSION',
      `unsupported protocol version ${r.v} (this daemon speaks ${PROTOCOL_VERSION})`,
      id,
    );
  if (typeof r.op !== 'string' || !ops.has(r.op))
    throw new FrameError(
      'ERR_UNKNOWN_OP',
      `unknown op ${quote(r.op)}; known: ${[...(listed ?? ops)].join(', ') || 'none'}`,
      id,
    );
  if (r.args !== undefined && (r.args === null || typeof r.args !== 'object' || Array.isArray(r.args))) {
    throw new FrameError('ERR_BAD_FRAME', 'args must be an object', id);
  }
  return { v: 1, id, op: r.op, args: r.args as Record<string, unknown> | undefined };
}

// A peer's value is quoted in a message up to this many characters: a 60 KiB "op" is not echoed back whole.
const MAX_QUOTED = 64;

function quote(v: unknown): string {
  const q = JSON.stringify(v) ?? 'undefined';
  return q.length > MAX_QUOTED ? `${q.slice(0, MAX_QUOTED)}…` : q;
}
