// Misuse gives typed errors, never a crash or a hang.
import t from 'tap';
import { FaultEngine, PageSource, Region, SystemError, StateError, Userfaultfd, touch } from '../../lib/index.js';
import { native } from '../../lib/native/index.js';
import fs from 'node:fs';
import { sleepsInUserfault, until } from '../../testkit/wait.js';

const PAGE = 4096;

/** Threads of this process asleep in the kernel's userfaultfd fault handler. */
const inUserfault = () => fs.readdirSync('/proc/self/task').filter((tid) => sleepsInUserfault(Number(tid))).length;

void t.test('wrong argument types and values', async (t) => {
  t.throws(() => Region.anonymous('1' as unknown as number), { code: 'ERR_INVALID_ARG_TYPE', name: 'TypeError' });
  t.throws(() => Region.anonymous(0), { code: 'ERR_OUT_OF_RANGE', name: 'RangeError' });
  t.throws(() => Region.anonymous(PAGE + 1), { code: 'ERR_OUT_OF_RANGE' });
  t.throws(() => Region.anonymous(-PAGE), { code: 'ERR_OUT_OF_RANGE' });
  t.throws(() => Userfaultfd.open({ via: 'socket' as 'dev' }), { code: 'ERR_INVALID_ARG_TYPE' });
  t.throws(() => Userfaultfd.open({ features: ['NOPE'] as unknown as ['MOVE'] }), { code: 'ERR_INVALID_ARG_VALUE' });
  using u = Userfaultfd.open();
  using r = Region.anonymous(4 * PAGE);
  t.throws(() => u.register({} as Region), { code: 'ERR_INVALID_ARG_TYPE' });
  t.throws(() => u.register(r, {}), { code: 'ERR_INVALID_ARG_TYPE' }, 'no mode');
  t.throws(() => u.register({ region: r, offset: 100 }), { code: 'ERR_OUT_OF_RANGE' }, 'unaligned offset');
  t.throws(() => u.register({ region: r, offset: 0, length: 8 * PAGE }), { code: 'ERR_OUT_OF_RANGE' }, 'past the end');
  t.throws(() => u.register({ address: 1, length: PAGE }), { code: 'ERR_OUT_OF_RANGE' });
  t.throws(() => u.copy(r, new Uint8Array(10)), { code: 'ERR_OUT_OF_RANGE' }, 'short source');
  t.throws(() => new FaultEngine({} as Userfaultfd), { code: 'ERR_INVALID_ARG_TYPE' });
  t.throws(() => new FaultEngine(u, { threads: 0 }), { code: 'ERR_OUT_OF_RANGE' });
  t.throws(() => new FaultEngine(u).serve(r, {} as PageSource), { code: 'ERR_INVALID_ARG_TYPE' });
  t.throws(() => touch({} as Region), { code: 'ERR_INVALID_ARG_TYPE' });
  t.throws(() => r.mprotect(0, PAGE, 'x' as 'r'), { code: 'ERR_INVALID_ARG_TYPE' });
  await t.rejects(r.madvise(0, PAGE, 'forget' as 'free'), { code: 'ERR_INVALID_ARG_TYPE' });
});

