// The native fault engine serving real faults, contents verified.
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { FaultEngine, PageSource, Region, Userfaultfd, touch } from '../../lib/index.js';

const MiB = 1 << 20;
const PAGE = 4096;

/** Fill a region with a pattern whose period (4099) makes every page distinct. */
function fillPattern(r: Region): void {
  const pat = Buffer.alloc(4099);
  for (let i = 0; i < pat.length; i++) pat[i] = (i * 7 + 3) & 0xff;
  Buffer.from(r.buffer).fill(pat);
}

void t.test('serves a 1 GiB region from another region, contents verified', async (t) => {
  const size = 1024 * MiB;
  const src = Region.anonymous(size);
  fillPattern(src);
  const dst = Region.anonymous(size);
  const uffd = Userfaultfd.open();
  uffd.register(dst, { missing: true });
  const engine = new FaultEngine(uffd, { batchPages: 16 });
  engine.serve(dst, PageSource.fromRegion(src)).start();
  // Faults from two native threads, then from this thread (allowed: the engine serves it).
  const r = await touch(dst, { threads: 2 });
  t.equal(r.pages, size / 4096, 'every page touched');
  t.equal(Buffer.compare(Buffer.from(dst.buffer), Buffer.from(src.buffer)), 0, '1 GiB identical to the source');
  const s = engine.stop();
  t.equal(s.bytes, size, 'every byte came through the engine');
  t.equal(s.pages, size / 4096);
  t.ok(s.faults >= size / 4096 / 16, 'one fault per 16-page batch at least');
  t.ok(s.faults < size / 4096, 'batching resolved several pages per fault');
  t.equal(s.errors, 0);
  t.equal(s.latency.count, s.faults, 'every fault timed');
  t.ok(s.latency.p50Ns > 0 && s.latency.p99Ns >= s.latency.p50Ns && s.latency.maxNs >= s.latency.p99Ns);
  t.equal(
    s.latency.buckets.reduce((a, [, n]) => a + n, 0),
    s.faults,
    'histogram buckets hold every fault',
  );
  t.ok(
    s.latency.buckets.every(([ns], i, b) => i === 0 || ns > b[i - 1][0]),
    'buckets ascend',
  );
  engine.close();
  uffd.close();
  dst.close();
  src.close();
});

void t.test('batchPages 1 resolves exactly one page per fault', async (t) => {
  const src = Region.anonymous(4 * MiB);
  fillPattern(src);
  const dst = Region.anonymous(4 * MiB);
  using uffd = Userfaultfd.open();
  uffd.register(dst);
  using engine = new FaultEngine(uffd, { batchPages: 1, threads: 2 });
  engine.serve(dst, PageSource.fromRegion(src)).start();
  await touch(dst, { threads: 3 });
  t.equal(Buffer.compare(Buffer.from(dst.buffer), Buffer.from(src.buffer)), 0);
  const s = engine.stop(); // exact totals (live stats() may lag by faults in flight)
  t.equal(s.faults, 1024);
  t.equal(s.pages, 1024);
  t.equal(s.ioctls, 1024);
  engine.close();
  uffd.unregister(dst);
  dst.close();
  src.close();
});

void t.test('zero source uses UFFDIO_ZEROPAGE', async (t) => {
  const dst = Region.anonymous(8 * MiB);
  const uffd = Userfaultfd.open();
  uffd.register(dst);
  const engine = new FaultEngine(uffd).serve(dst, PageSource.zero()).start();
  const r = await touch(dst, { threads: 2 });
  t.equal(r.byteSum, 0);
  t.ok(new Uint8Array(dst.buffer).every((b) => b === 0));
  const s = engine.stop();
  t.equal(s.zeroPages, 2048);
  uffd.close();
  dst.close();
});

void t.test('file source with an offset; reads past its end are zeros', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sos-engine-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'pages');
  const data = Buffer.alloc(3 * MiB);
  for (let i = 0; i < data.length; i += 4096) data.writeUInt32LE(i / 4096 + 1, i);
  fs.writeFileSync(file, data);
  const dst = Region.anonymous(4 * MiB);
  const uffd = Userfaultfd.open();
  uffd.register(dst);
  const src = PageSource.fromFile(file, { offset: MiB }); // 2 MiB of data, then zeros
  t.equal(src.kind, 'file');
  t.same(src.read(0, 4), data.subarray(MiB, MiB + 4), 'read() shows what a fault gets');
  const engine = new FaultEngine(uffd, { batchPages: 8 }).serve(dst, src).start();
  const view = Buffer.from(dst.buffer);
  t.equal(Buffer.compare(view.subarray(0, 2 * MiB), data.subarray(MiB)), 0);
  t.ok(view.subarray(2 * MiB).every((b) => b === 0));
  engine.close();
  uffd.close();
  dst.close();
});

void t.test('serve with sourceOffset, several ranges, changes while running', async (t) => {
  const src = Region.anonymous(2 * MiB);
  fillPattern(src);
  const dst = Region.anonymous(2 * MiB);
  const uffd = Userfaultfd.open();
  uffd.register(dst);
  const engine = new FaultEngine(uffd).start();
  const unserved: number[] = [];
  engine.on('unserved', (ev: { address: number }) => unserved.push(ev.address));
  // first half served from the second half of src and vice versa
  engine.serve({ region: dst, offset: 0, length: MiB }, PageSource.fromRegion(src), { sourceOffset: MiB });
  engine.serve({ region: dst, offset: MiB, length: MiB }, PageSource.fromRegion(src), { sourceOffset: 0 });
  const d = Buffer.from(dst.buffer);
  const s = Buffer.from(src.buffer);
  t.equal(Buffer.compare(d.subarray(0, MiB), s.subarray(MiB)), 0);
  t.equal(Buffer.compare(d.subarray(MiB), s.subarray(0, MiB)), 0);
  t.same(unserved, []);
  engine.close();
  uffd.close();
  dst.close();
  src.close();
});

