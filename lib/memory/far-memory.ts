/**
 * `memory.region(size, options)`: a far-memory region in this process. Its pages live on memory nodes
 * (each on `replicas` of them, two by default), at most `localBytes` of them resident here; JavaScript
 * reads and writes it like any Region (ArrayBuffer views, worker threads, native `touch`). Faults are
 * served in C++ by the pager, which fetches from and writes back to a ReplicaSet of remote stores (TCP, or
 * one-sided RDMA). When a memory node is lost, its replica is dropped, reads go to the survivor, and a
 * region is allocated on another of `nodes` and filled from the survivor ('nodeLost', then 'replicated').
 * close() frees every remote page.
 */
import { EventEmitter } from 'node:events';
import { SosError, StateError, argRange, argType } from '../errors.js';
import type { Region } from '../uffd/region.js';
import { integer, object, oneOf } from '../validate.js';
import { ReplicaSet } from './replica-set.js';
import { FarRegion, type FarRegionOptions } from './far-region.js';
import type { FarStats } from './far-stats.js';
import { RemoteStore } from './remote.js';
import type { RdmaLinkOptions } from './rdma-link.js';
import type { PageSource } from '../uffd/source.js';
import type { MemoryTlsOptions } from './tls.js';

export interface MemoryNodeAddress {
  host: string;
  port: number;
  /** With `tls`: the member name the node's certificate must carry (a cluster node's name). */
  name?: string;
}

export interface FarMemoryOptions {
  /** The most of the region resident in this process at any moment (bytes, page multiple). */
  localBytes: number;
  /** Memory nodes to place the region's pages on, in order of preference; spares replace lost ones. */
  nodes: MemoryNodeAddress[];
  /** The application the pages belong to, and its secret on the memory nodes. */
  application: string;
  secret: Buffer | string;
  /** Memory nodes holding each page (default 2, at most nodes.length). */
  replicas?: number;
  /** Mutual TLS to every node (RemoteStoreOptions.tls): nodes of a cluster, with this side's certificate. */
  tls?: MemoryTlsOptions;
  /** 'tcp' (default) or 'rdma': one-sided reads and writes after the same authenticated hello. */
  transport?: 'tcp' | 'rdma';
  /** This side's RDMA device and GID index (transport 'rdma'). */
  rdma?: RdmaLinkOptions;
  /** Passed to the pager (FarRegionOptions). */
  dirtyTracking?: 'async' | 'sync';
  prefetch?: boolean;
  eviction?: 'auto' | 'move' | 'copy';
  fetchFailure?: 'poison' | 'wait';
  /** @internal Serve another process's memory (FarRegionOptions.foreign; lib/memory/run). */
  foreign?: FarRegionOptions['foreign'];
}

export interface FarMemoryEvents {
  nodeLost: [{ node: string; code: string }];
  replicated: [{ node: string }];
  /** No spare node could take a lost replica's place: fewer copies than asked for until one can. */
  degraded: [{ live: number; wanted: number; error: SosError }];
}

const label = (n: MemoryNodeAddress) => `${n.host}:${n.port}`;

interface Placed {
  store: RemoteStore;
  node: MemoryNodeAddress;
  source: PageSource;
}

export class FarMemory extends EventEmitter<FarMemoryEvents> implements Disposable {
  readonly size: number;
  private readonly stores = new Map<number, Placed>();
  private closing: Promise<void> | null = null;

  private constructor(
    size: number,
    private readonly far: FarRegion,
    private readonly set: ReplicaSet,
    private readonly opts: Required<Pick<FarMemoryOptions, 'nodes' | 'application' | 'secret' | 'transport'>> & {
      replicas: number;
      rdma?: RdmaLinkOptions;
      tls?: MemoryTlsOptions;
    },
  ) {
    super();
    this.size = size;
    set.on('lost', ({ id, code }) => void this.replace(id, code));
  }

