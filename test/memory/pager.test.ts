// The far-memory pager against a real store (a memfd read and written with
// pread/pwrite): random reads and writes checked against a reference copy
// with local memory far below the working set, from the main thread and a
// worker, the resident bound read from /proc while they run, in both
// dirty-tracking modes and both eviction modes (copy eviction is what a
// kernel without UFFDIO_MOVE gets); clean pages dropped, dirty ones written back;
// prefetch on sequential and strided scans; misuse and close.
// Bigger runs: SOS_PAGER_MB=1024 SOS_PAGER_LOCAL_MB=64 SOS_PAGER_OPS=2000000.
import t from 'tap';
import crypto from 'node:crypto';
import fs from 'node:fs';
import { Worker } from 'node:worker_threads';
import {
  FarRegion,
  PageSource,
  Region,
  StateError,
  Userfaultfd,
  touch,
  type DirtyTracking,
  type FarRegionOptions,
} from '../../lib/index.js';
import { PAGE, until, userfaultfds } from '../../testkit/wait.js';
import { RSS_WALK_SLACK, differingPages, randomOps, residentBytes, xorshift } from './pager-workload.js';

const MB = 1 << 20;
const SIZE = Number(process.env.SOS_PAGER_MB ?? 256) * MB;
const LOCAL = Number(process.env.SOS_PAGER_LOCAL_MB ?? 16) * MB;
const OPS = Number(process.env.SOS_PAGER_OPS ?? 60_000);
const MODES: DirtyTracking[] = FarRegion.asyncSupported() ? ['async', 'sync'] : ['sync'];
/** Dirty tracking x eviction: every pair the kernel can run (copy needs sync; move needs MOVE). */
type Config = { dirtyTracking: DirtyTracking; eviction: 'move' | 'copy' };
const CONFIGS: Config[] = [
  ...(Userfaultfd.probe().features.has('MOVE')
    ? MODES.map((m): Config => ({ dirtyTracking: m, eviction: 'move' }))
    : []),
  { dirtyTracking: 'sync', eviction: 'copy' },
];
const label = (c: Config) => `${c.dirtyTracking}, ${c.eviction}`;

/** A memfd of `size` random bytes as the backing store, and a reference copy of it. */
function store(size: number): { backing: Region; source: PageSource; ref: Uint8Array } {
  const backing = Region.memfd(size, { name: 'far-backing' });
  const bytes = backing.bytes();
  for (let off = 0; off < size; off += 64 * MB)
    crypto.randomFillSync(bytes.subarray(off, Math.min(size, off + 64 * MB)));
  const ref = new Uint8Array(new SharedArrayBuffer(size));
  ref.set(bytes);
  return { backing, source: PageSource.fromFile(backing.fd, { size }), ref };
}

/** Samples the region's Rss (smaps) and the pager's frames; `worst` is the largest seen. */
class BoundWatch {
  worst = 0;
  worstUsed = 0;
  samples = 0;
  constructor(private readonly far: FarRegion) {}
  sample(): void {
    this.worst = Math.max(this.worst, residentBytes(this.far.address, this.far.size));
    this.worstUsed = Math.max(this.worstUsed, this.far.stats().usedPages * PAGE);
    this.samples++;
  }
}

