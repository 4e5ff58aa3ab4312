/** Remote memory: memory nodes and the regions clients hold on them. */
export {
  MemoryNode,
  type MemoryNodeOptions,
  type MemoryNodeTlsOptions,
  type MemoryNodeStats,
  type MemoryAppStats,
} from './node.js';
export type { MemoryTlsOptions } from './tls.js';
export { RemoteStore, type RemoteStoreOptions, type RemoteStoreStats } from './remote.js';
export { MemoryError } from './errors.js';
export {
  region,
  FarMemory,
  type FarMemoryOptions,
  type FarMemoryEvents,
  type MemoryNodeAddress,
  type FarHandover,
} from './far-memory.js';
export {
  FarRegion,
  type FarRegionOptions,
  type FarRegionEvents,
  type DirtyTracking,
  type Eviction,
  type FetchFailure,
} from './far-region.js';
export type { FarStats, FarLatency } from './far-stats.js';
export { ReplicaSet, type ReplicaInfo, type ReplicaSetEvents } from './replica-set.js';
export { RdmaLink, type RdmaLinkOptions, type RdmaEndpoint } from './rdma-link.js';
export { workload, type WorkloadKind, type WorkloadResult } from './workload.js';
export {
  run,
  ProgramRun,
  SHIM_PATH,
  type RunOptions,
  type RunResult,
  type RunProcess,
  type RunTotals,
  type ProgramRunEvents,
} from './run.js';
export { adoptProcess, AdoptedProcess, type AdoptedProcessEvents } from './adopt.js';
export type { ArenaOptions } from './arena-link.js';
