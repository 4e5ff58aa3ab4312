/**
 * Shared helpers for the benchmarks under bench/: command-line options,
 * statistics over repetitions, child programs that print JSON, and tables.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { exec } from '../lib/exec.js';

/** The package root: the nearest directory above this file with a package.json (works from bench/ and dist/bench/). */
export const root: string = (() => {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = path.join(dir, 'package.json');
    if (fs.existsSync(pkg) && (JSON.parse(fs.readFileSync(pkg, 'utf8')) as { name?: string }).name === 'serverlessos')
      return dir;
    const up = path.dirname(dir);
    if (up === dir) throw new Error('bench: cannot find the package root');
    dir = up;
  }
})();

/**
 * `--key value`, `--key=value` and bare `--flag` options. Unknown options are
 * an error so that a typo never silently benchmarks the wrong thing.
 */
export function parseOptions(argv: readonly string[], known: Record<string, string>): Map<string, string> {
  const out = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--help' || a === '-h') {
      console.log('options:');
      for (const [k, d] of Object.entries(known)) console.log(`  --${k.padEnd(12)} ${d}`);
      process.exit(0);
    }
    const m = /^--([a-z-]+)(?:=(.*))?$/.exec(a);
    if (!m || !(m[1] in known)) throw new Error(`unknown option ${a} (try --help)`);
    let v = m[2];
    if (v === undefined) v = argv[i + 1] !== undefined && !argv[i + 1].startsWith('--') ? argv[++i] : 'true';
    out.set(m[1], v);
  }
  return out;
}

/** Parse "64M", "1G", "4096" into bytes. */
export function parseSize(s: string): number {
  const m = /^(\d+)([KMG]?)i?B?$/i.exec(s.trim());
  if (!m) throw new Error(`bad size ${s}`);
  const shift = { '': 0, K: 10, M: 20, G: 30 }[m[2].toUpperCase() as '' | 'K' | 'M' | 'G'];
  return Number(m[1]) * 2 ** shift;
}

export function median(xs: readonly number[]): number {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

export function max(xs: readonly number[]): number {
  return xs.length ? Math.max(...xs) : NaN;
}

/** Run a program that prints one JSON object as its last line of output. */
export async function runJson<T>(file: string, args: readonly string[], timeoutMs = 60_000): Promise<T> {
  const stdout = await exec(file, args, { timeout: timeoutMs, maxBuffer: 1 << 20 });
  const line = stdout.trim().split('\n').pop() ?? '';
  try {
    return JSON.parse(line) as T;
  } catch {
    throw new Error(`${path.basename(file)} ${args.join(' ')}: no JSON in output: ${stdout}`);
  }
}

/** 1234567 -> "1.23M", 12345 -> "12.3k". */
export function fmtRate(v: number): string {
  if (!Number.isFinite(v)) return '-';
  if (v >= 1e6) return `${(v / 1e6).toFixed(2)}M`;
  if (v >= 1e3) return `${(v / 1e3).toFixed(1)}k`;
  return v.toFixed(0);
}

/** Nanoseconds as "850ns", "12.3µs", "4.56ms". */
export function fmtNs(v: number): string {
  if (!Number.isFinite(v)) return '-';
  if (v < 1e3) return `${Math.round(v)}ns`;
  if (v < 1e6) return `${(v / 1e3).toFixed(1)}µs`;
  return `${(v / 1e6).toFixed(2)}ms`;
}

export function fmtRatio(v: number): string {
  return Number.isFinite(v) ? `${v.toFixed(2)}x` : '-';
}

/** Left-aligned first column, right-aligned others. */
export function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i])))
      .join('  ')
      .trimEnd();
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

/** Round to `digits` significant digits (for compact JSON). */
export function round(v: number, digits = 4): number {
  if (!Number.isFinite(v) || v === 0) return v;
  const p = 10 ** (digits - 1 - Math.floor(Math.log10(Math.abs(v))));
  return Math.round(v * p) / p;
}
