// Replicated page sources over real stores (memfds): writes reach every replica, reads fail over, a fresh
// replica is filled from a survivor while writes continue. Memory-node deaths are in test/memory/remote-*.
import t from 'tap';
import crypto from 'node:crypto';
import { once } from 'node:events';
import { PageSource, Region, touch } from '../../lib/index.js';
import { ReplicaSet } from '../../lib/memory/replica-set.js';
import { servedRegion } from '../helpers/served-region.js';

const PAGE = 4096;
const MiB = 1 << 20;

function memfdReplica(size: number): { region: Region; source: PageSource } {
  const region = Region.memfd(size);
  return { region, source: PageSource.fromFile(region.fd, { size }) };
}

void t.test(
  'writes reach every replica; reads come back; unwritten pages read as zeros with no round trip',
  async (t) => {
    const size = 8 * MiB;
    const a = memfdReplica(size);
    const b = memfdReplica(size);
    // A stale byte in a replica where the set never wrote: the set must not return it.
    Buffer.from(b.region.buffer).fill(0xee, 5 * MiB, 5 * MiB + PAGE);
    Buffer.from(a.region.buffer).fill(0xee, 5 * MiB, 5 * MiB + PAGE);
    const set = new ReplicaSet(size, [
      { source: a.source, label: 'a' },
      { source: b.source, label: 'b' },
    ]);
    t.teardown(() => set.close());
    const data = crypto.randomBytes(64 * PAGE);
    await set.write(MiB, data);
    t.same(set.stats().storedPages, 64);
    t.equal(Buffer.compare(Buffer.from(a.region.buffer, MiB, data.length), data), 0, 'replica a holds the pages');
    t.equal(Buffer.compare(Buffer.from(b.region.buffer, MiB, data.length), data), 0, 'replica b holds the pages');
    t.equal(Buffer.compare(set.source.read(MiB, data.length), data), 0, 'read back through the set');
    t.ok(
      set.source.read(5 * MiB, PAGE).every((x) => x === 0),
      'never-written page reads as zeros',
    );
    t.same(
      set.replicas().map((r) => [r.label, r.state]),
      [
        ['a', 'live'],
        ['b', 'live'],
      ],
    );
    await t.rejects(set.write(100, data), { code: 'ERR_OUT_OF_RANGE' });
  },
);

void t.test('a fresh replica is filled from a live one while writes go on, then serves', async (t) => {
  const size = 32 * MiB;
  const a = memfdReplica(size);
  const set = new ReplicaSet(size, [{ source: a.source, label: 'a' }]);
  t.teardown(() => set.close());
  const ref = Buffer.alloc(size);
  for (let off = 0; off < size; off += 4 * PAGE * 3) {
    const chunk = crypto.randomBytes(4 * PAGE);
    chunk.copy(ref, off);
    await set.write(off, chunk);
  }
  const c = memfdReplica(size);
  const synced = once(set, 'synced');
  const id = set.add(c.source, 'c');
  // Writes during the fill: each must end up on c too (the fill never overwrites them with older data).
  const writes: Promise<void>[] = [];
  for (let off = 0; off < size; off += 97 * PAGE) {
    const chunk = crypto.randomBytes(PAGE);
    chunk.copy(ref, off);
    writes.push(set.write(off, chunk));
  }
  await Promise.all(writes);
  const [ev] = (await synced) as [{ id: number }];
  t.equal(ev.id, id);
  t.equal(set.replicas().find((r) => r.id === id)?.state, 'live');
  t.ok(set.stats().syncedPages > 0, 'pages were copied to the new replica');
  const stored = set.stats().storedPages;
  // Compare only the pages the set stored: c must equal a there, and a must equal the reference.
  let same = 0;
  for (let p = 0; p < size / PAGE; p++) {
    const ra = Buffer.from(a.region.buffer, p * PAGE, PAGE);
    const rc = Buffer.from(c.region.buffer, p * PAGE, PAGE);
    const rr = ref.subarray(p * PAGE, (p + 1) * PAGE);
    if (ra.equals(rr) && rc.equals(rr)) same++;
  }
  t.equal(same, size / PAGE, `all ${size / PAGE} pages equal on both replicas and the reference (${stored} stored)`);
});

void t.test('a fault engine serves a region from a replica set', async (t) => {
  const size = 16 * MiB;
  const a = memfdReplica(size);
  const b = memfdReplica(size);
  const set = new ReplicaSet(size, [{ source: a.source }, { source: b.source }]);
  t.teardown(() => set.close());
  const data = crypto.randomBytes(size);
  await set.write(0, data);
  const { dst, engine } = servedRegion(t, size, set.source);
  await touch(dst, { threads: 2 });
  t.equal(Buffer.compare(Buffer.from(dst.buffer), data), 0, 'every byte through the set');
  t.equal(engine.stop().errors, 0);
});

void t.test('misuse: typed errors', async (t) => {
  t.throws(() => new ReplicaSet(4095, [{ source: PageSource.zero() }]), { code: 'ERR_OUT_OF_RANGE' });
  t.throws(() => new ReplicaSet(4096, []), { code: 'ERR_INVALID_ARG_TYPE' });
  t.throws(() => new ReplicaSet(4096, [{ source: {} as PageSource }]), { code: 'ERR_INVALID_ARG_TYPE' });
  const set = new ReplicaSet(4096, [{ source: PageSource.zero() }]);
  set.close();
  set.close();
  t.throws(() => set.stats(), { code: 'ERR_CLOSED' });
  await t.rejects(set.write(0, Buffer.alloc(4096)), { code: 'ERR_CLOSED' });
  t.throws(() => set.add(PageSource.zero()), { code: 'ERR_CLOSED' });
});
