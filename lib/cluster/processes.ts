/**
 * The cluster's application processes in etcd, so that any sosd (and sosctl through it) finds a
 * process by APP/ID wherever it runs:
 *   apps/<app>/next        the next process number of the application (a counter, bumped in a transaction)
 *   procs/<app>/<id>       { app, id, node, pid, state, startedAt, exitCode, signal, exitedAt, argv0 }
 * A process entry is durable, not leased: when its node dies the entry stays and says where the
 * process was (the orchestrator decides what to do with it). Each write is fenced like a migration
 * record: it commits only while the writer holds its node's membership lease, and only over the
 * revision the writer last saw, so a node that lost its lease, or an entry another node has taken
 * over since (a migration), is never overwritten.
 */
import { APP_NAME } from '../apps/names.js';
import { ClusterError, etcdError } from './errors.js';
import { readKey, readPrefix } from './reads.js';
import { nodeKey } from './keys.js';
import type { Member } from './membership.js';
import type { Store } from './store.js';

/** An application process as the cluster knows it. */
export interface ProcessEntry {
  app: string;
  /** Its number within the application: unique in the cluster, kept across migration. */
  id: number;
  /** The node it runs on (or ran on, last). */
  node: string;
  /** Its pid on that node. */
  pid: number;
  /** 'migrated': a node's own view of a process that left it (the cluster's entry then names the new node). */
  state: 'running' | 'exited' | 'migrated';
  startedAt: string;
  exitCode: number | null;
  signal: string | null;
  exitedAt: string | null;
  /** The program it runs (argv[0]). */
  argv0: string;
}

const MAX_ENTRY = 4096;
/** The counter that numbers `app`'s processes (shared by sosd's direct runs and the orchestrator's desired ones). */
export const counterKey = (app: string): string => `apps/${app}/next`;
/** Where `app/id`'s entry is kept. */
export const procKey = (app: string, id: number): string => `procs/${app}/${id}`;
export const PROCS = 'procs/';

/** An entry read from etcd: a peer's input, so size-limited and shape-checked; null when it is not one. */
export function parseProcessEntry(key: string, text: unknown): ProcessEntry | null {
  if (typeof text !== 'string' || text.length > MAX_ENTRY) return null;
  let v: Partial<ProcessEntry>;
  try {
    v = JSON.parse(text) as Partial<ProcessEntry>;
  } catch {
    return null;
  }
  if (!v || typeof v !== 'object') return null;
  const ok =
    typeof v.app === 'string' &&
    APP_NAME.test(v.app) &&
    Number.isSafeInteger(v.id) &&
    v.id! > 0 &&
    key === procKey(v.app, v.id!) &&
    typeof v.node === 'string' &&
    Number.isSafeInteger(v.pid) &&
    (v.state === 'running' || v.state === 'exited' || v.state === 'migrated') &&
    typeof v.startedAt === 'string' &&
    (v.exitCode === null || Number.isSafeInteger(v.exitCode)) &&
    (v.signal === null || typeof v.signal === 'string') &&
    (v.exitedAt === null || typeof v.exitedAt === 'string') &&
    typeof v.argv0 === 'string';
  return ok ? (v as ProcessEntry) : null;
}

/** A node's view of the cluster's processes: it allocates numbers and writes its own entries, fenced. */
export class ProcessRegistry {
  private readonly seen = new Map<string, string>();

  constructor(
    private readonly store: Store,
    private readonly member: Member,
  ) {}

  /** The next process number of `app`, unique in the cluster (a counter in etcd, bumped in a transaction). */
  async allocate(app: string): Promise<number> {
    if (!APP_NAME.test(app))
      throw new ClusterError(`bad application name ${JSON.stringify(app)}`, { code: 'ERR_BAD_RECORD' });
    const kv = this.store.kv;
    const key = counterKey(app);
    for (let attempt = 0; attempt < 32; attempt++) {
      const cur = await kv
        .get(key)
        .exec()
        .catch((e: Error) => {
          throw etcdError(`numbering a process of ${app}`, e);
        });
      const at = cur.kvs[0];
      const next = at ? Number(at.value.toString('utf8')) : 1;
      if (!Number.isSafeInteger(next) || next < 1)
        throw new ClusterError(`${key} holds ${JSON.stringify(at?.value.toString('utf8'))}, not a number`, {
          code: 'ERR_BAD_RECORD',
        });
      const res = await kv
        .if(key, 'Mod', '==', at ? at.mod_revision : '0')
        .then(kv.put(key).value(String(next + 1)))
        .commit()
        .catch((e: Error) => {
          throw etcdError(`numbering a process of ${app}`, e);
        });
      if (res.succeeded) return next;
    }
    throw new ClusterError(`could not number a process of ${app}: too many concurrent starts`, { code: 'ERR_FENCED' });
  }

