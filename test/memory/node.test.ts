// The memory node and its C++ client over loopback: round trips against a reference copy, a FaultEngine
// serving faults from a node, pipelining, capacity, authentication, isolation between applications, leases.
import t from 'tap';
import crypto from 'node:crypto';
import { touch } from '../../lib/index.js';
import { MemoryError, MemoryNode, RemoteStore } from '../../lib/memory/index.js';
import { until } from '../../testkit/wait.js';
import { WireClient } from './wire.js';
import { servedRegion } from '../helpers/served-region.js';
import { outcomeCode as code } from '../../testkit/outcome.js';

const PAGE = 4096;
const MiB = 1 << 20;

async function node(opts: { capacity?: number; leaseMs?: number } = {}) {
  const secrets = { alpha: crypto.randomBytes(32), beta: crypto.randomBytes(32) };
  const n = new MemoryNode({ capacity: opts.capacity ?? 64 * MiB, applications: secrets, leaseMs: opts.leaseMs });
  const { host, port } = await n.listen();
  const connect = (application: 'alpha' | 'beta', size: number, secret: Buffer = secrets[application]) =>
    RemoteStore.connect({ host, port, application, secret, size });
  return { n, host, port, secrets, connect };
}

void t.test('random writes and reads match a reference copy; unwritten pages read as zeros', async (t) => {
  const { n, connect } = await node();
  const size = 8 * MiB;
  const r = await connect('alpha', size);
  t.equal(r.size, size);
  const ref = Buffer.alloc(size);
  const rnd = (k: number) => crypto.randomInt(k);
  for (let i = 0; i < 200; i++) {
    const pages = 1 + rnd(300); // beyond one batch: the client splits it
    const first = rnd(size / PAGE - pages);
    const data = crypto.randomBytes(pages * PAGE);
    await r.write(first * PAGE, data);
    data.copy(ref, first * PAGE);
  }
  for (let i = 0; i < 200; i++) {
    const off = rnd(size - 1);
    const len = 1 + rnd(Math.min(size - off, 3 * MiB));
    t.ok((await r.read(off, len)).equals(ref.subarray(off, off + len)) || t.fail(`read ${off}+${len}`));
  }
  t.ok((await r.read(0, size)).equals(ref), 'the whole region');
  t.ok((await r.read(size, 2 * PAGE)).equals(Buffer.alloc(2 * PAGE)), 'past the region: zeros');
  const s = n.stats();
  t.equal(s.applications.alpha.reservedBytes, size);
  t.ok(s.applications.alpha.heldBytes > 0 && s.applications.alpha.heldBytes <= size);
  t.same(await r.nodeStats(), {
    capacity: 64 * MiB,
    reserved: size,
    held: s.applications.alpha.heldBytes,
    regions: 1,
  });
  await r.close();
  t.equal(n.stats().applications.alpha.reservedBytes, 0, 'close freed the region');
  t.equal(n.stats().applications.alpha.heldBytes, 0);
  t.equal(await code(r.read(0, 1)), 'ERR_CLOSED');
  n.close();
});

void t.test(
  'a FaultEngine serves a region from a memory node (pipelined FetchV batches from many threads)',
  async (t) => {
    const { n, connect } = await node();
    const size = 32 * MiB;
    const r = await connect('alpha', size);
    const ref = crypto.randomBytes(size);
    await r.write(0, ref);
    const { dst, engine } = servedRegion(t, size, r.pageSource(), { batchPages: 64, threads: 4 });
    await touch(dst, { threads: 4 });
    t.equal(Buffer.compare(Buffer.from(dst.buffer), ref), 0, 'every byte faulted in from the node');
    const st = engine.stop();
    t.equal(st.errors, 0);
    t.ok(r.stats().requests >= size / PAGE / 256, 'requests went over the connection');
    t.ok(n.stats().applications.alpha.bytesOut >= size);
    await r.close();
    n.close();
  },
);

void t.test('many concurrent reads and writes on one connection (pipelined from JS)', async (t) => {
  const { n, connect } = await node();
  const r = await connect('alpha', 4 * MiB);
  const ref = Buffer.alloc(4 * MiB);
  // Distinct pages per writer, all in flight at once.
  await Promise.all(
    Array.from({ length: 64 }, async (_, i) => {
      const d = crypto.randomBytes(16 * PAGE);
      d.copy(ref, i * 16 * PAGE);
      await r.write(i * 16 * PAGE, d);
    }),
  );
  const reads = await Promise.all(Array.from({ length: 64 }, (_, i) => r.read(i * 16 * PAGE, 16 * PAGE)));
  t.ok(reads.every((b, i) => b.equals(ref.subarray(i * 16 * PAGE, (i + 1) * 16 * PAGE))));
  await r.close();
  n.close();
});

