// The whole contract between migration agents, and between a client and a source agent:
// every message, by direction, as a discriminated union on `op`, and one parser per message
// that checks every field before anything acts on it (a bad one: ProtocolError,
// ERR_BAD_MESSAGE). Sides send these types only; what they receive goes through `parse*`.
//
//   source → target   incoming, page-server, prepare, file, file-end, flush, restore, commit,
//                     abort; status (a new connection, after a lost one)
//   target → source   accepted | refused, page-server, prepared, flushed, ready, resumed,
//                     failed, pages-received, pages-done; status; error (a broken protocol)
//   client → source   migrate          source → client   progress…, then result | error
import type { RestoreStats } from '../criu/index.js';
import type { AuthChannel, Message } from '../net/channel.js';
import { checkMoveAddress, type MoveAddress } from './address.js';
import {
  ID,
  IMAGE_NAME,
  ProtocolError,
  criuFlags,
  int,
  mode,
  obj,
  optBool,
  pageServerAt,
  str,
  wireError,
  type CriuFlags,
  type Mode,
  type WireError,
} from './protocol.js';
import type { MigrationResult, Phase, Progress } from './types.js';

type Id = { id: string };
/** A message of one migration with nothing but its id, one type per op. */
type Bare<K extends string> = K extends string ? Id & { op: K } : never;
type At = { address: string; port: number };

/** What a target agent remembers of each migration (answers `status` after a lost connection). */
export type TargetState = 'receiving' | 'restoring' | 'ready' | 'committed' | 'resumed' | 'failed' | 'aborted';

export type Incoming = Id & { op: 'incoming'; mode: Mode; criu: CriuFlags; cert: string; moveAddress?: MoveAddress };
export type FileStart = Id & { op: 'file'; stream: number; name: string; size: number };
export type FileEnd = Id & { op: 'file-end'; stream: number; size: number };
/** A step of one migration, source → target. */
export type SessionMessage =
  | FileStart
  | FileEnd
  | Bare<'page-server' | 'flush' | 'restore' | 'commit'>
  | (Id & { op: 'prepare'; pageServer: At })
  | (Id & { op: 'abort'; reason: string });
export type StatusRequest = Id & { op: 'status' };
export type MigrateRequest = {
  op: 'migrate';
  pid: number;
  to: { host: string; port: number };
  mode: Mode;
  moveAddress?: MoveAddress;
  strategy?: 'auto' | 'commit' | 'handover';
} & CriuFlags;
/** Everything an agent is sent: by a source (target side) or by a client (source side). */
export type ToAgent = Incoming | SessionMessage | StatusRequest | MigrateRequest;

/** The agent's answer to a message that broke the protocol (the connection ends after it). */
export type AgentError = {
  op: 'error';
  error: { code: string; message: string; step?: string; runningOn?: string; pid?: number };
};
export type Resumed = Id & { op: 'resumed'; pid: number; restore: RestoreStats | null; ms: number };
export type Failed = Id & { op: 'failed' } & WireError & { alive?: boolean };
export type StatusReply = Id & { op: 'status'; state: TargetState | 'unknown'; pid?: number };
export type ToSource =
  | (Id & { op: 'accepted'; place: string; cert: string })
  | (Id & { op: 'refused'; reason: string })
  | (Id & { op: 'page-server'; pageServer: At })
  | Bare<'prepared' | 'flushed'>
  | (Id & { op: 'ready'; pid: number })
  | Resumed
  | Failed
  | (Bare<'pages-received' | 'pages-done'> & { bytes: number })
  | StatusReply
  | AgentError;

export type ToClient = ({ op: 'progress' } & Progress) | { op: 'result'; result: MigrationResult } | AgentError;

/** Send one message of a direction (the type says which messages it may be). */
export function send<M extends ToAgent | ToSource | ToClient>(ch: AuthChannel, m: M): void {
  ch.send(m as Message);
}

