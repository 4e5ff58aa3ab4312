/**
 * Live migration of a process tree between nodes with CRIU: pre-copy (all
 * memory moves, then the target resumes) and post-copy (the target resumes at
 * once and pulls pages through userfaultfd), over an authenticated channel
 * between the nodes' agents, with its TCP connections and optionally its IP
 * address. A failure leaves the process running on exactly one side.
 * @packageDocumentation
 */
export { migrate } from './source.js';
export type { MigrateOptions, MigrationResult, Progress, Phase } from './types.js';
export { MigrationAgent, type AgentOptions } from './agent.js';
export { requestMigration, type RemoteMigrateOptions } from './client.js';
export { MigrationError, TargetFailedError, InDoubtError, type MigrationStep, type RunningOn } from './errors.js';
export { ProtocolError } from './protocol.js';
export { resolveMigration, resolveInDoubt, type Resolution, type ResolveOptions, type SecretFor } from './resolve.js';
export type { TargetRestoreOptions } from './target.js';
export { FileRecordStore, type RecordStore, type MigrationRecord, type RecordState } from './record.js';
export { flushNeighbours, defaultAnnounce, checkMoveAddress, type MoveAddress, type Announce } from './address.js';
export { AddressRanges } from './address-ranges.js';
export type { Mode } from './protocol.js';
export { generateSecret, writeSecretFile } from '../net/secret.js';
export type { ChannelTls, ChannelAuth } from '../net/channel.js';
