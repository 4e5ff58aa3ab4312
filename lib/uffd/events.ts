// Typed userfaultfd events, converted from the kernel's uffd_msg.
import { PAGEFAULT_FLAG } from './constants.js';
import type { Region } from './region.js';
import type { Userfaultfd } from './userfaultfd.js';

export interface PageFaultEvent {
  type: 'pagefault';
  /** Faulting address (page-aligned unless EXACT_ADDRESS was negotiated). */
  address: number;
  /** missing: no page; wp: write to a write-protected page; minor: page cache has it, the PTE does not. */
  kind: 'missing' | 'wp' | 'minor';
  write: boolean;
  /** Faulting thread id (with the THREAD_ID feature, else 0). */
  tid: number;
  /** The registered region of this process that contains the address, if any. */
  region?: Region;
  /** Offset of the address within `region`. */
  offset?: number;
}
export interface ForkEvent {
  type: 'fork';
  /** The child's userfaultfd, already open in this process. */
  uffd: Userfaultfd;
}
export interface RemapEvent {
  type: 'remap';
  from: number;
  to: number;
  length: number;
}
export interface RemoveEvent {
  type: 'remove';
  start: number;
  end: number;
}
export interface UnmapEvent {
  type: 'unmap';
  start: number;
  end: number;
}
export type UffdEvent = PageFaultEvent | ForkEvent | RemapEvent | RemoveEvent | UnmapEvent;

export function faultKind(flags: number): PageFaultEvent['kind'] {
  if (flags & PAGEFAULT_FLAG.WP) return 'wp';
  if (flags & PAGEFAULT_FLAG.MINOR) return 'minor';
  return 'missing';
}

export function isWrite(flags: number): boolean {
  return (flags & PAGEFAULT_FLAG.WRITE) !== 0;
}