function text(m: Message, k: string, max: number): string {
  const v = m[k];
  return typeof v === 'string' ? v.slice(0, max) : 'no reason';
}
const id = (m: Message): Id => ({ id: str(m, 'id', ID) });
const stream = (m: Message) => int(m, 'stream', 0, 0xffffffff);

function moveAddress(m: Message): { moveAddress?: MoveAddress } {
  const v = obj(m, 'moveAddress');
  if (!v) return {};
  try {
    return { moveAddress: checkMoveAddress(v) };
  } catch (e) {
    throw new ProtocolError(`${m.op}: ${(e as Error).message}`, { cause: e });
  }
}

function oneOf<T extends string>(m: Message, k: string, allowed: readonly T[]): T {
  const v = m[k];
  if (typeof v !== 'string' || !(allowed as readonly string[]).includes(v))
    throw new ProtocolError(`${m.op}: ${k} must be one of ${allowed.join(', ')}`);
  return v as T;
}

/** `incoming`'s head: a bad one is answered `error`; past it a bad request is `refused` (see incoming). */
export function incomingHead(m: Message): Id & { mode: Mode } {
  return { ...id(m), mode: mode(m) };
}

const PARSE_TO_AGENT: { [K in ToAgent['op']]: (m: Message) => Extract<ToAgent, { op: K }> } = {
  incoming: (m) => {
    const head = incomingHead(m);
    if (typeof m.cert !== 'string') throw new ProtocolError('incoming: field cert is not one PEM certificate');
    return { op: 'incoming', ...head, criu: criuFlags(m), cert: m.cert, ...moveAddress(m) };
  },
  file: (m) => ({ op: 'file', ...id(m), stream: stream(m), name: str(m, 'name', IMAGE_NAME), size: int(m, 'size') }),
  'file-end': (m) => ({ op: 'file-end', ...id(m), stream: stream(m), size: int(m, 'size') }),
  'page-server': (m) => ({ op: 'page-server', ...id(m) }),
  flush: (m) => ({ op: 'flush', ...id(m) }),
  restore: (m) => ({ op: 'restore', ...id(m) }),
  commit: (m) => ({ op: 'commit', ...id(m) }),
  prepare: (m) => ({ op: 'prepare', ...id(m), pageServer: pageServerAt(m) }),
  abort: (m) => ({ op: 'abort', ...id(m), reason: text(m, 'reason', 500) }),
  status: (m) => ({ op: 'status', ...id(m) }),
  migrate: (m) => {
    const to = obj(m, 'to');
    if (!to) throw new ProtocolError('migrate: field to is missing');
    const flags: CriuFlags = {};
    for (const k of ['tcpEstablished', 'shellJob', 'extUnixSk', 'fileLocks'] as const) {
      const v = optBool(m, k);
      if (v !== undefined) flags[k] = v;
    }
    return {
      op: 'migrate',
      pid: int(m, 'pid', 1, 0x7fffffff),
      // host and port are checked as migrate()'s options (the errors name them there)
      to: { host: String(to.host), port: Number(to.port) },
      mode: m.mode === undefined ? 'precopy' : mode(m),
      ...moveAddress(m),
      ...(m.strategy === undefined ? {} : { strategy: oneOf(m, 'strategy', ['auto', 'commit', 'handover'] as const) }),
      ...flags,
    };
  },
};

const STATES = ['receiving', 'restoring', 'ready', 'committed', 'resumed', 'failed', 'aborted', 'unknown'] as const;
const PHASES: readonly Phase[] = ['connect', 'dump', 'transfer', 'restore', 'commit', 'pages', 'done'];

function restoreStats(m: Message): RestoreStats | null {
  const o = obj(m, 'restore');
  if (!o) return null;
  for (const [k, v] of Object.entries(o))
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new ProtocolError(`resumed: restore.${k} must be a number`);
  return o as unknown as RestoreStats;
}

