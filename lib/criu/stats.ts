// CRIU's own statistics, read from the image folder's stats-dump and
// stats-restore files. A CRIU service image is two magic numbers followed by
// size-prefixed protobuf messages (here one stats_entry, from stats.proto).
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { CriuError } from './errors.js';
import { loadProto } from './protos.js';
import type { DumpStats, RestoreStats } from './types.js';

const IMG_SERVICE_MAGIC = 0x55105940;
const STATS_MAGIC = 0x57093306;

interface StatsEntry {
  dump?: {
    freezingTime: number;
    frozenTime: number;
    memdumpTime: number;
    memwriteTime: number;
    pagesScanned: number;
    pagesSkippedParent: number;
    pagesWritten: number;
    pagesLazy: number;
  };
  restore?: {
    pagesCompared: number;
    pagesSkippedCow: number;
    forkingTime: number;
    restoreTime: number;
    pagesRestored?: number;
  };
}

/** Decode a stats image; throws ERR_CRIU_IMAGES when it is not one. */
export async function decodeStats(bytes: Uint8Array, file: string): Promise<StatsEntry> {
  const bad = (why: string): CriuError =>
    new CriuError(`${file}: not a CRIU stats image (${why})`, { code: 'ERR_CRIU_IMAGES', op: 'stats' });
  if (bytes.length < 12) throw bad('too short');
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (dv.getUint32(0, true) !== IMG_SERVICE_MAGIC || dv.getUint32(4, true) !== STATS_MAGIC) throw bad('wrong magic');
  const len = dv.getUint32(8, true);
  if (12 + len > bytes.length) throw bad('truncated');
  const root = await loadProto('stats.proto', 'stats');
  const T = root.lookupType('stats_entry');
  try {
    return T.toObject(T.decode(bytes.subarray(12, 12 + len)), { longs: Number, defaults: false });
  } catch (e) {
    throw bad((e as Error).message);
  }
}

async function read(dir: string, name: string): Promise<StatsEntry | null> {
  const file = path.join(dir, name);
  let bytes: Buffer;
  try {
    bytes = await readFile(file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
  return decodeStats(bytes, file);
}

/** The dump statistics CRIU wrote in `dir` (its working folder: the images folder unless
 *  workDir was given), or null when there are none. */
export async function readDumpStats(dir: string): Promise<DumpStats | null> {
  const d = (await read(dir, 'stats-dump'))?.dump;
  if (!d) return null;
  return {
    freezingTimeUs: d.freezingTime,
    frozenTimeUs: d.frozenTime,
    memdumpTimeUs: d.memdumpTime,
    memwriteTimeUs: d.memwriteTime,
    pagesScanned: d.pagesScanned,
    pagesWritten: d.pagesWritten,
    pagesSkippedParent: d.pagesSkippedParent,
    pagesLazy: d.pagesLazy,
  };
}

/** The restore statistics CRIU wrote in `dir` (its working folder), or null when there are none. */
export async function readRestoreStats(dir: string): Promise<RestoreStats | null> {
  const r = (await read(dir, 'stats-restore'))?.restore;
  if (!r) return null;
  return {
    forkingTimeUs: r.forkingTime,
    restoreTimeUs: r.restoreTime,
    pagesRestored: r.pagesRestored ?? 0,
    pagesCompared: r.pagesCompared,
  };
}
