/** Byte sizes on the command line: 4096, 256MiB, 1.5GiB, 64k, 2G (binary units; K/M/G/T alone are too). */
import { InvalidArgumentError } from 'commander';

const UNITS: Record<string, number> = { '': 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 };

export function parseSize(name: string) {
  return (v: string): number => {
    const m = /^(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?$/i.exec(v.trim());
    const n = m ? Math.round(Number(m[1]) * UNITS[m[2].toLowerCase()]) : NaN;
    if (!Number.isSafeInteger(n) || n <= 0)
      throw new InvalidArgumentError(`${name} must be a size such as 4096, 256MiB or 2GiB, got '${v}'`);
    return n;
  };
}

export function formatBytes(n: number): string {
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) {
    n /= 1024;
    i++;
  }
  return `${i ? n.toFixed(1) : n} ${u[i]}`;
}
