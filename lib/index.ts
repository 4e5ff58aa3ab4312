/** ServerlessOS: remote memory over userfaultfd, live migration with CRIU, distributed cgroups. */
export * as uffd from './uffd/index.js';
export * as rdma from './rdma/index.js';
export * as criu from './criu/index.js';
export * as migration from './migration/index.js';
export * as memory from './memory/index.js';
export * as cluster from './cluster/index.js';
export * as cgroups from './cgroups/index.js';
export * as apps from './apps/index.js';
export * as daemon from './daemon/index.js';
export * as orchestrator from './orchestrator/index.js';
export { Region, Userfaultfd, FaultEngine, PageSource, touch, PAGE_SIZE } from './uffd/index.js';
export type { SosErrorOptions } from './errors.js';
export { SosError, SystemError, StateError, ArgTypeError, ArgValueError, ArgRangeError, AbortError } from './errors.js';
export { ExecError, type ExecOptions, type ExecOutput } from './exec.js';
export {
  AuthChannel,
  ChannelError,
  type ChannelEvents,
  type ChannelAuth,
  type ChannelTls,
  type ConnectOptions,
  type Liveness,
  type Message,
  type ServerOptions,
} from './net/channel.js';
export { CertError } from './net/cert.js';
export { DaemonError, FrameError } from './daemon/errors.js';
export {
  FarRegion,
  type FarRegionOptions,
  type FarRegionEvents,
  type DirtyTracking,
  type Eviction,
  type FetchFailure,
} from './memory/far-region.js';
export type { FarStats, FarLatency } from './memory/far-stats.js';
