// Far memory's RDMA link on a host without RDMA: typed errors, no crash (the soft-RoCE VM runs the real
// thing: test/rdma/vm/memory-link.vm.ts).
import t from 'tap';
import { rdma } from '../../lib/index.js';
import { RdmaLink } from '../../lib/memory/rdma-link.js';

const hasRdma = rdma.status().library && rdma.devices().length > 0;

void t.test('options are validated before any device is opened', async (t) => {
  t.throws(() => new RdmaLink({ depth: 0 }), { code: 'ERR_OUT_OF_RANGE' });
  t.throws(() => new RdmaLink({ gidIndex: 256 }), { code: 'ERR_OUT_OF_RANGE' });
  t.throws(() => new RdmaLink({ device: 3 as unknown as string }), { code: 'ERR_INVALID_ARG_TYPE' });
});

void t.test('no device: a typed refusal', { skip: hasRdma && 'this host has RDMA devices' }, async (t) => {
  t.throws(() => new RdmaLink(), { code: 'ERR_NO_RDMA' });
  t.throws(() => new RdmaLink({ device: 'no-such-device' }), { code: 'ERR_NO_RDMA' });
});
