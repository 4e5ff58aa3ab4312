/**
 * sosd as a library: the daemon's server (a unix socket for the node's admin, mutual TLS for the
 * cluster's members, ops checked against schemas and scoped by role), its clients, its metrics.
 * docs/sosd.md states the protocol.
 * @packageDocumentation
 */
export {
  DaemonServer,
  NO_ARGS,
  type ArgsSchema,
  type DaemonLogger,
  type DaemonServerOptions,
  type Handler,
  type OpSpec,
  type OpOptions,
  type Peer,
  type RequestContext,
} from './server.js';
export type { HttpOptions, HttpAddress } from './http.js';
export { request } from './client.js';
export { RemoteClient, remoteRequest, type RemoteOptions, type RequestOptions } from './remote.js';
export type { TlsCredentials, TlsListenOptions, TlsPeer } from './tls.js';
export { DaemonMetrics, type DaemonMetricsOptions } from './metrics.js';
export { DaemonError, FrameError } from './errors.js';
export { DEFAULT_SOCKET, MAX_FRAME, PROTOCOL_VERSION } from './protocol.js';
