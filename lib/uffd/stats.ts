// The engine's and touch()'s counters, as the public API states them. The
// native binding returns the same shape (checked where it is returned); every
// field is a plain number, so JSON.stringify works on them as they are.

/** A latency distribution in nanoseconds. */
export interface LatencySummary {
  /** Samples recorded. */
  count?: number;
  meanNs: number;
  p50Ns: number;
  p90Ns: number;
  p99Ns: number;
  maxNs: number;
}

/** A FaultEngine's counters ({@link FaultEngine.stats}, {@link FaultEngine.stop}). */
export interface EngineStats {
  /** Faults read from the userfaultfd. */
  faults: number;
  /** Pages resolved (a fault resolves up to batchPages). */
  pages: number;
  bytes: number;
  /** Pages resolved with UFFDIO_ZEROPAGE (a zero source, or an unserved range). */
  zeroPages: number;
  /** Write-protect faults resolved. */
  wpFaults: number;
  /** MINOR faults resolved with UFFDIO_CONTINUE. */
  minorFaults: number;
  /** Resolving ioctls that found a page already there (EEXIST). */
  exists: number;
  /** Faults retried after EAGAIN (the mappings were changing). */
  retries: number;
  /** Faults whose range or process went away before they were resolved (ENOENT, ESRCH). */
  dropped: number;
  /** Faults outside every served range (zero-filled and reported as 'unserved'). */
  unserved: number;
  /** Faults that failed to resolve (reported as 'error'). */
  errors: number;
  /** Non-fault events read (fork, remap, remove, unmap). */
  events: number;
  /** ioctls issued (COPY, ZEROPAGE, CONTINUE, WRITEPROTECT, WAKE). */
  ioctls: number;
  /** Service latency: summary plus the histogram's non-empty buckets as [lowerBoundNs, count]. */
  latency: LatencySummary & { count: number; buckets: [number, number][] };
  running: boolean;
}

/** What {@link touch} measured. */
export interface TouchResult {
  /** Pages touched. */
  pages: number;
  /** Wall time of the whole run. */
  elapsedNs: number;
  /** Sum of the bytes read (0 for writes): keeps the reads from being optimised away. */
  byteSum: number;
  /** Time of each first access. */
  latency: LatencySummary;
}
