/**
 * A far-memory region: memory JavaScript reads and writes like a {@link Region}
 * whose pages live in a backing {@link PageSource}, with at most `localBytes`
 * of it resident at any moment. Faults are served by a {@link FaultEngine}
 * handing them to the native pager (native/memory/pager.cc): eviction with
 * CLOCK, dirty tracking, Leap prefetching and write-back all run in C++.
 * How it works and what the counters mean: docs/memory-paging.md.
 */
import { EventEmitter } from 'node:events';
import { native, type NativePager, type RawEvent } from '../native/index.js';
import { StateError, argRange, argType } from '../errors.js';
import { aligned, integer, object, oneOf } from '../validate.js';
import { FaultEngine } from '../uffd/engine.js';
import { Region } from '../uffd/region.js';
import { PageSource } from '../uffd/source.js';
import { Userfaultfd } from '../uffd/userfaultfd.js';
import type { Feature } from '../uffd/constants.js';
import type { FarStats } from './far-stats.js';

const PAGE = 4096;
const MAX_DEPTH = 255; // one READ carries 256 pages; the pager also caps a window at an eighth of the local bound

export type DirtyTracking = 'async' | 'sync';
/** How pages leave the region (see docs/memory-paging.md, "Eviction modes"). */
export type Eviction = 'move' | 'copy';
/** What a fault gets when the source cannot deliver its page. */
export type FetchFailure = 'poison' | 'wait';

export interface FarRegionOptions {
  /** Resident bytes at most (a multiple of 4096, at least {@link FarRegion.MIN_LOCAL_BYTES}, at most the size). */
  localBytes: number;
  /** Where the pages live; byte `o` of the region is byte `o` of the source. */
  source: PageSource;
  /**
   * How written pages are found: 'async' (UFFD_FEATURE_WP_ASYNC + PAGEMAP_SCAN, no fault per
   * write; needs eviction 'move') or 'sync' (a write-protect fault on the first write to a page
   * installed clean; a page whose fault was a store is installed writable and dirty). Default:
   * 'sync' with copy eviction, 'async' (where the kernel has it) with move eviction.
   */
  dirtyTracking?: DirtyTracking;
  /** Leap prefetching of sequential and strided faults (default true), or its readahead window's pages at most (default 255). */
  prefetch?: boolean | { maxDepth?: number };
  /**
   * How a victim leaves the region: 'move' (UFFDIO_MOVE of its PTE, Linux 6.8+) or 'copy'
   * (write-protect, copy out, MADV_DONTNEED: any kernel with anonymous userfaultfd WP; needs
   * dirtyTracking 'sync'). Default 'auto': 'move' when dirtyTracking 'async' is asked for, else
   * 'copy', which drops many pages with one TLB flush where MOVE flushes once per page (see
   * docs/memory-paging.md for the measurements).
   */
  eviction?: Eviction | 'auto';
  /**
   * When the source cannot deliver a faulting page (after a few quick retries): 'poison' it
   * (UFFDIO_POISON, Linux 6.6+: the access gets SIGBUS, or EFAULT in a syscall) or 'wait' (the
   * access blocks and the fetch is retried, backing off up to 1 s, until the source answers or
   * the region closes). Either way an 'error' event per failure. Default: 'poison' where the
   * kernel has it, else 'wait'.
   */
  fetchFailure?: FetchFailure;
  /**
   * @internal Serve another process's mapping instead of a region of our own: `region` is our
   * mapping of a shared memfd that process maps at `faultAddress`, registered (missing + wp) with
   * `uffd`, a userfaultfd taken from it. Copy eviction and sync tracking only; lib/memory/run.
   */
  foreign?: { uffd: Userfaultfd; region: Region; faultAddress: number };
}

/** Listeners of a FarRegion: 'error' for a source that fails (the page is poisoned or waited for, never zero-filled). */
export interface FarRegionEvents {
  error: [Error & { address?: number }];
}

export class FarRegion extends EventEmitter<FarRegionEvents> implements Disposable {
  /** The smallest local bound (the staging area takes a quarter of it, two readahead windows an eighth each). */
  static readonly MIN_LOCAL_BYTES = 128 * PAGE;

  /** The region itself (attach it in a worker by `region.id`, pass it to touch()). */
  readonly region: Region;
  readonly localBytes: number;
  readonly dirtyTracking: DirtyTracking;
  readonly eviction: Eviction;
  readonly fetchFailure: FetchFailure;
  private readonly uffd: Userfaultfd;
  private readonly staging: Region;
  private readonly host: PageSource;
  private readonly pager: NativePager;
  private readonly engine: FaultEngine;
  private _closed = false;
  private last: FarStats | undefined;

  /** Whether 'async' dirty tracking can work here (the kernel's userfaultfd features; PAGEMAP_SCAN is checked natively). */
  static asyncSupported(): boolean {
    const f = Userfaultfd.probe().features;
    return f.has('WP_ASYNC') && f.has('MOVE'); // async needs move eviction (copy would lose writes)
  }

