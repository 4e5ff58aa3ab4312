/** Remote memory: memory nodes and the regions clients hold on them. */
export { MemoryNode, type MemoryNodeOptions, type MemoryNodeStats, type MemoryAppStats } from './node.js';
export { RemoteStore, type RemoteStoreOptions, type RemoteStoreStats } from './remote.js';
export { MemoryError } from './errors.js';
