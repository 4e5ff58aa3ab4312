/**
 * One RDMA reliable connection for far memory, owned by C++ with its own protection domain, completion queue
 * and queue pair: a memory node exports a region's pages on it (the rkey is valid on this link only, since
 * the link's PD holds nothing else), and a client turns its link into a PageSource whose fetches and stores
 * are one-sided RDMA READs and WRITEs through a registered bounce buffer — no memory-node CPU per page. The
 * two ends exchange their endpoints (QPN, PSN, GID) and the region's address and rkey over the memory
 * node's authenticated, encrypted control connection, never in the clear.
 */
import { native, type NativeRdmaLink } from '../native/index.js';
import { StateError, argType } from '../errors.js';
import { PageSource } from '../uffd/source.js';
import { Region } from '../uffd/region.js';
import { aligned, integer, object } from '../validate.js';

/** One end of a link: its queue pair number, first packet sequence number and GID (IPv6 form). */
export interface RdmaEndpoint {
  qpn: number;
  psn: number;
  gid: string;
}

export interface RdmaLinkOptions {
  /** The RDMA device (default: the first one). */
  device?: string;
  /** The GID index of the address to use (default 1: the IPv4-mapped RoCEv2 GID). */
  gidIndex?: number;
  /** Work requests in flight (default 64). */
  depth?: number;
}

export class RdmaLink implements Disposable {
  private native: NativeRdmaLink | null;

  constructor(options?: RdmaLinkOptions) {
    const o = object('options', options);
    if (o.device !== undefined && typeof o.device !== 'string') throw argType('options.device must be a string');
    const gidIndex = o.gidIndex === undefined ? 1 : integer('options.gidIndex', o.gidIndex, 0, 255);
    const depth = o.depth === undefined ? 64 : integer('options.depth', o.depth, 1, 4096);
    this.native = new native.NativeRdmaLink({ device: o.device, gidIndex, depth });
  }

  /** This end's queue pair, for the peer's connect(). */
  local(): RdmaEndpoint {
    return this.live().local();
  }

  /** Connect to the peer's endpoint (both ends call it with the other's). */
  connect(remote: RdmaEndpoint): void {
    const r = object('remote', remote);
    this.live().connect({
      qpn: integer('remote.qpn', r.qpn),
      psn: integer('remote.psn', r.psn),
      gid: typeof r.gid === 'string' ? r.gid : '',
    });
  }

  /** A memory node's side: the region's pages readable and writable by this link's peer, and by no one else. */
  exportRegion(region: Region): { addr: number | bigint; rkey: number; length: number } {
    if (!(region instanceof Region)) throw argType('region must be a Region');
    return this.live().exportRegion(region.native);
  }

  /**
   * A client's side: a PageSource over the peer's exported region. The link belongs to the source from then
   * on (this object is closed); the source frees it when the last engine using it stops.
   */
  toPageSource(remote: { addr: number | bigint; rkey: number; size: number }): PageSource {
    const r = object('remote', remote);
    const size = aligned('remote.size', r.size, 4096, 4096);
    const rkey = integer('remote.rkey', r.rkey, 0, 0xffffffff);
    if (typeof r.addr !== 'number' && typeof r.addr !== 'bigint')
      throw argType('remote.addr must be a number or bigint');
    const source = new PageSource(new native.NativeSource({ kind: 'zero' }));
    this.live().bindSource(source.native, { addr: r.addr, rkey, size });
    this.native = null;
    return source;
  }

  get closed(): boolean {
    return this.native === null;
  }

  /** Idempotent; exported regions are deregistered (their peer's next access fails). */
  close(): void {
    this.native?.close();
    this.native = null;
  }

  [Symbol.dispose](): void {
    this.close();
  }

  private live(): NativeRdmaLink {
    if (!this.native) throw new StateError('RDMA link is closed (or handed to a page source)', { code: 'ERR_CLOSED' });
    return this.native;
  }
}
