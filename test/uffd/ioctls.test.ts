// Every userfaultfd ioctl against the real kernel: opening (syscall and
// /dev/userfaultfd, with each option), the UFFDIO_API handshake,
// registration per mode and memory type, and each resolving ioctl (COPY,
// ZEROPAGE, CONTINUE, WRITEPROTECT, MOVE, POISON, WAKE), with faults raised
// by native threads (touch), worker threads and a child process.
import t, { type Test } from 'tap';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { FaultEngine, PageSource, Region, SystemError, Userfaultfd, touch } from '../../lib/index.js';
import { FEATURES, type Feature, type PageFaultEvent } from '../../lib/uffd/index.js';
import { JobWorker } from '../helpers/job-worker.js';
import { allZero, fillPattern, firstMismatch, patternPage, patternPages } from '../helpers/pattern.js';
import { ServedChild } from '../helpers/served-child.js';
import { PAGE, pagemap, sleepsInUserfault, until, userfaultfds, within } from '../../testkit/wait.js';

const O_NONBLOCK = 0o4000;
const O_CLOEXEC = 0o2000000;
const UFFD_FEATURE_INITIALIZED = 1n << 31n;

function fdinfo(fd: number): { flags: number; features: bigint } {
  const text = fs.readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8');
  const flags = parseInt(/^flags:\s+([0-7]+)$/m.exec(text)![1], 8);
  const api = /^API:\s+([0-9a-f]+):([0-9a-f]+):([0-9a-f]+)$/m.exec(text)!;
  return { flags, features: BigInt('0x' + api[2]) & ~UFFD_FEATURE_INITIALIZED };
}

/** Feature bits as the kernel's ABI numbers them. */
function bits(features: Iterable<Feature>): bigint {
  let b = 0n;
  for (const f of features) b |= 1n << BigInt(FEATURES[f]);
  return b;
}

/** Pattern page `page` of `seed` whose first byte was overwritten with `first` (touch({ write: true }) does that). */
function writtenPage(page: number, seed: number, first: number): Buffer {
  const b = patternPage(page, seed);
  b[0] = first;
  return b;
}

/** Sum of the first byte of each page that touch() reads, for pattern pages [first, first+count). */
function touchSum(first: number, count: number, seed: number): number {
  let s = 0;
  for (let i = first; i < first + count; i++) s += patternPage(i, seed)[0];
  return s;
}

void t.test('open via userfaultfd(2) and /dev/userfaultfd: fd flags follow closeOnExec and nonBlocking', async (t) => {
  const before = userfaultfds().length;
  for (const via of ['syscall', 'dev'] as const) {
    for (const closeOnExec of [true, false]) {
      for (const nonBlocking of [true, false]) {
        const what = `${via} closeOnExec=${closeOnExec} nonBlocking=${nonBlocking}`;
        const u = Userfaultfd.open({ via, closeOnExec, nonBlocking });
        t.equal(fs.readlinkSync(`/proc/self/fd/${u.fd}`), 'anon_inode:[userfaultfd]', `${what}: a userfaultfd`);
        const { flags, features } = fdinfo(u.fd);
        t.equal((flags & O_CLOEXEC) !== 0, closeOnExec, `${what}: O_CLOEXEC`);
        t.equal((flags & O_NONBLOCK) !== 0, nonBlocking, `${what}: O_NONBLOCK`);
        t.equal(features, bits(u.features), `${what}: the kernel has exactly the features the handle reports`);
        // What exec does with it: a program started now sees the fd or not.
        let inherited: string;
        try {
          inherited = execFileSync('/bin/readlink', [`/proc/self/fd/${u.fd}`], { stdio: ['ignore', 'pipe', 'ignore'] })
            .toString()
            .trim();
        } catch {
          inherited = 'absent';
        }
        t.equal(inherited, closeOnExec ? 'absent' : 'anon_inode:[userfaultfd]', `${what}: across exec`);
        u.close();
        t.ok(u.closed);
      }
    }
  }
  t.equal(userfaultfds().length, before, 'every fd was closed');
});

