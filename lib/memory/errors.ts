// The memory node's errors: SosErrors with stable codes.
import { SosError } from '../errors.js';

/**
 * A memory node refused or failed a request: `ERR_MEMORY_FULL` (not enough capacity left for the region),
 * `ERR_AUTH` (unknown application or wrong secret: the node does not say which), `ERR_VERSION`,
 * `ERR_NO_REGION` (the region was freed, its lease lapsed, or it is not this application's),
 * `ERR_OUT_OF_RANGE` (pages outside the region), over TLS `ERR_CLUSTER`, `ERR_ROLE` and `ERR_WRONG_PEER`
 * (the node's certificate names another cluster, no role, or another member; `ERR_AUTH` for one our CA
 * does not vouch for, or ours refused by the node), `ERR_UNSUPPORTED`, `ERR_LIMIT` and `ERR_RDMA` (an RDMA attach
 * the node cannot serve, has no room for, or failed at), `ERR_PROTOCOL` (the node sent something malformed),
 * `ERR_CLOSED` (the store was closed), or the errno name of the connection's failure (`ECONNREFUSED`,
 * `ECONNRESET`, `ETIMEDOUT`, `EBADMSG` for a reply that failed authentication). The native error is the `cause`.
 */
export class MemoryError extends SosError {}

const BY_ERRNO: Record<string, string> = {
  ENOSPC: 'ERR_MEMORY_FULL',
  ENOENT: 'ERR_NO_REGION',
  ERANGE: 'ERR_OUT_OF_RANGE',
  ESHUTDOWN: 'ERR_CLOSED',
  EPROTO: 'ERR_PROTOCOL',
  EOPNOTSUPP: 'ERR_UNSUPPORTED',
  EMFILE: 'ERR_LIMIT',
  EREMOTEIO: 'ERR_RDMA',
};

const MESSAGES: Record<string, string> = {
  ERR_MEMORY_FULL: 'the memory node has no room left',
  ERR_NO_REGION: 'no such region on the memory node (freed, lease lapsed, or not this application)',
  ERR_OUT_OF_RANGE: 'pages outside the region',
  ERR_CLOSED: 'remote store is closed',
  ERR_PROTOCOL: 'the memory node sent a malformed reply',
  ERR_UNSUPPORTED: 'the memory node serves no RDMA',
  ERR_LIMIT: 'the memory node holds as many RDMA attachments as it allows',
  ERR_RDMA: "the memory node's RDMA verbs failed",
};

/** The native layer's error as a MemoryError; argument errors pass through unchanged. */
export function memoryError(e: unknown, what: string): unknown {
  const err = e as Error & { code?: string };
  if (!(err instanceof Error) || err.name === 'TypeError' || err.name === 'RangeError') return e;
  const raw = err.code ?? 'EIO';
  const code = BY_ERRNO[raw] ?? raw;
  // The native connect's ERR_PROTOCOL says what went wrong (a malformed hello, a node not serving TLS).
  const message = (raw === 'ERR_PROTOCOL' ? undefined : MESSAGES[code]) ?? err.message;
  return new MemoryError(`${what}: ${message}`, { code, cause: e });
}
