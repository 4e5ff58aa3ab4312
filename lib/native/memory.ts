// The memory node and its client (native/memory/wrap.cc): types only.
import type { NativeSource } from './uffd.js';

/** Mutual TLS of a node or a client (lib/memory/tls.ts checks it): PEM strings, the cluster (subject O). */
export interface NativeMemoryTls {
  caPem: string;
  certPem: string;
  keyPem: string;
  crlPem?: string;
  cluster: string;
  /** The node's: the OUs a client's certificate may name (default node, orchestrator, operator). */
  roles?: string[];
  /** A client's: the CN the node's certificate must name. */
  peerName?: string;
}

/** Counters of one application on a memory node (pages, requests, bytes of page data). */
export interface NativeMemoryCounters {
  reservedPages: number;
  heldPages: number;
  regions: number;
  requests: number;
  bytesIn: number;
  bytesOut: number;
  errors: number;
  authFailures: number;
}

export interface NativeMemoryNodeStats {
  capacityPages: number;
  reservedPages: number;
  connections: number;
  unauthenticated: number;
  badFrames: number;
  refusedConnections: number;
  expiredRegions: number;
  rdmaExports: number;
  tlsRefused: number;
  total: NativeMemoryCounters;
  applications: Record<string, NativeMemoryCounters>;
  log: string[];
}

export interface NativeMemoryNode {
  listen(host: string, port: number): { host: string; port: number };
  addApplication(name: string, secret: Buffer): void;
  removeApplication(name: string): boolean;
  setTls(tls: NativeMemoryTls): void;
  stats(): NativeMemoryNodeStats;
  close(): void;
}

export interface NativeRemoteInfo {
  closed: boolean;
  region?: string;
  size?: number;
  leaseMs?: number;
  /** errno name of the failure that ended the connection, '' while it is up. */
  error?: string;
  requests?: number;
  bytesIn?: number;
  bytesOut?: number;
  errors?: number;
  renewals?: number;
}

export interface NativeRemote {
  connect(o: {
    host: string;
    port: number;
    application: string;
    secret: Buffer;
    size: number;
    /** Open this region of the application (a hand-over) instead of allocating one. */
    region?: bigint;
    timeoutMs?: number;
    version?: number;
    tls?: NativeMemoryTls;
  }): Promise<void>;
  read(offset: number, length: number): Promise<Buffer>;
  write(offset: number, data: Buffer): Promise<void>;
  attachRdma(local: { qpn: number; psn: number; gid: string }): Promise<{
    qpn: number;
    psn: number;
    gid: string;
    addr: number | bigint;
    rkey: number;
  }>;
  remoteStats(): Promise<{ capacityPages: number; reservedPages: number; heldPages: number; regions: number }>;
  info(): NativeRemoteInfo;
  adopt(source: NativeSource): void;
  close(): Promise<void>;
  /** End the connection and keep the region (its lease runs on). */
  detach(): Promise<void>;
}

export interface MemoryBinding {
  NativeMemoryNode: new (o: {
    capacityPages: number;
    leaseMs?: number;
    handshakeMs?: number;
    maxUnauthenticated?: number;
    rdma?: { device?: string; gidIndex?: number; perConnection?: number };
    tls?: NativeMemoryTls;
  }) => NativeMemoryNode;
  NativeRemote: new () => NativeRemote;
}
