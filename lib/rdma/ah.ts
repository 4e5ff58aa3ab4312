// An address handle: where a UD datagram goes.
import { native, type RawAh } from '../native/index.js';
import { argType } from '../errors.js';
import { object } from '../validate.js';
import type { ProtectionDomain } from './pd.js';
import { VerbsObject } from './verbs-object.js';

export class AddressHandle extends VerbsObject {
  /** @internal */ readonly raw: RawAh;
  constructor(
    readonly pd: ProtectionDomain,
    dest: { gid: string; sgidIndex?: number; hopLimit?: number; port?: number },
  ) {
    super();
    const d = object('dest', dest);
    if (typeof d.gid !== 'string') throw argType('dest.gid must be a GID string');
    this.raw = new native.rdma.RdmaAh(pd.raw, {
      dgid: d.gid,
      sgidIndex: d.sgidIndex ?? 1,
      hopLimit: d.hopLimit ?? 64,
      port: d.port ?? 1,
    });
  }
}