void t.test('unserved ranges are zero-filled and reported', async (t) => {
  const dst = Region.anonymous(64 * 1024);
  const uffd = Userfaultfd.open();
  uffd.register(dst);
  const engine = new FaultEngine(uffd).start();
  const got = new Promise<{ address: number }>((res) => engine.once('unserved', res));
  const r = await touch(dst, { length: 4096 });
  t.equal(r.byteSum, 0);
  t.equal((await got).address, dst.address);
  t.equal(engine.stats().unserved, 1);
  engine.close();
  uffd.close();
  dst.close();
});

void t.test('stop hands the userfaultfd back to JavaScript events', async (t) => {
  const dst = Region.anonymous(4 * 4096);
  const uffd = Userfaultfd.open();
  uffd.register(dst);
  const page = Buffer.alloc(4096, 9);
  uffd.on('pagefault', (ev) => uffd.copy({ region: dst, offset: ev.offset!, length: 4096 }, page));
  const engine = new FaultEngine(uffd, { batchPages: 2 }).serve(dst, PageSource.zero()).start();
  await touch(dst, { length: 8192 });
  t.equal(engine.stop().faults, 1); // one 2-page batch covered both pages
  t.throws(() => dst.buffer, { code: 'ERR_DEADLOCK' }, 'this thread must serve faults again');
  const r = await touch(dst, { offset: 8192, length: 8192 }); // JS handler now
  t.equal(r.byteSum, 18);
  t.notOk(engine.running);
  engine.start();
  t.ok(engine.running);
  t.doesNotThrow(() => dst.buffer, 'views allowed again while the engine serves');
  engine.close();
  uffd.close();
  dst.close();
});

void t.test('resetStats and stats shape', async (t) => {
  const dst = Region.anonymous(MiB);
  const uffd = Userfaultfd.open();
  uffd.register(dst);
  const engine = new FaultEngine(uffd, { batchPages: 4 }).serve(dst, PageSource.zero()).start();
  await touch(dst);
  t.equal(engine.stop().faults, 64);
  engine.resetStats();
  engine.start();
  const s = engine.stats();
  for (const k of ['faults', 'pages', 'bytes', 'errors', 'retries', 'exists']) t.equal(s[k as 'faults'], 0, k);
  t.equal(s.latency.count, 0);
  t.equal(s.running, true);
  engine.close();
  uffd.close();
  dst.close();
});

void t.test('spinMicros: busy-polling engine serves the same contents', async (t) => {
  const src = Region.anonymous(8 * MiB);
  fillPattern(src);
  const dst = Region.anonymous(8 * MiB);
  const uffd = Userfaultfd.open();
  uffd.register(dst);
  t.throws(() => new FaultEngine(uffd, { spinMicros: 20_000 }), { code: 'ERR_OUT_OF_RANGE' });
  const engine = new FaultEngine(uffd, { batchPages: 1, spinMicros: 50 })
    .serve(dst, PageSource.fromRegion(src))
    .start();
  await touch(dst, { threads: 2 });
  t.equal(Buffer.compare(Buffer.from(dst.buffer), Buffer.from(src.buffer)), 0);
  t.equal(engine.stop().pages, 2048);
  engine.close();
  uffd.close();
  dst.close();
  src.close();
});

void t.test('the engine lets write-protect faults through and counts them (dirty tracking)', async (t) => {
  using u = Userfaultfd.open({ features: ['PAGEFAULT_FLAG_WP'] });
  const r = Region.anonymous(16 * PAGE);
  u.register(r, { missing: true, wp: true });
  const e = new FaultEngine(u).serve(r, PageSource.zero()).start();
  await touch(r);
  u.writeprotect(r, true);
  await touch(r, { write: true, stride: 2 * PAGE }); // dirty every other page
  const s = e.stop();
  t.equal(s.wpFaults, 8);
  e.close();
  u.close();
  r.close();
});

void t.test('MINOR faults on shmem: a JS handler and the engine map with continue', async (t) => {
  using u = Userfaultfd.open({ features: ['MINOR_SHMEM'] });
  const r = Region.memfd(8 * PAGE);
  const alias = r.alias();
  alias.bytes().fill(0x33); // the page cache has the pages; r's page tables do not
  u.register(r, { minor: true });
  const kinds: string[] = [];
  u.on('pagefault', (ev) => {
    kinds.push(ev.kind);
    u.continue({ region: r, offset: ev.offset!, length: PAGE });
  });
  const res = await touch(r, { length: 4 * PAGE });
  t.equal(res.byteSum, 4 * 0x33);
  t.same(kinds, ['minor', 'minor', 'minor', 'minor']);
  u.removeAllListeners('pagefault');
  // The engine does the same natively.
  const e = new FaultEngine(u).start();
  await touch(r, { offset: 4 * PAGE, length: 4 * PAGE });
  t.equal(e.stop().minorFaults, 4);
  e.close();
  u.unregister(r);
  alias.close();
  r.close();
});