// (Event delivery polls the fd through libuv, which switches the shared file
// description to O_NONBLOCK itself; reads never block either way.)
void t.test('a blocking userfaultfd (nonBlocking: false) still delivers and resolves faults', async (t) => {
  t.setTimeout(20_000);
  for (const via of ['syscall', 'dev'] as const) {
    using u = Userfaultfd.open({ via, nonBlocking: false });
    const r = Region.anonymous(8 * PAGE);
    u.register(r);
    u.on('pagefault', (ev) =>
      u.copy({ region: r, offset: ev.offset!, length: PAGE }, patternPage(ev.offset! / PAGE, 1)),
    );
    const res = await within(touch(r), 10_000, 'touch');
    t.equal(res.byteSum, touchSum(0, 8, 1), `${via}: served`);
    u.close();
    t.equal(firstMismatch(r.bytes(), 1), -1);
    r.close();
  }
});

void t.test('userModeOnly: kernel-mode accesses fail with EFAULT, user-mode faults are delivered', async (t) => {
  t.setTimeout(30_000);
  for (const via of ['syscall', 'dev'] as const) {
    for (const userModeOnly of [true, false]) {
      using u = Userfaultfd.open({ via, userModeOnly });
      const r = Region.anonymous(4 * PAGE);
      u.register(r);
      const faults: number[] = [];
      u.on('pagefault', (ev) => {
        faults.push(ev.offset!);
        u.copy({ region: r, offset: ev.offset!, length: PAGE }, patternPage(ev.offset! / PAGE, 2));
      });
      // write(2) from a page of r: the kernel copies from user memory.
      const wrote = await JobWorker.run<number | string>({ op: 'syscall-write', id: r.id, offset: 0 });
      // A plain load in a worker: a user-mode fault.
      const page1 = await JobWorker.run<Uint8Array>({ op: 'read', id: r.id, offset: PAGE, length: PAGE });
      const what = `${via} userModeOnly=${userModeOnly}`;
      if (userModeOnly) {
        t.equal(wrote, 'EFAULT', `${what}: write(2) from a missing page fails`);
        t.same(faults, [PAGE], `${what}: only the user-mode fault reached the handler`);
      } else {
        t.equal(wrote, PAGE, `${what}: write(2) waited for the page`);
        t.same(faults, [0, PAGE], `${what}: both faults reached the handler`);
      }
      t.equal(firstMismatch(page1, 2, 1), -1, `${what}: the worker read the page served`);
      u.close();
      r.close();
    }
  }
});

void t.test('api(): the handshake negotiates exactly the features asked for, reports all the kernel has', async (t) => {
  const probe = Userfaultfd.probe();
  for (const via of ['syscall', 'dev'] as const) {
    using u = Userfaultfd.open({ via, handshake: false });
    t.throws(() => u.register(Region.anonymous(PAGE)), { code: 'ERR_NO_API' }, 'nothing works before the handshake');
    const want: Feature[] = ['THREAD_ID', 'EVENT_REMOVE', 'PAGEFAULT_FLAG_WP', 'MOVE'];
    const r = u.api(want);
    t.same([...r.features].sort(), [...want].sort(), `${via}: features in force are the ones asked for`);
    t.same([...u.features].sort(), [...want].sort(), `${via}: and the handle reports them`);
    t.equal(fdinfo(u.fd).features, bits(want), `${via}: and so does the kernel (fdinfo)`);
    t.same([...r.available].sort(), [...probe.features].sort(), `${via}: available = everything the kernel offers`);
    for (const f of want) t.ok(r.available.has(f));
    t.ok(r.available.size > r.features.size, 'more is available than negotiated');
    t.same([...r.ioctls].sort(), ['API', 'REGISTER', 'UNREGISTER'], `${via}: the fd-level ioctls`);
    t.same([...u.ioctls].sort(), ['API', 'REGISTER', 'UNREGISTER']);
    t.throws(() => u.api([]), { code: 'ERR_API_DONE' }, 'the handshake happens once');
    u.close();
  }
  // The kernel has everything this library knows of (6.18): 'all' negotiates it all but
  // EVENT_FORK, which a userfaultfd of this process refuses (it would block our own forks).
  const all = Userfaultfd.open({ features: 'all' });
  t.same([...all.features].sort(), [...probe.features].filter((f) => f !== 'EVENT_FORK').sort());
  t.throws(() => Userfaultfd.open({ features: ['EVENT_FORK'] }), { code: 'ERR_DEADLOCK' });
  t.equal(fdinfo(all.fd).features, bits(all.features));
  all.close();
  const none = Userfaultfd.open({ features: [] });
  t.equal(none.features.size, 0);
  t.equal(fdinfo(none.fd).features, 0n);
  none.close();
});

