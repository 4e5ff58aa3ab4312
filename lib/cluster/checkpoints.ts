/**
 * The cluster's checkpoints in etcd: `checkpoints/<app>/<id>` names the newest checkpoint of a
 * process and the nodes that hold its images, so that the orchestrator can restore it elsewhere
 * when its node leaves. Written by the node the process runs on, once every holder has the images
 * on disk (durable before it is acknowledged), fenced like the process entry: only while the writer
 * holds its lease and the process entry names it.
 */
import { ClusterError, etcdError } from './errors.js';
import { APP_NAME } from '../apps/names.js';
import { nodeKey } from './keys.js';
import { NODE_NAME, type Member } from './membership.js';
import { procKey } from './processes.js';
import { jsonObject, readKey, readPrefix } from './reads.js';
import type { Store } from './store.js';

/** A checkpoint of one process, as the cluster knows it. */
export interface CheckpointEntry {
  app: string;
  id: number;
  /** Its number among the process's checkpoints (1, 2, …); the holders keep the newest. */
  seq: number;
  /** The node it was taken on. */
  node: string;
  /** The nodes that hold its images. */
  holders: string[];
  at: string;
  /** The images' size. */
  bytes: number;
  /** What a restore needs besides the images: the process's own facts. */
  argv: string[];
  cwd: string;
  startedAt: string;
  limits?: Record<string, unknown>;
  /** The log files the process had open where it was taken (a restore hands it new ones in their place). */
  logs: { stdout: string; stderr: string };
}

export const CHECKPOINTS = 'checkpoints/';
export const checkpointKey = (app: string, id: number): string => `${CHECKPOINTS}${app}/${id}`;
const MAX_ENTRY = 16 * 1024;

const isStr = (v: unknown): v is string => typeof v === 'string' && v.length > 0 && v.length <= 4096;

/** An entry read from etcd (a peer's input): the entry, or null when it is not one. */
export function parseCheckpointEntry(key: string, text: unknown): CheckpointEntry | null {
  const v = jsonObject<CheckpointEntry>(text, MAX_ENTRY);
  if (!v) return null;
  const ok =
    typeof v.app === 'string' &&
    APP_NAME.test(v.app) &&
    Number.isSafeInteger(v.id) &&
    v.id! > 0 &&
    key === checkpointKey(v.app, v.id!) &&
    Number.isSafeInteger(v.seq) &&
    v.seq! > 0 &&
    typeof v.node === 'string' &&
    NODE_NAME.test(v.node) &&
    Array.isArray(v.holders) &&
    v.holders.length > 0 &&
    v.holders.length <= 16 &&
    v.holders.every((h) => typeof h === 'string' && NODE_NAME.test(h)) &&
    isStr(v.at) &&
    Number.isSafeInteger(v.bytes) &&
    v.bytes! >= 0 &&
    Array.isArray(v.argv) &&
    v.argv.length > 0 &&
    v.argv.every((a) => typeof a === 'string') &&
    isStr(v.cwd) &&
    isStr(v.startedAt) &&
    (v.limits === undefined || (v.limits !== null && typeof v.limits === 'object' && !Array.isArray(v.limits))) &&
    v.logs !== null &&
    typeof v.logs === 'object' &&
    isStr(v.logs.stdout) &&
    isStr(v.logs.stderr) &&
    v.logs.stdout.startsWith('/') &&
    v.logs.stderr.startsWith('/');
  return ok ? (v as CheckpointEntry) : null;
}

/**
 * Record `e` as `app/id`'s newest checkpoint: only while `member` holds its lease and the process
 * entry is still at `procRevision` (it names this node), and only over an older seq than `e`'s.
 */
export async function recordCheckpoint(
  store: Store,
  member: Member,
  e: CheckpointEntry,
  procRevision: string,
): Promise<void> {
  const key = checkpointKey(e.app, e.id);
  const kv = store.kv;
  const cur = await readKey(store, key, `reading ${key}`);
  const prev = cur ? parseCheckpointEntry(key, cur.value) : null;
  if (prev && prev.seq >= e.seq)
    throw new ClusterError(`${e.app}/${e.id} has checkpoint ${prev.seq} already`, { code: 'ERR_FENCED' });
  const res = await kv
    .if(nodeKey(member.name), 'Lease', '==', member.leaseId)
    .and(procKey(e.app, e.id), 'Mod', '==', procRevision)
    .and(key, 'Mod', '==', cur?.mod ?? '0')
    .then(kv.put(key).value(JSON.stringify(e)))
    .commit()
    .catch((err: Error) => {
      throw etcdError(`recording ${e.app}/${e.id}'s checkpoint`, err);
    });
  if (!res.succeeded)
    throw new ClusterError(
      `${e.app}/${e.id}'s checkpoint ${e.seq} not recorded: ${member.name} lost its lease, or the process or its checkpoints changed meanwhile`,
      { code: 'ERR_FENCED' },
    );
}

/** `app/id`'s newest checkpoint, or null. */
export async function readCheckpoint(store: Store, app: string, id: number): Promise<CheckpointEntry | null> {
  const key = checkpointKey(app, id);
  const r = await readKey(store, key, `reading ${key}`);
  return r ? parseCheckpointEntry(key, r.value) : null;
}

/** Every process's newest checkpoint, by `app/id`; malformed entries are skipped. */
export async function listCheckpoints(store: Store): Promise<Map<string, CheckpointEntry>> {
  const out = new Map<string, CheckpointEntry>();
  for (const r of await readPrefix(store, CHECKPOINTS, 'listing checkpoints')) {
    const e = parseCheckpointEntry(r.key, r.value);
    if (e) out.set(`${e.app}/${e.id}`, e);
  }
  return out;
}

/** Forget `app/id`'s checkpoints (the process was removed). */
export async function removeCheckpoint(store: Store, app: string, id: number): Promise<void> {
  await store.kv
    .delete()
    .key(checkpointKey(app, id))
    .exec()
    .catch((err: Error) => {
      throw etcdError(`removing ${app}/${id}'s checkpoint`, err);
    });
}