function agentError(m: Message): AgentError {
  const e = obj(m, 'error') ?? {};
  const s = (k: string, max: number) => {
    const v = e[k];
    return typeof v === 'string' ? { [k]: v.slice(0, max) } : {};
  };
  return {
    op: 'error',
    error: {
      code: typeof e.code === 'string' ? e.code.slice(0, 60) : 'ERR_MIGRATION',
      message: typeof e.message === 'string' ? e.message.slice(0, 4000) : 'no detail',
      ...s('step', 40),
      ...s('runningOn', 40),
      ...(typeof e.pid === 'number' && Number.isSafeInteger(e.pid) && e.pid > 0 ? { pid: e.pid } : {}),
    },
  };
}

const PARSE_TO_SOURCE: { [K in ToSource['op']]: (m: Message) => Extract<ToSource, { op: K }> } = {
  accepted: (m) => ({ op: 'accepted', ...id(m), place: str(m, 'place', /^[^\n]{0,300}$/), cert: str(m, 'cert', /^/) }),
  refused: (m) => ({ op: 'refused', ...id(m), reason: text(m, 'reason', 1000) }),
  'page-server': (m) => ({ op: 'page-server', ...id(m), pageServer: pageServerAt(m) }),
  prepared: (m) => ({ op: 'prepared', ...id(m) }),
  flushed: (m) => ({ op: 'flushed', ...id(m) }),
  ready: (m) => ({ op: 'ready', ...id(m), pid: int(m, 'pid') }),
  resumed: (m) => ({ op: 'resumed', ...id(m), pid: int(m, 'pid'), restore: restoreStats(m), ms: Number(m.ms) || 0 }),
  failed: (m) => ({
    op: 'failed',
    ...id(m),
    ...wireError(m),
    ...(optBool(m, 'alive') === undefined ? {} : { alive: m.alive as boolean }),
  }),
  'pages-received': (m) => ({ op: 'pages-received', ...id(m), bytes: int(m, 'bytes') }),
  'pages-done': (m) => ({ op: 'pages-done', ...id(m), bytes: int(m, 'bytes') }),
  status: (m) => ({
    op: 'status',
    ...id(m),
    state: oneOf(m, 'state', STATES),
    ...(m.pid === undefined ? {} : { pid: int(m, 'pid', 1) }),
  }),
  error: agentError,
};

const PARSE_TO_CLIENT: { [K in ToClient['op']]: (m: Message) => Extract<ToClient, { op: K }> } = {
  progress: (m) => ({
    op: 'progress',
    phase: oneOf(m, 'phase', PHASES),
    bytes: int(m, 'bytes'),
    pages: finite(m, 'pages'),
  }),
  result: (m) => {
    const r = obj(m, 'result');
    if (!r) throw new ProtocolError('result: field result is missing');
    for (const k of ['downtimeMs', 'totalMs', 'bytes', 'pages', 'sourcePid', 'targetPid'])
      if (typeof r[k] !== 'number') throw new ProtocolError(`result: result.${k} must be a number`);
    if (typeof r.id !== 'string' || !Array.isArray(r.phases)) throw new ProtocolError('result: malformed result');
    return { op: 'result', result: r as unknown as MigrationResult };
  },
  error: agentError,
};

function finite(m: Message, k: string): number {
  const v = m[k];
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0)
    throw new ProtocolError(`${m.op}: field ${k} must be a number ≥ 0`);
  return v;
}

function parser<T extends { op: string }>(table: Record<string, (m: Message) => T>, who: string) {
  return (m: Message): T => {
    const p = Object.hasOwn(table, m.op) ? table[m.op] : undefined;
    if (!p) throw new ProtocolError(`unexpected message ${m.op.slice(0, 40)} to ${who}`);
    return p(m);
  };
}

/** A message to an agent (from a source or a client), checked. */
export const parseToAgent = parser<ToAgent>(PARSE_TO_AGENT, 'an agent');
/** A message to a source (from its target agent), checked. */
export const parseToSource = parser<ToSource>(PARSE_TO_SOURCE, 'a source');
/** A message to a client (from the source agent), checked. */
export const parseToClient = parser<ToClient>(PARSE_TO_CLIENT, 'a client');
