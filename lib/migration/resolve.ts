// Settling a source's migrations left in doubt: by a cut link (migrate() gave up asking), or
// by a source agent that died mid-migration (its CRIU leaves the tree stopped when its RPC
// peer goes away: scripts/criu/criu-4.1.1-rpc-peer-gone.patch). The durable record says
// how far the run got: before `committing`, no commit was ever sent, so the source's copy
// runs again; from `committing` on, only the target's answer decides.
import fs from 'node:fs';
import path from 'node:path';
import * as criu from '../criu/index.js';
import { SosError, argType } from '../errors.js';
import { checkAuth, type ChannelAuth, type ChannelTls } from '../net/channel.js';
import { addAddress } from './address.js';
import { describe } from './errors.js';
import { ID } from './protocol.js';
import { alive, killTree, resumeTree, sameProcess, state, untraced } from './proc.js';
import { FileRecordStore, checkRecordStore, type MigrationRecord, type RecordStore } from './record.js';
import { askOutcome } from './source-commit.js';
import { dropNewLocks } from './source-rollback.js';

/** The secret of the agent at `to` (sosd asks that node over mutual TLS), or the certificates to reach it with. */
export type SecretFor = (to: { host: string; port: number }) => Promise<Buffer | ChannelTls>;

/** Where a settled (or still in-doubt) outgoing migration's process runs. */
export interface Resolution {
  id: string;
  runningOn: 'source' | 'target' | 'stopped-source' | 'none';
  /** The pid where it runs (the target's pid as the target sees it), or the stopped source's. */
  pid?: number;
  detail: string;
}

export interface ResolveOptions {
  /** migrate()'s `workDir` (an agent's is `<work-dir>/out`). */
  workDir: string;
  /** The targets' secret, or a function that finds the secret of the target at `to` (one per node). */
  secret: ChannelAuth | SecretFor;
  /** How long to keep asking an unreachable target (default 0: one round). */
  waitMs?: number;
  idleTimeoutMs?: number;
  log?: (line: string) => void;
  /** The store the migrations recorded their decisions in (default: files in `workDir/records`). */
  records?: RecordStore;
}

/** The records folder of a source work folder. */
export function sourceRecords(workDir: string): FileRecordStore {
  return new FileRecordStore(path.join(workDir, 'records'));
}

/** Settle every outgoing migration in `workDir` that no live run owns. */
export async function resolveInDoubt(o: ResolveOptions): Promise<Resolution[]> {
  const store = checkRecordStore(o.records, 'options.records') ?? sourceRecords(checkOptions(o).workDir);
  const out: Resolution[] = [];
  for (const r of await store.list()) {
    if (r.role !== 'source' || !['started', 'committing', 'in-doubt'].includes(r.state)) continue;
    if (sameProcess(r.owner?.pid, r.owner?.started)) continue; // a run in progress
    out.push(await settle(store, r, o));
  }
  return out;
}

/** Settle one outgoing migration (by id): ask its target, then kill or resume the source's copy. */
export async function resolveMigration(id: string, o: ResolveOptions): Promise<Resolution> {
  if (typeof id !== 'string' || !ID.test(id)) throw argType('id must be a migration id (32 hex digits)');
  const store = checkRecordStore(o.records, 'options.records') ?? sourceRecords(checkOptions(o).workDir);
  const r = await store.get(id);
  if (!r || r.role !== 'source')
    throw new SosError(`no outgoing migration ${id} in ${o.workDir}`, { code: 'ERR_NO_MIGRATION' });
  if (sameProcess(r.owner?.pid, r.owner?.started))
    throw new SosError(`migration ${id} is still running (process ${r.owner!.pid})`, { code: 'ERR_MIGRATION_BUSY' });
  if (r.state === 'done') return { id, runningOn: 'target', detail: 'it finished: the process runs on the target' };
  if (r.state === 'aborted') return { id, runningOn: 'source', pid: r.pid, detail: 'it was aborted' };
  if (r.state === 'failed')
    return {
      id,
      runningOn: sameProcess(r.pid, r.started) && state(r.pid!) === 'T' ? 'stopped-source' : 'none',
      ...(r.pid ? { pid: r.pid } : {}),
      detail:
        'its pages were lost after it ran on the target: the process is gone; a source copy is kept stopped, never resumed',
    };
  return settle(store, r, o);
}

