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

/** CRIU's error lines ("Error (file:line): …"), the most useful part of a failure; without the
 *  summaries ("Dumping FAILED.") and the harmless RLIMIT_NOFILE complaint of CRIU without CAP_SYS_RESOURCE. */
export function errorLines(log: string): string[] {
  return log
    .split('\n')
    .filter((l) => /Error \(/.test(l) && !/FAILED\.|RLIMIT_NOFILE/.test(l))
    .map((l) => l.replace(/^\([0-9. ]+\)\s*/, '').trim());
}
