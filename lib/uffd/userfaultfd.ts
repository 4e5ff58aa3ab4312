/**
 * A userfaultfd: the UFFDIO_API handshake, registration, every resolving
 * ioctl, and events delivered from a libuv poll (EventEmitter and async
 * iterator). Faults can also be served natively by a FaultEngine.
 */
import { EventEmitter } from 'node:events';
import { native, type NativeUffd, type RawEvent } from '../native/index.js';
import { argType } from '../errors.js';
import { address as addressArg, aligned, bool, integer, object, oneOf } from '../validate.js';
import {
  FEATURES,
  MODE,
  REGISTER_MODE,
  featureBits,
  featureSet,
  ioctlSet,
  type Feature,
  type Ioctl,
} from './constants.js';
import {
  faultKind,
  isWrite,
  type ForkEvent,
  type PageFaultEvent,
  type RemapEvent,
  type RemoveEvent,
  type UffdEvent,
  type UnmapEvent,
} from './events.js';
import { Region } from './region.js';

/** What this kernel offers (probed, never assumed). */
export interface KernelSupport {
  features: Set<Feature>;
  ioctls: Set<Ioctl>;
  /** The UFFDIO_API feature bits as the kernel reported them. */
  rawFeatures: bigint;
  /** The JSON form (JSON.stringify cannot write Sets or BigInts). */
  toJSON(): KernelSupportJSON;
}

/** {@link KernelSupport} as JSON: lists for the sets, the feature bits as a hex string ('0x…'). */
export interface KernelSupportJSON {
  features: Feature[];
  ioctls: Ioctl[];
  rawFeatures: string;
}

/** What {@link Userfaultfd.api} negotiated. */
export interface ApiResult {
  /** The features in force. */
  features: Set<Feature>;
  /** Every feature the kernel has. */
  available: Set<Feature>;
  /** The ioctls of the userfaultfd. */
  ioctls: Set<Ioctl>;
  /** The JSON form: the sets as lists. */
  toJSON(): { features: Feature[]; available: Feature[]; ioctls: Ioctl[] };
}

// toJSON as a non-enumerable method: spreading and comparing the object see the data only.
function withJSON<T extends object, J>(o: T, json: (o: T) => J): T & { toJSON(): J } {
  return Object.defineProperty(o, 'toJSON', { value: () => json(o), enumerable: false }) as T & { toJSON(): J };
}

function kernelSupport(features: Set<Feature>, ioctls: Set<Ioctl>, rawFeatures: bigint): KernelSupport {
  return withJSON({ features, ioctls, rawFeatures }, (s) => ({
    features: [...s.features],
    ioctls: [...s.ioctls],
    rawFeatures: `0x${s.rawFeatures.toString(16)}`,
  }));
}

export interface OpenOptions {
  /** 'syscall' (userfaultfd(2)) or 'dev' (/dev/userfaultfd, USERFAULTFD_IOC_NEW). */
  via?: 'syscall' | 'dev';
  closeOnExec?: boolean;
  /** O_NONBLOCK (default true; event delivery and engines need it). */
  nonBlocking?: boolean;
  /** UFFD_USER_MODE_ONLY: faults from kernel-mode accesses are not handled. */
  userModeOnly?: boolean;
  /**
   * Features to negotiate: a list, or 'all' for everything this kernel has
   * (but EVENT_FORK, refused on userfaultfds of this process: see api()).
   * Default: THREAD_ID when offered.
   */
  features?: readonly Feature[] | 'all';
  /** Skip the handshake (call api() yourself). */
  handshake?: boolean;
}

export interface RegisterModes {
  missing?: boolean;
  wp?: boolean;
  minor?: boolean;
}

/** Where an operation applies: a region (or part of it) of this process, or raw addresses of another process. */
export type Where =
  Region | { region: Region; offset?: number; length?: number } | { address: number | bigint; length: number };

const EVENT_NAMES = new Set(['pagefault', 'fork', 'remap', 'remove', 'unmap']);

/** Typed listeners. Listening to any of the fault/event names starts delivery. */
export interface UserfaultfdEvents {
  pagefault: [PageFaultEvent];
  fork: [ForkEvent];
  remap: [RemapEvent];
  remove: [RemoveEvent];
  unmap: [UnmapEvent];
  error: [Error];
  close: [];
}
const probed = new Map<string, KernelSupport>();

export class Userfaultfd extends EventEmitter<UserfaultfdEvents> implements Disposable, AsyncIterable<UffdEvent> {
  /** @internal */ readonly native: NativeUffd;
  private _features = new Set<Feature>();
  private _ioctls = new Set<Ioctl>();
  private readonly regions = new Set<Region>();
  private iterators = 0;
  private delivering = false;
  /** @internal */ engineAttached = false;