  static create(size: number, options: FarRegionOptions): FarRegion {
    aligned('size', size, PAGE, PAGE);
    const o = object('options', options);
    const localBytes = aligned('options.localBytes', o.localBytes, PAGE);
    if (localBytes < FarRegion.MIN_LOCAL_BYTES || localBytes > size)
      throw argRange(
        `options.localBytes must be between ${FarRegion.MIN_LOCAL_BYTES} and the size (${size}), got ${localBytes}`,
      );
    if (!(o.source instanceof PageSource)) throw argType('options.source must be a PageSource');
    if (o.source.closed) throw new StateError('options.source is closed', { code: 'ERR_CLOSED' });
    let maxDepth = MAX_DEPTH;
    let prefetch = true;
    if (typeof o.prefetch === 'boolean') prefetch = o.prefetch;
    else if (o.prefetch !== undefined) {
      const p = object('options.prefetch', o.prefetch);
      if (p.maxDepth !== undefined) maxDepth = integer('options.prefetch.maxDepth', p.maxDepth, 1, MAX_DEPTH);
    }
    const asked =
      o.dirtyTracking === undefined
        ? undefined
        : oneOf('options.dirtyTracking', o.dirtyTracking, ['async', 'sync'] as const);
    const evictionOpt =
      o.eviction === undefined ? 'auto' : oneOf('options.eviction', o.eviction, ['auto', 'move', 'copy'] as const);
    const failureOpt =
      o.fetchFailure === undefined
        ? undefined
        : oneOf('options.fetchFailure', o.fetchFailure, ['poison', 'wait'] as const);
    const support = Userfaultfd.probe().features;
    const unsupported = (what: string) => new StateError(what, { code: 'ERR_UNSUPPORTED' });
    if (evictionOpt === 'move' && !support.has('MOVE'))
      throw unsupported("eviction 'move' needs userfaultfd MOVE (Linux 6.8+)");
    if (failureOpt === 'poison' && !support.has('POISON'))
      throw unsupported("fetchFailure 'poison' needs userfaultfd POISON (Linux 6.6+)");
    // Copy eviction relies on a write fault under the pager's lock: with async tracking a write during the copy would be lost.
    if (evictionOpt === 'copy' && asked === 'async')
      throw argType("options.eviction 'copy' needs options.dirtyTracking 'sync' (async lets writes through unseen)");
    const eviction: Eviction = evictionOpt === 'auto' ? (asked === 'async' ? 'move' : 'copy') : evictionOpt;
    if (eviction === 'move' && !support.has('MOVE'))
      throw unsupported("dirtyTracking 'async' needs eviction 'move' (userfaultfd MOVE, Linux 6.8+)");
    const fetchFailure: FetchFailure = failureOpt ?? (support.has('POISON') ? 'poison' : 'wait');
    const foreign = o.foreign as FarRegionOptions['foreign'];
    if (foreign) {
      if (foreign.region.size !== size) throw argRange(`options.foreign.region must be ${size} bytes`);
      const poison = failureOpt ?? (foreign.uffd.features.has('POISON') ? 'poison' : 'wait');
      return new FarRegion(size, localBytes, o.source, {
        mode: 'sync',
        eviction: 'copy',
        fetchFailure: poison,
        prefetch,
        maxDepth,
        foreign,
      });
    }
    const make = (mode: DirtyTracking) =>
      new FarRegion(size, localBytes, o.source as PageSource, { mode, eviction, fetchFailure, prefetch, maxDepth });
    if (asked !== undefined) return make(asked);
    if (eviction === 'move' && FarRegion.asyncSupported()) {
      try {
        return make('async');
      } catch (e) {
        if ((e as { code?: string }).code !== 'ERR_UNSUPPORTED') throw e; // no PAGEMAP_SCAN: fall back
      }
    }
    return make('sync');
  }

