// The fast data path's pieces that need no RDMA device, on the host running
// the suite: the completion layout and names, and the native prepared send
// refusing anything but a live queue pair (typed errors, no crash). The data
// path itself is tested on soft-RoCE (test/rdma/vm/fastpath.vm.ts).
import t from 'tap';
import { native } from '../../lib/native/index.js';
import { rdma } from '../../lib/index.js';

const raw = native.rdma;
// Called with anything, as a caller bypassing TypeScript would.
const UntypedPrepared = raw.RdmaPrepared as unknown as new (...a: unknown[]) => unknown;

void t.test('completion layout and names', async (t) => {
  t.ok(Object.isFrozen(rdma.WC));
  t.equal(rdma.WC.SLOTS, raw.WC_SLOTS, "the layout is the binding's");
  t.equal(rdma.WC.WITH_IMM, raw.WC_WITH_IMM);
  t.same(
    new Set(
      Object.entries(rdma.WC)
        .filter(([k]) => !['SLOTS', 'WITH_IMM', 'SUCCESS'].includes(k))
        .map(([, v]) => v),
    ).size,
    rdma.WC.SLOTS,
    'one slot per field',
  );
  t.same([0, 1, 2, 3, 4, 128, 129, 200].map(rdma.wcOpcodeName), [
    'SEND',
    'RDMA_WRITE',
    'RDMA_READ',
    'COMP_SWAP',
    'FETCH_ADD',
    'RECV',
    'RECV_RDMA_WITH_IMM',
    'RECV',
  ]);
  t.equal(rdma.wcOpcodeName(50), 'OTHER');
  t.equal(rdma.wcStatusName(0), rdma.status().library ? 'success' : 'unknown');
  t.throws(() => rdma.wcStatusName(-1), RangeError);
});

void t.test('a prepared send needs a live queue pair', async (t) => {
  for (const qp of [undefined, null, {}, 5, 'qp', new Uint8Array(8), { raw: {} }]) {
    t.throws(() => new UntypedPrepared(qp, [{ opcode: 'RDMA_READ' }]), {
      name: 'TypeError',
      code: 'ERR_INVALID_ARG_TYPE',
    });
  }
  t.throws(() => (raw.RdmaPrepared as unknown as () => void)(), TypeError, 'called without new');
});

void t.test('no device here: typed errors', async (t) => {
  if (rdma.devices().length > 0) {
    t.pass('this host has an RDMA device: the VM tests cover it');
    return;
  }
  t.throws(() => rdma.Context.open('rxe0'), { code: /^(E[A-Z]+|ERR_[A-Z_]+)$/ }, 'a coded error');
});