  /** Kernel support, from a throwaway userfaultfd (cached per `via`). */
  static probe(via: 'syscall' | 'dev' = 'syscall'): KernelSupport {
    oneOf('via', via, ['syscall', 'dev'] as const);
    let s = probed.get(via);
    if (!s) {
      const r = native.NativeUffd.probe(via);
      s = kernelSupport(featureSet(r.features), ioctlSet(r.ioctls), r.features);
      probed.set(via, s);
    }
    return kernelSupport(new Set(s.features), new Set(s.ioctls), s.rawFeatures);
  }

  /** Open a userfaultfd and (by default) do the UFFDIO_API handshake. */
  static open(options?: OpenOptions): Userfaultfd {
    const o = object('options', options);
    const via = o.via === undefined ? 'syscall' : oneOf('options.via', o.via, ['syscall', 'dev'] as const);
    const spec = {
      via,
      closeOnExec: bool('options.closeOnExec', o.closeOnExec, true),
      nonBlocking: bool('options.nonBlocking', o.nonBlocking, true),
      userModeOnly: bool('options.userModeOnly', o.userModeOnly, false),
    };
    let want: Feature[] | undefined;
    // 'all': everything this kernel has that a userfaultfd of this process may
    // take (EVENT_FORK would block this process's own forks).
    if (o.features === 'all') want = [...Userfaultfd.probe(via).features].filter((f) => f !== 'EVENT_FORK');
    else if (o.features !== undefined) {
      if (!Array.isArray(o.features)) throw argType("options.features must be an array of feature names or 'all'");
      featureBits(o.features as Feature[]); // validates names
      want = o.features as Feature[];
    }
    const u = new Userfaultfd(new native.NativeUffd(spec));
    if (bool('options.handshake', o.handshake, true)) {
      try {
        u.api(want ?? (Userfaultfd.probe(via).features.has('THREAD_ID') ? ['THREAD_ID'] : []));
      } catch (e) {
        u.close();
        throw e;
      }
    }
    return u;
  }

  /**
   * Adopt a userfaultfd that another process created (pidfd_getfd; needs
   * ptrace rights over it). Its handshake is done; pass the features it
   * negotiated if you know them. Its ranges are raw addresses of that process.
   */
  static fromProcess(pid: number, fd: number, options?: { features?: readonly Feature[] }): Userfaultfd {
    integer('pid', pid, 1);
    integer('fd', fd);
    const o = object('options', options);
    const features = (o.features as Feature[] | undefined) ?? [];
    const mine = native.NativeUffd.fromProcess(pid, fd);
    return Userfaultfd.adopt(mine, featureBits(features), pid === process.pid);
  }

  /** @internal */
  static adopt(fd: number, features: bigint, ownProcess = false): Userfaultfd {
    const u = new Userfaultfd(new native.NativeUffd({ adopt: fd, features, ownProcess }));
    u._features = featureSet(features);
    return u;
  }

  private constructor(n: NativeUffd) {
    super();
    this.native = n;
    // Deliver events only while someone listens: an unread fault blocks its thread.
    const plain = this as EventEmitter;
    plain.on('newListener', (name: string | symbol) => {
      if (typeof name === 'string' && EVENT_NAMES.has(name)) queueMicrotask(() => this.updateDelivery());
    });
    plain.on('removeListener', () => queueMicrotask(() => this.updateDelivery()));
  }

  /**
   * UFFDIO_API: negotiate features (once). Returns the features in force,
   * every feature the kernel has, and the ioctls of the userfaultfd.
   */
  api(features: readonly Feature[] = []): ApiResult {
    if (!Array.isArray(features)) throw argType('features must be an array of feature names');
    const r = this.native.api(featureBits(features));
    this._features = featureSet(r.features);
    this._ioctls = ioctlSet(r.ioctls);
    const result = {
      features: new Set(this._features),
      available: featureSet(r.available),
      ioctls: new Set(this._ioctls),
    };
    return withJSON(result, (a) => ({ features: [...a.features], available: [...a.available], ioctls: [...a.ioctls] }));
  }

  get features(): Set<Feature> {
    return new Set(this._features);
  }
  get ioctls(): Set<Ioctl> {
    return new Set(this._ioctls);
  }
  get fd(): number {
    return this.state().fd ?? -1;
  }
  get closed(): boolean {
    return this.native.state().closed;
  }
  /** @internal */ state(): ReturnType<NativeUffd['state']> {
    return this.native.state();
  }

  /** UFFDIO_REGISTER: returns the ioctls allowed on the range. */
  register(where: Where, modes: RegisterModes = { missing: true }): Set<Ioctl> {
    const m = object('modes', modes);
    let mode = 0;
    if (bool('modes.missing', m.missing, false)) mode |= REGISTER_MODE.MISSING;
    if (bool('modes.wp', m.wp, false)) mode |= REGISTER_MODE.WP;
    if (bool('modes.minor', m.minor, false)) mode |= REGISTER_MODE.MINOR;
    if (mode === 0) throw argType('modes must enable at least one of missing, wp, minor');
    const { addr, length, region } = this.resolve(where);
    const ioctls = ioctlSet(this.native.register(addr, length, mode));
    if (region) this.regions.add(region);
    return ioctls;
  }

