// The durable migration record: what each side decided, on disk (fsync'd) before it tells the
// other side or lets CRIU act on it, so a restarted agent answers from it instead of guessing.
// A RecordStore is pluggable: this file store is for one node; the cluster keeps the same
// records in etcd under a lease (a fenced record: a put carries the revision it expects).
import fs from 'node:fs';
import path from 'node:path';
import { SosError, argType } from '../errors.js';
import type { Mode } from './protocol.js';
import type { MoveAddress } from './address.js';
import { syncDir, writeDurable } from '../durable.js';

/**
 * A target's states, in order: receiving → (restoring) → ready (restored, held) → committed
 * (the source's commit, recorded before the process may run) → resumed; or aborted / failed
 * (it never ran here). A source's: started → committing (recorded before `commit` is sent)
 * → done | aborted | in-doubt | failed (post-copy pages lost after the target ran it: the
 * process is gone, the source copy kept stopped).
 */
export type RecordState =
  | 'receiving'
  | 'restoring'
  | 'ready'
  | 'committed'
  | 'resumed'
  | 'failed'
  | 'aborted'
  | 'started'
  | 'committing'
  | 'in-doubt'
  | 'done';

export interface MigrationRecord {
  id: string;
  role: 'source' | 'target';
  state: RecordState;
  mode: Mode;
  /** The process: the source's pid, or the restored pid on the target (once known). */
  pid?: number;
  /** The process's start (proc.ts startedAt), so a reused pid is never taken for it. */
  started?: string;
  /** Source: the target agent asked for the outcome. */
  to?: { host: string; port: number };
  /** Source: the address that moves with the process (put back if it stays here). */
  move?: MoveAddress;
  /** Source: CRIU's network-lock tables that existed before the dump (not ours to drop). */
  locksBefore?: string[];
  /** Source: the process running the migration (a record it owns is not settled by others). */
  owner?: { pid: number; started: string };
  /** Source: the dump carried TCP connections (a restore of its images must too). */
  tcp?: boolean;
  /** Source: the hand-over's images, kept while in doubt (they are the process then). */
  imagesDir?: string;
  /** Wall-clock time of the last change, for people reading it (never for deadlines). */
  updated: string;
}

/** Where records are kept. `put` resolves only once the record is durable. */
export interface RecordStore {
  put(r: MigrationRecord): Promise<void>;
  get(id: string): Promise<MigrationRecord | null>;
  list(): Promise<MigrationRecord[]>;
  remove(id: string): Promise<void>;
}

/** `v`, when it is a RecordStore (or undefined); an ArgTypeError naming `name` otherwise. */
export function checkRecordStore(v: unknown, name: string): RecordStore | undefined {
  if (v === undefined) return undefined;
  const o = v as Record<string, unknown> | null;
  if (o === null || typeof o !== 'object' || !['put', 'get', 'list', 'remove'].every((k) => typeof o[k] === 'function'))
    throw argType(`${name} must be a RecordStore (put, get, list, remove)`);
  return v as RecordStore;
}

const ID = /^[0-9a-f]{32}$/;
/** States that end a record's life; such records are pruned beyond `keep`. */
const FINAL = new Set<RecordState>(['resumed', 'failed', 'aborted', 'done']);

/** One JSON file per migration in `dir`, written to a temporary file, fsync'd, renamed, the folder fsync'd. */
export class FileRecordStore implements RecordStore {
  constructor(
    readonly dir: string,
    /** Final records kept (the newest), so the folder stays bounded. */
    private readonly keep = 256,
  ) {}

  private file(id: string): string {
    if (!ID.test(id)) throw new SosError(`bad migration id ${JSON.stringify(id)}`, { code: 'ERR_BAD_MESSAGE' });
    return path.join(this.dir, `${id}.json`);
  }

  async put(r: MigrationRecord): Promise<void> {
    await writeDurable(this.file(r.id), JSON.stringify({ ...r, updated: new Date().toISOString() }));
    if (FINAL.has(r.state)) await this.prune();
  }

  async get(id: string): Promise<MigrationRecord | null> {
    const text = await fs.promises.readFile(this.file(id), 'utf8').catch(() => null);
    return text === null ? null : parse(text);
  }

  async list(): Promise<MigrationRecord[]> {
    const names = await fs.promises.readdir(this.dir).catch(() => [] as string[]);
    const out: MigrationRecord[] = [];
    for (const n of names) {
      if (!n.endsWith('.json') || !ID.test(n.slice(0, -5))) continue;
      const r = await this.get(n.slice(0, -5));
      if (r) out.push(r);
    }
    return out;
  }

  async remove(id: string): Promise<void> {
    await fs.promises.rm(this.file(id), { force: true });
    await syncDir(this.dir).catch(() => undefined);
  }

  /** Drop the oldest final records beyond `keep`. */
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
    return null; // a torn temporary write never replaces the file (rename), so this is foreign
  }
}

export { syncDir };

/** fsync every file under `dir` and the folders themselves (the images, before the commit). */
export async function syncTree(dir: string): Promise<void> {
  for (const ent of await fs.promises.readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, ent.name);
    if (ent.isDirectory()) await syncTree(p);
    else if (ent.isFile()) {
      const fh = await fs.promises.open(p, 'r');
      try {
        await fh.sync();
      } finally {
        await fh.close();
      }
    }
  }
  await syncDir(dir);
}
