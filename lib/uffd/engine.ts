/**
 * The fault engine: native threads that read a userfaultfd and resolve each
 * fault from a page source, a batch of pages per ioctl, so that no fault
 * crosses into JavaScript. JavaScript chooses sources and reads counters.
 */
import { EventEmitter } from 'node:events';
import { native, type NativeEngine, type RawEvent } from '../native/index.js';
import { argType } from '../errors.js';
import { integer, object } from '../validate.js';
import { PageSource } from './source.js';
import { Userfaultfd, type Where } from './userfaultfd.js';
import type { ForkEvent, RemapEvent, RemoveEvent, UnmapEvent } from './events.js';
import type { EngineStats } from './stats.js';

export interface EngineOptions {
  /** Handler threads reading the userfaultfd (default 1). */
  threads?: number;
  /** Pages resolved per fault: the aligned window around the fault (default 16; 1 = no prefetch). */
  batchPages?: number;
  /**
   * Busy-poll the userfaultfd this long (µs) before sleeping (default 0).
   * Cuts the wake-up latency of streaming faults at the cost of a core.
   */
  spinMicros?: number;
}

/** Events the engine does not resolve itself, re-emitted on the engine (and the userfaultfd). */
export interface UnservedEvent {
  type: 'unserved';
  address: number;
}

/** Typed listeners of a FaultEngine. */
export interface FaultEngineEvents {
  unserved: [UnservedEvent];
  error: [Error];
  fork: [ForkEvent];
  remap: [RemapEvent];
  remove: [RemoveEvent];
  unmap: [UnmapEvent];
}

export class FaultEngine extends EventEmitter<FaultEngineEvents> implements Disposable {
  readonly uffd: Userfaultfd;
  private readonly native: NativeEngine;
  private readonly sources = new Set<PageSource>();

  constructor(uffd: Userfaultfd, options?: EngineOptions) {
    super();
    if (!(uffd instanceof Userfaultfd)) throw argType('uffd must be a Userfaultfd');
    const o = object('options', options);
    const threads = o.threads === undefined ? 1 : integer('options.threads', o.threads, 1, 64);
    const batchPages = o.batchPages === undefined ? 16 : integer('options.batchPages', o.batchPages, 1, 512);
    const spinMicros = o.spinMicros === undefined ? 0 : integer('options.spinMicros', o.spinMicros, 0, 10000);
    this.uffd = uffd;
    this.native = new native.NativeEngine(uffd.native, { threads, batchPages, spinMicros });
  }

  /**
   * Serve faults in `where` from `source`; byte `sourceOffset` of the source
   * backs the first byte of `where`. Ranges can be added while running.
   */
  serve(where: Where, source: PageSource, options?: { sourceOffset?: number }): this {
    if (!(source instanceof PageSource)) throw argType('source must be a PageSource');
    const o = object('options', options);
    const { addr, length, pageSize } = this.uffd.resolve(where);
    const sourceOffset = o.sourceOffset === undefined ? 0 : integer('options.sourceOffset', o.sourceOffset);
    this.native.serve(addr, length, source.native, sourceOffset, pageSize);
    this.sources.add(source);
    return this;
  }

  /** Stop serving a range: its faults are then zero-filled and reported as 'unserved'. */
  unserve(where: Where): this {
    const { addr, length } = this.uffd.resolve(where);
    this.native.unserve(addr, length);
    return this;
  }

  /** Start the handler threads; the userfaultfd's JS event delivery pauses meanwhile. */
  start(): this {
    this.native.start((raw: RawEvent) => this.onEvent(raw));
    return this;
  }

  /** Stop the threads (each finishes the fault in hand). Returns the final counters. */
  stop(): EngineStats {
    return this.native.stop();
  }

  get running(): boolean {
    return this.native.running();
  }

  /**
   * Live counters and the service-latency histogram (read the fault → resolving
   * ioctl returned). A faulting thread resumes inside that ioctl, before the
   * counters move: while running they may lag by the faults in flight; the
   * totals returned by stop() are exact.
   */
  stats(): EngineStats {
    return this.native.stats();
  }

  resetStats(): void {
    this.native.resetStats();
  }

  /** Stop and release (idempotent). */
  close(): void {
    this.native.close();
    this.sources.clear();
  }
  [Symbol.dispose](): void {
    this.close();
  }

  private onEvent(raw: RawEvent): void {
    if (raw.type === 'error') {
      if (this.listenerCount('error') > 0) this.emit('error', raw.error!);
      else process.emitWarning(raw.error!.message, { code: 'SOS_ENGINE_ERROR' });
      return;
    }
    if (raw.type === 'unserved') {
      this.emit('unserved', { type: 'unserved', address: raw.address! } satisfies UnservedEvent);
      return;
    }
    // fork / remap / remove / unmap: the engine already kept its table in step.
    // The userfaultfd converts (a FORK brings the child's Userfaultfd, owned
    // by whoever listens); both emitters see the same event object.
    const mine = (this as EventEmitter).listenerCount(raw.type);
    const ev = this.uffd.dispatch(raw, mine);
    if (ev && mine > 0) (this as EventEmitter).emit(ev.type, ev);
  }
}
