/** ServerlessOS: remote memory over userfaultfd, live migration with CRIU, distributed cgroups. */
export * as uffd from './uffd/index.js';
export * as rdma from './rdma/index.js';
export * as criu from './criu/index.js';
export * as migration from './migration/index.js';
export { Region, Userfaultfd, FaultEngine, PageSource, touch, PAGE_SIZE } from './uffd/index.js';
export { SosError, SystemError, StateError } from './errors.js';