  /** UFFDIO_UNREGISTER. */
  unregister(where: Where): void {
    const { addr, length, region } = this.resolve(where);
    this.native.unregister(addr, length);
    if (region && !region.closed && !region.info().registered) this.regions.delete(region);
  }

  /**
   * UFFDIO_COPY: fill the missing pages of `where` from `source` (JS memory,
   * or a region of this process). Returns the bytes copied.
   */
  copy(
    where: Where,
    source: ArrayBufferView | ArrayBuffer | Where,
    options?: { wp?: boolean; dontWake?: boolean },
  ): number {
    const o = object('options', options);
    const { addr, length } = this.resolve(where);
    let src: ArrayBufferView | ArrayBuffer | number;
    if (ArrayBuffer.isView(source) || source instanceof ArrayBuffer) src = source;
    else {
      const s = this.resolve(source);
      if (typeof s.addr !== 'number') throw argType('source must be JS memory or a region of this process');
      src = s.addr;
    }
    let mode = 0;
    if (bool('options.dontWake', o.dontWake, false)) mode |= MODE.DONTWAKE;
    if (bool('options.wp', o.wp, false)) mode |= MODE.COPY_WP;
    return this.native.copy(addr, src, length, mode);
  }

  /** UFFDIO_ZEROPAGE: map zero pages. Returns bytes mapped. */
  zeropage(where: Where, options?: { dontWake?: boolean }): number {
    const o = object('options', options);
    const { addr, length } = this.resolve(where);
    return this.native.zeropage(addr, length, bool('options.dontWake', o.dontWake, false) ? MODE.DONTWAKE : 0);
  }

  /** UFFDIO_CONTINUE: map pages already in the page cache (MINOR faults). */
  continue(where: Where, options?: { wp?: boolean; dontWake?: boolean }): number {
    const o = object('options', options);
    const { addr, length } = this.resolve(where);
    let mode = 0;
    if (bool('options.dontWake', o.dontWake, false)) mode |= MODE.DONTWAKE;
    if (bool('options.wp', o.wp, false)) mode |= MODE.CONTINUE_WP;
    return this.native.continue(addr, length, mode);
  }

  /** UFFDIO_WRITEPROTECT: protect (true) or unprotect (false, wakes writers). */
  writeprotect(where: Where, protect: boolean, options?: { dontWake?: boolean }): void {
    const o = object('options', options);
    if (typeof protect !== 'boolean') throw argType('protect must be a boolean');
    const { addr, length } = this.resolve(where);
    let mode = protect ? MODE.WRITEPROTECT_WP : 0;
    if (bool('options.dontWake', o.dontWake, false)) mode |= MODE.WRITEPROTECT_DONTWAKE;
    this.native.writeprotect(addr, length, mode);
  }

  /** UFFDIO_MOVE: move pages (no copy) from `source` into `where`. Returns bytes moved. */
  move(where: Where, source: Where, options?: { dontWake?: boolean; allowSourceHoles?: boolean }): number {
    const o = object('options', options);
    const d = this.resolve(where);
    const s = this.resolve(source);
    if (s.length !== d.length) throw argType('source and destination must have the same length');
    let mode = 0;
    if (bool('options.dontWake', o.dontWake, false)) mode |= MODE.DONTWAKE;
    if (bool('options.allowSourceHoles', o.allowSourceHoles, false)) mode |= MODE.MOVE_ALLOW_SRC_HOLES;
    return this.native.move(d.addr, s.addr, d.length, mode);
  }

  /** UFFDIO_POISON: accesses to these pages raise SIGBUS. Returns bytes poisoned. */
  poison(where: Where, options?: { dontWake?: boolean }): number {
    const o = object('options', options);
    const { addr, length } = this.resolve(where);
    return this.native.poison(addr, length, bool('options.dontWake', o.dontWake, false) ? MODE.DONTWAKE : 0);
  }

  /** UFFDIO_WAKE: wake threads waiting on faults in the range. */
  wake(where: Where): void {
    const { addr, length } = this.resolve(where);
    this.native.wake(addr, length);
  }

  /** Events pending right now, read without waiting (when no listener or engine reads them). */
  readPending(): UffdEvent[] {
    return this.native
      .read()
      .map((e) => this.toEvent(e))
      .filter((e): e is UffdEvent => e !== null);
  }

