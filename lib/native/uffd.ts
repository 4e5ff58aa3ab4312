// The userfaultfd part of the addon (native/uffd/): types only.

/** A mapping the addon owns: anonymous, memfd, file-backed, or attached by id from another thread. */
export interface NativeRegion {
  buffer(): ArrayBuffer;
  address(): number;
  size(): number;
  id(): number;
  fd(): number;
  info(): {
    kind: string;
    pageSize: number;
    shared: boolean;
    hugetlb: boolean;
    registered: boolean;
    holes: boolean;
    handles: number;
    views: number;
  };
  mprotect(offset: number, length: number, prot: string): void;
  madvise(offset: number, length: number, advice: string): Promise<void>;
  unmap(offset: number, length: number): Promise<void>;
  remap(size: number): Promise<number>;
  close(): void;
  isClosed(): boolean;
}

/** One userfaultfd event as read from the fd (or synthesised by the engine: 'unserved', 'error'). */
export interface RawEvent {
  type: 'pagefault' | 'fork' | 'remap' | 'remove' | 'unmap' | 'unserved' | 'error' | 'unknown';
  address?: number;
  flags?: number;
  tid?: number;
  fd?: number;
  from?: number;
  to?: number;
  length?: number;
  start?: number;
  end?: number;
  error?: Error;
  event?: number;
}

/** A userfaultfd: the UFFDIO_* ioctls, its event stream and its state. */
export interface NativeUffd {
  api(features: bigint): { features: bigint; available: bigint; ioctls: bigint };
  register(address: number | bigint, length: number, mode: number): bigint;
  unregister(address: number | bigint, length: number): void;
  copy(dst: number | bigint, src: ArrayBufferView | ArrayBuffer | number, length: number, mode: number): number;
  zeropage(address: number | bigint, length: number, mode: number): number;
  continue(address: number | bigint, length: number, mode: number): number;
  writeprotect(address: number | bigint, length: number, mode: number): void;
  move(dst: number | bigint, src: number | bigint, length: number, mode: number): number;
  poison(address: number | bigint, length: number, mode: number): number;
  wake(address: number | bigint, length: number): void;
  read(): RawEvent[];
  startEvents(cb: (err: Error | null, events: RawEvent[] | null) => void): void;
  stopEvents(): void;
  ref(): void;
  unref(): void;
  close(): void;
  state(): {
    closed: boolean;
    fd?: number;
    apiDone?: boolean;
    features?: bigint;
    ioctls?: bigint;
    ownProcess?: boolean;
    engine?: boolean;
    events?: boolean;
  };
}

/** Where a fault engine takes pages from: zeroes, a region, or a file. */
export interface NativeSource {
  info(): { closed: boolean; kind?: string; size?: number };
  read(offset: number, length: number): Buffer;
  close(): void;
}

// The engine's and touch()'s counters are plain numbers: the public types (lib/uffd/stats.ts) are
// exactly what the addon returns.
export type { LatencySummary, TouchResult, EngineStats as NativeEngineStats } from '../uffd/stats.js';
import type { EngineStats as NativeEngineStats, TouchResult } from '../uffd/stats.js';

/** Serves the faults of a userfaultfd on native threads, from page sources. */
export interface NativeEngine {
  serve(address: number | bigint, length: number, source: NativeSource, sourceOffset: number, pageSize: number): void;
  unserve(address: number | bigint, length: number): void;
  start(onEvent: (ev: RawEvent) => void): void;
  stop(): NativeEngineStats;
  stats(): NativeEngineStats;
  resetStats(): void;
  close(): void;
  running(): boolean;
}

/** What the addon exports for userfaultfd, at its top level. */
export interface UffdBinding {
  NativeRegion: new (spec: object) => NativeRegion;
  NativeUffd: (new (spec: object) => NativeUffd) & {
    probe(via?: string): { features: bigint; ioctls: bigint };
    fromProcess(pid: number, fd: number): number;
  };
  NativeSource: new (spec: object) => NativeSource;
  NativeEngine: new (uffd: NativeUffd, opts: object) => NativeEngine;
  /** Read (or write) every page of a range off the JS thread, timing each first touch. */
  touch(region: NativeRegion, offset: number, length: number, opts: object): Promise<TouchResult>;
  pageSize: number;
}
