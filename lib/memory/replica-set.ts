/**
 * Replication of far memory: one PageSource made of several (by default two memory nodes). Reads go to the
 * first live replica and fail over to the next; writes go to every replica in parallel and succeed when a
 * live one took them. A replica that fails is dropped ('lost'); the owner then adds a fresh one, which is
 * filled from a survivor in the background while it already receives every write ('synced' when done).
 * Pages never written through the set read as zeros with no round trip: the set is its replicas' only writer.
 */
import { EventEmitter } from 'node:events';
import { native, type NativeReplicaSet } from '../native/index.js';
import { SosError, StateError, argType, errnoName } from '../errors.js';
import { PageSource } from '../uffd/source.js';
import { aligned } from '../validate.js';

/** One replica of a set: filling from a survivor ('syncing'), serving ('live'), or dropped ('lost'). */
export interface ReplicaInfo {
  id: number;
  label: string;
  state: 'syncing' | 'live' | 'lost';
  /** The errno name that lost it. */
  code?: string;
}

export interface ReplicaSetEvents {
  /** A replica failed a call and no longer serves (`code`: the errno name). */
  lost: [info: { id: number; code: string }];
  /** A replica added with add() holds every stored page and serves reads now. */
  synced: [info: { id: number }];
  /** A replica being filled failed before it was complete. */
  syncFailed: [info: { id: number; code: string }];
}

export class ReplicaSet extends EventEmitter<ReplicaSetEvents> implements Disposable {
  readonly size: number;
  /** What a FaultEngine (or a far-memory region) serves from. */
  readonly source: PageSource;
  private readonly native: NativeReplicaSet;
  private closed = false;

  /**
   * A set over replicas that start identical (e.g. freshly allocated, all empty). Each entry is a page source
   * and a label for events and stats (e.g. the memory node's address).
   */
  constructor(size: number, replicas: { source: PageSource; label?: string }[]) {
    super();
    this.size = aligned('size', size, 4096, 4096);
    if (!Array.isArray(replicas) || replicas.length === 0) throw argType('replicas must be a non-empty array');
    this.native = new native.NativeReplicaSet(this.size, (type, id, errno) => this.onNative(type, id, errno));
    for (const [i, r] of replicas.entries()) {
      if (!r || !(r.source instanceof PageSource)) throw argType(`replicas[${i}].source must be a PageSource`);
      this.native.add(r.source.native, r.label ?? `replica ${i}`, false);
    }
    this.source = new PageSource(new native.NativeSource({ kind: 'zero' }));
    this.native.bind(this.source.native);
  }

  private onNative(type: 'lost' | 'synced' | 'syncFailed', id: number, errno: number): void {
    if (type === 'synced') this.emit('synced', { id });
    else this.emit(type, { id, code: errnoName(errno) ?? `errno ${errno}` });
  }

  /** Add a fresh replica (e.g. a new memory node's region): filled from a live one, then live. Returns its id. */
  add(source: PageSource, label?: string): number {
    this.check();
    if (!(source instanceof PageSource)) throw argType('source must be a PageSource');
    return this.native.add(source.native, label ?? `replica`, true);
  }

  replicas(): ReplicaInfo[] {
    return this.native.replicas();
  }

  /** Replicas that serve reads now. */
  get live(): number {
    return this.replicas().filter((r) => r.state === 'live').length;
  }

  stats(): { storedPages: number; failovers: number; syncedPages: number } {
    this.check();
    const s = this.native.stats();
    return { storedPages: s.storedPages ?? 0, failovers: s.failovers ?? 0, syncedPages: s.syncedPages ?? 0 };
  }

  /** Store whole pages through the set (tools and tests; far-memory regions write back natively). */
  async write(offset: number, data: Uint8Array): Promise<void> {
    this.check();
    try {
      await this.native.write(offset, data);
    } catch (e) {
      throw e instanceof SosError ? e : new SosError(String(e), { code: 'ERR_REPLICAS' });
    }
  }

  /** The pages ever stored through the set, one bit each (little-endian 64-bit words): a hand-over's map. */
  stored(): Buffer {
    this.check();
    return this.native.stored();
  }

  /** Mark pages the replicas already hold (a handed-over region: `stored()` of its old set). */
  setStored(map: Uint8Array): void {
    this.check();
    if (!(map instanceof Uint8Array)) throw argType('map must be a Buffer or Uint8Array');
    this.native.setStored(map);
  }

  /** Stop background fills and events. Engines serving from `source` keep working until they stop. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.native.close();
    this.source.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }

  private check(): void {
    if (this.closed) throw new StateError('replica set is closed', { code: 'ERR_CLOSED' });
  }
}
