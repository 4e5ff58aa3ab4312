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
import { SosError, StateError, argRange, argType, argValue } from '../errors.js';
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

/**
 * A far-memory region's pages left on its memory nodes for another process to serve: every page written
 * back, each replica's region kept (its lease runs on, so the next owner must open it within the lease).
 * Plain JSON, to travel with a migration. FarMemory.handover() makes one; FarMemoryOptions.handover takes it.
 */
export interface FarHandover {
  size: number;
  application: string;
  /** Each live replica: its node, and its region's id there. */
  replicas: { node: MemoryNodeAddress; region: string }[];
  /** The pages ever written (ReplicaSet.stored()), base64: the others read as zeros with no round trip. */
  stored: string;
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
  /** Take over these regions (FarMemory.handover()) instead of allocating: the pages read as they were left. */
  handover?: FarHandover;
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
    // Place the replicas on the first nodes that accept (a full node refuses at allocation), or reopen
    // the handed-over ones: any that cannot be reopened is a lost replica, replaced below.
    const placed: Placed[] = [];
    const errors: SosError[] = [];
    const handover = o.handover === undefined ? undefined : checkHandover(o.handover, size, o.application);
    for (const r of handover?.replicas ?? []) {
      try {
        placed.push(await FarMemory.connect(r.node, size, opts, r.region));
      } catch (e) {
        errors.push(e as SosError);
      }
    }
    if (handover && placed.length === 0) {
      throw new SosError(
        `none of the handed-over replicas could be opened: ${errors.map((e) => e.message).join('; ')}`,
        {
          code: 'ERR_NO_NODES',
          cause: errors[0],
        },
      );
    }
    for (const node of handover ? [] : nodes) {
      if (placed.length === replicas) break;
      try {
        placed.push(await FarMemory.connect(node, size, opts));
      } catch (e) {
        errors.push(e as SosError);
      }
    }
    if (!handover && placed.length < replicas) {
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
    if (handover) set.setStored(Buffer.from(handover.stored, 'base64'));
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
    // Replicas the hand-over named but that are gone: spares take their places, filled from the rest.
    for (let k = placed.length; k < replicas; k++)
      void fm.replace(-1, errors[k - placed.length]?.code ?? 'ERR_NO_REGION');
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
    region?: string,
  ): Promise<Placed> {
    const store = await RemoteStore.connect({
      host: node.host,
      port: node.port,
      application: o.application,
      secret: o.secret,
      size,
      ...(region ? { region } : {}),
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

  /**
   * Write back and drop the pages resident now while the program runs on (FarRegion.writeBackResident):
   * ahead of a hand-over, whose parked flush then has only the pages touched since to write.
   */
  writeBackResident(): Promise<void> {
    if (this.closing) return Promise.reject(new StateError('far-memory region is closed', { code: 'ERR_CLOSED' }));
    return this.far.writeBackResident();
  }

  /**
   * Hand the region over: every page is written back and dropped here, then the pager stops and the
   * connections end, keeping each live replica's region for another process to open
   * (FarMemoryOptions.handover) within the nodes' lease. Nothing may fault meanwhile (the program is
   * parked: ProgramRun.detach). The region is closed afterwards; its last counters stay in stats().
   */
  async handover(): Promise<FarHandover> {
    if (this.closing) throw new StateError('far-memory region is closed', { code: 'ERR_CLOSED' });
    await this.far.flush();
    const stored = this.set.stored().toString('base64');
    const kept: Placed[] = [];
    const replicas: FarHandover['replicas'] = [];
    for (const r of this.set.replicas()) {
      const p = this.stores.get(r.id);
      if (r.state !== 'live' || !p) continue;
      kept.push(p);
      replicas.push({ node: { ...p.node }, region: p.store.stats().region });
    }
    this.closing = (async () => {
      this.far.close();
      this.set.close();
      await Promise.allSettled(
        [...this.stores.values()].map((s) => (kept.includes(s) ? s.store.detach() : s.store.close())),
      );
      this.stores.clear();
    })();
    await this.closing;
    return { size: this.size, application: this.opts.application, replicas, stored };
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

const REGION_ID = /^[0-9a-f]{16}$/;

/** A hand-over from a peer (it travels with a migration): checked field by field; throws an argument error. @internal */
export function checkHandover(v: unknown, size: number, application: string): FarHandover {
  const h = object('options.handover', v);
  if (h.size !== size)
    throw argValue(
      `options.handover is of a ${typeof h.size === 'number' ? h.size : typeof h.size}-byte region, not ${size}`,
    );
  if (h.application !== application)
    throw argValue(
      `options.handover belongs to application ${typeof h.application === 'string' ? JSON.stringify(h.application) : typeof h.application}, not ${application}`,
    );
  if (!Array.isArray(h.replicas) || h.replicas.length === 0 || h.replicas.length > 16)
    throw argValue('options.handover.replicas must name 1 to 16 replicas');
  const replicas = h.replicas.map((r: unknown, i: number) => {
    const x = object(`options.handover.replicas[${i}]`, r);
    const n = object(`options.handover.replicas[${i}].node`, x.node);
    if (typeof n.host !== 'string' || !n.host)
      throw argValue(`options.handover.replicas[${i}].node.host must be a host`);
    if (n.name !== undefined && typeof n.name !== 'string')
      throw argValue(`options.handover.replicas[${i}].node.name must be a string`);
    if (typeof x.region !== 'string' || !REGION_ID.test(x.region))
      throw argValue(`options.handover.replicas[${i}].region must be 16 hex digits`);
    const node: MemoryNodeAddress = {
      host: n.host,
      port: integer(`options.handover.replicas[${i}].node.port`, n.port, 1, 65535),
    };
    if (typeof n.name === 'string') node.name = n.name;
    return { node, region: x.region };
  });
  const words = Math.ceil(size / 4096 / 64) * 8;
  if (
    typeof h.stored !== 'string' ||
    Buffer.byteLength(h.stored, 'base64') !== words ||
    Buffer.from(h.stored, 'base64').toString('base64') !== h.stored
  )
    throw argValue(`options.handover.stored must be base64 of ${words} bytes`);
  return { size, application, replicas, stored: h.stored };
}
