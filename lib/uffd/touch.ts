// Fault pages in from native threads (never the JS thread), timing each
// first access: warm-up, tests and benchmarks of fault service.
import { native } from '../native/index.js';
import { bool, integer, object } from '../validate.js';
import { Region } from './region.js';
import { AbortError, argType } from '../errors.js';
import type { TouchResult } from './stats.js';

export interface TouchOptions {
  offset?: number;
  length?: number;
  /** Threads touching disjoint slices (default 1). */
  threads?: number;
  /** Write a byte instead of reading one (default false). */
  write?: boolean;
  /** Bytes between touches (default the page size). */
  stride?: number;
  /** Stop waiting when this signal aborts: the promise rejects with an `AbortError`. */
  signal?: AbortSignal;
  /** Stop waiting after this many milliseconds: the promise rejects with an `AbortError`. */
  timeout?: number;
}

/**
 * Touch `[offset, offset+length)` of a region, one byte every `stride`, from
 * native threads, and measure each first access. Faults in a registered
 * region are served by whoever serves that userfaultfd (an engine, a JS
 * handler in this or another thread, another process).
 *
 * `signal` and `timeout` bound the wait, not the native threads: a thread
 * blocked in a page fault cannot be interrupted. On abort the promise rejects
 * at once with an `AbortError` (`ABORT_ERR`), and the threads finish
 * later, when their faults are served, or the range is unregistered or its
 * userfaultfd closed (the kernel then wakes them and the pages fault in as in
 * an unregistered region). Until then the region stays pinned: `unmap` and
 * `remap` throw `ERR_BUSY`, and `close` keeps the mapping until they finish.
 * A touch that nothing will serve is ended by closing its userfaultfd.
 */
export function touch(region: Region, options?: TouchOptions): Promise<TouchResult> {
  if (!(region instanceof Region)) throw argType('region must be a Region');
  const o = object('options', options);
  const size = region.size;
  const offset = o.offset === undefined ? 0 : integer('options.offset', o.offset, 0, size);
  const length = o.length === undefined ? size - offset : integer('options.length', o.length, 0, size - offset);
  const spec = {
    threads: o.threads === undefined ? 1 : integer('options.threads', o.threads, 1, 256),
    write: bool('options.write', o.write, false),
    stride: o.stride === undefined ? region.pageSize : integer('options.stride', o.stride, 1),
  };
  const signal = abortSignal(o.signal, o.timeout);
  if (signal?.aborted) return Promise.reject(new AbortError(signal));
  const run: Promise<TouchResult> = native.touch(region.native, offset, length, spec);
  if (!signal) return run;
  return new Promise<TouchResult>((resolve, reject) => {
    const onAbort = (): void => reject(new AbortError(signal));
    signal.addEventListener('abort', onAbort, { once: true });
    run.then(
      (r) => {
        signal.removeEventListener('abort', onAbort);
        resolve(r);
      },
      (e: Error) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}

function abortSignal(signal: unknown, timeout: unknown): AbortSignal | undefined {
  if (signal !== undefined && !(signal instanceof AbortSignal)) throw argType('options.signal must be an AbortSignal');
  if (timeout === undefined) return signal;
  const t = AbortSignal.timeout(integer('options.timeout', timeout, 0, 2 ** 31 - 1));
  return signal ? AbortSignal.any([signal, t]) : t;
}
