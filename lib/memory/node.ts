/**
 * A memory node: a native TCP server (native/memory/server.cc) that holds pages for many applications in
 * its own memory, up to `capacity` bytes reserved in advance. Each application authenticates with its own
 * secret and only ever sees its own regions. With `tls`, every connection is mutual TLS 1.3 first: only a
 * member of the cluster (a certificate of its CA, not revoked, naming the cluster and a role) gets as far
 * as the application's handshake. The protocol is in docs/memory.md.
 */
import { native, type NativeMemoryCounters, type NativeMemoryNode } from '../native/index.js';
import { StateError, argType, argValue } from '../errors.js';
import { secretBuffer } from '../net/secret.js';
import { integer, object } from '../validate.js';
import { memoryTls, type MemoryTlsOptions } from './tls.js';

const PAGE = 4096;
const NAME = /^[A-Za-z0-9._-]{1,64}$/;

export interface MemoryNodeOptions {
  /** Bytes of pages the node may hold (reserved per region at ALLOC; rounded down to pages). */
  capacity: number;
  /** Address to listen on (default 127.0.0.1; '0.0.0.0' or '::' for every interface). */
  host?: string;
  /** TCP port (default 0: any free one; see address()). */
  port?: number;
  /** Applications allowed in, and their secrets (at least 32 bytes each). */
  applications?: Record<string, Buffer | string>;
  /** How long a region lives without a renewal from its client (default 30 000). */
  leaseMs?: number;
  /** Time a connection has to complete the handshake (default 5 000). */
  handshakeMs?: number;
  /** Connections allowed at once before they authenticate (default 64); more are closed on accept. */
  maxUnauthenticated?: number;
  /**
   * Serve one-sided RDMA too: an authenticated client attaches a region over its control connection and gets
   * a queue pair of its own, whose protection domain holds that region's pages only. The device is opened
   * when the node is made (ERR_NO_RDMA if it cannot be).
   */
  rdma?: {
    /** The RDMA device (default: the first one). */
    device?: string;
    /** GID index of the address to use (default 1: the IPv4-mapped RoCEv2 GID). */
    gidIndex?: number;
    /** Attachments one connection may hold at once (default 4): each is a queue pair and a pinned region. */
    perConnection?: number;
  };
  /**
   * Mutual TLS (1.3) on every connection, before the application's handshake, which still authorizes the
   * application's pages; frames then travel in TLS records only (not sealed a second time). A client
   * without a certificate of the CA naming `cluster` (and not revoked by `crlPem`) is refused.
   */
  tls?: MemoryNodeTlsOptions;
}

/** A node's TLS: its credentials, and which roles' certificates may connect (default: all of the cluster's). */
export interface MemoryNodeTlsOptions extends MemoryTlsOptions {
  roles?: ('node' | 'orchestrator' | 'operator')[];
}

/** Counters of one application, in bytes and requests. */
export interface MemoryAppStats {
  reservedBytes: number;
  heldBytes: number;
  regions: number;
  requests: number;
  bytesIn: number;
  bytesOut: number;
  errors: number;
  authFailures: number;
}

export interface MemoryNodeStats {
  capacity: number;
  reserved: number;
  connections: number;
  unauthenticated: number;
  /** Connections closed for a malformed, oversize or unauthentic frame. */
  badFrames: number;
  /** Connections closed on accept: too many unauthenticated already. */
  refusedConnections: number;
  /** Regions freed because their lease lapsed. */
  expiredRegions: number;
  /** Regions attached over RDMA now (one queue pair each). */
  rdmaExports: number;
  /** Connections refused in the TLS handshake: no certificate, not the CA's or the cluster's, revoked, not TLS. */
  tlsRefused: number;
  total: MemoryAppStats;
  applications: Record<string, MemoryAppStats>;
  /** The last 64 things the node logged (refusals, bad frames with their reason). */
  log: string[];
}

function appStats(c: NativeMemoryCounters): MemoryAppStats {
  return {
    reservedBytes: c.reservedPages * PAGE,
    heldBytes: c.heldPages * PAGE,
    regions: c.regions,
    requests: c.requests,
    bytesIn: c.bytesIn,
    bytesOut: c.bytesOut,
    errors: c.errors,
    authFailures: c.authFailures,
  };
}

export class MemoryNode implements Disposable {
  private native: NativeMemoryNode | undefined;
  private readonly host: string;
  private readonly port: number;
  private bound: { host: string; port: number } | undefined;

