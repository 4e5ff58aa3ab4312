/**
 * Migrations on request, through the orchestrator: `migrations-wanted/<migration>` holds the request
 * (APP/ID to a node, its mode and address; the migration id is chosen when it is asked for, so every
 * attempt of every leader is the same migration) and then the leader's step on it:
 *   wanted → started (from the node the process ran on, recorded before the source is asked)
 *          → done (it runs on the target) | failed (it did not move: the reason)
 * Every update is fenced by the leader's term and by the revision it read. The source's sosd runs
 * one migration per id (asked again, it answers with that one), and its own record of the migration
 * (`migrations/<from>/<id>`) says how it ended when the leader that asked is gone: a migration is
 * started once, also across a failover.
 */
import crypto from 'node:crypto';
import { etcdError } from '../cluster/errors.js';
import { migrationsOf } from '../cluster/migration-records.js';
import { jsonObject, readKey, readPrefix } from '../cluster/reads.js';
import type { Store } from '../cluster/store.js';
import { OrchestratorError } from './errors.js';
import { fenceCompare, type Fence } from './fence.js';
import { APP_NAME } from '../apps/names.js';

export const WANTED = 'migrations-wanted/';
export const wantedKey = (migration: string): string => `${WANTED}${migration}`;

export type MigrationState = 'wanted' | 'started' | 'done' | 'failed';

export interface MigrationRequest {
  app: string;
  id: number;
  to: string;
  mode?: 'precopy' | 'postcopy';
  moveAddress?: { address: string; prefix: number; dev: string; targetDev?: string };
}

export interface WantedMigration extends Required<Pick<MigrationRequest, 'app' | 'id' | 'to' | 'mode'>> {
  migration: string;
  moveAddress?: MigrationRequest['moveAddress'];
  state: MigrationState;
  submittedAt: string;
  /** Set when started: where it ran. */
  from?: string;
  /** The term that recorded the last step. */
  leader?: string;
  term?: string;
  reason?: string;
  result?: { pid: number; downtimeMs: number; totalMs: number; bytes: number; pages: number };
  error?: { code: string; message: string };
}

export interface WantedEntry {
  want: WantedMigration;
  mod: string;
}

const MID = /^[0-9a-f]{32}$/;
const STATES = new Set(['wanted', 'started', 'done', 'failed']);

/** A request read from etcd (any member may write there): shape-checked; null when it is not one. */
export function parseWanted(key: string, text: unknown): WantedMigration | null {
  const w = jsonObject<WantedMigration>(text, 16384);
  const ok =
    w &&
    typeof w.migration === 'string' &&
    MID.test(w.migration) &&
    key === wantedKey(w.migration) &&
    typeof w.app === 'string' &&
    APP_NAME.test(w.app) &&
    Number.isSafeInteger(w.id) &&
    w.id! > 0 &&
    typeof w.to === 'string' &&
    APP_NAME.test(w.to) &&
    (w.mode === 'precopy' || w.mode === 'postcopy') &&
    STATES.has(w.state as string) &&
    (w.from === undefined || (typeof w.from === 'string' && APP_NAME.test(w.from)));
  return ok ? (w as WantedMigration) : null;
}

/** Ask for a migration: durable once this resolves; the leader starts it. */
export async function requestMigration(store: Store, r: MigrationRequest): Promise<WantedMigration> {
  const w: WantedMigration = {
    migration: crypto.randomBytes(16).toString('hex'),
    app: r.app,
    id: r.id,
    to: r.to,
    mode: r.mode ?? 'precopy',
    ...(r.moveAddress ? { moveAddress: r.moveAddress } : {}),
    state: 'wanted',
    submittedAt: new Date().toISOString(),
  };
  const kv = store.kv;
  const key = wantedKey(w.migration);
  const res = await kv
    .if(key, 'Create', '==', 0)
    .then(kv.put(key).value(JSON.stringify(w)))
    .commit()
    .catch((e: Error) => {
      throw etcdError(`asking for migration ${w.migration}`, e);
    });
  if (!res.succeeded) throw new OrchestratorError(`migration ${w.migration} exists`, { code: 'ERR_EXISTS' });
  return w;
}

/** Record the leader's step on `w` under `fence`, over revision `expect`: ERR_FENCED when the term is over or it changed. */
export async function recordWanted(store: Store, fence: Fence, w: WantedMigration, expect: string): Promise<string> {
  const kv = store.kv;
  const key = wantedKey(w.migration);
  const value = JSON.stringify({ ...w, leader: fence.leader, term: fence.term });
  const res = await kv
    .if(...fenceCompare(fence))
    .and(key, 'Mod', '==', expect)
    .then(kv.put(key).value(value))
    .commit()
    .catch((e: Error) => {
      throw etcdError(`recording migration ${w.migration}`, e);
    });
  if (!res.succeeded)
    throw new OrchestratorError(
      `migration ${w.migration}: step not recorded (term ${fence.term} is over, or it changed)`,
      {
        code: 'ERR_FENCED',
      },
    );
  return res.header.revision;
}

export async function listWanted(store: Store): Promise<WantedEntry[]> {
  const out: WantedEntry[] = [];
  for (const r of await readPrefix(store, WANTED, 'listing migrations')) {
    const want = parseWanted(r.key, r.value);
    if (want) out.push({ want, mod: r.mod });
  }
  return out;
}

export async function readWanted(store: Store, migration: string): Promise<WantedMigration | null> {
  if (!MID.test(migration)) return null;
  const r = await readKey(store, wantedKey(migration), `reading migration ${migration}`);
  return r ? parseWanted(r.key, r.value) : null;
}

/** How the source recorded migration `migration` (its agent's record in etcd): its state, or null. */
export async function sourceOutcome(store: Store, from: string, migration: string): Promise<string | null> {
  const r = await readKey(store, `${migrationsOf(from)}${migration}`, `reading ${from}'s record of ${migration}`);
  const v = r && jsonObject<{ role: string; state: string }>(r.value, 1 << 20);
  return v && v.role === 'source' && typeof v.state === 'string' ? v.state : null;
}
