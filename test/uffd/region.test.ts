// Regions: mappings owned by the addon, seen as ArrayBuffers without copying.
import t from 'tap';
import { Region, Userfaultfd } from '../../lib/index.js';

const PAGE = 4096;

void t.test('anonymous region: zero-filled, writable, stable address', async (t) => {
  using r = Region.anonymous(16 * PAGE);
  t.equal(r.kind, 'anonymous');
  t.equal(r.size, 16 * PAGE);
  t.equal(r.pageSize, PAGE);
  t.equal(r.address % PAGE, 0);
  const v = r.bytes();
  t.ok(v.every((b) => b === 0));
  v[100] = 42;
  t.equal(new Uint8Array(r.buffer)[100], 42, 'same memory through every view');
  t.equal(r.buffer, r.buffer, 'one ArrayBuffer per handle');
  t.equal(r.bytes(PAGE, 8).byteOffset, PAGE);
});

void t.test('memfd region and its alias share pages', async (t) => {
  using r = Region.memfd(4 * PAGE, { name: 'test' });
  t.equal(r.kind, 'memfd');
  t.ok(r.fd >= 0);
  using a = r.alias();
  t.not(a.address, r.address);
  r.bytes()[5] = 7;
  t.equal(a.bytes()[5], 7);
  t.throws(() => Region.anonymous(PAGE).alias(), { code: 'ERR_UNSUPPORTED' });
});

void t.test('madvise dontneed discards anonymous pages', async (t) => {
  using r = Region.anonymous(4 * PAGE);
  r.bytes().fill(1);
  await r.madvise(0, 2 * PAGE, 'dontneed');
  t.equal(r.bytes()[0], 0);
  t.equal(r.bytes()[2 * PAGE], 1);
});

void t.test('mprotect detaches views and refuses new ones until rw again', async (t) => {
  using r = Region.anonymous(4 * PAGE);
  const v = r.bytes();
  r.mprotect(0, PAGE, 'r');
  t.equal(v.byteLength, 0, 'old view detached: touching it cannot crash');
  t.throws(() => r.buffer, { code: 'ERR_PROTECTED' });
  r.mprotect(0, PAGE, 'rw');
  t.equal(r.bytes().byteLength, 4 * PAGE);
});

void t.test('unmap punches a hole; remap moves and resizes', async (t) => {
  const r = Region.anonymous(8 * PAGE);
  r.bytes().fill(3);
  const v = r.bytes();
  await r.unmap(6 * PAGE, 2 * PAGE);
  t.equal(v.byteLength, 0);
  t.throws(() => r.buffer, { code: 'ERR_UNMAPPED' });
  await t.rejects(r.remap(16 * PAGE), { code: 'ERR_UNMAPPED' });
  r.close();

  const m = Region.anonymous(4 * PAGE);
  m.bytes().fill(5);
  const addr = await m.remap(64 * PAGE);
  t.equal(m.address, addr);
  t.equal(m.size, 64 * PAGE);
  t.equal(m.bytes()[4 * PAGE - 1], 5, 'contents moved');
  t.equal(m.bytes()[4 * PAGE], 0, 'grown part is new zero memory');
  await m.remap(2 * PAGE);
  t.equal(m.size, 2 * PAGE);
  m.close();
});

void t.test('close is idempotent and detaches views; use after close is typed', async (t) => {
  const r = Region.anonymous(PAGE);
  const v = r.bytes();
  r.close();
  r.close();
  r[Symbol.dispose]();
  t.ok(r.closed);
  t.equal(v.byteLength, 0);
  t.throws(() => r.buffer, { code: 'ERR_CLOSED', name: 'StateError' });
  t.throws(() => r.address, { code: 'ERR_CLOSED' });
  t.throws(() => r.mprotect(0, PAGE, 'r'), { code: 'ERR_CLOSED' });
  await t.rejects(async () => r.madvise(0, PAGE, 'dontneed'), { code: 'ERR_CLOSED' });
});

void t.test('attach: another handle keeps the memory mapped', async (t) => {
  const r = Region.anonymous(2 * PAGE);
  r.bytes()[0] = 9;
  const h = Region.attach(r.id);
  t.equal(h.address, r.address);
  t.equal(h.info().handles, 2);
  r.close();
  t.equal(h.bytes()[0], 9, 'still mapped through the second handle');
  h.close();
  t.throws(() => Region.attach(r.id), { code: 'ERR_CLOSED' });
});

void t.test('a buffer that outlives its Region object stays valid', async (t) => {
  let buf: ArrayBuffer;
  {
    const r = Region.anonymous(PAGE);
    buf = r.buffer;
    new Uint8Array(buf)[0] = 1;
  }
  // The Region object is unreachable; the buffer holds the mapping.
  (globalThis as { gc?: () => void }).gc?.();
  t.equal(new Uint8Array(buf)[0], 1);
});

void t.test('regions larger than one ArrayBuffer can view say so (no crash)', async (t) => {
  using r = Region.anonymous(8 * 2 ** 30); // MAP_NORESERVE: costs nothing untouched
  t.equal(r.size, 8 * 2 ** 30);
  t.throws(() => r.buffer, { code: 'ERR_TOO_LARGE', name: 'StateError' });
});

void t.test('hugetlb regions say why they fail when no huge pages are reserved', async (t) => {
  try {
    const r = Region.anonymous(2 << 20, { hugetlb: true });
    t.equal(r.pageSize, 2 << 20);
    r.close();
  } catch (e) {
    t.match(e, { code: 'ENOMEM', syscall: 'mmap', name: 'SystemError' });
  }
});

void t.test('views are refused where this thread would have to serve the faults', async (t) => {
  const r = Region.anonymous(2 * PAGE);
  const v = r.bytes();
  const u = Userfaultfd.open();
  u.register(r);
  t.equal(v.byteLength, 0, 'existing view detached on registration');
  t.throws(() => r.buffer, { code: 'ERR_DEADLOCK' });
  t.throws(() => r.close(), { code: 'ERR_BUSY' }, 'closing a registered region is refused');
  u.unregister(r);
  t.equal(r.bytes().byteLength, 2 * PAGE);
  u.close();
  r.close();
});