void t.test('register(): the ioctls allowed follow the mode and the memory type', async (t) => {
  using u = Userfaultfd.open({ features: ['THREAD_ID', 'PAGEFAULT_FLAG_WP', 'MINOR_SHMEM', 'MOVE', 'POISON'] });
  const anon = Region.anonymous(4 * PAGE);
  const shm = Region.memfd(4 * PAGE);
  const base = ['COPY', 'MOVE', 'POISON', 'WAKE', 'ZEROPAGE'];
  const cases: [Region, { missing?: boolean; wp?: boolean; minor?: boolean }, string[]][] = [
    [anon, { missing: true }, base],
    [anon, { wp: true }, [...base, 'WRITEPROTECT']],
    [anon, { missing: true, wp: true }, [...base, 'WRITEPROTECT']],
    [shm, { missing: true }, base],
    [shm, { minor: true }, [...base, 'CONTINUE']],
    [shm, { minor: true, wp: true }, [...base, 'CONTINUE', 'WRITEPROTECT']],
    [shm, { missing: true, minor: true, wp: true }, [...base, 'CONTINUE', 'WRITEPROTECT']],
  ];
  for (const [r, modes, want] of cases) {
    const got = u.register(r, modes);
    t.same([...got].sort(), [...want].sort(), `${r.kind} ${JSON.stringify(modes)}`);
    t.ok(r.info().registered);
    t.throws(() => r.buffer, { code: 'ERR_DEADLOCK' }, 'this thread serves it: no view here');
    u.unregister(r);
    t.notOk(r.info().registered);
    t.equal(r.bytes().length, r.size, 'unregistered: a view again');
  }
  t.throws(
    () => u.register(anon, { minor: true }),
    { code: 'EINVAL', syscall: 'ioctl(UFFDIO_REGISTER)' },
    'MINOR needs shmem or hugetlb',
  );
  u.register({ region: anon, offset: PAGE, length: 2 * PAGE });
  t.throws(() => Userfaultfd.open().register(anon), { code: 'EBUSY' }, 'one userfaultfd per range');
  u.unregister({ region: anon, offset: PAGE, length: 2 * PAGE });
  anon.close();
  shm.close();
});

void t.test('copy: faults from native threads and a worker get exactly the bytes given', async (t) => {
  t.setTimeout(20_000);
  using u = Userfaultfd.open();
  const pages = 32;
  const r = Region.anonymous(pages * PAGE);
  const src = Region.anonymous(pages * PAGE);
  fillPattern(src.bytes(), 3);
  u.register(r);
  const faults: PageFaultEvent[] = [];
  u.on('pagefault', (ev) => {
    faults.push(ev);
    const page = { region: r, offset: ev.offset!, length: PAGE };
    // Even pages from JS memory, odd pages straight from another region.
    const n =
      (ev.offset! / PAGE) % 2 === 0
        ? u.copy(page, patternPage(ev.offset! / PAGE, 3))
        : u.copy(page, { region: src, offset: ev.offset!, length: PAGE });
    t.equal(n, PAGE);
  });
  const res = await within(touch(r, { length: 16 * PAGE, threads: 2 }), 10_000, 'touch');
  t.equal(res.pages, 16);
  t.equal(res.byteSum, touchSum(0, 16, 3));
  const tail = await JobWorker.run<Uint8Array>({ op: 'read', id: r.id, offset: 16 * PAGE });
  t.equal(firstMismatch(tail, 3, 16), -1, 'the worker read pages 16..31 as copied');
  t.equal(faults.length, pages, 'one fault per page');
  t.equal(new Set(faults.map((f) => f.offset)).size, pages, 'each page once');
  t.ok(faults.every((f) => f.kind === 'missing' && !f.write && f.region === r && f.tid > 0 && f.tid !== process.pid));
  t.equal(new Set(faults.map((f) => f.tid)).size, 3, 'two touch threads and the worker');
  // Copying over a page that is there fails with EEXIST and copies nothing.
  const err = t.throws(() => u.copy({ region: r, offset: 0, length: PAGE }, Buffer.alloc(PAGE)), {
    code: 'EEXIST',
  }) as SystemError;
  t.equal(err.bytes, 0);
  t.ok(err instanceof SystemError);
  u.unregister(r);
  t.equal(firstMismatch(r.bytes(), 3), -1, 'every page holds what was copied');
  r.close();
  src.close();
});

