/**
 * CRIU binding: checkpoint/restore over CRIU's RPC (`criu swrk` on a
 * SOCK_SEQPACKET socketpair), messages from the installed rpc.proto.
 * @packageDocumentation
 */
export type {
  CriuHooks,
  CriuNotify,
  CriuCommonOptions,
  DumpOptions,
  DumpStats,
  RestoreStats,
  DumpResult,
  RestoreOptions,
  RestoreResult,
  CriuCheck,
  CriuDaemon,
  PageServerAddress,
  CriuTls,
  ManageCgroups,
  NetworkLock,
} from './types.js';
export { CriuError, type CriuErrorCode, type CriuErrorProps } from './errors.js';
export { SeqPacket } from './seqpacket.js';
export { check, version, LAZY_PIPE_SIZE } from './check.js';
export { dump, preDump, restore } from './ops.js';
export { readDumpStats, readRestoreStats } from './stats.js';
export { pageServer, lazyPages, dumpLazy } from './daemons.js';
