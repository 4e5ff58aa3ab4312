/**
 * A live migration as the cluster decided it, in etcd before anyone acts on it:
 *   moves/<migration>   { migration, app, id, from, to, mode, argv, cwd, limits, logs, startedAt, at, moveAddress? }
 * The source node writes it (only while it holds its membership lease, and only once: a second
 * write of the same id fails) before it asks the target; the target admits an incoming migration
 * only when this entry names it, names the peer that asks as the source, and that source is a live
 * member. So a restore runs only images of a migration the cluster recorded, sent by the node that
 * recorded it. The entry outlives both nodes' leases: it says what moved where.
 */
import { checkMoveAddress, type MoveAddress } from '../migration/address.js';
import { ClusterError, etcdError } from './errors.js';
import { nodeKey } from './keys.js';
import type { Member } from './membership.js';
import type { Store } from './store.js';

export interface MoveEntry {
  /** The migration's id (32 lowercase hex digits), as the agents' records carry it. */
  migration: string;
  app: string;
  id: number;
  from: string;
  to: string;
  mode: 'precopy' | 'postcopy';
  /** What the target records for the process it adopts. */
  argv: string[];
  cwd: string;
  limits: Record<string, unknown>;
  /** The source's log files, as CRIU finds them open (the target hands it its own in their place). */
  logs: { stdout: string; stderr: string };
  startedAt: string;
  /** The IP address that moves with the process (each side checks it against its own --move-ranges). */
  moveAddress?: MoveAddress;
  /** When it was decided (ISO time, for people). */
  at: string;
}

const MID = /^[0-9a-f]{32}$/;
const APP = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
const NODE = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
const MAX_ENTRY = 256 * 1024;
export const MOVES = 'moves/';
export const moveKey = (migration: string): string => `${MOVES}${migration}`;

const isStr = (v: unknown, max = 4096): v is string => typeof v === 'string' && v.length <= max;
const isAbs = (v: unknown): v is string => isStr(v) && v.startsWith('/') && !v.includes('\0');

/** An entry read from etcd: size-limited and shape-checked; null when it is not one. */
export function parseMove(text: unknown): MoveEntry | null {
  if (typeof text !== 'string' || text.length > MAX_ENTRY) return null;
  let v: Partial<MoveEntry>;
  try {
    v = JSON.parse(text) as Partial<MoveEntry>;
  } catch {
    return null;
  }
  if (!v || typeof v !== 'object' || Array.isArray(v)) return null;
  const ok =
    isStr(v.migration) &&
    MID.test(v.migration) &&
    isStr(v.app) &&
    APP.test(v.app) &&
    Number.isSafeInteger(v.id) &&
    v.id! > 0 &&
    isStr(v.from) &&
    NODE.test(v.from) &&
    isStr(v.to) &&
    NODE.test(v.to) &&
    v.from !== v.to &&
    (v.mode === 'precopy' || v.mode === 'postcopy') &&
    Array.isArray(v.argv) &&
    v.argv.length > 0 &&
    v.argv.length <= 4096 &&
    v.argv.every((a) => isStr(a, 65536)) &&
    isAbs(v.cwd) &&
    !!v.limits &&
    typeof v.limits === 'object' &&
    !Array.isArray(v.limits) &&
    !!v.logs &&
    isAbs(v.logs.stdout) &&
    isAbs(v.logs.stderr) &&
    isStr(v.startedAt) &&
    isStr(v.at) &&
    (v.moveAddress === undefined || validAddress(v.moveAddress));
  return ok ? (v as MoveEntry) : null;
}

function validAddress(a: unknown): boolean {
  try {
    const c = checkMoveAddress(a);
    // Only the fields a MoveAddress has: what the target compares is what the source recorded.
    return Object.keys(a as object).length === Object.keys(c).length;
  } catch {
    return false;
  }
}

/** Record `e` (this node is its source): durable once this resolves; ERR_FENCED without our lease or when the id exists. */
export async function recordMove(
  store: Store,
  member: Member,
  e: MoveEntry,
  /** One more condition of the transaction (an orchestrator's fence: the leader key's create revision). */
  also?: [string, 'Create' | 'Mod', '==', string],
): Promise<void> {
  if (e.from !== member.name)
    throw new ClusterError(`a move from ${e.from} is not ${member.name}'s to record`, { code: 'ERR_FENCED' });
  const key = moveKey(e.migration);
  const kv = store.kv;
  let txn = kv.if(nodeKey(member.name), 'Lease', '==', member.leaseId).and(key, 'Mod', '==', '0');
  if (also) txn = txn.and(...also);
  const res = await txn
    .then(kv.put(key).value(JSON.stringify(e)))
    .commit()
    .catch((err: Error) => {
      throw etcdError(`recording migration ${e.migration}`, err);
    });
  if (!res.succeeded)
    throw new ClusterError(
      `migration ${e.migration} not recorded: ${member.name} no longer holds its lease, the id exists, or the orchestrator term asking for it is over`,
      { code: 'ERR_FENCED' },
    );
}

/** The move recorded as `migration`, or null (none, or not a well-formed entry). */
export async function readMove(store: Store, migration: string): Promise<MoveEntry | null> {
  if (!MID.test(migration)) return null;
  const res = await store.kv
    .get(moveKey(migration))
    .exec()
    .catch((err: Error) => {
      throw etcdError(`reading migration ${migration}`, err);
    });
  const kv = res.kvs[0];
  if (!kv) return null;
  const m = parseMove(kv.value.toString('utf8'));
  return m && m.migration === migration ? m : null;
}
