// The commit: the target restores and holds the tree stopped, the source commits, the target
// lets it run and says so. A connection lost after the commit leaves the outcome unknown: ask
// the target over new connections until it answers or the in-doubt time is up.
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

/** Ask the target to restore; commit when it holds the restored tree; resolve once it runs. `committing` marks the point of no return. */
export async function restoreAndCommit(link: TargetLink, o: Checked, committing: () => void): Promise<Resumed> {
  await link.ask({ op: 'restore', id: link.id }, ['ready'], 'the restored tree');
  committing();
  let resumed: { pid: number; restore: criu.RestoreStats | null };
  try {
    resumed = await link.ask({ op: 'commit', id: link.id }, ['resumed'], 'the resumed process');
  } catch (e) {
    if (!link.closed || e instanceof TargetFailedError) throw e;
    resumed = await askOutcome(link.id, o, e);
  }
  return { at: performance.now(), pid: resumed.pid, restore: resumed.restore };
}

/** The channel dropped after our commit: ask the target (new connections) whether it resumed. */
async function askOutcome(id: string, o: Checked, lost: unknown): Promise<{ pid: number; restore: null }> {
  const end = Date.now() + o.inDoubtMs;
  while (Date.now() < end) {
    try {
      const ch = await AuthChannel.connect({
        ...o.to,
        secret: o.secret,
        timeoutMs: 5000,
        liveness: liveness(o.idleTimeoutMs),
      });
      try {
        const answer = ch.waitFor(
          (m) => m.op === 'status' && m.id === id,
          Math.max(1000, end - Date.now()),
          'the migration status',
        );
        send(ch, { op: 'status', id });
        const s = parseToSource(await answer);
        if (s.op !== 'status') continue;
        if (s.state === 'resumed') return { pid: s.pid ?? 0, restore: null };
        throw new TargetFailedError(
          'commit',
          `the connection dropped after the commit and the target reports ${s.state}`,
        );
      } finally {
        ch.close();
      }
    } catch (e) {
      if (e instanceof TargetFailedError) throw e;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  throw new InDoubtError(
    `the connection dropped after the commit (${describe(lost)}) and the target could not be asked within ${o.inDoubtMs} ms`,
    lost,
  );
}
