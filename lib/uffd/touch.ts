// Fault pages in from native threads (never the JS thread), timing each
// first access: warm-up, tests and benchmarks of fault service.
import { native } from '../native.js';
import { bool, integer, object } from '../validate.js';
import { Region } from './region.js';
import { argType } from '../errors.js';
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
}

export function touch(region: Region, options?: TouchOptions): Promise<TouchResult> {
  if (!(region instanceof Region)) throw argType('region must be a Region');
  const o = object('options', options);
  const size = region.size;
  const offset = o.offset === undefined ? 0 : integer('options.offset', o.offset, 0, size);
  const length = o.length === undefined ? size - offset : integer('options.length', o.length, 0, size - offset);
  return native.touch(region.native, offset, length, {
    threads: o.threads === undefined ? 1 : integer('options.threads', o.threads, 1, 256),
    write: bool('options.write', o.write, false),
    stride: o.stride === undefined ? region.pageSize : integer('options.stride', o.stride, 1),
  });
}
