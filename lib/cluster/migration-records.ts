/**
 * The migration record (lib/migration/record.ts) kept in etcd: `migrations/<node>/<id>`, durable
 * (not bound to the lease: a record must outlive the node that wrote it, or nobody could settle a
 * migration whose source died) and fenced twice. A put commits only while the writer is the live
 * member holding `nodes/<node>` under its current lease, and only when the record is still the
 * revision the writer last saw: a node that lost its lease, or a second writer for the same
 * migration, gets ERR_FENCED and changes nothing. etcd syncs its log before it acknowledges, so a
 * put that resolved is durable, as RecordStore requires.
 */
import type { MigrationRecord, RecordState, RecordStore } from '../migration/record.js';
import { ClusterError, etcdError } from './errors.js';
import { nodeKey } from './keys.js';
import type { Member } from './membership.js';
import type { Store } from './store.js';

const ID = /^[0-9a-f]{32}$/;
const FINAL = new Set<RecordState>(['resumed', 'failed', 'aborted', 'done']);

export const migrationsOf = (node: string): string => `migrations/${node}/`;

export class EtcdRecordStore implements RecordStore {
  /** The mod revision of each record as this writer last saw it ('0': it did not exist). */
  private readonly seen = new Map<string, string>();

  constructor(
    private readonly store: Store,
    private readonly member: Member,
    /** Final records kept (the newest). */
    private readonly keep = 256,
  ) {}

  private key(id: string): string {
    if (!ID.test(id)) throw new ClusterError(`bad migration id ${JSON.stringify(id)}`, { code: 'ERR_BAD_MESSAGE' });
    return migrationsOf(this.member.name) + id;
  }

  async put(r: MigrationRecord): Promise<void> {
    const key = this.key(r.id);
    if (!this.member.alive)
      throw new ClusterError(`${this.member.name} is not a live member: migration ${r.id} not recorded`, {
        code: 'ERR_FENCED',
      });
    const kv = this.store.kv;
    // A record this writer never read must not exist yet: to update one, get() or list() it first.
    const expect = this.seen.get(r.id) ?? '0';
    const value = JSON.stringify({ ...r, updated: new Date().toISOString() });
    const res = await kv
      .if(nodeKey(this.member.name), 'Lease', '==', this.member.leaseId)
      .and(key, 'Mod', '==', expect)
      .then(kv.put(key).value(value))
      .commit()
      .catch((e: Error) => {
        throw etcdError(`recording migration ${r.id}`, e);
      });
    if (!res.succeeded) {
      this.seen.delete(r.id);
      throw new ClusterError(
        `migration ${r.id} not recorded: ${this.member.name} no longer holds its lease, or another writer changed the record`,
        { code: 'ERR_FENCED' },
      );
    }
    this.seen.set(r.id, res.header.revision);
    if (FINAL.has(r.state)) await this.prune();
  }

  async get(id: string): Promise<MigrationRecord | null> {
    const res = await this.store.kv
      .get(this.key(id))
      .exec()
      .catch((e: Error) => {
        throw etcdError(`reading migration ${id}`, e);
      });
    const kv = res.kvs[0];
    if (!kv) return null;
    this.seen.set(id, kv.mod_revision);
    return parse(kv.value.toString('utf8'));
  }

  async list(): Promise<MigrationRecord[]> {
    const res = await this.store.kv
      .getAll()
      .prefix(migrationsOf(this.member.name))
      .exec()
      .catch((e: Error) => {
        throw etcdError('listing migrations', e);
      });
    const out: MigrationRecord[] = [];
    for (const kv of res.kvs) {
      const r = parse(kv.value.toString('utf8'));
      if (!r) continue;
      this.seen.set(r.id, kv.mod_revision);
      out.push(r);
    }
    return out;
  }

  async remove(id: string): Promise<void> {
    await this.store.kv
      .delete()
      .key(this.key(id))
      .catch((e: Error) => {
        throw etcdError(`removing migration ${id}`, e);
      });
    this.seen.delete(id);
  }

  private async prune(): Promise<void> {
    const done = (await this.list()).filter((r) => FINAL.has(r.state));
    if (done.length <= this.keep) return;
    done.sort((a, b) => a.updated.localeCompare(b.updated));
    for (const r of done.slice(0, done.length - this.keep)) await this.remove(r.id);
  }
}

function parse(text: string): MigrationRecord | null {
  try {
    const r = JSON.parse(text) as MigrationRecord;
    return r && typeof r === 'object' && typeof r.id === 'string' && typeof r.state === 'string' ? r : null;
  } catch {
    return null;
  }
}
