// Inside the soft-RoCE VM: far memory's one-sided page transport. A "memory node" link exports a region;
// a client link becomes a PageSource whose fetches are RDMA READs and whose stores are RDMA WRITEs. The
// exported bytes come back exactly, a fault engine serves a region from it, writes land in the node's
// memory, an rkey is useless on another link (its own PD), and a vanished peer is an error, not a hang.
import t from 'tap';
import crypto from 'node:crypto';
import { Region, touch } from '../../../lib/uffd/index.js';
import { RdmaLink } from '../../../lib/memory/rdma-link.js';
import { ReplicaSet } from '../../../lib/memory/replica-set.js';
import { DEV, GID_INDEX } from './env.js';
import { servedRegion } from '../../helpers/served-region.js';

const MiB = 1 << 20;

function caught(fn: () => unknown): (Error & { code?: string }) | null {
  try {
    fn();
    return null;
  } catch (e) {
    return e as Error & { code?: string };
  }
}

function pair(): { node: RdmaLink; client: RdmaLink } {
  const node = new RdmaLink({ device: DEV, gidIndex: GID_INDEX });
  const client = new RdmaLink({ device: DEV, gidIndex: GID_INDEX });
  node.connect(client.local());
  client.connect(node.local());
  return { node, client };
}

void t.test('READs return the exported bytes; a fault engine serves a region from them', async (t) => {
  const size = 8 * MiB;
  const held = Region.anonymous(size);
  const data = crypto.randomBytes(size);
  Buffer.from(held.buffer).set(data);
  const { node, client } = pair();
  t.teardown(() => node.close());
  const exp = node.exportRegion(held);
  t.equal(exp.length, size);
  const source = client.toPageSource({ addr: exp.addr, rkey: exp.rkey, size });
  t.ok(client.closed, 'the link now belongs to the source');
  t.equal(source.kind, 'rdma');
  t.equal(Buffer.compare(source.read(3 * MiB + 4096, 64 * 1024), data.subarray(3 * MiB + 4096, 3 * MiB + 69632)), 0);

  const { dst, engine } = servedRegion(t, size, source);
  await touch(dst);
  t.equal(Buffer.compare(Buffer.from(dst.buffer), data), 0, 'every byte over RDMA READ');
  t.equal(engine.stop().errors, 0);
});

void t.test('WRITEs land in the exported memory', async (t) => {
  const size = 4 * MiB;
  const held = Region.anonymous(size);
  const { node, client } = pair();
  t.teardown(() => node.close());
  const exp = node.exportRegion(held);
  const set = new ReplicaSet(size, [{ source: client.toPageSource({ addr: exp.addr, rkey: exp.rkey, size }) }]);
  t.teardown(() => set.close());
  const data = crypto.randomBytes(MiB);
  await set.write(2 * MiB, data);
  t.equal(Buffer.compare(Buffer.from(held.buffer, 2 * MiB, MiB), data), 0, 'the node holds what was written');
  t.equal(Buffer.compare(set.source.read(2 * MiB, MiB), data), 0, 'and reads it back');
});

void t.test('an rkey is valid on its own link only; a vanished node is an error, not a hang', async (t) => {
  const size = MiB;
  const held = Region.anonymous(size);
  const a = pair();
  const b = pair();
  t.teardown(() => {
    a.node.close();
    b.node.close();
  });
  const exp = a.node.exportRegion(held);
  // b's client uses a's rkey: b's node has no such MR in its PD.
  const wrong = b.client.toPageSource({ addr: exp.addr, rkey: exp.rkey, size });
  t.throws(() => wrong.read(0, 4096), { code: /^E(IO|HOSTUNREACH|NOTCONN)$/ }, 'remote access error');
  const good = a.client.toPageSource({ addr: exp.addr, rkey: exp.rkey, size });
  t.equal(good.read(0, 4096).length, 4096);
  a.node.close(); // the node's QP and MR are gone
  const t0 = Date.now();
  const gone = caught(() => good.read(0, 4096));
  t.match(
    gone,
    { code: /^E(IO|HOSTUNREACH|NOTCONN|TIMEDOUT)$/ },
    `peer gone: ${gone?.code} after ${Date.now() - t0} ms`,
  );
  t.throws(() => good.read(0, 4096), { code: 'ENOTCONN' }, 'and later calls fail at once');
});
