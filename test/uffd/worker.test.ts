// Worker threads and userfaultfd: workers attach regions by id and fault on
// them (served by JS on the main thread, or by an engine); workers that end
// (terminate(), process.exit(), or by themselves) while holding regions,
// userfaultfds, engines and blocked faults release everything without a
// crash; and a JS handler living in a worker serves the main thread's faults.
import t from 'tap';
import fs from 'node:fs';
import { FaultEngine, PageSource, Region, Userfaultfd, touch } from '../../lib/index.js';
import type { PageFaultEvent } from '../../lib/uffd/index.js';
import { JobWorker } from '../helpers/job-worker.js';
import { fillPattern, firstMismatch, patternPage } from '../helpers/pattern.js';
import type { HoldMode } from '../helpers/uffd-worker.js';
import { PAGE, userfaultfds, within } from '../../testkit/wait.js';

const SEED = 61;

void t.test('workers fault on an attached region, a JS handler on the main thread serves', async (t) => {
  t.setTimeout(20_000);
  const pages = 32;
  const r = Region.anonymous(pages * PAGE);
  using u = Userfaultfd.open();
  u.register(r);
  const faults: PageFaultEvent[] = [];
  u.on('pagefault', (ev) => {
    faults.push(ev);
    u.copy({ region: r, offset: ev.offset!, length: PAGE }, patternPage(ev.offset! / PAGE, SEED));
  });
  const written = Buffer.alloc(16 * PAGE, 0x5a);
  const [read, wrote] = await Promise.all([
    JobWorker.run<Uint8Array>({ op: 'read', id: r.id, length: 16 * PAGE }),
    JobWorker.run<number>({ op: 'write', id: r.id, offset: 16 * PAGE, data: written }),
  ]);
  t.equal(firstMismatch(read, SEED), -1, 'the reader saw the pages served');
  t.equal(wrote, 16 * PAGE);
  t.equal(faults.length, pages, 'one fault per page');
  const reads = faults.filter((f) => f.offset! < 16 * PAGE);
  const writes = faults.filter((f) => f.offset! >= 16 * PAGE);
  t.ok(reads.every((f) => !f.write) && writes.every((f) => f.write), 'write faults say so');
  t.equal(new Set(reads.map((f) => f.tid)).size, 1);
  t.equal(new Set(writes.map((f) => f.tid)).size, 1);
  t.not(reads[0].tid, writes[0].tid, 'two worker threads');
  t.ok(faults.every((f) => f.tid !== process.pid && f.region === r));
  t.equal(r.info().handles, 1, "the workers' handles are closed");
  u.unregister(r);
  t.ok(Buffer.from(r.bytes(16 * PAGE)).equals(written), "the workers' writes landed on the served pages");
  r.close();
});

void t.test('workers fault at once, a FaultEngine on the main thread serves', async (t) => {
  t.setTimeout(20_000);
  const pages = 512;
  const src = Region.anonymous(pages * PAGE);
  fillPattern(src.bytes(), SEED);
  const r = Region.anonymous(pages * PAGE);
  const u = Userfaultfd.open();
  u.register(r);
  const engine = new FaultEngine(u, { threads: 2, batchPages: 8 }).serve(r, PageSource.fromRegion(src)).start();
  t.teardown(() => {
    engine.close();
    u.close();
    r.close();
    src.close();
  });
  const quarter = (pages / 4) * PAGE;
  const parts = await Promise.all(
    [0, 1, 2, 3].map((q) => JobWorker.run<Uint8Array>({ op: 'read', id: r.id, offset: q * quarter, length: quarter })),
  );
  parts.forEach((p, q) => t.equal(firstMismatch(p, SEED, (q * quarter) / PAGE), -1, `worker ${q} read its quarter`));
  // With the engine serving, this thread may read the region too.
  t.equal(firstMismatch(r.bytes(), SEED), -1, 'the main thread sees the same');
  const s = engine.stop();
  t.equal(s.pages, pages, 'every page served once');
  t.equal(s.unserved + s.errors, 0);
});

void t.test('a JS handler in a worker serves faults of the main thread', async (t) => {
  t.setTimeout(20_000);
  const pages = 32;
  const r = Region.anonymous(pages * PAGE);
  const w = new JobWorker({ op: 'serve', id: r.id, seed: SEED }, t);
  const { tid } = await w.info<{ ready: boolean; tid: number }>();
  t.ok(r.info().registered, 'the worker registered the region');
  // Native threads of the main thread fault on the first half...
  const res = await within(touch(r, { length: 16 * PAGE, threads: 2 }), 10_000, 'touch');
  let sum = 0;
  for (let i = 0; i < 16; i++) sum += patternPage(i, SEED)[0];
  t.equal(res.byteSum, sum, 'native threads read what the worker served');
  // ...and this JS thread itself on the second half: allowed, since the
  // handler is another thread; this thread blocks in each fault meanwhile.
  const v = r.bytes(16 * PAGE);
  t.equal(firstMismatch(v, SEED, 16), -1, 'the main JS thread read what the worker served');
  w.send('stop');
  const done = await w.done<{ faults: number; tids: number[] }>();
  t.equal(done.faults, pages);
  t.ok(done.tids.includes(process.pid), "the main JS thread's faults reached the worker");
  t.notOk(done.tids.includes(tid), 'the worker itself never faulted');
  t.equal(await within(w.exited, 10_000, 'worker exit'), 0);
  t.notOk(r.info().registered, "the worker's userfaultfd is closed");
  r.close();
});