for (const [i, config] of CONFIGS.entries()) {
  const mode = config.dirtyTracking;
  void t.test(
    `random reads and writes, ${SIZE / MB} MiB region with ${LOCAL / MB} MiB local (${label(config)})`,
    async (t) => {
      t.setTimeout(600_000);
      const { backing, source, ref } = store(SIZE);
      const far = FarRegion.create(SIZE, { localBytes: LOCAL, source, ...config });
      t.teardown(() => {
        far.close();
        source.close();
        backing.close();
      });
      t.equal(far.dirtyTracking, mode);
      t.equal(far.eviction, config.eviction);
      t.equal(far.stats().eviction, config.eviction, 'stats() name the eviction mode');
      const errors: Error[] = [];
      far.on('error', (e) => errors.push(e));
      const watch = new BoundWatch(far);
      const rnd = xorshift(11 + i);
      const far32 = new Uint32Array(far.buffer);
      const ref32 = new Uint32Array(ref.buffer);
      let bad = 0;
      // The main thread runs the workload in slices and samples /proc between them.
      for (let done = 0; done < OPS; done += 2000) {
        bad += randomOps(far32, ref32, rnd, 2000);
        watch.sample();
        await new Promise((r) => setImmediate(r));
      }
      t.equal(bad, 0, 'every read saw the last write (main thread)');

      // A worker goes on with the same region and reference while this thread
      // keeps reading /proc: the bound holds while faults are served.
      const worker = new Worker(new URL('./pager-worker.js', import.meta.url), {
        workerData: { id: far.id, ref: ref.buffer, seed: 99 + i, ops: OPS },
      });
      let result: { bad: number } | undefined;
      const ended = new Promise<void>((resolve, reject) => {
        worker.on('message', (m: { bad: number }) => (result = m));
        worker.on('error', reject);
        worker.on('exit', () => resolve());
      });
      let running = true;
      void ended.then(() => (running = false));
      while (running) {
        watch.sample();
        await new Promise((r) => setTimeout(r, 5));
      }
      await ended;
      t.same(result, { bad: 0 }, 'every read saw the last write (worker thread)');

      const mid = far.stats();
      t.ok(watch.samples > 10, `the bound was sampled (${watch.samples} times)`);
      t.ok(
        watch.worst <= LOCAL + RSS_WALK_SLACK,
        `Rss of the region stayed within ${LOCAL / MB} MiB, as smaps can tell (worst ${watch.worst} bytes)`,
      );
      t.ok(watch.worstUsed <= LOCAL, 'frames held (resident + fetching + staged) stayed within the bound');
      t.ok(mid.evictions > 0 && mid.writeBacks > 0 && mid.cleanDrops > 0, 'pages were evicted, written back, dropped');
      if (mode === 'sync') t.ok(mid.wpFaults > 0, 'first writes were seen as write-protect faults');
      else t.ok(mid.scans > 0 && mid.writtenSeen > 0, 'written pages were found by PAGEMAP_SCAN');

      // Dirty pages went back to the store: every page not resident now
      // is in the store exactly as the reference has it.
      const states = far.pageStates();
      const store8 = backing.bytes();
      let remote = 0;
      let wrong = 0;
      for (let p = 0; p < states.length; p++) {
        if (states[p] !== 0) continue;
        remote++;
        const off = p * PAGE;
        if (Buffer.compare(store8.subarray(off, off + PAGE), ref.subarray(off, off + PAGE)) !== 0) wrong++;
      }
      t.ok(remote > states.length / 2, `most pages are remote (${remote})`);
      t.equal(wrong, 0, 'the store holds the last write of every remote page');

      // Whole-region comparison (a sequential pass: the prefetcher helps).
      t.same(differingPages(far.bytes(), ref), [], 'the region reads back as the reference');
      t.ok(
        residentBytes(far.address, far.size) <= LOCAL + RSS_WALK_SLACK,
        'still within the bound after the full pass',
      );
      const s = far.stats();
      t.equal(s.poisoned + s.fetchErrors + s.storeErrors, 0, 'no source errors');
      t.same(errors, [], 'no error events');
      t.ok((s.faultLatency.count ?? 0) > 0 && s.faultLatency.p99Ns >= s.faultLatency.p50Ns, 'fault latency recorded');
    },
  );
}

