/**
 * A region of pages held by a memory node, spoken to in C++ (native/memory/client.cc): connect, read and
 * write off the JavaScript thread, and a PageSource so a FaultEngine serves faults from it.
 */
import { native, type NativeRemote } from '../native/index.js';
import { PageSource } from '../uffd/source.js';
import { StateError, argType, argValue } from '../errors.js';
import { secretBuffer } from '../net/secret.js';
import { integer, object } from '../validate.js';
import { memoryError } from './errors.js';
import { RdmaLink, type RdmaLinkOptions } from './rdma-link.js';
import { memoryTls, type MemoryTlsOptions } from './tls.js';

const PAGE = 4096;

function regionId(v: unknown): bigint {
  if (typeof v !== 'string' || !/^[0-9a-f]{16}$/.test(v) || /^0+$/.test(v))
    throw argValue('options.region must be a region id: 16 hex digits, not all zero');
  return BigInt(`0x${v}`);
}

export interface RemoteStoreOptions {
  host: string;
  port: number;
  application: string;
  secret: Buffer | string;
  /** Bytes of the region to allocate on the node (rounded up to pages). */
  size: number;
  /**
   * Open this region of the application instead of allocating one (its id, `stats().region`): a
   * region handed over by another process. Rejects with ERR_NO_REGION when the node has no such region.
   */
  region?: string;
  /** Connect, handshake and each request give up after this (default 10 000). */
  timeoutMs?: number;
  /** @internal Protocol version to speak (tests of the refusal). */
  version?: number;
  /**
   * Mutual TLS to a node of a cluster: this side's certificate (e.g. an operator's), the node's verified
   * against the CA and required to name `tls.cluster`. The secret still lets the application in.
   */
  tls?: MemoryTlsOptions;
  /** With `tls`: the member name (CN) the node's certificate must carry (ERR_WRONG_PEER otherwise). */
  serverName?: string;
}

export interface RemoteStoreStats {
  region: string;
  size: number;
  leaseMs: number;
  requests: number;
  /** Bytes of pages received and sent. */
  bytesIn: number;
  bytesOut: number;
  errors: number;
  renewals: number;
  /** Why the connection ended ('' while up). */
  error: string;
}

export class RemoteStore implements AsyncDisposable {
  private readonly native: NativeRemote;
  private constructor(n: NativeRemote) {
    this.native = n;
  }

  /**
   * Connect, authenticate and allocate a region of `size` bytes. Rejects with MemoryError (ERR_AUTH: a wrong
   * secret, or over TLS a certificate refused by either side; ERR_CLUSTER, ERR_ROLE, ERR_WRONG_PEER: the
   * node's certificate names another cluster, no role, another member; ERR_MEMORY_FULL…).
   */
  static async connect(options: RemoteStoreOptions): Promise<RemoteStore> {
    const o = object('options', options);
    if (typeof o.host !== 'string' || !o.host) throw argType('options.host must be a host name or address');
    if (typeof o.application !== 'string' || !/^[A-Za-z0-9._-]{1,64}$/.test(o.application))
      throw argValue('options.application must be 1 to 64 of [A-Za-z0-9._-]');
    const spec = {
      host: o.host,
      port: integer('options.port', o.port, 1, 65535),
      application: o.application,
      secret: secretBuffer(o.secret, 'options.secret'),
      size: integer('options.size', o.size, 1),
      region: o.region === undefined ? undefined : regionId(o.region),
      timeoutMs: o.timeoutMs === undefined ? undefined : integer('options.timeoutMs', o.timeoutMs, 1, 2 ** 31),
      version: o.version === undefined ? undefined : integer('options.version', o.version, 0, 65535),
      tls: memoryTls('options.tls', o.tls, { peerName: o.serverName as string | undefined }),
    };
    if (o.serverName !== undefined && !spec.tls) throw argValue('options.serverName goes with options.tls');
    const n = new native.NativeRemote();
    try {
      await n.connect(spec);
    } catch (e) {
      throw memoryError(e, `connect to ${spec.host}:${spec.port}`);
    }
    return new RemoteStore(n);
  }