void t.test('the worker serving the main thread is terminated mid-fault: the faulting thread resumes', async (t) => {
  t.setTimeout(20_000);
  const pages = 16;
  const r = Region.anonymous(pages * PAGE);
  const w = new JobWorker({ op: 'serve', id: r.id, seed: SEED, features: ['THREAD_ID'], limit: 5 }, t);
  await w.info();
  let finished = false;
  const res = touch(r).then((x) => ((finished = true), x));
  const { stuck } = await w.info<{ stuck: number }>();
  t.equal(stuck, 5 * PAGE, 'page 5 is left unresolved');
  t.notOk(finished, 'the touch waits');
  await w.worker.terminate();
  const done = await within(res, 10_000, 'the touch to finish after the handler went away');
  t.equal(done.pages, pages);
  t.notOk(r.info().registered, "the worker's userfaultfd closed with it");
  const b = r.bytes();
  t.equal(firstMismatch(b.subarray(0, 5 * PAGE), SEED), -1, 'pages 0-4 as served');
  t.ok(
    b.subarray(5 * PAGE).every((x) => x === 0),
    'pages 5-15: zero pages, no handler',
  );
  r.close();
});

/** Lines of /proc/self/maps and links of /proc/self/fd that mention `name`. */
function traces(name: string): string[] {
  const out = fs
    .readFileSync('/proc/self/maps', 'utf8')
    .split('\n')
    .filter((l) => l.includes(name));
  for (const fd of fs.readdirSync('/proc/self/fd')) {
    try {
      const l = fs.readlinkSync(`/proc/self/fd/${fd}`);
      if (l.includes(name)) out.push(`fd ${fd} -> ${l}`);
    } catch {
      // the directory's own fd
    }
  }
  return out;
}

const modes: [HoldMode, 'terminate' | 'process.exit' | 'return'][] = [];
for (const mode of [
  'engine',
  'js-handler',
  'unserved',
  'event-pending',
  'shared-registered',
  'shared-source',
] as const) {
  modes.push([mode, 'terminate'], [mode, 'process.exit']);
}
modes.push(['engine', 'return']);

for (const [mode, how] of modes) {
  void t.test(`a worker holding resources (${mode}) ends by ${how}: no crash, all released`, async (t) => {
    t.setTimeout(20_000);
    const shared = Region.anonymous(16 * PAGE);
    shared.bytes()[0] = 0x77;
    const uffdsBefore = userfaultfds().length;
    const name = `sos-worker-${mode}-${how}-${process.pid}`;
    const w = new JobWorker({ op: 'hold', mode, sharedId: shared.id, name }, t);
    const held = await w.info<{ ids: number[]; fds: number[] }>();
    t.ok(traces(name).length >= 2, "the worker's memfd region is mapped and its fd open");
    t.equal(userfaultfds().length, uffdsBefore + held.fds.length, "the worker's userfaultfds are open");
    t.equal(shared.info().handles, 2);
    if (mode === 'shared-registered') t.ok(shared.info().registered);
    if (how === 'terminate') await w.worker.terminate();
    else w.send(how === 'process.exit' ? 'exit' : 'return');
    const code = await within(w.exited, 15_000, 'the worker to exit');
    t.equal(code, how === 'terminate' ? 1 : 0, 'exit code');
    for (const id of held.ids) t.throws(() => Region.attach(id), { code: 'ERR_CLOSED' }, `region ${id} is gone`);
    t.same(traces(name), [], 'its memfd is unmapped and closed');
    t.equal(userfaultfds().length, uffdsBefore, 'its userfaultfds are closed');
    t.equal(shared.info().handles, 1, 'its handle on the shared region is closed');
    t.notOk(shared.info().registered, 'the shared region is no longer registered');
    t.equal(shared.bytes()[0], 0x77, 'the shared memory is intact and readable here');
    const moved = await within(shared.remap(32 * PAGE), 10_000, 'remap');
    t.equal(shared.address, moved, 'nothing of the worker pins it: it can be moved');
    t.equal(shared.bytes()[0], 0x77, 'with its contents');
    shared.close();
  });
}

// The kernel completes an mremap whatever happens to the thread that asked
// for it; the region's bookkeeping (address, size, busy flag) must follow
// even when the worker that asked is torn down before it could run JS again.
void t.test(
  'a worker ends while its remap of a shared region waits for its REMAP event: the region follows the move',
  async (t) => {
    t.setTimeout(20_000);
    const name = `sos-worker-remap-${process.pid}`;
    const shared = Region.memfd(16 * PAGE, { name });
    const alias = shared.alias(); // fill without a view of `shared` here (a view would forbid the move)
    alias.bytes().fill(0x66);
    alias.close();
    const w = new JobWorker({ op: 'hold', mode: 'remap-pending', sharedId: shared.id, name: `${name}-other` }, t);
    await w.info();
    await w.worker.terminate();
    await within(w.exited, 15_000, 'the worker to exit');
    const maps = fs
      .readFileSync('/proc/self/maps', 'utf8')
      .split('\n')
      .filter((l) => l.includes(`/memfd:${name} `));
    t.equal(maps.length, 1, 'one mapping of the region');
    const [start, end] = maps[0]
      .split(' ')[0]
      .split('-')
      .map((x) => parseInt(x, 16));
    t.equal(end - start, 32 * PAGE, 'the kernel moved and grew it');
    t.equal(shared.size, 32 * PAGE, 'the region knows its new size');
    t.equal(shared.address, start, 'and its new address');
    t.equal(shared.bytes()[0], 0x66, 'its contents are readable here');
    shared.close();
    t.same(traces(name), [], 'closing it unmaps it');
  },
);
