// Every userfaultfd operation against the real kernel, faults raised by
// native threads (touch) while this thread serves them.
import t from 'tap';
import { FaultEngine, PageSource, Region, Userfaultfd, touch } from '../../lib/index.js';
import type { PageFaultEvent, UffdEvent } from '../../lib/uffd/index.js';

const PAGE = 4096;
const next = <T>(u: Userfaultfd, name: 'pagefault' | 'remove' | 'unmap' | 'remap'): Promise<T> =>
  new Promise((res) => u.once(name, (ev: unknown) => res(ev as T)));

void t.test('open via the syscall and via /dev/userfaultfd, with every option', async (t) => {
  for (const via of ['syscall', 'dev'] as const) {
    const u = Userfaultfd.open({ via, closeOnExec: false, nonBlocking: true, userModeOnly: true, features: ['THREAD_ID'] });
    t.ok(u.fd > 2, `${via}: fd`);
    t.same([...u.features], ['THREAD_ID'], `${via}: only the features asked for are in force`);
    t.ok(u.ioctls.has('REGISTER') && u.ioctls.has('API'));
    u.close();
  }
  const raw = Userfaultfd.open({ handshake: false });
  t.throws(() => raw.register(Region.anonymous(PAGE)), { code: 'ERR_NO_API' });
  const r = raw.api(['EVENT_REMOVE', 'MOVE']);
  t.same([...r.features].sort(), ['EVENT_REMOVE', 'MOVE']);
  t.ok(r.available.has('POISON') && r.available.size >= r.features.size, 'and everything the kernel has');
  t.throws(() => raw.api([]), { code: 'ERR_API_DONE' });
  raw.close();
  const all = Userfaultfd.open({ features: 'all' });
  const expected = Userfaultfd.probe().features;
  expected.delete('EVENT_FORK');
  t.same(all.features, expected, "'all' is everything but EVENT_FORK");
  all.close();
  t.throws(() => Userfaultfd.open({ features: ['EVENT_FORK'] }), { code: 'ERR_DEADLOCK' }, 'EVENT_FORK would block our own forks');
});

void t.test('register reports the ioctls allowed per memory type and mode', async (t) => {
  using u = Userfaultfd.open();
  const anon = Region.anonymous(4 * PAGE);
  const shm = Region.memfd(4 * PAGE);
  const a = u.register(anon, { missing: true, wp: true });
  t.ok(a.has('COPY') && a.has('ZEROPAGE') && a.has('WRITEPROTECT') && a.has('WAKE'));
  const s = u.register(shm, { minor: true });
  t.ok(s.has('CONTINUE'));
  u.unregister(anon);
  u.unregister(shm);
  anon.close();
  shm.close();
});

void t.test('copy with dontWake leaves the thread asleep until wake()', async (t) => {
  using u = Userfaultfd.open();
  const r = Region.anonymous(PAGE);
  u.register(r);
  let woke = false;
  u.once('pagefault', () => {
    t.equal(u.copy({ region: r, offset: 0, length: PAGE }, Buffer.alloc(PAGE, 5), { dontWake: true }), PAGE);
    setTimeout(() => {
      t.notOk(woke, 'still asleep after the copy');
      u.wake(r);
    }, 50);
  });
  const res = await touch(r).then((x) => ((woke = true), x));
  t.equal(res.byteSum, 5);
  u.unregister(r);
  r.close();
});

void t.test('zeropage resolves with zeros', async (t) => {
  using u = Userfaultfd.open();
  const r = Region.anonymous(8 * PAGE);
  u.register(r);
  u.on('pagefault', (ev) => u.zeropage({ region: r, offset: ev.offset!, length: PAGE }));
  t.equal((await touch(r, { threads: 2 })).byteSum, 0);
  u.close();
  r.close();
});

void t.test('write-protect: copy with wp, writes raise wp faults, unprotect lets them through', async (t) => {
  using u = Userfaultfd.open({ features: ['THREAD_ID', 'PAGEFAULT_FLAG_WP'] });
  const r = Region.anonymous(4 * PAGE);
  u.register(r, { missing: true, wp: true });
  const faults: PageFaultEvent[] = [];
  u.on('pagefault', (ev) => {
    faults.push(ev);
    if (ev.kind === 'missing') u.copy({ region: r, offset: ev.offset!, length: PAGE }, Buffer.alloc(PAGE, 1), { wp: true });
    else u.writeprotect({ region: r, offset: ev.offset!, length: PAGE }, false);
  });
  await touch(r);  // reads: missing faults, pages arrive write-protected
  t.same(faults.map((f) => f.kind), ['missing', 'missing', 'missing', 'missing']);
  t.ok(faults.every((f) => f.tid > 0 && !f.write && f.region === r));
  faults.length = 0;
  const w = await touch(r, { write: true });
  t.equal(w.pages, 4);
  t.same(faults.map((f) => [f.kind, f.write]), [['wp', true], ['wp', true], ['wp', true], ['wp', true]]);
  faults.length = 0;
  await touch(r, { write: true });
  t.equal(faults.length, 0, 'unprotected pages take writes without faults');
  u.writeprotect(r, true);
  await touch(r, { write: true, length: PAGE });
  t.equal(faults.length, 1, 'protecting again brings the faults back');
  u.close();
  r.close();
});

