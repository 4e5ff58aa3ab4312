// The memory node and its client (native/memory/wrap.cc): types only.
import type { NativeSource } from './uffd.js';

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
  total: NativeMemoryCounters;
  applications: Record<string, NativeMemoryCounters>;
  log: string[];
}

export interface NativeMemoryNode {
  listen(host: string, port: number): { host: string; port: number };
  addApplication(name: string, secret: Buffer): void;
  removeApplication(name: string): boolean;
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
    timeoutMs?: number;
    version?: number;
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
}

export interface MemoryBinding {
  NativeMemoryNode: new (o: {
    capacityPages: number;
    leaseMs?: number;
    handshakeMs?: number;
    maxUnauthenticated?: number;
    rdma?: { device?: string; gidIndex?: number; perConnection?: number };
  }) => NativeMemoryNode;
  NativeRemote: new () => NativeRemote;
}
