// What the fuzz targets share: the one outcome a parser may have besides returning, and a reader
// that turns the fuzzer's bytes into structured choices (in the way of Jazzer.js's FuzzedDataProvider).
import { SosError } from '../../lib/errors.js';

/** A parser's error: a SosError with a string code; anything else is a finding. */
export function isContained(e: unknown): boolean {
  return e instanceof SosError && typeof e.code === 'string';
}

/** Run `f`; let only a SosError with a string code pass. Returns whether `f` returned. */
export function contained(f: () => unknown): boolean {
  try {
    f();
    return true;
  } catch (e) {
    if (isContained(e)) return false;
    throw e;
  }
}

/** A finding that is not an exception of the code under test: a broken invariant. */
export class Violation extends Error {}

export function invariant(ok: unknown, what: string): asserts ok {
  if (!ok) throw new Violation(what);
}

/** Consumes the input from the front; past its end every read is 0 (or empty). */
export class Reader {
  private at = 0;
  constructor(private readonly data: Buffer) {}
  get left(): number {
    return this.data.length - this.at;
  }
  u8(): number {
    return this.at < this.data.length ? this.data[this.at++] : 0;
  }
  u16(): number {
    return (this.u8() << 8) | this.u8();
  }
  u32(): number {
    return ((this.u16() << 16) | this.u16()) >>> 0;
  }
  bool(): boolean {
    return (this.u8() & 1) === 1;
  }
  pick<T>(of: readonly T[]): T {
    return of[this.u8() % of.length];
  }
  bytes(n: number): Buffer {
    const b = this.data.subarray(this.at, this.at + n);
    this.at += b.length;
    return Buffer.from(b);
  }
  /** A length-prefixed string (latin1, so every byte value, NUL included, can appear). */
  string(max = 255): string {
    return this.bytes(Math.min(this.u8(), max)).toString('latin1');
  }
  rest(): Buffer {
    return this.bytes(this.left);
  }
}
