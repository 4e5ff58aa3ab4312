// Faults raised by worker threads, served on the main thread (JS or engine),
// and a JS handler living in a worker while the main thread faults.
import t from 'tap';
import { Worker } from 'node:worker_threads';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { FaultEngine, PageSource, Region, Userfaultfd } from '../../lib/index.js';

const lib = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../lib/index.js');
const PAGE = 4096;

/** A worker that attaches the region by id and sums the first byte of every page. */
function sumInWorker(id: number): Promise<number> {
  const w = new Worker(`
    const { workerData, parentPort } = require('node:worker_threads');
    import(${JSON.stringify(lib)}).then(({ Region }) => {
      const r = Region.attach(workerData.id);
      const v = new Uint8Array(r.buffer);
      let s = 0;
      for (let i = 0; i < v.length; i += ${PAGE}) s += v[i];
      r.close();
      parentPort.postMessage(s);
    });`, { eval: true, workerData: { id } });
  return new Promise((res, rej) => {
    w.once('message', (s: number) => res(s));
    w.once('error', rej);
  });
}

void t.test('a worker faults, a JS handler on the main thread serves', async (t) => {
  const r = Region.anonymous(64 * PAGE);
  using u = Userfaultfd.open();
  u.register(r);
  const tids = new Set<number>();
  u.on('pagefault', (ev) => {
    tids.add(ev.tid);
    u.copy({ region: r, offset: ev.offset!, length: PAGE }, Buffer.alloc(PAGE, 3));
  });
  t.equal(await sumInWorker(r.id), 64 * 3);
  t.equal(tids.size, 1, "one faulting thread: the worker's");
  t.notOk(tids.has(process.pid), 'not the main thread');
  u.close();
  r.close();
});

void t.test('several workers fault at once, the engine serves', async (t) => {
  const src = Region.anonymous(256 * PAGE);
  src.bytes().fill(2);
  const r = Region.anonymous(256 * PAGE);
  using u = Userfaultfd.open();
  u.register(r);
  const e = new FaultEngine(u, { threads: 2, batchPages: 4 }).serve(r, PageSource.fromRegion(src)).start();
  const sums = await Promise.all([sumInWorker(r.id), sumInWorker(r.id), sumInWorker(r.id)]);
  t.same(sums, [512, 512, 512]);
  t.equal(e.stop().pages, 256, 'each page served once');
  e.close();
  u.close();
  r.close();
  src.close();
});

void t.test('a JS handler in a worker serves faults raised by the main thread', async (t) => {
  const r = Region.anonymous(16 * PAGE);
  const w = new Worker(`
    const { workerData, parentPort } = require('node:worker_threads');
    import(${JSON.stringify(lib)}).then(({ Region, Userfaultfd }) => {
      const r = Region.attach(workerData.id);
      const u = Userfaultfd.open();
      u.register(r);
      u.on('pagefault', (ev) => u.copy({ region: r, offset: ev.offset, length: ${PAGE} }, Buffer.alloc(${PAGE}, 7)));
      parentPort.on('message', () => { u.close(); r.close(); parentPort.close(); });
      parentPort.postMessage('serving');
    });`, { eval: true, workerData: { id: r.id } });
  await new Promise((res) => w.once('message', res));
  // This thread is not the handler, so it may touch the region directly.
  const v = new Uint8Array(r.buffer);
  let s = 0;
  for (let i = 0; i < v.length; i += PAGE) s += v[i];
  t.equal(s, 16 * 7);
  w.postMessage('done');
  await new Promise((res) => w.once('exit', res));
  t.notOk(r.info().registered, "the worker's userfaultfd is gone");
  r.close();
});