void t.test('copy with wp: true maps the page write-protected: a write raises a WP fault', async (t) => {
  t.setTimeout(20_000);
  using u = Userfaultfd.open({ features: ['THREAD_ID', 'PAGEFAULT_FLAG_WP'] });
  const r = Region.anonymous(8 * PAGE);
  u.register(r, { missing: true, wp: true });
  const faults: PageFaultEvent[] = [];
  u.on('pagefault', (ev) => {
    faults.push(ev);
    const page = { region: r, offset: ev.offset!, length: PAGE };
    if (ev.kind === 'missing') u.copy(page, patternPage(ev.offset! / PAGE, 4), { wp: true });
    else u.writeprotect(page, false);
  });
  const read = await within(touch(r), 10_000, 'read touch');
  t.equal(read.byteSum, touchSum(0, 8, 4));
  t.same(
    faults.map((f) => f.kind),
    Array(8).fill('missing'),
    'reads: missing faults only',
  );
  t.ok(
    pagemap(r.address, 8).every((p) => p.present && p.uffdWp),
    'pages arrived present and write-protected',
  );
  faults.length = 0;
  await within(touch(r, { write: true }), 10_000, 'write touch');
  t.same(
    faults.map((f) => [f.kind, f.write, f.offset]),
    Array.from({ length: 8 }, (_, i) => ['wp', true, i * PAGE]),
    'writes: one WP fault per page',
  );
  t.ok(
    pagemap(r.address, 8).every((p) => p.present && !p.uffdWp),
    'unprotected',
  );
  faults.length = 0;
  await within(touch(r, { write: true }), 10_000, 'write touch');
  t.equal(faults.length, 0, 'no more faults once unprotected');
  u.unregister(r);
  const b = r.bytes();
  for (let i = 0; i < 8; i++)
    t.ok(
      writtenPage(i, 4, i).equals(b.subarray(i * PAGE, (i + 1) * PAGE)),
      `page ${i}: the write landed, the rest as copied`,
    );
  r.close();
});

void t.test('copy with dontWake leaves the faulting thread asleep until wake()', async (t) => {
  t.setTimeout(20_000);
  using u = Userfaultfd.open({ features: ['THREAD_ID'] });
  const r = Region.anonymous(4 * PAGE);
  u.register(r);
  let settled = false;
  const done = touch(r).then((res) => {
    settled = true;
    return res;
  });
  const ev = await new Promise<PageFaultEvent>((res) => u.once('pagefault', res));
  t.equal(ev.offset, 0);
  // Resolve every page without waking: the thread must stay asleep in the kernel.
  t.equal(u.copy(r, patternPages4(), { dontWake: true }), 4 * PAGE);
  t.ok(
    pagemap(r.address, 4).every((p) => p.present),
    'the pages are mapped',
  );
  await until(() => sleepsInUserfault(ev.tid), 10_000, `thread ${ev.tid} sleeps in handle_userfault`);
  t.ok(sleepsInUserfault(ev.tid), 'after the copy, the faulting thread still sleeps in the fault');
  t.notOk(settled, 'touch has not finished');
  u.wake({ region: r, offset: 0, length: PAGE });
  const res = await within(done, 10_000, 'touch after wake');
  t.equal(res.pages, 4);
  t.equal(res.byteSum, touchSum(0, 4, 5), 'it read what was copied, with no further faults');
  u.close();
  t.equal(firstMismatch(r.bytes(), 5), -1);
  r.close();
});
function patternPages4(): Buffer {
  return Buffer.concat([0, 1, 2, 3].map((i) => patternPage(i, 5)));
}