  /** Write `e` (this node's): ERR_FENCED when this node lost its lease or another writer changed the entry since. */
  async put(
    e: ProcessEntry,
    o: {
      takeOver?: boolean;
      /** The entry must name this node now (a restore, taking over from a node that left). */
      from?: string;
      /** One more condition of the transaction (an orchestrator's fence: the leader key's create revision). */
      also?: [string, 'Create' | 'Mod', '==', string];
    } = {},
  ): Promise<void> {
    const key = procKey(e.app, e.id);
    const kv = this.store.kv;
    // A process that migrated in is taken over from whoever wrote its entry last (perhaps this
    // node, before the process left it): over the entry's current revision.
    const expect = (o.takeOver || o.from ? undefined : this.seen.get(key)) ?? (await this.owned(key, e, o));
    let txn = kv.if(nodeKey(this.member.name), 'Lease', '==', this.member.leaseId).and(key, 'Mod', '==', expect);
    if (o.also) txn = txn.and(...o.also);
    const res = await txn
      .then(kv.put(key).value(JSON.stringify(e)))
      .commit()
      .catch((err: Error) => {
        throw etcdError(`recording ${e.app}/${e.id}`, err);
      });
    if (!res.succeeded) {
      this.seen.delete(key);
      throw new ClusterError(
        `${e.app}/${e.id} not recorded: ${this.member.name} no longer holds its lease, or another node changed the entry`,
        { code: 'ERR_FENCED' },
      );
    }
    this.seen.set(key, res.header.revision);
  }

  /** Remove `app/id`'s entry (a process removed after its exit). */
  async remove(app: string, id: number): Promise<void> {
    const key = procKey(app, id);
    await this.store.kv
      .delete()
      .key(key)
      .exec()
      .catch((err: Error) => {
        throw etcdError(`removing ${app}/${id}`, err);
      });
    this.seen.delete(key);
  }

  /**
   * The revision to write `e` over. Without `takeOver`, an entry another node holds is not ours to
   * write (a sosd restarted after its workload was restored elsewhere must not name it back here);
   * with `from`, the entry must name that node.
   */
  private async owned(key: string, e: ProcessEntry, o: { takeOver?: boolean; from?: string }): Promise<string> {
    const r = await readKey(this.store, key, `reading ${key}`);
    if (!r) return '0';
    const owner = parseProcessEntry(key, r.value)?.node;
    const want = o.from ?? (o.takeOver ? undefined : this.member.name);
    if (want !== undefined && owner !== undefined && owner !== want)
      throw new ClusterError(`${e.app}/${e.id} not recorded: its entry names ${owner}, not ${want}`, {
        code: 'ERR_FENCED',
      });
    return r.mod;
  }
}

/** The cluster's process entries (of `app`, or all), sorted by app and id; malformed ones are skipped. */
export async function listProcesses(store: Store, app?: string): Promise<ProcessEntry[]> {
  const prefix = app === undefined ? PROCS : `${PROCS}${app}/`;
  const out: ProcessEntry[] = [];
  for (const r of await readPrefix(store, prefix, 'listing processes')) {
    const e = parseProcessEntry(r.key, r.value);
    if (e) out.push(e);
  }
  return out.sort((a, b) => a.app.localeCompare(b.app) || a.id - b.id);
}

/** The entry of `app/id`, or null. */
export async function findProcess(store: Store, app: string, id: number): Promise<ProcessEntry | null> {
  const r = await readKey(store, procKey(app, id), `finding ${app}/${id}`);
  return r ? parseProcessEntry(r.key, r.value) : null;
}
