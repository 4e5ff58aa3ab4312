// A far region as a kernel without UFFDIO_MOVE and UFFDIO_POISON (Linux 6.1)
// runs it: copy eviction, sync dirty tracking, and fetchFailure 'wait', on
// this kernel whatever it has. A source that fails for a while: the access
// waits (never zeros, never a crash), every failure is an 'error' event, and
// the access completes with the right bytes once the source is back; close()
// releases a thread that still waits. (The random workload under copy
// eviction is in pager.test.ts.)
import t, { type Test } from 'tap';
import crypto from 'node:crypto';
import fs from 'node:fs';
import { Worker } from 'node:worker_threads';
import { FarRegion, PageSource } from '../../lib/index.js';
import { PAGE, until } from '../../testkit/wait.js';
import { differingPages } from './pager-workload.js';

const MB = 1 << 20;
const OPTIONS = { eviction: 'copy', dirtyTracking: 'sync', fetchFailure: 'wait' } as const;
type FarError = Error & { address?: number; code?: string; syscall?: string };

/** A worker reading the region on request (pager-reader.ts), started and ready. */
async function reader(
  t: Test,
  far: FarRegion,
): Promise<{ read: (offset: number) => Promise<Uint8Array>; end: () => Promise<void> }> {
  const w = new Worker(new URL('./pager-reader.js', import.meta.url), { workerData: { id: far.id } });
  const exited = new Promise<void>((resolve) => w.once('exit', () => resolve()));
  t.teardown(() => w.terminate()); // when a check failed before end()
  await new Promise<void>((resolve, reject) => {
    w.once('message', () => resolve());
    w.once('error', reject);
  });
  return {
    read: (offset) =>
      new Promise((resolve, reject) => {
        w.once('message', resolve);
        w.once('error', reject);
        w.postMessage({ offset, length: PAGE });
      }),
    end: () => {
      w.postMessage(null);
      return exited;
    },
  };
}

/** This process's descriptors open on `path`. */
function fdsOn(path: string): number[] {
  return fs
    .readdirSync('/proc/self/fd')
    .map(Number)
    .filter((fd) => {
      try {
        return fs.readlinkSync(`/proc/self/fd/${fd}`) === path;
      } catch {
        return false;
      }
    });
}

void t.test('a source down for a while: the access waits, errors are reported, then it reads right', async (t) => {
  t.setTimeout(120_000);
  const size = 4 * MB;
  const path = `/dev/shm/sos-far-flaky-${process.pid}`;
  const content = crypto.randomBytes(size);
  fs.writeFileSync(path, content);
  const source = PageSource.fromFile(path, { size });
  const far = FarRegion.create(size, { localBytes: FarRegion.MIN_LOCAL_BYTES, source, ...OPTIONS });
  t.teardown(() => {
    far.close();
    source.close();
    fs.unlinkSync(path);
  });
  t.equal(far.eviction, 'copy');
  t.match(far.stats(), { eviction: 'copy', fetchFailure: 'wait' });
  const errors: FarError[] = [];
  far.on('error', (e) => errors.push(e));
  const r = await reader(t, far);
  t.same(Buffer.from(await r.read(3 * PAGE)), content.subarray(3 * PAGE, 4 * PAGE), 'a page before the failure');

  // The source goes down: its descriptor (the only one on the file) is
  // closed under it, so its preads fail with EBADF, until a descriptor of
  // the same number is open on the file again.
  const [sfd, ...others] = fdsOn(path);
  t.same(others, [], 'the source holds the only descriptor on the file');
  fs.closeSync(sfd);
  let got: Uint8Array | undefined;
  const pending = r.read(9 * PAGE).then((b) => (got = b));
  await until(() => errors.length >= 3, 30_000, 'three failures reported');
  t.equal(got, undefined, 'the access is still waiting');
  t.match(errors[0], { code: 'EBADF', syscall: 'source.fetch', address: far.address + 9 * PAGE });
  t.ok(
    errors.every((e) => e.code === 'EBADF' && e.address === far.address + 9 * PAGE),
    'each failure reported',
  );
  const s = far.stats();
  t.equal(s.poisoned, 0, 'nothing poisoned');
  t.ok(s.fetchRetries >= 2 && s.fetchErrors >= 3, `retried (${s.fetchRetries} retries, ${s.fetchErrors} errors)`);
  t.equal(far.pageStates()[9], 0, 'the page is still remote');

  // Back up: open(2) takes the lowest free number, so open until it is the source's.
  const extra: number[] = [];
  for (let fd = fs.openSync(path, 'r'); fd !== sfd; fd = fs.openSync(path, 'r')) {
    extra.push(fd);
    if (fd > sfd) break;
  }
  for (const fd of extra) fs.closeSync(fd);
  t.notOk(
    extra.some((fd) => fd > sfd),
    `descriptor ${sfd} is the source's again`,
  );
  await pending;
  t.same(Buffer.from(got!), content.subarray(9 * PAGE, 10 * PAGE), 'the access completed with the right bytes');
  t.same(differingPages(far.bytes(), content), [], 'the whole region reads right');
  t.equal(far.stats().poisoned, 0);
  await r.end();
});

void t.test('close() releases a thread waiting on a source that stays down', async (t) => {
  t.setTimeout(60_000);
  const size = 4 * MB;
  const path = `/dev/shm/sos-far-down-${process.pid}`;
  fs.writeFileSync(path, Buffer.alloc(size, 7));
  const wfd = fs.openSync(path, 'w'); // write-only: every pread fails with EBADF
  const source = PageSource.fromFile(wfd, { size });
  fs.closeSync(wfd);
  t.teardown(() => {
    source.close();
    fs.unlinkSync(path);
  });
  const far = FarRegion.create(size, { localBytes: FarRegion.MIN_LOCAL_BYTES, source, ...OPTIONS });
  const errors: FarError[] = [];
  far.on('error', (e) => errors.push(e));
  const r = await reader(t, far);
  let released = false;
  const pending = r.read(PAGE).then(() => (released = true));
  await until(() => errors.length >= 2, 30_000, 'failures reported');
  t.notOk(released, 'the access waits');
  far.close(); // returns: the engine's teardown (closing the userfaultfd) releases the waiting thread
  await pending;
  t.ok(released, 'the waiting thread was released');
  t.equal(far.stats().poisoned, 0);
  await r.end();
});
