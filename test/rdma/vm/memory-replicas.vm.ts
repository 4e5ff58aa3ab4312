// Inside the soft-RoCE VM: replicated far memory over RDMA. Two "memory nodes" (links exporting a region
// each) hold every page; one vanishes while a fault engine is paging from the set: the engine keeps
// serving from the survivor with every byte right, the set reports the loss, and a third node added
// afterwards is filled from the survivor until it holds every stored page.
import t from 'tap';
import crypto from 'node:crypto';
import { once } from 'node:events';
import { Region, touch } from '../../../lib/uffd/index.js';
import { RdmaLink } from '../../../lib/memory/rdma-link.js';
import { ReplicaSet } from '../../../lib/memory/replica-set.js';
import { DEV, GID_INDEX } from './env.js';
import { servedRegion } from '../../helpers/served-region.js';

const MiB = 1 << 20;

/** A memory node's region and the client's PageSource over it. */
function node(size: number) {
  const held = Region.anonymous(size);
  const n = new RdmaLink({ device: DEV, gidIndex: GID_INDEX });
  const c = new RdmaLink({ device: DEV, gidIndex: GID_INDEX });
  n.connect(c.local());
  c.connect(n.local());
  const exp = n.exportRegion(held);
  return { held, link: n, source: c.toPageSource({ addr: exp.addr, rkey: exp.rkey, size }) };
}

void t.test('a node lost while paging: reads fail over, every byte right; a new node is filled', async (t) => {
  const size = 16 * MiB;
  const a = node(size);
  const b = node(size);
  const set = new ReplicaSet(size, [
    { source: a.source, label: 'a' },
    { source: b.source, label: 'b' },
  ]);
  t.teardown(() => {
    set.close();
    a.link.close();
    b.link.close();
  });
  const data = crypto.randomBytes(size);
  await set.write(0, data);
  t.equal(Buffer.compare(Buffer.from(a.held.buffer), data), 0, 'node a holds every page');
  t.equal(Buffer.compare(Buffer.from(b.held.buffer), data), 0, 'node b holds every page');

  const { dst, engine } = servedRegion(t, size, set.source);
  await touch(dst, { length: size / 4 });
  const lost = once(set, 'lost');
  a.link.close(); // node a vanishes: its QP and MR are gone
  await touch(dst, { offset: size / 4, length: (3 * size) / 4 });
  const [ev] = (await lost) as [{ id: number; code: string }];
  t.match(ev.code, /^E(IO|HOSTUNREACH|TIMEDOUT|NOTCONN)$/, `loss reported (${ev.code})`);
  t.equal(Buffer.compare(Buffer.from(dst.buffer), data), 0, 'every byte right after the loss');
  t.equal(engine.stop().errors, 0, 'the engine saw no error: the set failed over');
  t.same(
    set.replicas().map((r) => [r.label, r.state]),
    [
      ['a', 'lost'],
      ['b', 'live'],
    ],
  );
  t.ok(set.stats().failovers >= 1);

  const c = node(size);
  t.teardown(() => c.link.close());
  const synced = once(set, 'synced');
  set.add(c.source, 'c');
  await synced;
  t.equal(Buffer.compare(Buffer.from(c.held.buffer), data), 0, 'the new node holds every stored page');
  t.equal(set.live, 2);
});