void t.test('zeropage: one ioctl maps zero pages over the whole range', async (t) => {
  t.setTimeout(20_000);
  using u = Userfaultfd.open();
  const r = Region.anonymous(64 * PAGE);
  u.register(r);
  const faults: PageFaultEvent[] = [];
  u.on('pagefault', (ev) => {
    faults.push(ev);
    t.equal(u.zeropage(r), r.size);
  });
  const res = await within(touch(r), 10_000, 'touch');
  t.equal(res.pages, 64);
  t.equal(res.byteSum, 0);
  t.equal(faults.length, 1, 'the first fault mapped everything');
  t.ok(
    pagemap(r.address, 64).every((p) => p.present),
    'every page is mapped',
  );
  const viaWorker = await JobWorker.run<Uint8Array>({ op: 'read', id: r.id });
  t.ok(allZero(viaWorker));
  t.equal(faults.length, 1);
  t.throws(() => u.zeropage({ region: r, offset: 0, length: PAGE }), { code: 'EEXIST' });
  u.close();
  r.close();
});

void t.test('continue: MINOR faults on a memfd region, pages filled through an alias', async (t) => {
  t.setTimeout(20_000);
  using u = Userfaultfd.open({ features: ['THREAD_ID', 'MINOR_SHMEM'] });
  const r = Region.memfd(32 * PAGE);
  const alias = r.alias();
  // Pages 0..27 are in the page cache (written through the alias); 28..31 are not.
  fillPattern(alias.bytes(0, 28 * PAGE), 6);
  u.register(r, { minor: true });
  const faults: PageFaultEvent[] = [];
  u.on('pagefault', (ev) => {
    faults.push(ev);
    t.equal(u.continue({ region: r, offset: ev.offset!, length: PAGE }), PAGE);
  });
  const res = await within(touch(r, { length: 16 * PAGE, threads: 2 }), 10_000, 'touch');
  t.equal(res.byteSum, touchSum(0, 16, 6), 'native threads read the page cache contents');
  const rest = await JobWorker.run<Uint8Array>({ op: 'read', id: r.id, offset: 16 * PAGE });
  t.equal(firstMismatch(rest.subarray(0, 12 * PAGE), 6, 16), -1, 'the worker read pages 16..27');
  t.ok(allZero(rest.subarray(12 * PAGE)), 'pages not in the page cache are plain shmem zeros');
  t.equal(faults.length, 28, 'a MINOR fault per cached page, none for the others');
  t.ok(faults.every((f) => f.kind === 'minor' && f.region === r));
  // Writes through the registered mapping land in the shared page cache.
  await JobWorker.run({ op: 'write', id: r.id, offset: 3 * PAGE + 10, data: Uint8Array.of(0xee) });
  t.equal(alias.bytes()[3 * PAGE + 10], 0xee, 'the alias sees it');
  t.equal(faults.length, 28, 'no fault: the page was mapped');
  u.close();
  alias.close();
  r.close();
});

