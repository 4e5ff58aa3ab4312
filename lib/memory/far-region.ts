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
const MAX_DEPTH = 31;

export type DirtyTracking = 'async' | 'sync';

export interface FarRegionOptions {
  /** Resident bytes at most (a multiple of 4096, at least {@link FarRegion.MIN_LOCAL_BYTES}, at most the size). */
  localBytes: number;
  /** Where the pages live; byte `o` of the region is byte `o` of the source. */
  source: PageSource;
  /**
   * How written pages are found: 'async' (UFFD_FEATURE_WP_ASYNC + PAGEMAP_SCAN, no fault per
   * write) or 'sync' (a write-protect fault on the first write to a clean page). Default:
   * 'async' where the kernel has it.
   */
  dirtyTracking?: DirtyTracking;
  /** Leap prefetching of sequential and strided faults (default true), or its window's pages at most. */
  prefetch?: boolean | { maxDepth?: number };
}

/** Listeners of a FarRegion: 'error' for a source that fails (the page is poisoned, never zero-filled). */
export interface FarRegionEvents {
  error: [Error & { address?: number }];
}

export class FarRegion extends EventEmitter<FarRegionEvents> implements Disposable {
  /** The smallest local bound: four windows of the deepest prefetch plus the staging area. */
  static readonly MIN_LOCAL_BYTES = 128 * PAGE;

  /** The region itself (attach it in a worker by `region.id`, pass it to touch()). */
  readonly region: Region;
  readonly localBytes: number;
  readonly dirtyTracking: DirtyTracking;
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
    return f.has('WP_ASYNC') && f.has('MOVE') && f.has('POISON');
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
    const support = Userfaultfd.probe().features;
    if (!support.has('MOVE') || !support.has('POISON'))
      throw new StateError('far-memory regions need userfaultfd MOVE and POISON (Linux 6.8+)', {
        code: 'ERR_UNSUPPORTED',
      });
    if (o.dirtyTracking !== undefined) {
      const mode = oneOf('options.dirtyTracking', o.dirtyTracking, ['async', 'sync'] as const);
      return new FarRegion(size, localBytes, o.source, mode, prefetch, maxDepth);
    }
    if (FarRegion.asyncSupported()) {
      try {
        return new FarRegion(size, localBytes, o.source, 'async', prefetch, maxDepth);
      } catch (e) {
        if ((e as { code?: string }).code !== 'ERR_UNSUPPORTED') throw e; // no PAGEMAP_SCAN: fall back
      }
    }
    return new FarRegion(size, localBytes, o.source, 'sync', prefetch, maxDepth);
  }

  private constructor(
    size: number,
    localBytes: number,
    source: PageSource,
    mode: DirtyTracking,
    prefetch: boolean,
    maxDepth: number,
  ) {
    super();
    this.localBytes = localBytes;
    this.dirtyTracking = mode;
    const localPages = localBytes / PAGE;
    const stagingPages = Math.min(1024, Math.max(16, Math.floor(localPages / 4)));
    const undo: (() => void)[] = [];
    try {
      this.region = Region.anonymous(size);
      undo.push(() => this.region.close());
      this.staging = Region.anonymous(stagingPages * PAGE);
      undo.push(() => this.staging.close());
      const features: Feature[] = ['PAGEFAULT_FLAG_WP', 'MOVE', 'POISON'];
      if (mode === 'async') features.push('WP_ASYNC');
      this.uffd = Userfaultfd.open({ features });
      undo.push(() => this.uffd.close());
      this.uffd.register(this.region, { missing: true, wp: true });
      this.uffd.register(this.staging, { missing: true });
      this.host = new PageSource(new native.NativeSource({ kind: 'zero' }));
      undo.push(() => this.host.close());
      this.pager = new native.NativePager(
        this.uffd.native,
        this.region.native,
        this.staging.native,
        source.native,
        this.host.native,
        { localPages, maxDepth, asyncDirty: mode === 'async', prefetch },
        (ev: RawEvent) => this.onError(ev.error!, ev.address),
      );
      undo.push(() => this.pager.close());
      // One handler thread: faults of the region are serialised in the pager anyway.
      this.engine = new FaultEngine(this.uffd, { threads: 1, batchPages: 1 });
      undo.push(() => this.engine.close());
      this.engine.on('error', (e) => this.onError(e));
      this.engine.serve(this.region, this.host).start();
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

  /** @internal Per page: 0 remote, 1 being fetched, 2 resident, 3 staged for write-back, 4 poisoned. */
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
