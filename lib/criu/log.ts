// The end of a CRIU log, for errors.
import { open } from 'node:fs/promises';

/** The last `lines` lines of a log file ('' when it cannot be read). */
export async function logTail(file: string, lines = 20): Promise<string> {
  let f;
  try {
    f = await open(file, 'r');
    const { size } = await f.stat();
    const len = Math.min(size, lines > 50 ? 262144 : 16384);
    const buf = Buffer.alloc(len);
    await f.read(buf, 0, len, size - len);
    return buf
      .toString('utf8')
      .split('\n')
      .filter((l) => l.length > 0)
      .slice(-lines)
      .join('\n');
  } catch {
    return '';
  } finally {
    await f?.close();
  }
}

// Error lines that say nothing about the failure: the summaries ("Dumping FAILED.") and the
// RLIMIT_NOFILE complaint of a CRIU without CAP_SYS_RESOURCE, which it logs first on every run.
const NOT_A_CAUSE = /FAILED\.|RLIMIT_NOFILE/;

/** CRIU's error lines ("Error (file:line): …"), the most useful part of a failure, in log order;
 *  without the lines that say nothing about it. The first one is the cause: later ones are
 *  consequences (a restore that found "File … has bad size" then fails to open it). The time
 *  stamp and the task prefix ("  1: ") of each line are cut off. */
export function errorLines(log: string): string[] {
  return log
    .split('\n')
    .filter((l) => /Error \(/.test(l) && !NOT_A_CAUSE.test(l))
    .map((l) => l.replace(/^\([0-9. ]+\)\s*(\d+:\s*)?/, '').trim());
}

/** CRIU's cr_errmsg, its first error line, unless that is one that says nothing about the failure. */
export function realMessage(crErrmsg: string | undefined): string | undefined {
  const m = crErrmsg?.trim();
  return m && !NOT_A_CAUSE.test(m) ? m : undefined;
}
