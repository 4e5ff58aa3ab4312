// Far memory's own RDMA queue pairs (native/memory/rdma_link.*, rdma_wrap.cc): types only.
import type { NativeRegion, NativeSource } from './uffd.js';

export interface NativeRdmaEndpoint {
  qpn: number;
  psn: number;
  gid: string;
}

export interface NativeRdmaLink {
  local(): NativeRdmaEndpoint;
  connect(remote: NativeRdmaEndpoint): void;
  exportRegion(region: NativeRegion): { addr: number | bigint; rkey: number; length: number };
  bindSource(source: NativeSource, remote: { addr: number | bigint; rkey: number; size: number }): void;
  close(): void;
}

export interface RdmaLinkBinding {
  NativeRdmaLink: new (options: { device?: string; gidIndex?: number; depth?: number }) => NativeRdmaLink;
}