void t.test('writeprotect: writes to protected pages raise WP faults until unprotected', async (t) => {
  t.setTimeout(20_000);
  using u = Userfaultfd.open({ features: ['THREAD_ID', 'PAGEFAULT_FLAG_WP'] });
  const r = Region.anonymous(16 * PAGE);
  fillPattern(r.bytes(), 7); // populated before registration
  u.register(r, { wp: true });
  u.writeprotect(r, true);
  t.ok(pagemap(r.address, 16).every((p) => p.present && p.uffdWp));
  const faults: PageFaultEvent[] = [];
  u.on('pagefault', (ev) => {
    faults.push(ev);
    u.writeprotect({ region: r, offset: ev.offset!, length: PAGE }, false);
  });
  const reads = await within(touch(r), 10_000, 'read touch');
  t.equal(reads.byteSum, touchSum(0, 16, 7));
  t.equal(faults.length, 0, 'reads of protected pages do not fault');
  await within(touch(r, { write: true, length: 8 * PAGE }), 10_000, 'write touch');
  t.same(
    faults.map((f) => [f.kind, f.write, f.offset]),
    Array.from({ length: 8 }, (_, i) => ['wp', true, i * PAGE]),
    'native writes: WP faults',
  );
  faults.length = 0;
  // A worker writes pages 8..15.
  await JobWorker.run({ op: 'write', id: r.id, offset: 8 * PAGE, data: Buffer.alloc(8 * PAGE, 0xab) });
  t.equal(faults.length, 8, 'worker writes: one WP fault per page');
  t.ok(faults.every((f) => f.kind === 'wp' && f.write && f.tid !== process.pid));
  t.ok(
    pagemap(r.address, 16).every((p) => !p.uffdWp),
    'everything unprotected now',
  );
  u.unregister(r);
  const b = r.bytes();
  for (let i = 0; i < 8; i++)
    t.ok(
      writtenPage(i, 7, i).equals(b.subarray(i * PAGE, (i + 1) * PAGE)),
      `page ${i}: the native write landed, nothing else changed`,
    );
  t.ok(
    b.subarray(8 * PAGE).every((x) => x === 0xab),
    'worker writes landed',
  );
  r.close();
});

void t.test('writeprotect with WP_ASYNC: the kernel resolves write faults itself (dirty tracking)', async (t) => {
  t.setTimeout(20_000);
  using u = Userfaultfd.open({ features: ['WP_ASYNC', 'WP_UNPOPULATED', 'PAGEFAULT_FLAG_WP'] });
  const r = Region.anonymous(8 * PAGE);
  u.register(r, { wp: true });
  u.writeprotect(r, true);
  t.ok(
    pagemap(r.address, 8).every((p) => p.uffdWp),
    'unpopulated pages carry the WP marker too',
  );
  // Nobody reads the userfaultfd: the writes must complete anyway.
  await within(touch(r, { write: true, offset: 2 * PAGE, length: 3 * PAGE }), 10_000, 'write touch');
  t.same(
    pagemap(r.address, 8).map((p) => p.uffdWp),
    [true, true, false, false, false, true, true, true],
    'written pages lost the marker',
  );
  t.same(u.readPending(), [], 'no events');
  u.close();
  r.close();
});

void t.test('move: pages move from an anonymous region into the registered one', async (t) => {
  t.setTimeout(20_000);
  using u = Userfaultfd.open({ features: ['THREAD_ID', 'MOVE'] });
  const src = Region.anonymous(16 * PAGE);
  const dst = Region.anonymous(16 * PAGE);
  fillPattern(src.bytes(), 8);
  u.register(dst);
  // Move in answer to faults (pages 0..7)...
  const faults: number[] = [];
  u.on('pagefault', (ev) => {
    faults.push(ev.offset!);
    t.equal(
      u.move({ region: dst, offset: ev.offset!, length: PAGE }, { region: src, offset: ev.offset!, length: PAGE }),
      PAGE,
    );
  });
  const res = await within(touch(dst, { length: 8 * PAGE }), 10_000, 'touch');
  t.equal(res.byteSum, touchSum(0, 8, 8));
  t.same(
    faults,
    [0, 1, 2, 3, 4, 5, 6, 7].map((i) => i * PAGE),
  );
  // ...and ahead of any fault (pages 8..15, one ioctl).
  t.equal(
    u.move({ region: dst, offset: 8 * PAGE, length: 8 * PAGE }, { region: src, offset: 8 * PAGE, length: 8 * PAGE }),
    8 * PAGE,
  );
  const rest = await JobWorker.run<Uint8Array>({ op: 'read', id: dst.id, offset: 8 * PAGE });
  t.equal(firstMismatch(rest, 8, 8), -1, 'moved ahead: a worker reads them without faults');
  t.equal(faults.length, 8);
  t.ok(
    pagemap(src.address, 16).every((p) => !p.present),
    'the source pages are gone (not present)',
  );
  t.ok(allZero(src.bytes()), 'and read back as zeros');
  // A hole in the source: ENOENT, unless holes are allowed.
  const hole = Region.anonymous(PAGE);
  const dst2 = Region.anonymous(PAGE);
  u.register(dst2);
  t.throws(() => u.move(dst2, hole), { code: 'ENOENT' });
  t.equal(u.move(dst2, hole, { allowSourceHoles: true }), PAGE);
  t.notOk(pagemap(dst2.address, 1)[0].present, 'nothing was moved into place');
  u.close();
  t.equal(firstMismatch(dst.bytes(), 8), -1, 'the destination holds the source contents');
  for (const x of [src, dst, hole, dst2]) x.close();
});

