// The far-memory pager of the addon (native/memory/pager*): types only.
import type { NativeRegion, NativeSource, NativeUffd, RawEvent } from './uffd.js';
import type { FarStats } from '../memory/far-stats.js';

/** Pages a region from a backing source with a bound on resident pages. */
export interface NativePager {
  stats(): FarStats;
  /** Per page: 0 remote, 1 being fetched, 2 resident, 3 staged for write-back, 4 poisoned, 5 held (a readahead trigger). */
  states(): Uint8Array;
  /** Forget pages [firstPage, firstPage+count): they fault in as zeros again (off the JS thread). */
  discard(firstPage: number, count: number): Promise<void>;
  /**
   * Write every page back and drop it from the region (its program stopped), off the JS thread. `running`:
   * one pass over the pages resident now while the program runs on.
   */
  flush(running?: boolean): Promise<void>;
  /** Stops the pager's threads; returns the final counters (undefined when already closed). */
  close(): FarStats | undefined;
}

export interface PagerBinding {
  NativePager: new (
    uffd: NativeUffd,
    region: NativeRegion,
    staging: NativeRegion,
    backing: NativeSource,
    host: NativeSource,
    options: {
      localPages: number;
      maxDepth: number;
      asyncDirty: boolean;
      prefetch: boolean;
      eviction: 'move' | 'copy';
      poison: boolean;
      /** The region is a memfd shared with the uffd's process, which faults at this address. */
      faultAddress?: number;
    },
    onEvent: (ev: RawEvent) => void,
  ) => NativePager;
}
