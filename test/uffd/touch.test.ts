// touch()'s signal and timeout bound the wait for faults nothing serves; the
// native threads end when the kernel wakes them (closing the userfaultfd).
import t from 'tap';
import { once } from 'node:events';
import { setImmediate as tick } from 'node:timers/promises';
import { Region, SosError, Userfaultfd, touch } from '../../lib/index.js';

const PAGE = 4096;

/** Resolves once the region is no longer pinned by a touch (unmap, which refuses a pinned region, succeeds). */
async function unpinned(r: Region): Promise<void> {
  for (;;) {
    try {
      return await r.unmap(0, PAGE);
    } catch (e) {
      if ((e as SosError).code !== 'ERR_BUSY') throw e;
      await tick();
    }
  }
}

/** A region registered with a userfaultfd that reads its faults in JS and never serves them. */
function unserved(): { u: Userfaultfd; r: Region; fault: Promise<unknown> } {
  const u = Userfaultfd.open();
  const r = Region.anonymous(4 * PAGE);
  u.register(r);
  return { u, r, fault: once(u, 'pagefault') };
}

void t.test(
  'an abort rejects at once; the threads finish when the userfaultfd closes',
  { timeout: 60_000 },
  async (t) => {
    const { u, r, fault } = unserved();
    const ac = new AbortController();
    const touching = touch(r, { threads: 2, signal: ac.signal });
    await fault; // a native thread now waits in the kernel for this fault
    const reason = new Error('enough');
    ac.abort(reason);
    const err = await touching.then(
      () => t.fail('touch resolved') as never,
      (e: SosError) => e,
    );
    t.ok(err instanceof SosError);
    t.match(err, { name: 'AbortError', code: 'ABORT_ERR' });
    t.equal(err.cause, reason, 'the signal reason is the cause');
    await t.rejects(r.unmap(0, PAGE), { code: 'ERR_BUSY' }, 'the blocked threads still pin the region');
    u.close(); // the kernel wakes the waiting threads; the pages fault in as unregistered memory
    await unpinned(r);
    r.close();
  },
);

void t.test('a timeout rejects with AbortError (cause: the TimeoutError)', { timeout: 60_000 }, async (t) => {
  const { u, r, fault } = unserved();
  const rejected = t.rejects(touch(r, { timeout: 1 }), {
    name: 'AbortError',
    code: 'ABORT_ERR',
    cause: { name: 'TimeoutError' },
  });
  await fault;
  await rejected;
  u.close();
  await unpinned(r);
  r.close();
});

void t.test('an already aborted signal rejects without touching anything', async (t) => {
  const u = Userfaultfd.open();
  const r = Region.anonymous(4 * PAGE);
  u.register(r);
  await t.rejects(touch(r, { signal: AbortSignal.abort() }), { code: 'ABORT_ERR' });
  await r.unmap(0, PAGE); // not pinned: no native job was started
  u.close();
  r.close();
});

void t.test('a signal that never aborts changes nothing', async (t) => {
  using r = Region.anonymous(4 * PAGE);
  const ac = new AbortController();
  const res = await touch(r, { signal: ac.signal, timeout: 600_000 });
  t.equal(res.pages, 4);
  ac.abort(); // after the result: no effect, no unhandled rejection
});

void t.test('bad signal and timeout arguments', async (t) => {
  using r = Region.anonymous(PAGE);
  t.throws(() => touch(r, { signal: {} as AbortSignal }), { code: 'ERR_INVALID_ARG_TYPE' });
  t.throws(() => touch(r, { timeout: -1 }), { code: 'ERR_OUT_OF_RANGE' });
  t.throws(() => touch(r, { timeout: '5' as unknown as number }), { code: 'ERR_INVALID_ARG_TYPE' });
});
