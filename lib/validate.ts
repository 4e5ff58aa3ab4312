// Argument checks shared by the public classes (better-sqlite3 style: JS
// validates with exact messages, C++ re-checks and never trusts).
import { argRange, argType } from './errors.js';

export function integer(name: string, v: unknown, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof v !== 'number') throw argType(`${name} must be a number, got ${typeof v}`);
  if (!Number.isInteger(v) || v < min || v > max)
    throw argRange(`${name} must be an integer in [${min}, ${max}], got ${v}`);
  return v;
}

export function aligned(name: string, v: unknown, align: number, min = 0): number {
  const n = integer(name, v, min);
  if (n % align !== 0) throw argRange(`${name} must be a multiple of ${align}, got ${n}`);
  return n;
}

export function address(name: string, v: unknown): number | bigint {
  if (typeof v === 'bigint') {
    if (v < 0n || v >= 1n << 64n) throw argRange(`${name} must fit in 64 unsigned bits`);
    return v;
  }
  return integer(name, v);
}

export function oneOf<T extends string>(name: string, v: unknown, allowed: readonly T[]): T {
  if (typeof v !== 'string' || !(allowed as readonly string[]).includes(v)) {
    throw argType(`${name} must be one of ${allowed.map((a) => `'${a}'`).join(', ')}, got ${String(v)}`);
  }
  return v as T;
}

export function object(name: string, v: unknown): Record<string, unknown> {
  if (v === undefined) return {};
  if (v === null || typeof v !== 'object') throw argType(`${name} must be an object`);
  return v as Record<string, unknown>;
}

export function bool(name: string, v: unknown, dflt: boolean): boolean {
  if (v === undefined) return dflt;
  if (typeof v !== 'boolean') throw argType(`${name} must be a boolean`);
  return v;
}