for (const config of CONFIGS)
  void t.test(`a read-only workload drops clean pages without writing them back (${label(config)})`, async (t) => {
    t.setTimeout(120_000);
    const size = 32 * MB;
    const { backing, source, ref } = store(size);
    const far = FarRegion.create(size, { localBytes: 2 * MB, source, ...config });
    t.teardown(() => {
      far.close();
      source.close();
      backing.close();
    });
    const rnd = xorshift(5);
    const far32 = new Uint32Array(far.buffer);
    const ref32 = new Uint32Array(ref.buffer);
    let bad = 0;
    for (let i = 0; i < 20_000; i++) {
      const w = rnd() % far32.length;
      if (far32[w] !== ref32[w]) bad++;
    }
    t.equal(bad, 0);
    await touch(far.region); // and natively, from another thread
    far.close(); // the final counters are exact (live ones may lag an eviction in flight)
    const s = far.stats();
    t.ok(s.evictions > 0, `evictions: ${s.evictions}`);
    t.equal(s.cleanDrops, s.evictions, 'every eviction was a clean drop');
    t.equal(s.raceCatches, 0, 'no page read as changed');
    t.equal(s.writeBacks, 0, 'nothing was written back');
    t.equal(s.bytesOut, 0);
    t.same(differingPages(backing.bytes(), ref), [], 'the store is untouched');
  });

void t.test('dirty pages are written back: every page dirtied, evicted and faulted again, twice', async (t) => {
  t.setTimeout(120_000);
  for (const config of CONFIGS) {
    const mode = label(config);
    const size = 16 * MB;
    const { backing, source, ref } = store(size);
    const far = FarRegion.create(size, { localBytes: 1 * MB, source, ...config, prefetch: false });
    // Write one word in every page, twice over: every page gets dirty, is
    // evicted (written back) and faulted again.
    const far32 = new Uint32Array(far.buffer);
    const ref32 = new Uint32Array(ref.buffer);
    for (let round = 0; round < 2; round++) {
      for (let p = 0; p < size / PAGE; p++) {
        const w = (p * PAGE) / 4 + ((p * 7 + round) % 1024);
        far32[w] = ref32[w] = (p * 2654435761 + round) >>> 0;
      }
    }
    // Wait for the write-backs in flight (pages staged), then every page is resident or in the store.
    await until(() => !far.pageStates().includes(3), 10_000, 'staged pages written back');
    const s = far.stats();
    const states = far.pageStates();
    const remote = states.filter((x) => x === 0).length;
    t.ok(s.writeBacks >= remote, `${mode}: written back ${s.writeBacks} (${remote} pages remote)`);
    const store8 = backing.bytes();
    const wrong = differingPages(store8, ref).filter((p) => states[p] === 0);
    t.same(wrong, [], `${mode}: the store holds every evicted page's writes`);
    t.same(differingPages(far.bytes(), ref), [], `${mode}: the region reads back right`);
    far.close();
    source.close();
    backing.close();
  }
});

void t.test('writeBackResident: the resident pages written back and dropped while the program writes on', async (t) => {
  t.setTimeout(120_000);
  for (const config of CONFIGS) {
    const mode = label(config);
    const size = 16 * MB;
    const { backing, source, ref } = store(size);
    const far = FarRegion.create(size, { localBytes: 4 * MB, source, ...config, prefetch: false });
    const far32 = new Uint32Array(far.buffer);
    const ref32 = new Uint32Array(ref.buffer);
    const write = (p: number, v: number) => {
      const w = (p * PAGE) / 4 + (p % 1024);
      far32[w] = ref32[w] = v >>> 0;
    };
    // Its first 4 MiB written: every local frame holds a dirty page.
    for (let p = 0; p < (4 * MB) / PAGE; p++) write(p, p * 2654435761);
    const resident = far.stats().residentPages;
    const wb0 = far.stats().writeBacks;
    await far.writeBackResident();
    t.equal(far.stats().residentPages, 0, `${mode}: nothing faulted meanwhile, nothing resident (${resident} were)`);
    t.ok(far.stats().writeBacks - wb0 >= resident, `${mode}: each dirty page written back`);
    t.notOk(far.pageStates().includes(3), `${mode}: no write-back left in flight`);
    t.same(differingPages(backing.bytes(), ref), [], `${mode}: the store holds every write`);

    // Again, while this thread writes on (the flush runs off-thread): it returns, every byte right.
    for (let p = 0; p < (4 * MB) / PAGE; p++) write(p, p * 40503);
    const flushed = far.writeBackResident();
    let done = false;
    void flushed.then(() => (done = true));
    let round = 0;
    while (!done) {
      for (let p = 0; p < 64; p++) write((round * 64 + p) % (size / PAGE), round * 7 + p);
      round++;
      await new Promise((r) => setImmediate(r));
    }
    await flushed;
    t.ok(round > 0, `${mode}: ${round} rounds of writes ran beside it`);
    await until(() => !far.pageStates().includes(3), 10_000, 'staged pages written back');
    const states = far.pageStates();
    t.same(
      differingPages(backing.bytes(), ref).filter((p) => states[p] === 0),
      [],
      `${mode}: the store holds every remote page's writes`,
    );
    t.same(differingPages(far.bytes(), ref), [], `${mode}: the region reads back right`);
    far.close();
    source.close();
    backing.close();
  }
});