  static async create(size: number, options: FarMemoryOptions): Promise<FarMemory> {
    integer('size', size, 4096);
    const o = object('options', options);
    if (!Array.isArray(o.nodes) || o.nodes.length === 0) throw argType('options.nodes must be a non-empty array');
    const replicas =
      o.replicas === undefined ? Math.min(2, o.nodes.length) : integer('options.replicas', o.replicas, 1);
    if (replicas > o.nodes.length)
      throw argRange(`options.replicas (${replicas}) exceeds the ${o.nodes.length} nodes given`);
    const transport =
      o.transport === undefined ? 'tcp' : oneOf('options.transport', o.transport, ['tcp', 'rdma'] as const);
    if (typeof o.application !== 'string') throw argType('options.application must be a string');
    const nodes = o.nodes as MemoryNodeAddress[];
    const rdma = o.rdma === undefined ? undefined : (object('options.rdma', o.rdma) as RdmaLinkOptions);
    const tls = o.tls as MemoryTlsOptions | undefined;
    const opts = {
      nodes,
      application: o.application,
      secret: o.secret as Buffer | string,
      transport,
      replicas,
      rdma,
      tls,
    };
    // Place the replicas on the first nodes that accept (a full node refuses at allocation).
    const placed: Placed[] = [];
    const errors: SosError[] = [];
    for (const node of nodes) {
      if (placed.length === replicas) break;
      try {
        placed.push(await FarMemory.connect(node, size, opts));
      } catch (e) {
        errors.push(e as SosError);
      }
    }
    if (placed.length < replicas) {
      await Promise.allSettled(placed.map((p) => p.store.close()));
      throw new SosError(
        `could place only ${placed.length} of ${replicas} replicas: ${errors.map((e) => e.message).join('; ')}`,
        { code: errors[0]?.code === 'ERR_MEMORY_FULL' ? 'ERR_MEMORY_FULL' : 'ERR_NO_NODES', cause: errors[0] },
      );
    }
    const set = new ReplicaSet(
      size,
      placed.map((p) => ({ source: p.source, label: label(p.node) })),
    );
    let far: FarRegion;
    try {
      far = FarRegion.create(size, {
        localBytes: options.localBytes,
        source: set.source,
        dirtyTracking: options.dirtyTracking,
        prefetch: options.prefetch,
        eviction: options.eviction,
        fetchFailure: options.fetchFailure,
        foreign: options.foreign,
      });
    } catch (e) {
      set.close();
      await Promise.allSettled(placed.map((p) => p.store.close()));
      throw e;
    }
    const fm = new FarMemory(size, far, set, opts);
    for (const [i, r] of set.replicas().entries()) fm.stores.set(r.id, placed[i]);
    return fm;
  }

  /** A region on `node` and the page source over it (TCP, or RDMA attached over the same connection). */
  private static async connect(
    node: MemoryNodeAddress,
    size: number,
    o: {
      application: string;
      secret: Buffer | string;
      transport: 'tcp' | 'rdma';
      rdma?: RdmaLinkOptions;
      tls?: MemoryTlsOptions;
    },
  ): Promise<Placed> {
    const store = await RemoteStore.connect({
      host: node.host,
      port: node.port,
      application: o.application,
      secret: o.secret,
      size,
      ...(o.tls ? { tls: o.tls, ...(node.name ? { serverName: node.name } : {}) } : {}),
    });
    try {
      const source = o.transport === 'rdma' ? await store.rdmaPageSource(o.rdma) : store.pageSource();
      return { store, node, source };
    } catch (e) {
      await store.close().catch(() => undefined);
      throw e;
    }
  }

  /** A lost replica's place goes to the first node not in use that accepts. */
  private async replace(id: number, code: string): Promise<void> {
    const lost = this.stores.get(id);
    this.stores.delete(id);
    if (lost) {
      this.emit('nodeLost', { node: label(lost.node), code });
      void lost.store.close().catch(() => undefined);
    }
    const inUse = new Set([...this.stores.values()].map((s) => label(s.node)));
    let last: SosError | undefined;
    for (const node of this.opts.nodes) {
      if (this.closing) return;
      if (inUse.has(label(node)) || (lost && label(lost.node) === label(node))) continue;
      try {
        const p = await FarMemory.connect(node, this.size, this.opts);
        if (this.closing) {
          await p.store.close();
          return;
        }
        const newId = this.set.add(p.source, label(node));
        this.stores.set(newId, p);
        this.set.once('synced', () => this.emit('replicated', { node: label(node) }));
        return;
      } catch (e) {
        last = e as SosError;
      }
    }
    this.emit('degraded', {
      live: this.set.live,
      wanted: this.opts.replicas,
      error: last ?? new SosError('no spare memory node', { code: 'ERR_NO_NODES' }),
    });
  }

  /** The region itself, for workload(), touch() and views. */
  get region(): Region {
    return this.far.region;
  }
  get buffer(): ArrayBuffer {
    return this.far.region.buffer;
  }

  /** A Uint8Array over [offset, offset+length) of the region. */
  bytes(offset = 0, length?: number): Uint8Array {
    return this.far.bytes(offset, length);
  }

  /** Forget [offset, offset+length): its pages read as zeros again (FarRegion.discard). */
  discard(offset: number, length: number): Promise<void> {
    if (this.closing) return Promise.reject(new StateError('far-memory region is closed', { code: 'ERR_CLOSED' }));
    return this.far.discard(offset, length);
  }

  /** Bytes of the region mapped in this process now (never more than localBytes). */
  residentBytes(): number {
    return this.far.stats().residentPages * 4096;
  }

  stats(): FarStats & { failovers: number; replicas: ReturnType<ReplicaSet['replicas']> } {
    if (this.closing) throw new StateError('far-memory region is closed', { code: 'ERR_CLOSED' });
    return { ...this.far.stats(), failovers: this.set.stats().failovers, replicas: this.set.replicas() };
  }

  /** Stop paging, unmap the region and free every remote page (idempotent). */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.far.close();
      this.set.close();
      await Promise.allSettled([...this.stores.values()].map((s) => s.store.close()));
      this.stores.clear();
    })();
    return this.closing;
  }

  [Symbol.dispose](): void {
    void this.close();
  }
}

/** A far-memory region of `size` bytes: see FarMemory. */
export function region(size: number, options: FarMemoryOptions): Promise<FarMemory> {
  return FarMemory.create(size, options);
}