  /** Async iteration over events; ends when the userfaultfd closes. */
  async *[Symbol.asyncIterator](): AsyncGenerator<UffdEvent> {
    const queue: UffdEvent[] = [];
    let wake: (() => void) | null = null;
    const push = (ev: UffdEvent) => {
      queue.push(ev);
      wake?.();
    };
    const done = () => wake?.();
    const plain = this as EventEmitter;
    for (const n of EVENT_NAMES) plain.on(n, push);
    this.once('close', done);
    this.iterators++;
    try {
      for (;;) {
        while (queue.length) yield queue.shift()!;
        if (this.closed) return;
        await new Promise<void>((r) => (wake = r));
        wake = null;
      }
    } finally {
      this.iterators--;
      for (const n of EVENT_NAMES) plain.off(n, push);
      this.off('close', done);
    }
  }

  /** Keep (default) or stop keeping the process alive while events are delivered. */
  ref(): this {
    this.native.ref();
    return this;
  }
  unref(): this {
    this.native.unref();
    return this;
  }

  /**
   * Close (idempotent): stops a fault engine serving it first; threads
   * blocked on its faults are woken by the kernel and retry without it.
   */
  close(): void {
    if (this.closed) return;
    this.native.close();
    this.regions.clear();
    this.delivering = false;
    this.emit('close');
  }
  [Symbol.dispose](): void {
    this.close();
  }

  /**
   * @internal Deliver a kernel event (also those an engine read). A FORK that
   * nobody takes is closed at once: the child's faults then resolve as
   * ordinary ones instead of waiting forever for a handler.
   */
  dispatch(raw: RawEvent, otherListeners = 0): UffdEvent | null {
    const ev = this.toEvent(raw);
    if (!ev) return null;
    const heard = (this as EventEmitter).emit(ev.type, ev);
    if (ev.type === 'fork' && !heard && otherListeners === 0) ev.uffd.close();
    return ev;
  }

  private updateDelivery(): void {
    if (this.closed) return;
    let want = this.iterators > 0;
    for (const n of EVENT_NAMES) if ((this as EventEmitter).listenerCount(n) > 0) want = true;
    if (want === this.delivering) return;
    this.delivering = want;
    if (want) {
      this.native.startEvents((err, events) => {
        if (err) {
          this.emit('error', err);
          return;
        }
        for (const raw of events ?? []) this.dispatch(raw);
      });
    } else this.native.stopEvents();
  }

  private toEvent(e: RawEvent): UffdEvent | null {
    switch (e.type) {
      case 'pagefault': {
        const address = e.address!;
        const region = this.regionAt(address);
        return {
          type: 'pagefault',
          address,
          kind: faultKind(e.flags!),
          write: isWrite(e.flags!),
          tid: e.tid ?? 0,
          ...(region ? { region, offset: address - region.address } : {}),
        };
      }
      case 'fork':
        return { type: 'fork', uffd: Userfaultfd.adopt(e.fd!, featureBits([...this._features])) };
      case 'remap':
        return { type: 'remap', from: e.from!, to: e.to!, length: e.length! };
      case 'remove':
      case 'unmap':
        return { type: e.type, start: e.start!, end: e.end! };
      default:
        return null;
    }
  }

  private regionAt(address: number): Region | undefined {
    for (const r of this.regions) {
      if (r.closed) continue;
      const a = r.address;
      if (address >= a && address < a + r.size) return r;
    }
    return undefined;
  }

  /** @internal */
  resolve(where: Where): { addr: number | bigint; length: number; region?: Region; pageSize: number } {
    if (where instanceof Region)
      return { addr: where.address, length: where.size, region: where, pageSize: where.pageSize };
    const w = object('where', where);
    if (w.region !== undefined) {
      if (!(w.region instanceof Region)) throw argType('where.region must be a Region');
      const r = w.region;
      const size = r.size;
      const offset = w.offset === undefined ? 0 : aligned('where.offset', w.offset, r.pageSize);
      if (offset > size)
        throw Object.assign(new RangeError(`where.offset ${offset} is past the region's end (${size})`), {
          code: 'ERR_OUT_OF_RANGE',
        });
      const length = w.length === undefined ? size - offset : aligned('where.length', w.length, r.pageSize, 1);
      if (offset + length > size)
        throw Object.assign(
          new RangeError(`range [${offset}, ${offset + length}) is outside the region of ${size} bytes`),
          { code: 'ERR_OUT_OF_RANGE' },
        );
      return { addr: r.address + offset, length, region: r, pageSize: r.pageSize };
    }
    if (w.address !== undefined) {
      const addr = addressArg('where.address', w.address);
      const length = aligned('where.length', w.length, native.pageSize, 1);
      return { addr, length, pageSize: native.pageSize };
    }
    throw argType('where must be a Region, { region, offset?, length? } or { address, length }');
  }
}

/** All feature names this library knows. */
export const ALL_FEATURES = Object.keys(FEATURES) as Feature[];
