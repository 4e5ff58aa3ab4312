// userfaultfd ABI names and bits. The kernel may be newer than any header:
// everything here is checked against what UFFDIO_API reports at run time.
import { argValue } from '../errors.js';

/** Features negotiated by UFFDIO_API (bit positions from the kernel ABI). */
export const FEATURES = {
  PAGEFAULT_FLAG_WP: 0,
  EVENT_FORK: 1,
  EVENT_REMAP: 2,
  EVENT_REMOVE: 3,
  MISSING_HUGETLBFS: 4,
  MISSING_SHMEM: 5,
  EVENT_UNMAP: 6,
  SIGBUS: 7,
  THREAD_ID: 8,
  MINOR_HUGETLBFS: 9,
  MINOR_SHMEM: 10,
  EXACT_ADDRESS: 11,
  WP_HUGETLBFS_SHMEM: 12,
  WP_UNPOPULATED: 13,
  POISON: 14,
  WP_ASYNC: 15,
  MOVE: 16,
} as const;
export type Feature = keyof typeof FEATURES;

/** ioctls the kernel reports, by their _UFFDIO_* numbers. */
export const IOCTLS = {
  REGISTER: 0,
  UNREGISTER: 1,
  WAKE: 2,
  COPY: 3,
  ZEROPAGE: 4,
  MOVE: 5,
  WRITEPROTECT: 6,
  CONTINUE: 7,
  POISON: 8,
  API: 63,
} as const;
export type Ioctl = keyof typeof IOCTLS;

export const REGISTER_MODE = { MISSING: 1, WP: 2, MINOR: 4 } as const;
export const PAGEFAULT_FLAG = { WRITE: 1, WP: 2, MINOR: 4 } as const;
export const MODE = {
  DONTWAKE: 1,
  COPY_WP: 2,
  CONTINUE_WP: 2,
  WRITEPROTECT_WP: 1,
  WRITEPROTECT_DONTWAKE: 2,
  MOVE_ALLOW_SRC_HOLES: 2,
} as const;

export function featureBits(list: readonly Feature[]): bigint {
  let bits = 0n;
  for (const f of list) {
    if (!(f in FEATURES)) throw argValue(`unknown userfaultfd feature: ${String(f)}`);
    bits |= 1n << BigInt(FEATURES[f]);
  }
  return bits;
}

export function featureSet(bits: bigint): Set<Feature> {
  const out = new Set<Feature>();
  for (const [name, bit] of Object.entries(FEATURES)) if (bits & (1n << BigInt(bit))) out.add(name as Feature);
  return out;
}

export function ioctlSet(bits: bigint): Set<Ioctl> {
  const out = new Set<Ioctl>();
  for (const [name, bit] of Object.entries(IOCTLS)) if (bits & (1n << BigInt(bit))) out.add(name as Ioctl);
  return out;
}
