// The memory benchmark's native workload (native/memory/workload.cc): types only.
import type { NativeRegion } from './uffd.js';

export interface NativeWorkloadResult {
  kind: 'fill' | 'update' | 'scan';
  ops: number;
  bytes: number;
  elapsedNs: number;
  checksum: bigint;
}

export interface WorkloadBinding {
  workload(
    region: NativeRegion,
    kind: 'fill' | 'update' | 'scan',
    options: { ops?: number; seed?: number; threads?: number },
  ): Promise<NativeWorkloadResult>;
}
