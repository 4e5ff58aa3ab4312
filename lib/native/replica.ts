// Replication of page sources (native/memory/replica_set.*): types only.
import type { NativeSource } from './uffd.js';

/** One replica of a set: filling from a survivor ('syncing'), serving ('live'), or dropped ('lost'). */
export interface NativeReplicaInfo {
  id: number;
  label: string;
  state: 'syncing' | 'live' | 'lost';
  /** The errno name that lost it. */
  code?: string;
}

/** A page source made of several: reads fail over, writes go to every replica. */
export interface NativeReplicaSet {
  add(source: NativeSource, label: string, sync: boolean): number;
  bind(source: NativeSource): void;
  replicas(): NativeReplicaInfo[];
  stats(): { closed: boolean; storedPages?: number; failovers?: number; syncedPages?: number };
  write(offset: number, data: Uint8Array): Promise<void>;
  /** The pages ever stored, one bit each in little-endian 64-bit words. */
  stored(): Buffer;
  /** Pages the replicas already hold (a handed-over region): exactly stored()'s length. */
  setStored(map: Uint8Array): void;
  close(): void;
}

export interface ReplicaBinding {
  NativeReplicaSet: new (
    size: number,
    onEvent: (type: 'lost' | 'synced' | 'syncFailed', id: number, errno: number) => void,
  ) => NativeReplicaSet;
}
