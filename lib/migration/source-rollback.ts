// When a migration fails on the source's side: find out where the process runs, undo what
// this side did (address, CRIU's network lock, a tree left stopped) and say so — or, after a
// hand-over whose target could not restore, restore the process back here.
import * as criu from '../criu/index.js';
import { deleteTable, listTables, type NftScope } from '../net/nft.js';
import { addAddress, holdAddress } from './address.js';
import { InDoubtError, MigrationError, describe, type MigrationStep, type RunningOn } from './errors.js';
import { resumeTree, state } from './proc.js';
import type { TargetLink } from './source-link.js';
import type { Checked } from './source-options.js';

/** CRIU's network-lock tables in this namespace, or `scope`'s ("inet CRIU-…"). */
export async function criuLocks(scope: NftScope = {}): Promise<Set<string>> {
  const tables = await listTables(scope);
  return new Set(tables.filter((t) => t.family === 'inet' && t.name.startsWith('CRIU-')).map((t) => t.name));
}

/** Delete CRIU's network-lock tables that were not there `before` the dump. */
export async function dropNewLocks(before: Set<string>): Promise<void> {
  for (const name of await criuLocks()) if (!before.has(name)) await deleteTable({ family: 'inet', name });
}

/** What a failed source run knows of itself. */
export interface Scene {
  id: string;
  step: MigrationStep;
  pid: number;
  o: Checked;
  imagesDir: string;
  link: TargetLink | null;
  /** CRIU's lock tables before the dump. */
  locksBefore: Set<string>;
  /** The tree was frozen; the target said the process runs there. */
  frozen: boolean;
  resumed: boolean;
  /** The moving address was deleted here. */
  addressRemoved: boolean;
  /** The error for `runningOn`, naming the migration and its step. */
  error(message: string, runningOn: RunningOn, cause?: unknown, code?: string): MigrationError;
}

/** The dump call failed: find out where the process runs, undo what we did here, and say so. */
export async function dumpFailed(s: Scene, e: unknown): Promise<never> {
  const cause = e instanceof criu.CriuError && e.code === 'ERR_CRIU_HOOK' ? e.cause : e;
  if (s.o.mode === 'postcopy' && s.resumed) {
    // The page transfer broke after the target resumed: the memory is split between the
    // nodes, the target kills its copy (its missing pages would read as zeros), and ours is
    // left stopped (by CRIU, or by holdStopped() if CRIU died). Running ours would replay
    // what already ran there: keep it stopped.
    const st = state(s.pid);
    throw s.error(
      `the page transfer failed after the process resumed on the target: ${describe(cause)}`,
      st === 'T' || st === 't' ? 'stopped-source' : 'none',
      cause,
      'ERR_MIGRATION_PAGES',
    );
  }
  if (cause instanceof InDoubtError) {
    // The target may run it: never let this copy run too. It stays stopped, the network locked.
    throw s.error(describe(cause), 'stopped-source', cause, 'ERR_MIGRATION_IN_DOUBT');
  }
  s.link?.abort(describe(cause));
  // The target never ran it (else we would not be here): a lazy dump whose page server
  // was hung up on counts as done and leaves the tree stopped. Let every thread run again.
  await resumeTree(s.pid);
  const st = state(s.pid);
  const sourceRuns = st !== null && st !== 'T' && st !== 't' && st !== 'Z';
  const criuDied = cause instanceof criu.CriuError && cause.code === 'ERR_CRIU_EXITED';
  if (sourceRuns && s.frozen && (s.o.mode === 'postcopy' || criuDied)) {
    // CRIU 4.1.1 left its lock here after a failed lazy dump (scripts/criu/*lazy-dump-rollback.patch),
    // and a CRIU that died rolled nothing back.
    await dropNewLocks(s.locksBefore);
  }
  if (s.addressRemoved && s.o.move) await addAddress(s.o.move).catch(() => undefined);
  throw s.error(describe(cause), sourceRuns ? 'source' : 'none', cause);
}

/**
 * A hand-over's target could not restore (the source copy is gone already): restore it here.
 * An in-doubt outcome keeps the images instead (`keep()`): they are the process now.
 */
export async function restoreBack(s: Scene, cause: unknown, keep: () => void): Promise<never> {
  if (cause instanceof InDoubtError) {
    keep();
    throw s.error(`${describe(cause)}; its images are kept in ${s.imagesDir}`, 'none', cause, 'ERR_MIGRATION_IN_DOUBT');
  }
  let release: (() => Promise<void>) | null = null;
  let pid: number;
  try {
    if (s.addressRemoved && s.o.move) {
      release = await holdAddress(s.o.move.address);
      await addAddress(s.o.move);
      s.addressRemoved = false;
    }
    pid = (await criu.restore({ imagesDir: s.imagesDir, detached: true, ...s.o.flags }).finally(() => release?.())).pid;
  } catch (e) {
    throw s.error(`${describe(cause)}; restoring it back here failed too: ${describe(e)}`, 'none', cause);
  }
  throw new MigrationError(
    `migration ${s.id} failed at ${s.step}: ${describe(cause)}; the process was restored on the source (pid ${pid})`,
    { step: s.step, runningOn: 'source', pid, cause },
  );
}
