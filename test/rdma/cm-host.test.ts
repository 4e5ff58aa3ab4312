// rdma_cm on the host running the suite: loads everywhere; where the kernel
// has no rdma_cm (/dev/infiniband/rdma_cm) opening a channel is a typed
// error naming what is missing, never a crash.
import t from 'tap';
import fs from 'node:fs';
import { rdma } from '../../lib/index.js';

void t.test('rdma_cm without kernel support: typed errors', async (t) => {
  const status = rdma.cmStatus();
  t.type(status.library, 'boolean');
  if (!status.library) {
    t.throws(
      () => new rdma.CmEventChannel(),
      { name: 'StateError', code: 'ERR_NO_RDMA' },
      status.reason ?? 'no librdmacm',
    );
    return;
  }
  if (fs.existsSync('/dev/infiniband/rdma_cm')) {
    using ch = new rdma.CmEventChannel();
    t.notOk(ch.closed, 'this host has rdma_cm: a channel opens');
    return;
  }
  t.throws(() => new rdma.CmEventChannel(), {
    name: 'SystemError',
    code: /^E/,
    syscall: 'rdma_create_event_channel',
    message: /rdma_cm/,
  });
});