  get size(): number {
    return this.native.info().size ?? 0;
  }
  get closed(): boolean {
    return this.native.info().closed;
  }

  /** `length` bytes from `offset` (any alignment; past the region: zeros; at most 64 MiB). */
  async read(offset: number, length: number): Promise<Buffer> {
    integer('offset', offset);
    integer('length', length, 0, 64 << 20);
    try {
      return await this.native.read(offset, length);
    } catch (e) {
      throw memoryError(e, 'read');
    }
  }

  /** Write whole pages: `offset` and the length of `data` are multiples of 4096, inside the region. */
  async write(offset: number, data: Buffer | Uint8Array): Promise<void> {
    integer('offset', offset);
    if (!(data instanceof Uint8Array)) throw argType('data must be a Buffer or Uint8Array');
    if (offset % PAGE || data.length % PAGE) throw argValue('offset and data length must be multiples of 4096');
    if (data.length > 64 << 20) throw argValue('write at most 64 MiB at a time');
    try {
      await this.native.write(offset, Buffer.from(data.buffer, data.byteOffset, data.length));
    } catch (e) {
      throw memoryError(e, 'write');
    }
  }

  /** A PageSource on this region, for FaultEngine.serve(); it fails its fetches once the store is closed. */
  pageSource(): PageSource {
    const s = new native.NativeSource({ kind: 'zero' });
    if (this.closed) throw new StateError('remote store is closed', { code: 'ERR_CLOSED' });
    this.native.adopt(s);
    return new PageSource(s);
  }

  /**
   * A PageSource on this region over RDMA: a queue pair of this process's is connected to one the node
   * makes for it, endpoints and the region's rkey traded over this store's authenticated connection (sealed, or TLS); then every
   * fetch and store is a one-sided READ or WRITE, no node CPU per page. The TCP connection stays up for the
   * lease. Rejects with MemoryError ERR_UNSUPPORTED (the node serves no RDMA), ERR_LIMIT (too many
   * attachments) or ERR_RDMA (the node's verbs failed), or StateError ERR_NO_RDMA (no device here).
   */
  async rdmaPageSource(options?: RdmaLinkOptions): Promise<PageSource> {
    if (this.closed) throw new StateError('remote store is closed', { code: 'ERR_CLOSED' });
    const link = new RdmaLink(options);
    try {
      let peer;
      try {
        peer = await this.native.attachRdma(link.local());
      } catch (e) {
        throw memoryError(e, 'attach over RDMA');
      }
      link.connect(peer);
      return link.toPageSource({ addr: peer.addr, rkey: peer.rkey, size: this.size });
    } finally {
      link.close(); // spent by toPageSource, or not needed
    }
  }

  /** This client's counters. */
  stats(): RemoteStoreStats {
    const i = this.native.info();
    return {
      region: i.region ?? '',
      size: i.size ?? 0,
      leaseMs: i.leaseMs ?? 0,
      requests: i.requests ?? 0,
      bytesIn: i.bytesIn ?? 0,
      bytesOut: i.bytesOut ?? 0,
      errors: i.errors ?? 0,
      renewals: i.renewals ?? 0,
      error: i.error ?? '',
    };
  }

  /** What the node holds for this application: bytes of capacity, reserved and written, and regions. */
  async nodeStats(): Promise<{ capacity: number; reserved: number; held: number; regions: number }> {
    try {
      const s = await this.native.remoteStats();
      return {
        capacity: s.capacityPages * PAGE,
        reserved: s.reservedPages * PAGE,
        held: s.heldPages * PAGE,
        regions: s.regions,
      };
    } catch (e) {
      throw memoryError(e, 'stats');
    }
  }

  /** Free the region on the node and end the connection. Idempotent; on a connection already lost the region goes when its lease lapses. */
  async close(): Promise<void> {
    try {
      await this.native.close();
    } catch (e) {
      throw memoryError(e, 'close');
    }
  }
  /** End the connection and keep the region: its lease runs on until another process opens it (`options.region`). */
  async detach(): Promise<void> {
    await this.native.detach();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