function checkOptions(o: ResolveOptions): ResolveOptions {
  if (o === null || typeof o !== 'object') throw argType('options must be an object');
  if (typeof o.workDir !== 'string' || !o.workDir) throw argType('options.workDir must be a path');
  if (typeof o.secret !== 'function') checkAuth(o.secret, 'options.secret');
  return o;
}

async function settle(store: RecordStore, r: MigrationRecord, o: ResolveOptions): Promise<Resolution> {
  const log = o.log ?? (() => {});
  const ours = sameProcess(r.pid, r.started);
  const locks = new Set(r.locksBefore ?? []);
  if (r.state === 'started') {
    // No commit was ever sent: the target cannot run it. Let ours run again.
    const res = await runHere(r, ours, locks, 'no commit was sent');
    await store.put({ ...r, state: 'aborted' });
    log(`migration ${r.id}: ${res.detail}`);
    return res;
  }
  const a = await askOutcome(
    r.id,
    {
      to: r.to!,
      secret: typeof o.secret === 'function' ? await o.secret(r.to!) : checkAuth(o.secret),
      idleTimeoutMs: o.idleTimeoutMs ?? 15_000,
    },
    o.waitMs ?? 0,
  );
  if (a.state === 'in-doubt') {
    if (r.state !== 'in-doubt') await store.put({ ...r, state: 'in-doubt' });
    return {
      id: r.id,
      runningOn: 'stopped-source',
      ...(r.pid ? { pid: r.pid } : {}),
      detail: `still in doubt: the target said ${a.said}; the source copy stays stopped`,
    };
  }
  if (a.state === 'resumed') {
    if (ours) await killTree(r.pid!);
    await dropNewLocks(locks);
    if (r.imagesDir) await fs.promises.rm(r.imagesDir, { recursive: true, force: true });
    await store.put({ ...r, state: 'done' });
    const res: Resolution = {
      id: r.id,
      runningOn: 'target',
      pid: a.pid,
      detail: `the target runs it (pid ${a.pid}); the stopped source copy was killed`,
    };
    log(`migration ${r.id}: ${res.detail}`);
    return res;
  }
  const res = await runHere(r, ours, locks, `the target reports ${a.said}`);
  await store.put({ ...r, state: 'aborted' });
  log(`migration ${r.id}: ${res.detail}`);
  return res;
}

/** The process stays on the source: resume its stopped copy (or restore a hand-over's images), undo the network changes. */
async function runHere(r: MigrationRecord, ours: boolean, locks: Set<string>, why: string): Promise<Resolution> {
  let pid = r.pid;
  if (ours) {
    // A CRIU that lost its RPC peer may still be leaving the tree stopped: let it finish first.
    await untraced(r.pid!);
    await resumeTree(r.pid!);
  } else if (r.imagesDir && fs.existsSync(r.imagesDir)) {
    try {
      pid = (await criu.restore({ imagesDir: r.imagesDir, detached: true, tcpEstablished: r.tcp ?? false })).pid;
      await fs.promises.rm(r.imagesDir, { recursive: true, force: true });
    } catch (e) {
      return { id: r.id, runningOn: 'none', detail: `${why}; restoring its images here failed: ${describe(e)}` };
    }
  } else {
    return { id: r.id, runningOn: 'none', detail: `${why}, but the source copy is gone` };
  }
  await dropNewLocks(locks);
  if (r.move) await addAddress(r.move).catch(() => undefined);
  const st = pid ? state(pid) : null;
  return {
    id: r.id,
    runningOn: pid && alive(pid) && st !== 'T' && st !== 't' ? 'source' : 'stopped-source',
    ...(pid ? { pid } : {}),
    detail: `${why}: the process runs on the source (pid ${pid})`,
  };
}

/**
 * At an agent's start: remove what dead source runs left in its out/ folder (images, TLS keys),
 * except what a record still needs (a hand-over's images while it is in doubt).
 */
export async function cleanOutgoing(outDir: string, log: (l: string) => void): Promise<void> {
  const keep = new Set<string>();
  for (const r of await sourceRecords(outDir).list())
    if (r.imagesDir && !['done', 'aborted'].includes(r.state)) keep.add(path.resolve(r.imagesDir));
  for (const name of await fs.promises.readdir(outDir).catch(() => [] as string[])) {
    const m = /^([0-9a-f]{32})(\.tls)?$/.exec(name);
    const p = path.resolve(outDir, name);
    if (!m || keep.has(p)) continue;
    await fs.promises.rm(p, { recursive: true, force: true });
    log(`removed ${p}, left by an earlier source run`);
  }
}
