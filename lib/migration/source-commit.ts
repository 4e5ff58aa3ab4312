// The commit: the target restores and holds the tree stopped, the source records that it
// commits, commits, and the target lets the process run and says so. A connection lost after
// the commit leaves the outcome unknown: ask the target over new connections until it gives a
// final answer or the in-doubt time (a monotonic deadline) is up. Only a positive "aborted"
// (or "failed") lets the source run again; "unknown" is in doubt, never "not resumed".
import type * as criu from '../criu/index.js';
import { AuthChannel } from '../net/channel.js';
import { InDoubtError, TargetFailedError, describe } from './errors.js';
import { parseToSource, send } from './messages.js';
import type { TargetLink } from './source-link.js';
import { liveness, type Checked } from './source-options.js';

export interface Resumed {
  /** When the target said the process runs (performance.now()). */
  at: number;
  /** The process's pid on the target. */
  pid: number;
  restore: criu.RestoreStats | null;
}

/**
 * Ask the target to restore; when it holds the restored tree, `committing()` records the
 * decision durably (it throws if it cannot: then nothing was sent); commit; resolve once it runs.
 */
export async function restoreAndCommit(
  link: TargetLink,
  o: Checked,
  committing: () => Promise<void>,
): Promise<Resumed> {
  await link.ask({ op: 'restore', id: link.id }, ['ready'], 'the restored tree');
  await committing();
  let resumed: { pid: number; restore: criu.RestoreStats | null };
  try {
    resumed = await link.ask({ op: 'commit', id: link.id }, ['resumed'], 'the resumed process');
  } catch (e) {
    if (!link.closed || e instanceof TargetFailedError) throw e;
    const a = await askOutcome(link.id, o, o.inDoubtMs);
    if (a.state === 'aborted')
      throw new TargetFailedError('commit', `the connection dropped after the commit and the target reports ${a.said}`);
    if (a.state === 'in-doubt')
      throw new InDoubtError(
        `the connection dropped after the commit (${describe(e)}) and the target gave no final answer within ${o.inDoubtMs} ms (last: ${a.said})`,
        e,
      );
    resumed = { pid: a.pid, restore: null };
  }
  return { at: performance.now(), pid: resumed.pid, restore: resumed.restore };
}

export type Answer =
  | { state: 'resumed'; pid: number; said: string }
  | { state: 'aborted'; said: string }
  | { state: 'in-doubt'; said: string };

/** Ask the target (new connections, for up to `ms`) what became of migration `id`. */
export async function askOutcome(
  id: string,
  o: Pick<Checked, 'to' | 'secret' | 'idleTimeoutMs' | 'refreshSecret'>,
  ms: number,
): Promise<Answer> {
  const end = performance.now() + ms;
  let said = 'nothing (unreachable)';
  let secret = o.secret;
  do {
    try {
      const ch = await AuthChannel.connect({
        ...o.to,
        secret,
        timeoutMs: Math.max(1000, Math.min(5000, end - performance.now())),
        liveness: liveness(o.idleTimeoutMs),
      });
      try {
        const answer = ch.waitFor(
          (m) => m.op === 'status' && m.id === id,
          Math.max(1000, end - performance.now()),
          'the migration status',
        );
        send(ch, { op: 'status', id });
        const s = parseToSource(await answer);
        if (s.op === 'status') {
          said = s.state;
          if (s.state === 'resumed') return { state: 'resumed', pid: s.pid ?? 0, said };
          if (s.state === 'aborted' || s.state === 'failed') return { state: 'aborted', said };
        }
      } finally {
        ch.close();
      }
    } catch (e) {
      said = `nothing (${describe(e)})`;
      // A restarted agent may speak with another secret: learn it again (and keep ours if that fails).
      if (o.refreshSecret && (e as { code?: string }).code === 'ERR_AUTH')
        secret = await o.refreshSecret().catch(() => secret);
    }
    if (performance.now() < end) await new Promise((r) => setTimeout(r, 200));
  } while (performance.now() < end);
  return { state: 'in-doubt', said };
}