void t.test('a full node refuses at connect with ERR_MEMORY_FULL, and frees capacity on close', async (t) => {
  const { n, connect } = await node({ capacity: 4 * MiB });
  const a = await connect('alpha', 3 * MiB);
  const e = await connect('beta', 2 * MiB).catch((x: unknown) => x);
  t.ok(e instanceof MemoryError);
  t.equal((e as MemoryError).code, 'ERR_MEMORY_FULL');
  t.equal(n.stats().applications.beta.reservedBytes, 0, 'nothing reserved for the refused one');
  const b = await connect('beta', 1 * MiB);
  t.equal(n.stats().reserved, 4 * MiB, 'exactly at capacity');
  await a.close();
  const c = await connect('beta', 2 * MiB);
  await b.close();
  await c.close();
  t.equal(n.stats().reserved, 0);
  n.close();
});

void t.test('wrong key and unknown application: refused alike (ERR_AUTH), nothing allocated', async (t) => {
  const { n, host, port, secrets } = await node();
  t.equal(
    await code(RemoteStore.connect({ host, port, application: 'alpha', secret: secrets.beta, size: PAGE })),
    'ERR_AUTH',
  );
  t.equal(
    await code(RemoteStore.connect({ host, port, application: 'gamma', secret: secrets.alpha, size: PAGE })),
    'ERR_AUTH',
  );
  const s = n.stats();
  t.equal(s.total.authFailures, 2);
  t.equal(s.applications.alpha.authFailures, 1);
  t.equal(s.applications.gamma, undefined, 'an unknown name leaves no trace in the counters');
  t.equal(s.reserved, 0);
  t.equal(s.total.requests, 0, 'no request ran');
  t.equal(
    await code(RemoteStore.connect({ host, port, application: 'alpha', secret: 'short', size: PAGE })),
    'ERR_WEAK_SECRET',
  );
  n.close();
});

void t.test('removeApplication closes its connections and frees its regions; addApplication lets it in', async (t) => {
  const { n, connect, secrets } = await node();
  const a = await connect('alpha', MiB);
  await a.write(0, Buffer.alloc(PAGE, 1));
  t.equal(n.removeApplication('alpha'), true);
  t.equal(n.stats().applications.alpha.reservedBytes, 0);
  t.ok(['ECONNRESET', 'ERR_CLOSED'].includes(await code(a.read(0, PAGE))), 'the connection is gone');
  t.equal(await code(connect('alpha', PAGE)), 'ERR_AUTH');
  n.addApplication('alpha', secrets.alpha);
  const b = await connect('alpha', PAGE);
  await b.close();
  await a.close();
  n.close();
});

void t.test('a lapsed lease frees the region; a renewed one stays', async (t) => {
  const { n, host, port, secrets, connect } = await node({ leaseMs: 300 });
  const keep = await connect('beta', MiB);
  await keep.write(0, Buffer.alloc(PAGE, 7));
  // A client that allocates, writes and vanishes without FREE (the protocol spoken from TypeScript).
  const w = await WireClient.connect(host, port, 'alpha', secrets.alpha);
  const { region } = await w.alloc(16);
  await w.write(region, 0, Buffer.alloc(PAGE, 9));
  w.destroy();
  t.equal(n.stats().applications.alpha.heldBytes, PAGE);
  await until(() => n.stats().applications.alpha.regions === 0, 10_000, 'the lease to lapse');
  const s = n.stats();
  t.equal(s.expiredRegions, 1);
  t.equal(s.applications.alpha.heldBytes, 0, 'its pages were freed');
  t.equal(s.applications.alpha.reservedBytes, 0);
  await until(() => keep.stats().renewals >= 4, 10_000, 'renewals past several leases');
  t.equal(n.stats().applications.beta.regions, 1, 'the renewed region is still there');
  t.ok((await keep.read(0, PAGE)).equals(Buffer.alloc(PAGE, 7)));
  await keep.close();
  n.close();
});
