// Far memory's RDMA link on a host without RDMA: typed errors, no crash (the soft-RoCE VM runs the real
// thing: test/rdma/vm/memory-link.vm.ts).
import t from 'tap';
import { rdma } from '../../lib/index.js';
import crypto from 'node:crypto';
import { once } from 'node:events';
import { RdmaLink } from '../../lib/memory/rdma-link.js';
import { MemoryNode } from '../../lib/memory/node.js';
import { RemoteStore } from '../../lib/memory/remote.js';
import { S, WireClient } from './wire.js';

const MiB = 1 << 20;
const ATTACH_RDMA = 0x07;
const S_UNSUPPORTED = 6;

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

void t.test(
  'a memory node asked to serve RDMA without a device refuses when made',
  { skip: hasRdma && 'has RDMA' },
  async (t) => {
    t.throws(() => new MemoryNode({ capacity: MiB, rdma: {} }), { code: 'ERR_NO_RDMA' });
    t.throws(() => new MemoryNode({ capacity: MiB, rdma: { device: 'no-such-device' } }), { code: 'ERR_NO_RDMA' });
    t.throws(() => new MemoryNode({ capacity: MiB, rdma: { perConnection: 0 } }), { code: 'ERR_OUT_OF_RANGE' });
    t.throws(() => new MemoryNode({ capacity: MiB, rdma: 'x' as unknown as object }), { code: 'ERR_INVALID_ARG_TYPE' });
  },
);

void t.test('ATTACH_RDMA on the wire: refused for a node without RDMA and for regions not the caller’s', async (t) => {
  const secrets = { alpha: crypto.randomBytes(32), beta: crypto.randomBytes(32) };
  const node = new MemoryNode({ capacity: 4 * MiB, applications: secrets });
  t.teardown(() => node.close());
  const { host, port } = await node.listen();
  const a = await WireClient.connect(host, port, 'alpha', secrets.alpha);
  const b = await WireClient.connect(host, port, 'beta', secrets.beta);
  t.teardown(() => {
    a.destroy();
    b.destroy();
  });
  const mine = await a.alloc(4);
  const theirs = await b.alloc(4);
  const attach = (region: bigint) => {
    const f = Buffer.alloc(8 + 24);
    f.writeBigUInt64LE(region);
    f.writeUInt32LE(0x11, 8); // any queue pair: the node refuses before it opens anything
    return f;
  };
  t.equal((await a.request(ATTACH_RDMA, attach(mine.region))).status, S_UNSUPPORTED, 'no RDMA here: S_UNSUPPORTED');
  t.equal((await a.request(ATTACH_RDMA, attach(theirs.region))).status, S.NO_REGION, "another's region: unknown");
  t.equal((await a.request(ATTACH_RDMA, attach(12345n))).status, S.NO_REGION, 'a made-up region: unknown');
  t.equal(node.stats().rdmaExports, 0);
  // A short ATTACH_RDMA is a malformed frame: the connection goes, the node stays.
  const closed = once(a.sock, 'close');
  a.sock.write(a.seal(ATTACH_RDMA, attach(mine.region).subarray(0, 20)));
  await closed;
  t.ok(node.stats().badFrames >= 1);
  t.equal((await b.read(theirs.region, 0, 1)).status, S.OK, 'others are still served');
  const store = await RemoteStore.connect({ host, port, application: 'alpha', secret: secrets.alpha, size: MiB });
  t.teardown(() => store.close());
  if (!hasRdma) await t.rejects(store.rdmaPageSource(), { code: 'ERR_NO_RDMA' }, 'no device on this side either');
});
