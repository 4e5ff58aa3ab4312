// MemoryRegion's argument checks that come before the device is touched (so they run on a host
// without RDMA): remote access on JavaScript memory is refused, since JavaScript can detach an
// ArrayBuffer and free it while a peer writes. What needs a device (a detached buffer failing a
// post with ERR_MR_DETACHED) is tested on soft-RoCE (test/rdma/vm/verbs.vm.ts).
import t from 'tap';
import { ArgValueError, SosError } from '../../lib/errors.js';
import { rdma } from '../../lib/index.js';

// Never reached: every case below is refused before the protection domain is used.
const noPd = {} as rdma.ProtectionDomain;

void t.test('remote access flags on an ArrayBuffer or a typed array are ERR_INVALID_ARG_VALUE', async (t) => {
  const memories: [string, ArrayBuffer | ArrayBufferView][] = [
    ['ArrayBuffer', new ArrayBuffer(4096)],
    ['Uint8Array', new Uint8Array(4096)],
    ['Buffer', Buffer.alloc(4096)],
    ['DataView', new DataView(new ArrayBuffer(4096))],
  ];
  for (const [what, memory] of memories)
    for (const flag of ['remote-write', 'remote-read', 'remote-atomic'] as const) {
      const e = t.throws(() => new rdma.MemoryRegion(noPd, memory, { access: ['local-write', flag] }), {
        code: 'ERR_INVALID_ARG_VALUE',
        message: new RegExp(`${flag}.*Region`),
      }) as unknown;
      t.ok(e instanceof ArgValueError && e instanceof SosError, `${what}, ${flag}: an ArgValueError`);
    }
});