void t.test('sequential and strided scans prefetch; a random workload barely does', async (t) => {
  t.setTimeout(120_000);
  const size = 64 * MB;
  const { backing, source, ref } = store(size);
  t.teardown(() => {
    source.close();
    backing.close();
  });
  const pages = size / PAGE;
  const scan = (stride: number): ReturnType<FarRegion['stats']> => {
    const far = FarRegion.create(size, { localBytes: 4 * MB, source });
    const v = far.bytes();
    let bad = 0;
    for (let p = 0; p < pages; p += stride) if (v[p * PAGE + 1] !== ref[p * PAGE + 1]) bad++;
    t.equal(bad, 0, `stride ${stride}: read right`);
    const s = far.stats();
    far.close();
    return s;
  };
  const seq = scan(1);
  t.ok(seq.prefetched > pages / 2, `sequential: ${seq.prefetched} of ${pages} pages prefetched`);
  t.ok(seq.faults < pages / 4, `sequential: ${seq.faults} faults for ${pages} pages`);
  t.ok(seq.prefetchHits > seq.prefetched * 0.9, `sequential: hits ${seq.prefetchHits}, waste ${seq.prefetchWaste}`);
  const strided = scan(3);
  t.ok(strided.prefetched > pages / 3 / 2, `stride 3: ${strided.prefetched} prefetched`);
  t.ok(strided.prefetchHits > strided.prefetched * 0.9, `stride 3: hits ${strided.prefetchHits}`);

  const far = FarRegion.create(size, { localBytes: 4 * MB, source });
  const rnd = xorshift(3);
  const v = far.bytes();
  let bad = 0;
  for (let i = 0; i < 20_000; i++) {
    const off = rnd() % size;
    if (v[off] !== ref[off]) bad++;
  }
  t.equal(bad, 0);
  const r = far.stats();
  far.close();
  t.ok(r.prefetched <= r.faults / 20, `random: ${r.prefetched} prefetched over ${r.faults} faults`);
  t.ok(r.prefetchWaste <= r.faults / 20, `random: waste ${r.prefetchWaste}`);
});

const POISON = Userfaultfd.probe().features.has('POISON');
void t.test(
  'a source that fails: the page is poisoned and an error reported, never zeros',
  { skip: !POISON && 'no userfaultfd POISON: see pager-copy.test' },
  async (t) => {
    t.setTimeout(60_000);
    const size = 4 * MB;
    const path = `/dev/shm/sos-far-wronly-${process.pid}`;
    fs.writeFileSync(path, Buffer.alloc(size, 7));
    const wfd = fs.openSync(path, 'w'); // write-only: every pread fails with EBADF
    const source = PageSource.fromFile(wfd, { size });
    fs.closeSync(wfd);
    const far = FarRegion.create(size, { localBytes: FarRegion.MIN_LOCAL_BYTES, source, fetchFailure: 'poison' });
    const sink = `/dev/shm/sos-far-sink-${process.pid}`;
    const nul = fs.openSync(sink, 'w'); // a file: write(2) must read the page (/dev/null would not)
    t.teardown(() => {
      fs.closeSync(nul);
      fs.unlinkSync(sink);
      far.close();
      source.close();
      fs.unlinkSync(path);
    });
    const errors: (Error & { address?: number; code?: string; syscall?: string })[] = [];
    far.on('error', (e) => errors.push(e));
    // A kernel-mode access (write(2) from the page) gets EFAULT where a user
    // access would get SIGBUS.
    t.throws(() => fs.writeSync(nul, far.bytes(PAGE, PAGE)), { code: 'EFAULT' }, 'the poisoned page cannot be read');
    await until(() => errors.length > 0, 10_000, 'the error event');
    t.match(errors[0], { code: 'EBADF', syscall: 'source.fetch', address: far.address + PAGE });
    const s = far.stats();
    t.equal(s.poisoned, 1);
    t.ok(s.fetchErrors >= 3, 'retried before poisoning');
  },
);

