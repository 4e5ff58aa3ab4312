/**
 * Reads of the cluster's store that fail as one kind: ERR_ETCD_UNAVAILABLE naming what was read. The
 * values are a peer's input: callers parse them (and skip what does not parse).
 */
import { etcdError } from './errors.js';
import type { Store } from './store.js';

/** A value read, with the revisions a fenced write compares against. */
export interface Read {
  /** The key, relative to the cluster's prefix. */
  key: string;
  value: string;
  mod: string;
  create: string;
  lease: string;
}

/** The value at `key`, or null. */
export async function readKey(store: Store, key: string, what: string): Promise<Read | null> {
  const res = await store.kv
    .get(key)
    .exec()
    .catch((e: Error) => {
      throw etcdError(what, e);
    });
  const kv = res.kvs[0];
  // A single get's raw response keeps the namespace's prefix on the key: the one asked for is the answer's.
  return kv
    ? { key, value: kv.value.toString('utf8'), mod: kv.mod_revision, create: kv.create_revision, lease: kv.lease }
    : null;
}

/** Every value under `prefix` (by key; with `newest`, the last `newest` keys, newest first). */
export async function readPrefix(store: Store, prefix: string, what: string, newest?: number): Promise<Read[]> {
  let q = store.kv.getAll().prefix(prefix);
  if (newest !== undefined) q = q.sort('Key', 'Descend').limit(newest);
  const res = await q.exec().catch((e: Error) => {
    throw etcdError(what, e);
  });
  return res.kvs.map((kv) => ({
    key: kv.key.toString('utf8'),
    value: kv.value.toString('utf8'),
    mod: kv.mod_revision,
    create: kv.create_revision,
    lease: kv.lease,
  }));
}

/**
 * A value read as JSON, for a parser that then checks its shape: an object (not an array) of at
 * most `max` characters, else null. Never throws: the value is a peer's input.
 */
export function jsonObject<T>(text: unknown, max: number): Partial<T> | null {
  if (typeof text !== 'string' || text.length > max) return null;
  try {
    const v: unknown = JSON.parse(text);
    return v !== null && typeof v === 'object' && !Array.isArray(v) ? v : null;
  } catch {
    return null;
  }
}
