// A memory region: memory registered with the device, with the keys a peer uses to reach it.
import { native, type RawMr } from '../native/index.js';
import { argValue } from '../errors.js';
import { integer, object } from '../validate.js';
import { Region } from '../uffd/region.js';
import { accessBits, type Access } from './access.js';
import type { ProtectionDomain } from './pd.js';
import { VerbsObject } from './verbs-object.js';

const DEFAULT_ACCESS: Access[] = ['local-write', 'remote-write', 'remote-read'];
const REMOTE: readonly Access[] = ['remote-write', 'remote-read', 'remote-atomic'];

export interface RawRange {
  address: number | bigint;
  length: number;
}

export class MemoryRegion extends VerbsObject {
  /** @internal */ readonly raw: RawMr;
  constructor(
    readonly pd: ProtectionDomain,
    memory: Region | ArrayBuffer | ArrayBufferView | RawRange,
    options?: { offset?: number; length?: number; access?: Access[] },
  ) {
    super();
    const o = object('options', options);
    const size =
      memory instanceof Region
        ? memory.size
        : 'address' in memory
          ? integer('memory.length', memory.length, 1)
          : memory.byteLength;
    const offset = o.offset === undefined ? 0 : integer('options.offset', o.offset, 0, size);
    const length = o.length === undefined ? size - offset : integer('options.length', o.length, 1, size - offset);
    // JavaScript may detach (transfer) an ArrayBuffer and free its memory while the MR lives: a peer
    // must never be able to write such memory, so remote access needs memory the addon owns.
    const jsMemory = !(memory instanceof Region) && !('address' in memory);
    const list = (o.access as Access[] | undefined) ?? (jsMemory ? ['local-write'] : DEFAULT_ACCESS);
    if (jsMemory && Array.isArray(list) && list.some((a) => REMOTE.includes(a)))
      throw argValue(
        `options.access ${list.filter((a) => REMOTE.includes(a)).join(', ')} needs memory the addon owns (a Region): ` +
          'JavaScript can detach an ArrayBuffer and free its memory while a peer still writes into it',
      );
    const access = accessBits(list);
    const mem = memory instanceof Region ? memory.native : memory;
    this.raw = new native.rdma.RdmaMr(pd.raw, mem, offset, length, access);
  }
  get addr(): number {
    return this.raw.info().addr;
  }
  get length(): number {
    return this.raw.info().length;
  }
  get lkey(): number {
    return this.raw.info().lkey;
  }
  get rkey(): number {
    return this.raw.info().rkey;
  }
}
