import { SosError } from '../errors.js';

/**
 * The cluster's state store or membership failed: `ERR_ETCD_START` (etcd did not come up; the message
 * quotes its last log line), `ERR_ETCD_UNAVAILABLE` (etcd did not answer), `ERR_NODE_NAME_TAKEN`
 * (another live member holds the name), `ERR_LEASE_LOST` (the membership lease expired or was not
 * renewed within its TTL), `ERR_EXISTS` (init over an existing CA), `ERR_NOT_FOUND` (a cluster-folder file
 * is missing), `ERR_CLUSTER_FOLDER` (one is unreadable or malformed), `ERR_FENCED` (a migration record
 * refused: the writer lost its lease, or another writer changed it).
 */
export class ClusterError extends SosError {}

/** etcd did not answer `what` (a gRPC error, a closed client): ERR_ETCD_UNAVAILABLE, worth a retry. */
export function etcdError(what: string, e: Error): ClusterError {
  return new ClusterError(`etcd did not answer (${what}): ${e.message}`, { code: 'ERR_ETCD_UNAVAILABLE', cause: e });
}
