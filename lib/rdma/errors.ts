// The errors of RdmaConnection: all SosErrors with a stable code (rdma_cm's CmError is in cm.ts).
import { SosError, type SosErrorOptions } from '../errors.js';

/**
 * An RdmaConnection refused a peer or was refused by it, before the connection was up: `ERR_AUTH`,
 * `ERR_REPLAY`, `ERR_STALE`, `ERR_VERSION`, `ERR_BAD_FRAME`, `ERR_FRAME_TOO_LARGE`, `ERR_PEER` (the
 * peer's reason), `ERR_WEAK_SECRET`, `ETIMEDOUT`, `ECONNRESET`, `ECONNREFUSED` (the control channel's
 * failure, kept as `cause`).
 */
export class HandshakeError extends SosError {}

/** An established RdmaConnection failed an operation: `ECONNRESET` (the peer went away; `cause` says how). */
export class RdmaError extends SosError {}

/** An RDMA operation completed in error: `ERR_RDMA_COMPLETION`, with libibverbs' `status` and the `opcode`. */
export class CompletionError extends RdmaError {
  /** The completion's status, as libibverbs names it (e.g. 'remote access error'). */
  readonly status: string;
  readonly opcode: string;
  constructor(message: string, options: Omit<SosErrorOptions, 'code'> & { status: string; opcode: string }) {
    super(message, { code: 'ERR_RDMA_COMPLETION', cause: options.cause });
    this.status = options.status;
    this.opcode = options.opcode;
  }
}
