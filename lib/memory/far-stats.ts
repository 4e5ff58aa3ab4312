// A far-memory region's counters, as the addon returns them (plain numbers).
import type { LatencySummary } from '../uffd/stats.js';

/** A latency distribution with its non-empty buckets as [lowerBoundNs, count] (8 per power of two). */
export interface FarLatency extends LatencySummary {
  buckets: [number, number][];
}

/** {@link FarRegion.stats}. Pages are 4 KiB. */
export interface FarStats {
  /** How pages leave the region: 'move' (UFFDIO_MOVE) or 'copy' (write-protect, copy, MADV_DONTNEED). */
  eviction: 'move' | 'copy';
  /** What a fault gets when the source cannot deliver its page: 'poison' (SIGBUS/EFAULT) or 'wait' (retried). */
  fetchFailure: 'poison' | 'wait';
  /** Missing faults handed to the pager. */
  faults: number;
  /** Synchronous write-protect faults ('sync' dirty tracking: first write to a clean page). */
  wpFaults: number;
  /** FetchV batches sent to the source (one per fault on a remote page). */
  fetches: number;
  /** Pages fetched (faulting pages and prefetched pages). */
  pagesFetched: number;
  /** Pages evicted from the region (moved or copied out). */
  evictions: number;
  /** Evicted pages dropped without write-back (clean). */
  cleanDrops: number;
  /** Pages written back to the source (dirty). */
  writeBacks: number;
  /** StoreV batches. */
  writeBackBatches: number;
  /** Pages fetched by the prefetcher along with a faulting page. */
  prefetched: number;
  /** Prefetched pages used: written, or passed by the stream that predicted them (see docs/memory-paging.md). */
  prefetchHits: number;
  /** Prefetched pages evicted without having counted as a hit. */
  prefetchWaste: number;
  bytesIn: number;
  bytesOut: number;
  /** Faults served from the staging copy of a page whose write-back was pending. */
  stagedHits: number;
  /** Writes caught by the content hash between the dirty scan and the move ('async'). */
  raceCatches: number;
  fetchErrors: number;
  storeErrors: number;
  /** Pages poisoned because the source could not deliver them (their access raises SIGBUS). */
  poisoned: number;
  /** Fetches tried again for a waiting fault whose page the source failed to deliver ('wait'). */
  fetchRetries: number;
  /** Times a fault waited for a write-back to free a frame. */
  frameWaits: number;
  /** PAGEMAP_SCAN passes ('async'). */
  scans: number;
  /** Written pages those passes reported. */
  writtenSeen: number;
  /** Pages installed as zeros with no fetch: the source was never given them (a memory-node region's untouched pages). */
  zeroFills: number;
  /** Readahead windows fetched off the fault path. */
  readaheads: number;
  /** Faults on a window's first page, each sending the next window. */
  triggers: number;
  /** TLB flushes eviction asked for: its write-protects and moves, its zaps and freed staging slots (one per batch). */
  evictFlushes: number;
  /** Pages mapped in the region now. */
  residentPages: number;
  /** Frames held: resident, being fetched, and staged for write-back (at most localBytes / 4096). */
  usedPages: number;
  /** Missing fault handed to the pager → its pages installed. */
  faultLatency: FarLatency;
  /** One StoreV batch. */
  writeBackLatency: FarLatency;
}
