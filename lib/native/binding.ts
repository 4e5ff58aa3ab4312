// Loads the C++ addon once per thread and teaches it our error classes.
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { ArgRangeError, ArgTypeError, StateError, SystemError } from '../errors.js';
import type { CmBinding } from './cm.js';
import type { MemoryBinding } from './memory.js';
import type { PagerBinding } from './pager.js';
import type { PeerCredBinding } from './peer-cred.js';
import type { ReplicaBinding } from './replica.js';
import type { WorkloadBinding } from './workload.js';
import type { RdmaLinkBinding } from './rdma-link.js';
import type { VerbsBinding } from './rdma.js';
import type { SeqPacketBinding } from './seqpacket.js';
import type { UffdBinding } from './uffd.js';

const require = createRequire(import.meta.url);
const here = path.dirname(fileURLToPath(import.meta.url));
// lib/native/ is compiled to dist/lib/native/: the package root is three levels up.
const root = path.resolve(here, '..', '..', '..');
const loadBinding = require('node-gyp-build') as (dir: string) => unknown;

type NativeClass = new (...args: never[]) => object;

/**
 * Everything the addon exports (native/core/addon.cc), in one declaration. Only lib/ talks to it; users use the
 * typed classes. Each capability's part is declared in its own file: uffd.ts, rdma.ts, cm.ts, seqpacket.ts,
 * peer-cred.ts, memory.ts, pager.ts, replica.ts, workload.ts, rdma-link.ts.
 */
export interface NativeBinding
  extends
    UffdBinding,
    MemoryBinding,
    PagerBinding,
    SeqPacketBinding,
    PeerCredBinding,
    ReplicaBinding,
    WorkloadBinding,
    RdmaLinkBinding {
  /** The classes errors built natively are made of. */
  setErrorClasses(system: NativeClass, state: NativeClass, argType: NativeClass, argRange: NativeClass): void;
  /** libibverbs and librdmacm, loaded with dlopen on first use. */
  rdma: VerbsBinding & CmBinding;
}

export const native = loadBinding(root) as NativeBinding;
native.setErrorClasses(SystemError, StateError, ArgTypeError, ArgRangeError);
