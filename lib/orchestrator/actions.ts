/**
 * What the leader does for a desired process, recorded before it is done: `actions/<app>/<id>`
 * holds the latest step (place it on a node, or restore its checkpoint on one; then done, failed or lost), written in a transaction
 * fenced by the leader's term and by the revision the leader last read. A new leader reads the
 * recorded step and finishes it (the node's side is idempotent by APP/ID) instead of choosing
 * again: a placement is made once, also across a failover. Each record appends a decision with its
 * reason to `decisions/` in the same transaction, for `sosctl decisions` and whoever watches.
 */
import crypto from 'node:crypto';
import { Range } from 'etcd3';
import { etcdError } from '../cluster/errors.js';
import { jsonObject, readKey, readPrefix } from '../cluster/reads.js';
import { ACTIONS, DECISIONS, actionKey } from '../cluster/keys.js';
import type { Store } from '../cluster/store.js';
import { OrchestratorError } from './errors.js';
import { fenceCompare, type Fence } from './fence.js';

export type ActionState = 'intended' | 'done' | 'failed' | 'lost';

export interface Action {
  app: string;
  id: number;
  /** 'place': run it on `node`; 'restore': restore checkpoint `seq` on `node`, `from` having left. */
  kind: 'place' | 'restore';
  /** The node it goes to (or went to). */
  node: string;
  /** A restore: the node the process ran on, and the checkpoint restored. */
  from?: string;
  seq?: number;
  state: ActionState;
  /** Why (the placement policy's reason, or what happened). */
  reason: string;
  /** The term that recorded it. */
  leader: string;
  term: string;
  at: string;
  error?: { code: string; message: string };
}

/** 'elected' (a term began) and 'node-lost' (a node left) have app '' and id 0; the others are about one process. */
export type DecisionKind =
  | 'elected'
  | 'node-lost'
  | 'place'
  | 'replace'
  | 'done'
  | 'failed'
  | 'lost'
  | 'unplaceable'
  | 'migrate'
  | 'migrated'
  | 'migrate-failed'
  | 'restore'
  | 'restored'
  | 'restore-failed';

/** One decision, as `sosctl decisions` shows it. */
export interface Decision {
  at: string;
  leader: string;
  term: string;
  kind: DecisionKind;
  app: string;
  id: number;
  node: string | null;
  reason: string;
}

/** An action as read, with the revision a fenced update must compare against. */
export interface ActionEntry {
  action: Action;
  mod: string;
}

const MAX = 65536;

export function parseAction(key: string, text: unknown): Action | null {
  const a = jsonObject<Action>(text, MAX);
  const ok =
    a &&
    typeof a.app === 'string' &&
    Number.isSafeInteger(a.id) &&
    key === actionKey(a.app, a.id!) &&
    (a.kind === 'place' ||
      (a.kind === 'restore' && typeof a.from === 'string' && Number.isSafeInteger(a.seq) && a.seq! > 0)) &&
    typeof a.node === 'string' &&
    ['intended', 'done', 'failed', 'lost'].includes(a.state as string) &&
    typeof a.reason === 'string' &&
    typeof a.leader === 'string' &&
    typeof a.term === 'string';
  return ok ? (a as Action) : null;
}

export function parseDecision(text: unknown): Decision | null {
  const d = jsonObject<Decision>(text, MAX);
  return d && typeof d.kind === 'string' && typeof d.app === 'string' && typeof d.reason === 'string'
    ? (d as Decision)
    : null;
}

const decisionKey = () =>
  `${DECISIONS}${String(Date.now()).padStart(15, '0')}-${crypto.randomBytes(4).toString('hex')}`;

/**
 * Record `a` (and its decision) under `fence`, over revision `expect` ('0': no action yet):
 * ERR_FENCED when the term is over or the record changed since it was read. Returns the new revision.
 */
export async function recordAction(
  store: Store,
  fence: Fence,
  a: Action,
  expect: string,
  d: Pick<Decision, 'kind' | 'reason'>,
): Promise<string> {
  const kv = store.kv;
  const decision: Decision = {
    at: a.at,
    leader: fence.leader,
    term: fence.term,
    app: a.app,
    id: a.id,
    node: a.node || null,
    ...d,
  };
  const res = await kv
    .if(...fenceCompare(fence))
    .and(actionKey(a.app, a.id), 'Mod', '==', expect)
    .then(
      kv.put(actionKey(a.app, a.id)).value(JSON.stringify(a)),
      kv.put(decisionKey()).value(JSON.stringify(decision)),
    )
    .commit()
    .catch((e: Error) => {
      throw etcdError(`recording the step for ${a.app}/${a.id}`, e);
    });
  if (!res.succeeded)
    throw new OrchestratorError(
      `${a.app}/${a.id}: step not recorded: term ${fence.term} of ${fence.leader} is over, or another leader recorded one`,
      { code: 'ERR_FENCED' },
    );
  return res.header.revision;
}

/** Append a decision that changes no action (e.g. a process that cannot be placed yet), fenced by the term. */
export async function recordDecision(store: Store, fence: Fence, d: Omit<Decision, 'leader' | 'term'>): Promise<void> {
  const kv = store.kv;
  const res = await kv
    .if(...fenceCompare(fence))
    .then(kv.put(decisionKey()).value(JSON.stringify({ ...d, leader: fence.leader, term: fence.term })))
    .commit()
    .catch((e: Error) => {
      throw etcdError('recording a decision', e);
    });
  if (!res.succeeded)
    throw new OrchestratorError(`term ${fence.term} of ${fence.leader} is over`, { code: 'ERR_FENCED' });
}

/** Every recorded action, by `app/id`. */
export async function listActions(store: Store): Promise<Map<string, ActionEntry>> {
  const out = new Map<string, ActionEntry>();
  for (const r of await readPrefix(store, ACTIONS, 'listing actions')) {
    const a = parseAction(r.key, r.value);
    if (a) out.set(`${a.app}/${a.id}`, { action: a, mod: r.mod });
  }
  return out;
}

/** The step recorded for `app/id`, or null. */
export async function readAction(store: Store, app: string, id: number): Promise<Action | null> {
  const r = await readKey(store, actionKey(app, id), `reading the step for ${app}/${id}`);
  return r ? parseAction(r.key, r.value) : null;
}

/** The newest `limit` decisions, oldest first. */
export async function listDecisions(store: Store, limit = 100): Promise<Decision[]> {
  const out: Decision[] = [];
  for (const r of await readPrefix(store, DECISIONS, 'listing decisions', limit)) {
    const d = parseDecision(r.value);
    if (d) out.push(d);
  }
  return out.reverse();
}

/** Keep the newest `keep` decisions. */
export async function pruneDecisions(store: Store, keep: number): Promise<void> {
  const keys = await store.kv
    .getAll()
    .prefix(DECISIONS)
    .sort('Key', 'Descend')
    .keys()
    .catch((e: Error) => {
      throw etcdError('listing decisions', e);
    });
  if (keys.length <= keep) return;
  const oldest = keys[keys.length - 1];
  const cut = keys[keep - 1];
  // Everything older than the newest `keep`: one range delete up to (not including) the keep-th newest.
  await store.kv
    .delete()
    .range(new Range(oldest, cut))
    .exec()
    .catch((e: Error) => {
      throw etcdError('pruning decisions', e);
    });
}