void t.test('misuse gives typed errors; close frees everything', async (t) => {
  const size = 8 * MB;
  const { backing, source } = store(size);
  t.teardown(() => {
    source.close();
    backing.close();
  });
  t.throws(() => FarRegion.create(size, { localBytes: FarRegion.MIN_LOCAL_BYTES - PAGE, source }), RangeError);
  t.throws(() => FarRegion.create(size, { localBytes: size + PAGE, source }), RangeError);
  t.throws(() => FarRegion.create(size, { localBytes: 1 * MB + 1, source }), RangeError);
  t.throws(() => FarRegion.create(size + 1, { localBytes: 1 * MB, source }), RangeError);
  t.throws(() => FarRegion.create(size, { localBytes: 1 * MB, source: {} as PageSource }), TypeError);
  t.throws(
    () => FarRegion.create(size, { localBytes: 1 * MB, source, dirtyTracking: 'never' as DirtyTracking }),
    TypeError,
  );
  const bad = (o: Partial<FarRegionOptions>) => FarRegion.create(size, { localBytes: 1 * MB, source, ...o });
  t.throws(() => bad({ eviction: 'swap' as 'copy' }), TypeError);
  t.throws(() => bad({ fetchFailure: 'ignore' as 'wait' }), TypeError);
  t.throws(() => bad({ eviction: 'copy', dirtyTracking: 'async' }), TypeError, 'copy eviction needs sync tracking');
  if (!Userfaultfd.probe().features.has('MOVE'))
    t.throws(() => bad({ eviction: 'move' }), { code: 'ERR_UNSUPPORTED' }, 'no MOVE here');
  if (!POISON) t.throws(() => bad({ fetchFailure: 'poison' }), { code: 'ERR_UNSUPPORTED' }, 'no POISON here');
  const closed = PageSource.fromFile(backing.fd, { size });
  closed.close();
  t.throws(() => FarRegion.create(size, { localBytes: 1 * MB, source: closed }), { code: 'ERR_CLOSED' });

  const fdsBefore = userfaultfds().length;
  const tasksBefore = fs.readdirSync('/proc/self/task').length;
  const far = FarRegion.create(size, { localBytes: size, source }); // 100% local: never evicts
  t.equal(userfaultfds().length, fdsBefore + 1);
  await touch(far.region, { write: true });
  const address = far.address;
  t.equal(residentBytes(address, size), size, 'all resident at 100% local');
  t.equal(far.stats().evictions, 0);
  far.close();
  far.close(); // idempotent
  t.ok(far.closed);
  t.equal(far.stats().pagesFetched, size / PAGE, 'final counters stay readable');
  t.throws(() => far.bytes(), StateError);
  t.throws(() => far.buffer, { code: 'ERR_CLOSED' });
  t.throws(() => far.pageStates(), { code: 'ERR_CLOSED' });
  t.equal(userfaultfds().length, fdsBefore, 'its userfaultfd is closed');
  t.ok(far.region.closed, 'its region is closed');
  t.equal(residentBytes(address, size), 0, 'its memory is unmapped');
  t.equal(fs.readdirSync('/proc/self/task').length, tasksBefore, 'its threads are gone');
  {
    using d = FarRegion.create(size, { localBytes: 1 * MB, source });
    d.bytes()[0] = 1;
  }
});
