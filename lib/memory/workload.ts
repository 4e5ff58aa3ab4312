/**
 * A native workload over a region's bytes, run on native threads so every access is a real load or store
 * (and a real fault on far memory) with no JavaScript per access: `fill` writes incompressible seeded data,
 * `update` does random 8-byte read-modify-writes (atomic xor: the result does not depend on how threads
 * interleave), `scan` reads every word in order and returns a checksum over all of them. The memory
 * benchmark and the far-memory tests compare checksums against an all-local run.
 */
import { native } from '../native/index.js';
import { argType } from '../errors.js';
import { Region } from '../uffd/region.js';
import { integer, object, oneOf } from '../validate.js';

export type WorkloadKind = 'fill' | 'update' | 'scan';
/** What one workload call did: its operations, the bytes they covered, its time and its checksum. */
export interface WorkloadResult {
  kind: WorkloadKind;
  ops: number;
  bytes: number;
  elapsedNs: number;
  checksum: bigint;
}

export function workload(
  region: Region,
  kind: WorkloadKind,
  options?: { ops?: number; seed?: number; threads?: number },
): Promise<WorkloadResult> {
  if (!(region instanceof Region)) throw argType('region must be a Region');
  oneOf('kind', kind, ['fill', 'update', 'scan'] as const);
  const o = object('options', options);
  const ops = o.ops === undefined ? 0 : integer('options.ops', o.ops);
  const seed = o.seed === undefined ? 1 : integer('options.seed', o.seed);
  const threads = o.threads === undefined ? 1 : integer('options.threads', o.threads, 1, 64);
  return native.workload(region.native, kind, { ops, seed, threads });
}