void t.test('poison: a child process touching a poisoned page dies of SIGBUS', async (t) => {
  t.setTimeout(20_000);
  const child = await ServedChild.start(t, 4 * PAGE, ['THREAD_ID', 'POISON']);
  using u = child.adopt();
  t.same([...u.register(child.range)].sort(), ['COPY', 'MOVE', 'POISON', 'WAKE', 'ZEROPAGE']);
  t.equal(u.poison({ address: child.address + 2 * PAGE, length: PAGE }), PAGE);
  const faults: number[] = [];
  u.on('pagefault', (ev) => {
    const page = (ev.address - child.address) / PAGE;
    faults.push(page);
    t.equal(ev.tid, child.pid, 'the fault is the child process');
    u.copy({ address: ev.address, length: PAGE }, patternPage(page, 9));
  });
  child.write('touch'); // pages 0 and 1 are served, page 2 is poisoned
  const exit = await child.exit();
  t.equal(exit.signal, 'SIGBUS', 'the child died of SIGBUS');
  t.same(faults, [0, 1], 'the poisoned page never reached the handler');
  t.throws(() => u.poison({ address: child.address, length: PAGE }), 'poisoning a dead process fails');
});

const HUGE = 2 << 20;

/**
 * Reserve `pages` more 2 MiB pages for this test (vm.nr_hugepages; given
 * back at teardown, relative to whatever it is then, since other test files
 * may adjust it too). False, with the test planned as skipped, when the
 * kernel refuses.
 */
function reserveHugePages(t: Test, pages: number): boolean {
  const knob = '/proc/sys/vm/nr_hugepages';
  const now = () => Number(fs.readFileSync(knob, 'utf8').trim());
  const free = () => Number(/^HugePages_Free:\s+(\d+)/m.exec(fs.readFileSync('/proc/meminfo', 'utf8'))![1]);
  let added = 0;
  try {
    const before = now();
    fs.writeFileSync(knob, String(before + pages));
    added = now() - before;
  } catch (e) {
    t.plan(0, `cannot reserve huge pages (${(e as Error).message})`);
    return false;
  }
  t.teardown(() => fs.writeFileSync(knob, String(Math.max(0, now() - added))));
  if (free() < pages) {
    t.plan(0, `the kernel granted only ${free()} free huge pages`);
    return false;
  }
  return true;
}

/** Huge page `i` made of pattern pages. */
const hugePattern = (i: number, seed: number) => patternPages(i * (HUGE / PAGE), HUGE / PAGE, seed);

void t.test('hugetlb: MISSING faults on 2 MiB pages resolved with copy', async (t) => {
  t.setTimeout(30_000);
  if (!reserveHugePages(t, 3)) return;
  using u = Userfaultfd.open({ features: ['THREAD_ID', 'MISSING_HUGETLBFS'] });
  const r = Region.anonymous(2 * HUGE, { hugetlb: true });
  t.equal(r.pageSize, HUGE);
  t.same([...u.register(r)].sort(), ['COPY', 'POISON', 'WAKE'], 'hugetlb: no ZEROPAGE, no MOVE');
  const faults: PageFaultEvent[] = [];
  u.on('pagefault', (ev) => {
    faults.push(ev);
    t.equal(ev.offset! % HUGE, 0, 'fault addresses are huge-page aligned');
    t.equal(u.copy({ region: r, offset: ev.offset!, length: HUGE }, hugePattern(ev.offset! / HUGE, 10)), HUGE);
  });
  const res = await within(touch(r, { threads: 2, stride: PAGE }), 20_000, 'touch');
  t.equal(res.pages, (2 * HUGE) / PAGE);
  t.equal(res.byteSum, touchSum(0, (2 * HUGE) / PAGE, 10));
  t.equal(faults.length, 2, 'one fault per huge page');
  t.throws(() => u.zeropage({ region: r, offset: 0, length: HUGE }), { code: 'EINVAL' }, 'no ZEROPAGE on hugetlb');
  u.close();
  t.equal(firstMismatch(r.bytes(), 10), -1);
  r.close();
});

