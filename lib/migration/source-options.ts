// migrate()'s options, checked once, with their defaults.
import { argType } from '../errors.js';
import { checkAuth, type ChannelTls, type Liveness } from '../net/channel.js';
import { integer, object, oneOf } from '../validate.js';
import { checkMoveAddress, type MoveAddress } from './address.js';
import type { CriuFlags } from './protocol.js';
import type { MigrateOptions } from './types.js';
import { checkRecordStore } from './record.js';
import { ID } from './protocol.js';

export interface Checked extends Required<
  Pick<MigrateOptions, 'mode' | 'workDir' | 'inDoubtMs' | 'keepImages' | 'strategy' | 'idleTimeoutMs'>
> {
  to: { host: string; port: number };
  secret: Buffer | ChannelTls;
  refreshSecret?: () => Promise<Buffer>;
  move?: MoveAddress;
  flags: CriuFlags;
  /** The migration's id, when the caller chose it (to record it before asking). */
  id?: string;
}

export function check(pid: unknown, o: MigrateOptions): Checked {
  integer('pid', pid, 1, 0x7fffffff);
  const opts = object('options', o);
  const to = object('options.to', opts.to);
  if (typeof to.host !== 'string' || to.host.length === 0)
    throw argType('options.to.host must be a host name or address');
  integer('options.to.port', to.port, 1, 65535);
  const secret = checkAuth(o.secret, 'options.secret');
  if (typeof o.workDir !== 'string' || o.workDir.length === 0) throw argType('options.workDir must be a path');
  const mode = o.mode ?? 'precopy';
  if (mode !== 'precopy' && mode !== 'postcopy')
    throw argType(`options.mode must be 'precopy' or 'postcopy', got ${String(mode)}`);
  const flags: CriuFlags = { tcpEstablished: o.tcpEstablished ?? true };
  for (const k of ['shellJob', 'extUnixSk', 'fileLocks'] as const) {
    if (o[k] !== undefined && typeof o[k] !== 'boolean') throw argType(`options.${k} must be a boolean`);
    if (o[k]) flags[k] = true;
  }
  checkRecordStore(o.records, 'options.records');
  if (o.id !== undefined && (typeof o.id !== 'string' || !ID.test(o.id)))
    throw argType('options.id must be a migration id (32 lowercase hex digits)');
  if (o.onProgress !== undefined && typeof o.onProgress !== 'function')
    throw argType('options.onProgress must be a function');
  if (o.beforeDump !== undefined && typeof o.beforeDump !== 'function')
    throw argType('options.beforeDump must be a function');
  if (o.refreshSecret !== undefined && typeof o.refreshSecret !== 'function')
    throw argType('options.refreshSecret must be a function');
  return {
    to: { host: to.host, port: to.port as number },
    secret,
    ...(o.refreshSecret ? { refreshSecret: o.refreshSecret } : {}),
    mode,
    workDir: o.workDir,
    flags,
    ...(o.id !== undefined ? { id: o.id } : {}),
    ...(o.moveAddress !== undefined ? { move: checkMoveAddress(o.moveAddress, 'options.moveAddress') } : {}),
    inDoubtMs: o.inDoubtMs === undefined ? 30_000 : integer('options.inDoubtMs', o.inDoubtMs, 0),
    keepImages: o.keepImages ?? false,
    idleTimeoutMs: o.idleTimeoutMs === undefined ? 15_000 : integer('options.idleTimeoutMs', o.idleTimeoutMs, 100),
    strategy:
      o.strategy === undefined
        ? 'auto'
        : oneOf('options.strategy', o.strategy, ['auto', 'commit', 'handover'] as const),
  };
}

/** Keep-alive settings for a silence limit. */
export function liveness(idleTimeoutMs: number): Liveness {
  return { intervalMs: Math.max(50, Math.min(1000, Math.floor(idleTimeoutMs / 4))), timeoutMs: idleTimeoutMs };
}
