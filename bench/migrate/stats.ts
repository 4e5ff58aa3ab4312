/**
 * CRIU's own figures for the hand-driven runs: the stats-dump / stats-restore
 * files CRIU writes into its images directory (a service-image header, then one
 * size-prefixed StatsEntry protobuf message from CRIU's images/stats.proto).
 * Minimal reader for the few scalar fields the benchmark reports.
 */
import fs from 'node:fs';

const SERVICE_MAGIC = 0x55105940;
const STATS_MAGIC = 0x57093306;

export interface CliDumpStats { freezingUs: number; frozenUs: number; memdumpUs: number; memwriteUs: number; pagesScanned: number; pagesWritten: number; pagesLazy: number }
export interface CliRestoreStats { forkingUs: number; restoreUs: number; pagesRestored: number }

/** Field number -> varint value, or -> sub-message bytes, of one protobuf message. */
function fields(buf: Buffer): Map<number, number | Buffer> {
  const out = new Map<number, number | Buffer>();
  let i = 0;
  const varint = (): number => {
    let v = 0, mul = 1;
    for (;;) {
      if (i >= buf.length) throw new Error('truncated varint');
      const b = buf[i++];
      v += (b & 0x7f) * mul;
      if (!(b & 0x80)) return v;
      mul *= 128;
    }
  };
  while (i < buf.length) {
    const key = varint(), field = Math.floor(key / 8), wire = key & 7;
    if (wire === 0) out.set(field, varint());
    else if (wire === 2) {
      const n = varint();
      if (i + n > buf.length) throw new Error('truncated field');
      out.set(field, buf.subarray(i, i + n));
      i += n;
    } else throw new Error(`unexpected wire type ${wire}`);
  }
  return out;
}

function entry(file: string, which: 1 | 2): Map<number, number | Buffer> | null {
  let buf: Buffer;
  try {
    buf = fs.readFileSync(file);
  } catch {
    return null;
  }
  if (buf.length < 12 || buf.readUInt32LE(0) !== SERVICE_MAGIC || buf.readUInt32LE(4) !== STATS_MAGIC)
    throw new Error(`${file}: not a CRIU stats image`);
  const size = buf.readUInt32LE(8);
  if (12 + size > buf.length) throw new Error(`${file}: truncated`);
  const sub = fields(buf.subarray(12, 12 + size)).get(which);
  return Buffer.isBuffer(sub) ? fields(sub) : null;
}

const num = (m: Map<number, number | Buffer>, f: number): number => {
  const v = m.get(f);
  return typeof v === 'number' ? v : 0;
};

/** `stats-dump` of an images directory, or null if CRIU wrote none. */
export function readDumpStats(dir: string): CliDumpStats | null {
  const m = entry(`${dir}/stats-dump`, 1);
  return m && {
    freezingUs: num(m, 1), frozenUs: num(m, 2), memdumpUs: num(m, 3), memwriteUs: num(m, 4),
    pagesScanned: num(m, 5), pagesWritten: num(m, 7), pagesLazy: num(m, 9),
  };
}

/** `stats-restore` of an images directory, or null if CRIU wrote none. */
export function readRestoreStats(dir: string): CliRestoreStats | null {
  const m = entry(`${dir}/stats-restore`, 2);
  return m && { forkingUs: num(m, 3), restoreUs: num(m, 4), pagesRestored: num(m, 5) };
}
