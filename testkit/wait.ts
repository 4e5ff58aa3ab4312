// Waiting without timing assumptions: every wait has a deadline that only
// turns a hang into a failure, never a pass into a fail on a slow machine.
import fs from 'node:fs';
import type { EventEmitter } from 'node:events';

export const PAGE = 4096;

/** `p`, or a rejection naming `what` when it takes longer than `ms`. */
export function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([p, deadline]).finally(() => clearTimeout(timer));
}

/** The next `name` event of `emitter` (rejects after `ms`). */
export function nextEvent<T>(emitter: EventEmitter, name: string, ms = 60_000): Promise<T> {
  return within(new Promise<T>((resolve) => emitter.once(name, (v: T) => resolve(v))), ms, `event '${name}'`);
}

/** Poll `pred` (on timers, so the loop keeps running) until it holds. */
export async function until(pred: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 1));
  }
}

/** Poll `f` (which may be async, e.g. a sosctl run) until it holds; the deadline only turns a hang into a failure naming `what`. */
export async function waitFor(f: () => boolean | Promise<boolean>, what: string, ms = 90_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await f())) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * Whether thread `tid` of process `pid` sleeps inside the kernel's
 * userfaultfd fault handler right now (wchan is 0 for a runnable thread).
 */
export function sleepsInUserfault(tid: number, pid = process.pid): boolean {
  try {
    return fs.readFileSync(`/proc/${pid}/task/${tid}/wchan`, 'utf8') === 'handle_userfault';
  } catch {
    return false;
  }
}

/** Open userfaultfds of this process, by fd number. */
export function userfaultfds(): number[] {
  const out: number[] = [];
  for (const fd of fs.readdirSync('/proc/self/fd')) {
    try {
      if (fs.readlinkSync(`/proc/self/fd/${fd}`) === 'anon_inode:[userfaultfd]') out.push(Number(fd));
    } catch {
      // closed while listing (the readdir fd itself)
    }
  }
  return out;
}

/** Page-table bits of `pages` pages from `address` (from /proc/self/pagemap). */
export function pagemap(address: number, pages: number): { present: boolean; uffdWp: boolean }[] {
  const fd = fs.openSync('/proc/self/pagemap', 'r');
  try {
    const b = Buffer.alloc(8 * pages);
    fs.readSync(fd, b, 0, b.length, (address / PAGE) * 8);
    return Array.from({ length: pages }, (_, i) => {
      const v = b.readBigUInt64LE(i * 8);
      return { present: v >> 63n === 1n, uffdWp: ((v >> 57n) & 1n) === 1n };
    });
  } finally {
    fs.closeSync(fd);
  }
}
