// Shared by the pager tests and their worker: seeded random 32-bit updates
// and reads of a far region checked against a reference copy, and the
// region's resident size read from /proc.
import fs from 'node:fs';

/** xorshift32: a seeded generator, so a failing run reproduces. */
export function xorshift(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s;
  };
}

/**
 * `ops` random operations over `far` (half writes of a random word, half
 * reads compared with `ref`), from offset `from` words over `words` words.
 * Returns the number of reads that disagreed with the reference.
 */
export function randomOps(
  far: Uint32Array,
  ref: Uint32Array,
  rnd: () => number,
  ops: number,
  from = 0,
  words = far.length,
): number {
  let bad = 0;
  for (let i = 0; i < ops; i++) {
    const w = from + (rnd() % words);
    if (rnd() & 0x100) {
      const v = rnd();
      far[w] = v;
      ref[w] = v;
    } else if (far[w] !== ref[w]) bad++;
  }
  return bad;
}

/** Pages of `a` and `b` (same length) that differ. */
export function differingPages(a: Uint8Array, b: Uint8Array, page = 4096): number[] {
  const out: number[] = [];
  for (let off = 0; off < a.length; off += page) {
    if (Buffer.compare(a.subarray(off, off + page), b.subarray(off, off + page)) !== 0) out.push(off / page);
  }
  return out;
}

/** Resident bytes of the mappings of this process inside [address, address+size) (Rss in /proc/self/smaps). */
/**
 * How far a sample of residentBytes() may exceed what was ever resident at once. smaps walks the page
 * tables while faults and evictions go on beside it, so it can count both a page evicted behind the
 * walk and the page installed ahead of it in its place. The slack is one eviction batch: 64 pages,
 * the least the pager evicts at a time. The pager's own count of frames held is exact, and is held
 * to the bound itself.
 */
export const RSS_WALK_SLACK = 64 * 4096;

export function residentBytes(address: number, size: number): number {
  const text = fs.readFileSync('/proc/self/smaps', 'utf8');
  let total = 0;
  let inside = false;
  for (const line of text.split('\n')) {
    const m = /^([0-9a-f]+)-([0-9a-f]+) /.exec(line);
    if (m) {
      const start = parseInt(m[1], 16);
      const end = parseInt(m[2], 16);
      inside = start < address + size && end > address;
    } else if (inside && line.startsWith('Rss:')) {
      total += Number(/(\d+) kB/.exec(line)![1]) * 1024;
    }
  }
  return total;
}
