// Known page contents: every 4 KiB page i (of a "seed" family) starts with a
// distinct little-endian u64 and is filled with a byte that depends on i, so
// a page served at the wrong offset, twice, or not at all is always visible,
// in this process (byte by byte) and in uffd_child (its SUM line).
import { PAGE } from '../../testkit/wait.js';

const MASK = (1n << 64n) - 1n;

export function word(page: number, seed: number): bigint {
  return (BigInt(page + 1) * 0x9e3779b97f4a7c15n + BigInt(seed)) & MASK;
}

function fillByte(page: number, seed: number): number {
  return (page * 31 + seed * 7 + 1) & 0xff;
}

/** Page `page` of family `seed`. */
export function patternPage(page: number, seed: number): Buffer {
  const b = Buffer.alloc(PAGE, fillByte(page, seed));
  b.writeBigUInt64LE(word(page, seed), 0);
  return b;
}

/** `pages` pattern pages from page `first`, contiguous. */
export function patternPages(first: number, pages: number, seed: number): Buffer {
  return Buffer.concat(Array.from({ length: pages }, (_, i) => patternPage(first + i, seed)));
}

/** Fill `bytes` (page-aligned length) with pattern pages starting at page `first`. */
export function fillPattern(bytes: Uint8Array, seed: number, first = 0): void {
  for (let off = 0, i = first; off < bytes.length; off += PAGE, i++) bytes.set(patternPage(i, seed), off);
}

/** Byte offset of the first difference from the pattern (page `first` at offset 0), or -1. */
export function firstMismatch(bytes: Uint8Array, seed: number, first = 0): number {
  for (let off = 0, i = first; off < bytes.length; off += PAGE, i++) {
    const want = patternPage(i, seed);
    const n = Math.min(PAGE, bytes.length - off);
    if (Buffer.compare(want.subarray(0, n), Buffer.from(bytes.buffer, bytes.byteOffset + off, n)) !== 0) {
      for (let k = 0; k < n; k++) if (bytes[off + k] !== want[k]) return off + k;
    }
  }
  return -1;
}

/** Whether every byte is zero. */
export function allZero(bytes: Uint8Array): boolean {
  for (const b of bytes) if (b !== 0) return false;
  return true;
}

/** The line uffd_child prints for `touch` when its page j holds pattern page first+j (count pages). */
export function expectedSum(first: number, count: number, seed: number): string {
  let s = 0n;
  for (let i = 0; i < count; i++) s += word(first + i, seed);
  return `SUM ${s & MASK}`;
}

/** The SUM line for pages whose first words are given (zero pages contribute 0). */
export function sumLine(words: bigint[]): string {
  return `SUM ${words.reduce((a, b) => a + b, 0n) & MASK}`;
}