void t.test('the engine lets write-protect faults through and counts them (dirty tracking)', async (t) => {
  using u = Userfaultfd.open({ features: ['PAGEFAULT_FLAG_WP'] });
  const r = Region.anonymous(16 * PAGE);
  u.register(r, { missing: true, wp: true });
  const e = new FaultEngine(u).serve(r, PageSource.zero()).start();
  await touch(r);
  u.writeprotect(r, true);
  await touch(r, { write: true, stride: 2 * PAGE });  // dirty every other page
  const s = e.stop();
  t.equal(s.wpFaults, 8);
  e.close();
  u.close();
  r.close();
});

void t.test('MINOR faults on shmem: fill through an alias, map with continue', async (t) => {
  using u = Userfaultfd.open({ features: ['MINOR_SHMEM'] });
  const r = Region.memfd(8 * PAGE);
  const alias = r.alias();
  alias.bytes().fill(0x33);  // the page cache has the pages; r's page tables do not
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

void t.test('move: pages move from a source region into a registered one', async (t) => {
  using u = Userfaultfd.open({ features: ['MOVE'] });
  const src = Region.anonymous(4 * PAGE);
  src.bytes().fill(0x44);
  const dst = Region.anonymous(4 * PAGE);
  u.register(dst);
  t.equal(u.move(dst, src), 4 * PAGE);
  u.unregister(dst);
  t.ok(dst.bytes().every((b) => b === 0x44), 'contents arrived');
  t.ok(src.bytes().every((b) => b === 0), 'and left the source (fresh zero pages there now)');
  dst.close();
  src.close();
});

// hugetlb is covered by ioctls.test.ts (which adjusts vm.nr_hugepages relative to its current value).

void t.test('REMOVE, UNMAP and REMAP events from this process, read in JS', async (t) => {
  using u = Userfaultfd.open({ features: ['EVENT_REMOVE', 'EVENT_UNMAP', 'EVENT_REMAP'] });
  const r = Region.anonymous(8 * PAGE);
  u.register(r);
  u.on('pagefault', (ev) => u.zeropage({ region: r, offset: ev.offset!, length: PAGE }));
  await touch(r);
  const base = r.address;
  const removed = next<UffdEvent>(u, 'remove');
  await r.madvise(0, 2 * PAGE, 'dontneed');
  t.same(await removed, { type: 'remove', start: base, end: base + 2 * PAGE });
  const unmapped = next<UffdEvent>(u, 'unmap');
  await r.unmap(7 * PAGE, PAGE);
  t.same(await unmapped, { type: 'unmap', start: base + 7 * PAGE, end: base + 8 * PAGE });
  u.close();
  r.close();

  using u2 = Userfaultfd.open({ features: ['EVENT_REMAP'] });
  const m = Region.anonymous(4 * PAGE);
  u2.register(m);
  const remapped = next<UffdEvent>(u2, 'remap');
  const from = m.address;
  const to = await m.remap(64 * PAGE);
  t.same(await remapped, { type: 'remap', from, to, length: 4 * PAGE });
  t.ok(m.info().registered, 'the registration moved with the memory');
  u2.unregister({ region: m, offset: 0, length: 4 * PAGE });
  m.close();
});

void t.test('the engine follows REMAP and REMOVE and re-emits them', async (t) => {
  using u = Userfaultfd.open({ features: ['EVENT_REMOVE', 'EVENT_REMAP'] });
  const src = Region.anonymous(16 * PAGE);
  const sv = Buffer.from(src.buffer);
  for (let i = 0; i < 16; i++) sv.writeUInt32LE(i + 100, i * PAGE);
  const r = Region.anonymous(16 * PAGE);
  u.register(r);
  const e = new FaultEngine(u, { batchPages: 1 }).serve(r, PageSource.fromRegion(src)).start();
  const seen: string[] = [];
  e.on('remap', () => seen.push('engine:remap'));
  u.on('remap', () => seen.push('uffd:remap'));
  await touch(r, { length: 4 * PAGE });          // pages 0-3 resident
  const to = await r.remap(16 * PAGE * 2);       // grow and (maybe) move
  t.equal(r.address, to);
  const v = Buffer.from(r.buffer);
  t.equal(v.readUInt32LE(2 * PAGE), 102, 'resident page moved');
  t.equal(v.readUInt32LE(9 * PAGE), 109, 'missing page served from the right source offset after the move');
  await r.madvise(0, PAGE, 'dontneed');
  t.equal(Buffer.from(r.buffer).readUInt32LE(0), 0, 'after REMOVE the range reads as zeros');
  await new Promise((res) => setImmediate(res));
  t.same(seen.sort(), ['engine:remap', 'uffd:remap']);
  e.close();
  u.close();
  r.close();
  src.close();
});
