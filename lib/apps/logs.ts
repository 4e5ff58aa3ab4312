// A workload's stdout and stderr: files it appends to itself (O_APPEND), so output is kept while
// sosd is down. The bound is kept by copy-and-truncate while a Workloads is open: a stream
// over maxBytes has its last maxBytes copied to `<stream>.log.1` (replacing the older one) and is
// truncated; the program's O_APPEND writes go on at the new end. Bytes written between the copy
// and the truncation are lost, and while no Workloads is open nothing is trimmed.
import fs from 'node:fs';
import path from 'node:path';

export type Stream = 'stdout' | 'stderr';

/** The files of one stream, current first. */
export function logFiles(dir: string, stream: Stream): [string, string] {
  const f = path.join(dir, `${stream}.log`);
  return [f, `${f}.1`];
}

/** Open a stream's log for the program to append to. */
export function openLog(dir: string, stream: Stream): number {
  return fs.openSync(logFiles(dir, stream)[0], 'a', 0o600);
}

/** Trim a stream when its current file is over `maxBytes` (see above). */
export function rotate(dir: string, stream: Stream, maxBytes: number): boolean {
  const [cur, old] = logFiles(dir, stream);
  let size: number;
  try {
    size = fs.statSync(cur).size;
  } catch {
    return false;
  }
  if (size <= maxBytes) return false;
  const tmp = `${old}.tmp`;
  const fd = fs.openSync(cur, 'r');
  try {
    const keep = Buffer.alloc(maxBytes);
    const n = fs.readSync(fd, keep, 0, maxBytes, size - maxBytes);
    fs.writeFileSync(tmp, keep.subarray(0, n), { mode: 0o600 });
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, old);
  fs.truncateSync(cur, 0);
  return true;
}

/**
 * The last `tailBytes` of a stream, across its older file and its current one; with `end`, of the
 * current file up to that offset only (so that a reader following from `end` gets every byte once).
 */
export function tail(dir: string, stream: Stream, tailBytes: number, end = Infinity): string {
  const parts: Buffer[] = [];
  let want = tailBytes;
  let current = true;
  for (const f of logFiles(dir, stream)) {
    if (want <= 0) break;
    let fd: number;
    try {
      fd = fs.openSync(f, 'r');
    } catch {
      continue;
    }
    try {
      const size = Math.min(fs.fstatSync(fd).size, current ? end : Infinity);
      const n = Math.min(size, want);
      const b = Buffer.alloc(n);
      const got = fs.readSync(fd, b, 0, n, size - n);
      parts.unshift(b.subarray(0, got));
      want -= got;
    } finally {
      fs.closeSync(fd);
      current = false;
    }
  }
  return Buffer.concat(parts).toString('utf8');
}

/** The current file's size of a stream (0 when it has none yet). */
export function size(dir: string, stream: Stream): number {
  try {
    return fs.statSync(logFiles(dir, stream)[0]).size;
  } catch {
    return 0;
  }
}

/**
 * What a stream's current file holds from byte `from` on (at most `maxBytes`, the oldest first),
 * and the offset to go on from. A file trimmed since (smaller than `from`) is read from its start:
 * what the trim moved to the older file is not repeated.
 */
export function readFrom(dir: string, stream: Stream, from: number, maxBytes: number): { text: string; next: number } {
  let fd: number;
  try {
    fd = fs.openSync(logFiles(dir, stream)[0], 'r');
  } catch {
    return { text: '', next: 0 };
  }
  try {
    const end = fs.fstatSync(fd).size;
    const start = from > end ? 0 : from;
    const n = Math.min(end - start, maxBytes);
    const b = Buffer.alloc(n);
    const got = fs.readSync(fd, b, 0, n, start);
    return { text: b.subarray(0, got).toString('utf8'), next: start + got };
  } finally {
    fs.closeSync(fd);
  }
}