  private constructor(
    size: number,
    localBytes: number,
    source: PageSource,
    c: {
      mode: DirtyTracking;
      eviction: Eviction;
      fetchFailure: FetchFailure;
      prefetch: boolean;
      maxDepth: number;
      foreign?: FarRegionOptions['foreign'];
    },
  ) {
    super();
    const { mode, prefetch, maxDepth } = c;
    this.localBytes = localBytes;
    this.dirtyTracking = mode;
    this.eviction = c.eviction;
    this.fetchFailure = c.fetchFailure;
    const localPages = localBytes / PAGE;
    const stagingPages = Math.min(1024, Math.max(16, Math.floor(localPages / 4)));
    const undo: (() => void)[] = [];
    try {
      const f = c.foreign;
      this.region = f ? f.region : Region.anonymous(size);
      undo.push(() => this.region.close());
      this.staging = Region.anonymous(stagingPages * PAGE);
      undo.push(() => this.staging.close());
      if (f) {
        this.uffd = f.uffd; // registered by its process
      } else {
        // Only what this region uses: a kernel without the rest can still serve it.
        const features: Feature[] = ['PAGEFAULT_FLAG_WP'];
        if (c.eviction === 'move') features.push('MOVE');
        if (c.fetchFailure === 'poison') features.push('POISON');
        if (mode === 'async') features.push('WP_ASYNC');
        this.uffd = Userfaultfd.open({ features });
        this.uffd.register(this.region, { missing: true, wp: true });
      }
      undo.push(() => this.uffd.close());
      // Move eviction's slots are unmapped when free and filled by UFFDIO_MOVE, which wants them
      // registered; copy eviction's are ordinary memory, mapped for good (the pager fills them).
      if (c.eviction === 'move') this.uffd.register(this.staging, { missing: true });
      this.host = new PageSource(new native.NativeSource({ kind: 'zero' }));
      undo.push(() => this.host.close());
      this.pager = new native.NativePager(
        this.uffd.native,
        this.region.native,
        this.staging.native,
        source.native,
        this.host.native,
        {
          localPages,
          maxDepth,
          asyncDirty: mode === 'async',
          prefetch,
          eviction: c.eviction,
          poison: c.fetchFailure === 'poison',
          ...(f ? { faultAddress: f.faultAddress } : {}),
        },
        (ev: RawEvent) => this.onError(ev.error!, ev.address),
      );
      undo.push(() => this.pager.close());
      // One handler thread: faults of the region are serialised in the pager anyway.
      this.engine = new FaultEngine(this.uffd, { threads: 1, batchPages: 1 });
      undo.push(() => this.engine.close());
      this.engine.on('error', (e) => this.onError(e));
      this.engine.serve(f ? { address: f.faultAddress, length: size } : this.region, this.host).start();
    } catch (e) {
      for (const u of undo.reverse()) u();
      throw e;
    }
  }

  get size(): number {
    return this.region.size;
  }
  get address(): number {
    return this.region.address;
  }
  get id(): number {
    return this.region.id;
  }
  get closed(): boolean {
    return this._closed;
  }

  /** The region's memory (no copy): every access beyond the resident pages is a fault served natively. */
  get buffer(): ArrayBuffer {
    this.live();
    return this.region.buffer;
  }

  /** A Uint8Array over [offset, offset+length). */
  bytes(offset = 0, length?: number): Uint8Array {
    this.live();
    return this.region.bytes(offset, length);
  }

  /** Counters and latency histograms (the final ones after close()). */
  stats(): FarStats {
    if (this._closed) {
      if (this.last) return this.last;
      throw new StateError('far region is closed', { code: 'ERR_CLOSED' });
    }
    return this.pager.stats();
  }

  /**
   * Forget [offset, offset+length) (page multiples): its pages read as zeros again, as after
   * MADV_DONTNEED, and are fetched no more. Waits out write-backs of those pages, off the JS thread.
   */
  async discard(offset: number, length: number): Promise<void> {
    this.live();
    aligned('offset', offset, PAGE);
    aligned('length', length, PAGE);
    if (offset + length > this.size) throw argRange(`offset + length exceeds the region's ${this.size} bytes`);
    await this.pager.discard(offset / PAGE, length / PAGE);
  }

  /**
   * Write every page back to the source and drop it from the region, off the JS thread: for a hand-over,
   * once nothing faults any more (the program parked). Rejects with the write-back's error.
   */
  async flush(): Promise<void> {
    this.live();
    await this.pager.flush();
  }

  /**
   * Write back and drop the pages resident now while the program runs on, off the JS thread: those it
   * touches meanwhile fault in again. Ahead of a hand-over, so that the parked flush() has only them to
   * write. Rejects with the write-back's error.
   */
  async writeBackResident(): Promise<void> {
    this.live();
    await this.pager.flush(true);
  }

  /** @internal Per page: 0 remote (or waited for after a failed fetch), 1 being fetched, 2 resident, 3 staged for write-back, 4 poisoned. */
  pageStates(): Uint8Array {
    this.live();
    return this.pager.states();
  }

  /** Stop serving and free the local memory (idempotent). Handles attached elsewhere keep the mapping until closed. */
  close(): void {
    if (this._closed) return;
    this._closed = true;
    this.engine.close();
    this.last = this.pager.close();
    this.uffd.close();
    this.host.close();
    this.staging.close();
    this.region.close();
  }
  [Symbol.dispose](): void {
    this.close();
  }

  private live(): void {
    if (this._closed) throw new StateError('far region is closed', { code: 'ERR_CLOSED' });
  }

  private onError(error: Error, address?: number): void {
    const e = Object.defineProperty(error, 'address', { value: address, enumerable: true }) as Error & {
      address?: number;
    };
    if (this.listenerCount('error') > 0) this.emit('error', e);
    else process.emitWarning(error.message, { code: 'SOS_FAR_REGION_ERROR' });
  }
}