void t.test('hugetlb: MINOR faults on a hugetlb memfd resolved with continue', async (t) => {
  t.setTimeout(30_000);
  if (!reserveHugePages(t, 2)) return;
  using u = Userfaultfd.open({ features: ['THREAD_ID', 'MINOR_HUGETLBFS'] });
  const r = Region.memfd(2 * HUGE, { hugetlb: true });
  const alias = r.alias();
  fillPattern(alias.bytes(), 11);
  t.same([...u.register(r, { minor: true })].sort(), ['CONTINUE', 'COPY', 'POISON', 'WAKE']);
  const faults: PageFaultEvent[] = [];
  u.on('pagefault', (ev) => {
    faults.push(ev);
    t.equal(u.continue({ region: r, offset: ev.offset!, length: HUGE }), HUGE);
  });
  const res = await within(touch(r, { stride: PAGE }), 20_000, 'touch');
  t.equal(res.byteSum, touchSum(0, (2 * HUGE) / PAGE, 11));
  t.same(
    faults.map((f) => [f.kind, f.offset]),
    [
      ['minor', 0],
      ['minor', HUGE],
    ],
  );
  u.close();
  alias.close();
  r.close();
});

void t.test('hugetlb: a FaultEngine serves 2 MiB pages from a region', async (t) => {
  t.setTimeout(30_000);
  if (!reserveHugePages(t, 2)) return;
  const u = Userfaultfd.open();
  const r = Region.anonymous(2 * HUGE, { hugetlb: true });
  const src = Region.anonymous(2 * HUGE);
  fillPattern(src.bytes(), 12);
  u.register(r);
  const engine = new FaultEngine(u).serve(r, PageSource.fromRegion(src));
  t.teardown(() => {
    engine.close();
    u.close();
    r.close();
    src.close();
  });
  engine.start();
  const res = await within(touch(r, { stride: PAGE, threads: 2 }), 20_000, 'touch');
  t.equal(res.byteSum, touchSum(0, (2 * HUGE) / PAGE, 12));
  const s = engine.stop();
  t.equal(s.pages, 2, 'two huge pages');
  t.equal(s.bytes, 2 * HUGE);
  t.equal(s.errors, 0);
});

void t.test('hugetlb: a FaultEngine zero-fills a fault in a range it does not serve', async (t) => {
  t.setTimeout(30_000);
  if (!reserveHugePages(t, 1)) return;
  const u = Userfaultfd.open();
  const r = Region.anonymous(HUGE, { hugetlb: true });
  u.register(r);
  const engine = new FaultEngine(u);
  t.teardown(() => {
    engine.close();
    u.close();
    r.close();
  });
  const unserved: number[] = [];
  let errors = 0;
  engine.on('unserved', (e) => unserved.push(e.address));
  engine.on('error', () => errors++);
  engine.start();
  const res = await within(touch(r, { stride: PAGE }), 10_000, 'touch of an unserved huge page');
  t.equal(res.byteSum, 0, 'zeros');
  t.same(unserved, [r.address], "one 'unserved' for the huge page");
  t.equal(errors, 0);
});

void t.test('hugetlb: the alias of a hugetlb memfd region has its page size', async (t) => {
  if (!reserveHugePages(t, 1)) return;
  const r = Region.memfd(HUGE, { hugetlb: true });
  const alias = r.alias();
  t.equal(alias.pageSize, HUGE);
  t.equal(alias.info().hugetlb, true);
  alias.close();
  r.close();
});