void t.test('the native layer re-checks everything (no crash when bypassing TypeScript)', async (t) => {
  const N = native as unknown as Record<
    string,
    new (...a: unknown[]) => Record<string, (...a: unknown[]) => unknown>
  > & {
    touch: (...a: unknown[]) => unknown;
  };
  t.throws(() => new N.NativeRegion(123));
  t.throws(() => new N.NativeRegion({ kind: 'anonymous', size: 3 }), { code: 'ERR_OUT_OF_RANGE' });
  t.throws(() => new N.NativeRegion({ kind: 'file', fd: -1, size: PAGE }));
  t.throws(() => new N.NativeRegion({ kind: 'file', fd: 999999, size: PAGE }), { code: 'EBADF', syscall: 'mmap' });
  t.throws(() => new N.NativeUffd(null));
  t.throws(() => new N.NativeEngine({}, {}), { code: 'ERR_INVALID_ARG_TYPE' });
  t.throws(() => new N.NativeSource({ kind: 'region', region: {} }), { code: 'ERR_INVALID_ARG_TYPE' });
  t.throws(() => N.touch({}, 0, 1, {}), { code: 'ERR_INVALID_ARG_TYPE' });
  const u = new N.NativeUffd({ via: 'syscall' });
  t.throws(() => u.register(0, PAGE, 1), { code: 'ERR_NO_API' }, 'ioctls before the handshake');
  u.api(0n);
  t.throws(() => u.api(0n), { code: 'ERR_API_DONE' });
  t.throws(() => u.register('x', PAGE, 1), { code: 'ERR_INVALID_ARG_TYPE' });
  t.throws(() => u.register(-1, PAGE, 1), { code: 'ERR_OUT_OF_RANGE' });
  t.throws(() => u.register(1.5, PAGE, 1), { code: 'ERR_OUT_OF_RANGE' });
  t.throws(() => u.copy(0, {}, PAGE, 0), { code: 'ERR_INVALID_ARG_TYPE' });
  t.throws(() => u.copy(0, 12345, PAGE, 0), { code: 'ERR_NOT_REGION' }, 'arbitrary source addresses are refused');
  t.throws(() => u.startEvents(42), { code: 'ERR_INVALID_ARG_TYPE' });
  // A method called on the wrong receiver.
  t.throws(() => (N.NativeUffd.prototype as Record<string, (...a: unknown[]) => unknown>).state.call({}));
  u.close();
  u.close();
});

void t.test('the JS heap (memory the addon does not own) can never be registered', async (t) => {
  using u = Userfaultfd.open();
  const buf = new ArrayBuffer(4 * PAGE);
  // Find some page-aligned address we do not own: the buffer's own would do, but we cannot see it; any value fails.
  t.throws(() => u.register({ address: 0x10000, length: PAGE }), { code: 'ERR_NOT_REGION', name: 'StateError' });
  t.ok(buf.byteLength);
});

void t.test('kernel errors become SystemError with errno, code and the call', async (t) => {
  using u = Userfaultfd.open();
  using r = Region.anonymous(2 * PAGE);
  // Not registered: the kernel refuses the copy.
  const err = t.throws(() => u.copy(r, Buffer.alloc(2 * PAGE))) as SystemError;
  t.ok(err instanceof SystemError);
  t.equal(err.syscall, 'ioctl(UFFDIO_COPY)');
  t.ok(['EINVAL', 'ENOENT'].includes(err.code));
  t.ok(err.errno < 0);
  u.register(r);
  t.equal(u.copy(r, Buffer.alloc(2 * PAGE, 1)), 2 * PAGE);
  t.throws(() => u.copy({ region: r, length: PAGE }, Buffer.alloc(PAGE)), {
    code: 'EEXIST',
    syscall: 'ioctl(UFFDIO_COPY)',
  });
  // A second userfaultfd cannot register the same range.
  using u2 = Userfaultfd.open();
  t.throws(() => u2.register(r), { code: 'EBUSY', syscall: 'ioctl(UFFDIO_REGISTER)' });
  // MINOR mode is for shmem/hugetlbfs only.
  using a = Region.anonymous(PAGE);
  t.throws(() => u.register(a, { minor: true }), { code: 'EINVAL' });
  u.unregister(r);
});

