// Messages between migration agents (and from a client to a source agent),
// carried by lib/net/channel.ts. Every field of every received message is
// checked here before anything acts on it.
import { isIP } from 'node:net';
import { SosError, StateError } from '../errors.js';
import type { Message } from '../net/channel.js';

export const ID = /^[0-9a-f]{32}$/;
/** An image file name as CRIU writes them: no folders, no dot-dot. */
export const IMAGE_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,200}$/;
/** Most image files one migration may send (CRIU writes a few per task). */
export const MAX_FILES = 100_000;

/** A peer's message broke the protocol (a field missing or malformed, an op out of turn): `ERR_BAD_MESSAGE`. */
export class ProtocolError extends SosError {
  constructor(message: string, options: { cause?: unknown } = {}) {
    super(message, { code: 'ERR_BAD_MESSAGE', ...options });
  }
}

export function str(m: Message, k: string, re: RegExp): string {
  const v = m[k];
  if (typeof v !== 'string' || !re.test(v)) throw new ProtocolError(`${m.op}: field ${k} is missing or malformed`);
  return v;
}

export function int(m: Message, k: string, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  const v = m[k];
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max)
    throw new ProtocolError(`${m.op}: field ${k} must be an integer in [${min}, ${max}]`);
  return v;
}

export function optBool(m: Message, k: string): boolean | undefined {
  const v = m[k];
  if (v === undefined) return undefined;
  if (typeof v !== 'boolean') throw new ProtocolError(`${m.op}: field ${k} must be a boolean`);
  return v;
}

export function obj(m: Message, k: string): Record<string, unknown> | undefined {
  const v = m[k];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'object' || Array.isArray(v)) throw new ProtocolError(`${m.op}: field ${k} must be an object`);
  return v as Record<string, unknown>;
}

export type Mode = 'precopy' | 'postcopy';

export function mode(m: Message): Mode {
  const v = m.mode;
  if (v !== 'precopy' && v !== 'postcopy') throw new ProtocolError(`${m.op}: mode must be 'precopy' or 'postcopy'`);
  return v;
}

/** CRIU options the source asks the target to restore with (the dump used the same). */
export interface CriuFlags {
  tcpEstablished?: boolean;
  shellJob?: boolean;
  extUnixSk?: boolean;
  fileLocks?: boolean;
}

export function criuFlags(m: Message): CriuFlags {
  const o = obj(m, 'criu') ?? {};
  const out: CriuFlags = {};
  for (const k of ['tcpEstablished', 'shellJob', 'extUnixSk', 'fileLocks'] as const) {
    const v = o[k];
    if (v === undefined) continue;
    if (typeof v !== 'boolean') throw new ProtocolError(`${m.op}: criu.${k} must be a boolean`);
    out[k] = v;
  }
  return out;
}

/** A step failure as it travels: { step, code, message }. */
export interface WireError {
  step: string;
  code: string;
  message: string;
}

export function wireError(m: Message): WireError {
  const step = typeof m.step === 'string' ? m.step.slice(0, 40) : 'unknown';
  const code = typeof m.code === 'string' ? m.code.slice(0, 60) : 'ERR_MIGRATION';
  const message = typeof m.message === 'string' ? m.message.slice(0, 4000) : 'no detail';
  return { step, code, message };
}

/** A socket's address as CRIU takes it: IPv4-mapped IPv6 addresses in their IPv4 form. */
export function hostAddress(a: string | undefined): string {
  if (!a) throw new StateError('the connection has no local address (closed)', { code: 'ERR_CLOSED' });
  return a.startsWith('::ffff:') && isIP(a.slice(7)) === 4 ? a.slice(7) : a;
}

/** The `pageServer: { address, port }` of a message: an IP address (CRIU takes no names) and a port. */
export function pageServerAt(m: Message, k = 'pageServer'): { address: string; port: number } {
  const ps = obj(m, k);
  if (!ps || typeof ps.address !== 'string' || isIP(ps.address) === 0)
    throw new ProtocolError(`${m.op}: ${k}.address must be an IP address`);
  const port = ps.port;
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535)
    throw new ProtocolError(`${m.op}: ${k}.port must be a port number`);
  return { address: ps.address, port };
}
