/**
 * A connection to the cluster's etcd, scoped to the cluster's prefix. With credentials, the client
 * presents its certificate (etcd runs with --client-cert-auth) and trusts only the cluster CA.
 */
import { Etcd3, type Namespace } from 'etcd3';
import { argValue } from '../errors.js';
import { clusterPrefix } from './keys.js';

export interface StoreOptions {
  /** etcd client URLs (http:// or https://). */
  endpoints: string[];
  cluster: string;
  /** The cluster CA and this member's certificate, for an https etcd. */
  tls?: { caPem: string; certPem: string; keyPem: string };
  /**
   * The name etcd's certificate is checked against, when the endpoints are IP addresses (TLS has no
   * server name for an IP; the etcd that `startEtcd` serves has the name `etcd`).
   */
  serverName?: string;
  /** How long a connection attempt may take (default 5 s). */
  dialTimeoutMs?: number;
}

export interface Store {
  /** Keys relative to the cluster's prefix. */
  readonly kv: Namespace;
  readonly client: Etcd3;
  readonly cluster: string;
  readonly endpoints: readonly string[];
  close(): void;
}

export function openStore(opts: StoreOptions): Store {
  if (
    !Array.isArray(opts.endpoints) ||
    opts.endpoints.length === 0 ||
    !opts.endpoints.every((e) => /^https?:\/\//.test(e))
  )
    throw argValue('endpoints must be a non-empty list of http:// or https:// URLs');
  if (typeof opts.cluster !== 'string' || !/^[a-z0-9][a-z0-9-]{0,62}$/.test(opts.cluster))
    throw argValue('cluster must be a lowercase name (a-z, 0-9, -)');
  const client = new Etcd3({
    hosts: opts.endpoints,
    dialTimeout: opts.dialTimeoutMs ?? 5000,
    ...(opts.serverName && { grpcOptions: { 'grpc.ssl_target_name_override': opts.serverName } }),
    ...(opts.tls && {
      credentials: {
        rootCertificate: Buffer.from(opts.tls.caPem),
        certChain: Buffer.from(opts.tls.certPem),
        privateKey: Buffer.from(opts.tls.keyPem),
      },
    }),
  });
  let closed = false;
  return {
    kv: client.namespace(clusterPrefix(opts.cluster)),
    client,
    cluster: opts.cluster,
    endpoints: [...opts.endpoints],
    close() {
      if (closed) return;
      closed = true;
      client.close();
    },
  };
}
