// A worker thread for the userfaultfd tests. It runs one job (workerData),
// posting { type: 'result', value } or { type: 'error', ... } at the end and
// any number of { type: 'info', value } before. Jobs attach regions of the
// main thread by id, so every access here is a real fault of this thread.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import { FaultEngine, PageSource, Region, Userfaultfd, touch } from '../../lib/index.js';
import type { Feature } from '../../lib/uffd/index.js';
import { patternPage } from './pattern.js';

export type Job =
  /** Copy [offset, offset+length) of region `id` out (reading it: faults). */
  | { op: 'read'; id: number; offset?: number; length?: number }
  /** Write `data` at `offset` of region `id` (write faults). */
  | { op: 'write'; id: number; offset: number; data: Uint8Array }
  /** write(2) a page of region `id` to a file: the kernel reads the page (kernel-mode fault). */
  | { op: 'syscall-write'; id: number; offset: number }
  /**
   * Serve region `id` from this thread: a userfaultfd opened here, a JS
   * handler copying pattern pages of `seed`. Posts info 'ready' (with this
   * thread's tid), then serves until the message 'stop'; the result counts
   * faults. With `limit`, faults after the first `limit` are left unresolved
   * and the first of them is posted as info { stuck: offset }.
   */
  | { op: 'serve'; id: number; seed: number; features?: Feature[]; limit?: number }
  /**
   * Create resources and keep them: posts info { ids, fds, name } and then
   * waits for 'exit' (process.exit), for terminate(), or ends by itself ('return').
   */
  | { op: 'hold'; mode: HoldMode; sharedId: number; name: string };

export type HoldMode =
  'engine' | 'js-handler' | 'unserved' | 'event-pending' | 'shared-registered' | 'shared-source' | 'remap-pending';

/** This thread's kernel thread id. */
function tid(): number {
  return Number(fs.readlinkSync('/proc/thread-self').split('/').pop());
}

async function run(job: Job, post: (m: unknown) => void, messages: AsyncIterator<unknown>): Promise<unknown> {
  switch (job.op) {
    case 'read': {
      const r = Region.attach(job.id);
      try {
        const off = job.offset ?? 0;
        // slice() copies: every byte is read here, in this thread
        return new Uint8Array(r.buffer).slice(off, off + (job.length ?? r.size - off));
      } finally {
        r.close();
      }
    }
    case 'write': {
      const r = Region.attach(job.id);
      try {
        new Uint8Array(r.buffer).set(job.data, job.offset);
        return job.data.length;
      } finally {
        r.close();
      }
    }
    case 'syscall-write': {
      const r = Region.attach(job.id);
      const file = path.join(os.tmpdir(), `sos-uffd-worker-${process.pid}-${tid()}`);
      const fd = fs.openSync(file, 'w');
      try {
        return fs.writeSync(fd, new Uint8Array(r.buffer, job.offset, 4096));
      } catch (e) {
        return (e as NodeJS.ErrnoException).code;
      } finally {
        fs.closeSync(fd);
        fs.rmSync(file, { force: true });
        r.close();
      }
    }
    case 'serve': {
      const r = Region.attach(job.id);
      const u = Userfaultfd.open({ features: job.features ?? ['THREAD_ID'] });
      let faults = 0;
      const tids = new Set<number>();
      u.register(r);
      u.on('pagefault', (ev) => {
        faults++;
        tids.add(ev.tid);
        const off = ev.offset! - (ev.offset! % 4096);
        if (job.limit === undefined || faults <= job.limit)
          u.copy({ region: r, offset: off, length: 4096 }, patternPage(off / 4096, job.seed));
        else if (faults === job.limit + 1) post({ type: 'info', value: { stuck: off } });
      });
      post({ type: 'info', value: { ready: true, tid: tid() } });
      for (;;) {
        const m = await messages.next();
        if (m.done || m.value === 'stop') break;
      }
      u.close();
      r.close();
      return { faults, tids: [...tids] };
    }
    case 'hold':
      return await hold(job, post, messages);
  }
}

async function hold(
  job: Extract<Job, { op: 'hold' }>,
  post: (m: unknown) => void,
  messages: AsyncIterator<unknown>,
): Promise<unknown> {
  const PAGE = 4096;
  const r = Region.memfd(64 * PAGE, { name: job.name });
  const other = Region.anonymous(16 * PAGE);
  const shared = Region.attach(job.sharedId);
  const u = Userfaultfd.open({ features: ['THREAD_ID', 'EVENT_REMOVE'] });
  const uffds = [u.fd];
  u.register(r);
  switch (job.mode) {
    case 'engine': {
      // An engine serving r from `other` while native threads fault on r.
      const src = PageSource.fromRegion(other);
      new FaultEngine(u, { threads: 2 }).serve(r, src).start();
      void touch(r, { threads: 2 });
      break;
    }
    case 'js-handler':
      // A JS reader that never resolves: the touch stays blocked.
      u.on('pagefault', () => {});
      void touch(r);
      break;
    case 'unserved':
      // Nobody reads the faults at all.
      void touch(r, { threads: 3 });
      break;
    case 'event-pending':
      // madvise waits until someone reads its REMOVE event: nobody will.
      void r.madvise(0, PAGE, 'dontneed');
      break;
    case 'shared-registered': {
      // The main thread's region, registered with a userfaultfd of this thread, a fault pending.
      const v = Userfaultfd.open();
      uffds.push(v.fd);
      v.register(shared);
      void touch(shared, { offset: 8 * PAGE, length: PAGE });
      break;
    }
    case 'shared-source':
      // The main thread's region as the page source of an engine (pinned while it runs).
      new FaultEngine(u).serve(r, PageSource.fromRegion(shared)).start();
      void touch(r);
      break;
    case 'remap-pending': {
      // mremap of the main thread's region: the kernel moves it, then waits
      // until someone reads the REMAP event. Nobody does.
      const v = Userfaultfd.open({ features: ['EVENT_REMAP'] });
      uffds.push(v.fd);
      v.register(shared);
      void shared.remap(2 * shared.size);
      break;
    }
  }
  post({ type: 'info', value: { ids: [r.id, other.id], fds: uffds, tid: tid() } });
  const m = await messages.next();
  if (!m.done && m.value === 'exit') process.exit(0);
  return 'returned';
}

if (!isMainThread && parentPort) {
  const port = parentPort;
  const post = (m: unknown) => port.postMessage(m);
  // Messages from the main thread as an async iterator (the job pulls them).
  const inbox: unknown[] = [];
  let wake: (() => void) | null = null;
  port.on('message', (m: unknown) => {
    inbox.push(m);
    wake?.();
  });
  const messages: AsyncIterator<unknown> = {
    async next() {
      while (inbox.length === 0) await new Promise<void>((r) => (wake = r));
      wake = null;
      return { done: false, value: inbox.shift() };
    },
  };
  run(workerData as Job, post, messages).then(
    (value) => {
      post({ type: 'result', value });
      port.close();
    },
    (e: Error & { code?: string }) => {
      post({ type: 'error', message: e.message, code: e.code });
      port.close();
    },
  );
}
