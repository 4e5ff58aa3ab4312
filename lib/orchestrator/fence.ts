/**
 * Fencing: every action the orchestrator takes carries `{ leader, term }`, the term being the create
 * revision of the leader key (unique: etcd never reuses a revision). A node acts only when the key
 * still exists with that create revision and names that leader, and it records what it did in a
 * transaction that compares the same (`fenceCompare`): a deposed leader — its lease expired while
 * it was partitioned, still running and sure it leads — changes nothing, even mid-action.
 */
import type { Store } from '../cluster/store.js';
import { LEADER } from '../cluster/keys.js';
import { jsonObject, readKey } from '../cluster/reads.js';
import { OrchestratorError } from './errors.js';

export interface Fence {
  /** The leader's member name (its certificate's CN). */
  leader: string;
  /** The leader key's create revision (etcd's decimal string). */
  term: string;
}

/** The schema of a fence in a request (ajv). */
export const FENCE_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  required: ['leader', 'term'],
  properties: {
    leader: { type: 'string', pattern: '^[a-z0-9][a-z0-9.-]{0,62}$' },
    term: { type: 'string', pattern: '^[1-9][0-9]{0,19}$' },
  },
} as const;

/** What the leader key holds. */
export interface LeaderRecord {
  name: string;
  /** When this term began (ms since the epoch). */
  since: number;
}

/** The current leader and its term, or null when nobody leads. */
export async function currentLeader(store: Store): Promise<(Fence & { since: number; lease: string }) | null> {
  const r = await readKey(store, LEADER, 'reading the leader');
  const rec = r && parseLeader(r.value);
  return rec ? { leader: rec.name, term: r.create, since: rec.since, lease: r.lease } : null;
}

export function parseLeader(text: unknown): LeaderRecord | null {
  const v = jsonObject<LeaderRecord>(text, 4096);
  return v && typeof v.name === 'string' && Number.isFinite(v.since) ? (v as LeaderRecord) : null;
}

/** ERR_FENCED unless `f` is the current leader's term. */
export async function checkFence(store: Store, f: Fence): Promise<void> {
  const now = await currentLeader(store);
  if (!now || now.term !== f.term || now.leader !== f.leader)
    throw new OrchestratorError(
      `refused: ${f.leader}'s term ${f.term} is not the current one (${now ? `${now.leader} leads, term ${now.term}` : 'nobody leads'})`,
      { code: 'ERR_FENCED' },
    );
}

/** The compare a fenced write adds to its transaction: the leader key still has the term's create revision. */
export const fenceCompare = (f: Fence): [string, 'Create', '==', string] => [LEADER, 'Create', '==', f.term];
