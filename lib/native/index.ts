/** The addon's typed surface: the loaded binding and the declarations of each capability's part. */
export { native, type NativeBinding } from './binding.js';
export type * from './uffd.js';
export type * from './pager.js';
export type * from './rdma.js';
export type * from './cm.js';
export type * from './seqpacket.js';
export type * from './peer-cred.js';
export type * from './replica.js';
export type * from './workload.js';
export type * from './rdma-link.js';
export type * from './memory.js';