  constructor(options: MemoryNodeOptions) {
    const o = object('options', options);
    const capacity = integer('options.capacity', o.capacity);
    if (o.host !== undefined && (typeof o.host !== 'string' || !o.host))
      throw argType('options.host must be an address');
    this.host = o.host ?? '127.0.0.1';
    this.port = o.port === undefined ? 0 : integer('options.port', o.port, 0, 65535);
    const leaseMs = o.leaseMs === undefined ? undefined : integer('options.leaseMs', o.leaseMs, 1, 2 ** 31);
    const handshakeMs =
      o.handshakeMs === undefined ? undefined : integer('options.handshakeMs', o.handshakeMs, 1, 2 ** 31);
    const maxUnauthenticated =
      o.maxUnauthenticated === undefined
        ? undefined
        : integer('options.maxUnauthenticated', o.maxUnauthenticated, 1, 65536);
    const rdma = o.rdma === undefined ? undefined : rdmaOptions(o.rdma);
    const apps = o.applications === undefined ? {} : object('options.applications', o.applications);
    const checked = Object.entries(apps).map(([name, s]) => [checkName(name), secretBuffer(s, `secret of ${name}`)]);
    const tls = nodeTls(o.tls);
    this.native = new native.NativeMemoryNode({
      capacityPages: Math.floor(capacity / PAGE),
      leaseMs,
      handshakeMs,
      maxUnauthenticated,
      rdma,
      tls,
    });
    for (const [name, s] of checked) this.native.addApplication(name as string, s as Buffer);
  }

  private live(): NativeMemoryNode {
    if (!this.native) throw new StateError('memory node is closed', { code: 'ERR_CLOSED' });
    return this.native;
  }

  /** Bind and start serving; resolves with the bound address. */
  async listen(): Promise<{ host: string; port: number }> {
    await Promise.resolve(); // binding is synchronous; errors still reject
    this.bound = this.live().listen(this.host, this.port);
    return { ...this.bound };
  }

  /** The bound address (after listen()). */
  address(): { host: string; port: number } | undefined {
    return this.bound && { ...this.bound };
  }

  /** Let an application in (or change its secret: connections already in keep theirs). */
  addApplication(name: string, secret: Buffer | string): void {
    const n = checkName(name);
    this.live().addApplication(n, secretBuffer(secret));
  }

  /**
   * New credentials (a rotated certificate, a new CRL) for the connections that come from now on; those
   * already in keep theirs. Only on a node made with `tls` (else ERR_UNSUPPORTED).
   */
  setTls(tls: MemoryNodeTlsOptions): void {
    const t = nodeTls(tls);
    if (!t) throw argType('tls must be the TLS options');
    this.live().setTls(t);
  }

  /** Shut an application out: its connections are closed and its regions freed. False when it was not known. */
  removeApplication(name: string): boolean {
    return this.live().removeApplication(checkName(name));
  }

  stats(): MemoryNodeStats {
    const s = this.live().stats();
    const applications: Record<string, MemoryAppStats> = {};
    for (const [k, v] of Object.entries(s.applications)) applications[k] = appStats(v);
    return {
      capacity: s.capacityPages * PAGE,
      reserved: s.reservedPages * PAGE,
      connections: s.connections,
      unauthenticated: s.unauthenticated,
      badFrames: s.badFrames,
      refusedConnections: s.refusedConnections,
      expiredRegions: s.expiredRegions,
      rdmaExports: s.rdmaExports,
      tlsRefused: s.tlsRefused,
      total: appStats(s.total),
      applications,
      log: s.log,
    };
  }

  get closed(): boolean {
    return !this.native;
  }

  /** Stop serving: every connection closed, every page freed. Idempotent. */
  close(): void {
    this.native?.close();
    this.native = undefined;
  }
  [Symbol.dispose](): void {
    this.close();
  }
}

function rdmaOptions(v: unknown): { device?: string; gidIndex?: number; perConnection?: number } {
  const r = object('options.rdma', v);
  if (r.device !== undefined && (typeof r.device !== 'string' || !r.device))
    throw argType('options.rdma.device must be a device name');
  return {
    device: r.device,
    gidIndex: r.gidIndex === undefined ? undefined : integer('options.rdma.gidIndex', r.gidIndex, 0, 255),
    perConnection:
      r.perConnection === undefined ? undefined : integer('options.rdma.perConnection', r.perConnection, 1, 256),
  };
}

function nodeTls(v: unknown) {
  if (v === undefined) return undefined;
  return memoryTls('options.tls', v, { roles: object('options.tls', v).roles });
}

function checkName(name: unknown): string {
  if (typeof name !== 'string' || !NAME.test(name))
    throw argValue(`application name must be 1 to 64 of [A-Za-z0-9._-], got ${JSON.stringify(name)}`);
  return name;
}
