/**
 * Memory owned by the addon, visible to JavaScript as an ArrayBuffer without
 * copying. Regions are what a userfaultfd of this process may register:
 * memory the addon does not own (the JS heap) can never be registered.
 */
import { markAsUntransferable } from 'node:worker_threads';
import { native, type NativeRegion } from '../native/index.js';
import { StateError } from '../errors.js';
import { aligned, bool, integer, object, oneOf } from '../validate.js';

export type Protection = 'none' | 'r' | 'w' | 'rw';
export type Advice =
  | 'dontneed'
  | 'remove'
  | 'willneed'
  | 'normal'
  | 'random'
  | 'sequential'
  | 'free'
  | 'pageout'
  | 'cold'
  | 'populate_read'
  | 'populate_write';
const ADVICE: readonly Advice[] = [
  'dontneed',
  'remove',
  'willneed',
  'normal',
  'random',
  'sequential',
  'free',
  'pageout',
  'cold',
  'populate_read',
  'populate_write',
];
const PROT: readonly Protection[] = ['none', 'r', 'w', 'rw'];

export interface RegionOptions {
  /** Back the region with 2 MiB huge pages (needs vm.nr_hugepages). */
  hugetlb?: boolean;
}

export class Region implements Disposable {
  /** @internal */ readonly native: NativeRegion;
  readonly kind: 'anonymous' | 'memfd' | 'file';
  readonly pageSize: number;
  readonly id: number;

  private constructor(n: NativeRegion) {
    this.native = n;
    const info = n.info();
    this.kind = info.kind as Region['kind'];
    this.pageSize = info.pageSize;
    this.id = n.id();
  }

  /** Private anonymous memory (MAP_NORESERVE: pages cost nothing until touched). */
  static anonymous(size: number, options?: RegionOptions): Region {
    const o = object('options', options);
    const hugetlb = bool('options.hugetlb', o.hugetlb, false);
    aligned('size', size, hugetlb ? 2 << 20 : native.pageSize, 1);
    return new Region(new native.NativeRegion({ kind: 'anonymous', size, hugetlb }));
  }

  /** Shared memory backed by a memfd (shmem): MINOR faults, sharing with other mappings. */
  static memfd(size: number, options?: RegionOptions & { name?: string }): Region {
    const o = object('options', options);
    const hugetlb = bool('options.hugetlb', o.hugetlb, false);
    aligned('size', size, hugetlb ? 2 << 20 : native.pageSize, 1);
    if (o.name !== undefined && typeof o.name !== 'string') throw new TypeError('options.name must be a string');
    return new Region(new native.NativeRegion({ kind: 'memfd', size, hugetlb, name: o.name ?? 'sos-region' }));
  }

  /** Map an open file descriptor (a file, or another region's memfd). */
  static fromFd(fd: number, size: number, options?: { offset?: number; shared?: boolean }): Region {
    const o = object('options', options);
    integer('fd', fd);
    aligned('size', size, native.pageSize, 1);
    const offset = o.offset === undefined ? 0 : aligned('options.offset', o.offset, native.pageSize);
    const shared = bool('options.shared', o.shared, true);
    return new Region(new native.NativeRegion({ kind: 'file', fd, size, offset, shared }));
  }

  /**
   * Open another handle on a live region by its id, e.g. in a worker thread
   * (post `region.id` to it). The memory stays mapped while any handle is open.
   */
  static attach(id: number): Region {
    integer('id', id, 1);
    return new Region(new native.NativeRegion({ kind: 'attach', id }));
  }

  /** Start address in this process. */
  get address(): number {
    return this.native.address();
  }
  get size(): number {
    return this.native.size();
  }
  /** The memfd behind a memfd region, else -1. */
  get fd(): number {
    return this.native.fd();
  }
  get closed(): boolean {
    return this.native.isClosed();
  }
  /** Registered with a userfaultfd, views, handles in other threads. */
  info(): ReturnType<NativeRegion['info']> {
    return this.native.info();
  }

  /**
   * The region's memory as an ArrayBuffer (no copy). Throws ERR_DEADLOCK when
   * this thread would have to serve faults in it itself, ERR_PROTECTED or
   * ERR_UNMAPPED when touching it could crash. The buffer is detached (length
   * 0) when the region is closed, moved, unmapped or protected.
   */
  get buffer(): ArrayBuffer {
    const ab = this.native.buffer();
    markAsUntransferable(ab);
    return ab;
  }

  /** A Uint8Array over [offset, offset+length) of the region. */
  bytes(offset = 0, length?: number): Uint8Array {
    const size = this.size;
    integer('offset', offset, 0, size);
    const len = length === undefined ? size - offset : integer('length', length, 0, size - offset);
    return new Uint8Array(this.buffer, offset, len);
  }

  /** A second mapping of the same memfd pages (to fill pages behind MINOR faults). */
  alias(): Region {
    const fd = this.fd;
    if (fd < 0) throw new StateError('only memfd regions can be aliased', { code: 'ERR_UNSUPPORTED' });
    return Region.fromFd(fd, this.size, { shared: true });
  }

  /**
   * mprotect `[offset, offset+length)` (page multiples). Anything but 'rw' detaches views;
   * refused (ERR_BUSY) while the region is a page source or viewed in another thread.
   */
  mprotect(offset: number, length: number, prot: Protection): void {
    this.checkRange(offset, length);
    this.native.mprotect(offset, length, oneOf('prot', prot, PROT));
  }

  /**
   * madvise `[offset, offset+length)` (page multiples), off the JS thread: 'dontneed' and
   * 'remove' may wait for a userfaultfd REMOVE event to be read.
   * @param advice MADV_* in lower case without the prefix.
   */
  async madvise(offset: number, length: number, advice: Advice): Promise<void> {
    this.checkRange(offset, length);
    return await this.native.madvise(offset, length, oneOf('advice', advice, ADVICE));
  }

  /**
   * munmap `[offset, offset+length)` (page multiples) off the JS thread (UNMAP event); the
   * region keeps the rest, and has no single view any more (`buffer` throws ERR_UNMAPPED).
   * Rejects with ERR_BUSY while the region is a page source, in a running touch, or viewed in
   * another thread.
   */
  async unmap(offset: number, length: number): Promise<void> {
    this.checkRange(offset, length);
    return await this.native.unmap(offset, length);
  }

  /**
   * mremap to `size` bytes (a page multiple), possibly moving (REMAP event), off the JS thread.
   * Views are detached. Rejects with ERR_BUSY as {@link Region.unmap} does, ERR_UNMAPPED when
   * part of it was unmapped.
   * @returns the new start address.
   */
  async remap(size: number): Promise<number> {
    aligned('size', size, this.pageSize, 1);
    return await this.native.remap(size);
  }

  /**
   * Close this handle (idempotent) and detach its views. The memory is unmapped when the
   * last handle closes and nothing else holds it: a page source made from the region, a
   * running touch, or the ArrayBuffer of a Region object collected without close() keep it
   * mapped until they go.
   * The last close is refused (ERR_BUSY) while the region is still registered with a
   * userfaultfd.
   */
  close(): void {
    this.native.close();
  }
  [Symbol.dispose](): void {
    this.close();
  }

  private checkRange(offset: number, length: number): void {
    aligned('offset', offset, this.pageSize);
    aligned('length', length, this.pageSize, 1);
  }
}