void t.test('use after close, double close, close order', async (t) => {
  const u = Userfaultfd.open();
  const r = Region.anonymous(4 * PAGE);
  u.register(r);
  const e = new FaultEngine(u).serve(r, PageSource.zero()).start();
  u.close(); // closes its running engine first
  t.notOk(e.running);
  t.throws(() => e.start(), { code: 'ERR_CLOSED' });
  u.close();
  t.ok(u.closed);
  t.throws(() => u.register(r), { code: 'ERR_CLOSED', name: 'StateError' });
  t.throws(() => u.copy(r, Buffer.alloc(4 * PAGE)), { code: 'ERR_CLOSED' });
  t.throws(() => u.readPending(), { code: 'ERR_CLOSED' });
  t.throws(() => new FaultEngine(u), { code: 'ERR_CLOSED' });
  e.close();
  e.close();
  t.equal(r.bytes().byteLength, 4 * PAGE, 'registration ended with the userfaultfd: views allowed');
  r.close();
  r.close();
  const s = PageSource.zero();
  s.close();
  s.close();
  t.throws(() => s.read(0, PAGE), { code: 'ERR_CLOSED' });
});

void t.test('engine state misuse', async (t) => {
  using u = Userfaultfd.open();
  using e1 = new FaultEngine(u).start();
  t.throws(() => e1.start(), { code: 'ERR_RUNNING' });
  using e2 = new FaultEngine(u);
  t.throws(() => e2.start(), { code: 'ERR_BUSY' }, 'one engine per userfaultfd');
  t.throws(() => u.readPending(), { code: 'ERR_BUSY' }, 'the engine is the reader');
  e1.stop();
  e1.stop();
  t.doesNotThrow(() => e2.start());
});

void t.test('a region used as a page source cannot move, unmap or lose access', async (t) => {
  const src = Region.anonymous(4 * PAGE);
  const source = PageSource.fromRegion(src);
  await t.rejects(src.unmap(0, PAGE), { code: 'ERR_BUSY' });
  await t.rejects(src.remap(8 * PAGE), { code: 'ERR_BUSY' });
  t.throws(() => src.mprotect(0, PAGE, 'none'), { code: 'ERR_BUSY' });
  source.close(); // the pin goes with the last user
  (globalThis as { gc?: () => void }).gc?.();
  src.close();
});

void t.test('closing a region used as a page source succeeds; its memory stays mapped for the source', async (t) => {
  const src = Region.anonymous(4 * PAGE);
  new Uint8Array(src.buffer).fill(7);
  const source = PageSource.fromRegion(src);
  src.close();
  t.ok(src.closed, 'the handle is closed');
  const u = Userfaultfd.open();
  const dst = Region.anonymous(4 * PAGE);
  u.register(dst);
  const engine = new FaultEngine(u).serve(dst, source).start();
  const res = await touch(dst);
  t.equal(res.byteSum, 4 * 7, 'faults are still served from the closed region');
  engine.close();
  source.close();
  u.close();
  dst.close();
});

void t.test('copying from memory this thread must serve is refused (would deadlock)', async (t) => {
  using u = Userfaultfd.open();
  const a = Region.anonymous(PAGE);
  const b = Region.anonymous(PAGE);
  u.register(a);
  u.register(b);
  t.throws(() => u.copy(b, { region: a }), { code: 'ERR_DEADLOCK' });
  t.throws(() => u.move(b, { region: a }), { code: 'ERR_DEADLOCK' });
  u.close();
  a.close();
  b.close();
});

void t.test('a faulting thread whose handler went away resumes (no hang)', async (t) => {
  const u = Userfaultfd.open();
  const r = Region.anonymous(4 * PAGE);
  u.register(r);
  // Nobody serves: the touching thread blocks in the kernel...
  const touching = touch(r, { threads: 2 });
  await until(() => inUserfault() === 2, 30_000, 'both touching threads sleep in the fault handler');
  // ...until the userfaultfd closes: the kernel then maps fresh zero pages.
  u.close();
  const res = await touching;
  t.equal(res.pages, 4);
  t.equal(res.byteSum, 0);
  r.close();
});

void t.test('errors are instances of the exported classes', async (t) => {
  using u = Userfaultfd.open();
  u.close();
  try {
    u.wake({ address: 0, length: PAGE });
    t.fail('should throw');
  } catch (e) {
    t.ok(e instanceof StateError);
    t.equal((e as StateError).code, 'ERR_CLOSED');
  }
});
