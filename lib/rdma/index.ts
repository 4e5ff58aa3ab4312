/**
 * serverlessos/rdma — RDMA verbs (libibverbs, loaded at run time).
 * Objects form pyverbs' tree: Context → ProtectionDomain → MemoryRegion,
 * QueuePair; Context → CompletionQueue → QueuePair. Closing a parent closes
 * its children first; every close is idempotent and `using` works.
 * The data path has a fast form for hot loops: `qp.prepareSend()` (work
 * requests checked once, posted with numbers only) and `cq.pollInto()`
 * (completions as numbers in a reused typed array). See docs/rdma.md.
 */
export type {
  AsyncEvent,
  Completion,
  DeviceAttributes,
  DeviceInfo,
  PortAttributes,
  QpAttributes,
  QpState,
} from '../native/index.js';
export type { Access } from './access.js';
export type { Sge, SendOpcode, SendWr, RecvWr } from './wr.js';
export { devices, status } from './device.js';
export { Context } from './context.js';
export { ProtectionDomain } from './pd.js';
export { MemoryRegion, type RawRange } from './mr.js';
export { AddressHandle } from './ah.js';
export { SharedReceiveQueue } from './srq.js';
export { CompletionChannel, CompletionQueue } from './cq.js';
export { QueuePair, type QpOptions } from './qp.js';
export { PreparedSend } from './prepared.js';
export { WC, wcStatusName, wcOpcodeName } from './wc.js';
export { RdmaConnection, type ConnectionOptions, type CmListener } from './connection.js';
export { handshake, type Endpoint } from './handshake.js';
export { HandshakeError, RdmaError, CompletionError } from './errors.js';
export { CmEventChannel, CmId, CmError, cmStatus, type CmEvent, type CmIdInfo, type CmConnectOptions } from './cm.js';
