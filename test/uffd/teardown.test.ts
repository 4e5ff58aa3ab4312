// A worker that exits or is terminated with live regions, userfaultfds,
// engines, touches blocked on unserved faults or async region operations:
// no crash, no hang, and the memory it shared stays usable.
import t from 'tap';
import { Worker } from 'node:worker_threads';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Region } from '../../lib/index.js';

const lib = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../lib/index.js');

const body = (lib: string) => `
const { workerData, parentPort } = require('node:worker_threads');
import(${JSON.stringify(lib)}).then(async ({ Region, Userfaultfd, FaultEngine, PageSource, touch }) => {
  const r = Region.anonymous(1 << 20);
  const shared = Region.attach(workerData.id);
  new Uint8Array(shared.buffer)[workerData.mode] = 1;
  const u = Userfaultfd.open({ features: ['EVENT_REMOVE'] });
  u.register(r);
  switch (workerData.mode) {
    case 0: new FaultEngine(u).serve(r, PageSource.zero()).start(); await touch(r); break;
    case 1: u.on('pagefault', () => {}); break;                       // JS reader, faults left unresolved
    case 2: new FaultEngine(u).serve(r, PageSource.fromRegion(shared)).start(); void touch(r, { threads: 2 }); break;
    case 3: void touch(r); break;                                     // blocked: nobody serves
    case 4: u.on('remove', () => {}); void r.madvise(0, 4096, 'dontneed'); break;
  }
  parentPort.postMessage('ready');
  if (workerData.exit) process.exit(0);
});`;

for (const mode of [0, 1, 2, 3, 4]) {
  for (const how of ['terminate', 'process.exit'] as const) {
    void t.test(`worker mode ${mode}, ${how}`, async (t) => {
      const shared = Region.anonymous(1 << 16);
      const w = new Worker(body(lib), {
        eval: true,
        workerData: { id: shared.id, mode, exit: how === 'process.exit' },
      });
      const exited = new Promise<number>((res) => w.once('exit', res));
      await new Promise((res) => w.once('message', res));
      if (how === 'terminate') await w.terminate();
      await exited;
      t.equal(new Uint8Array(shared.buffer)[mode], 1, 'memory written by the worker is intact');
      t.equal(shared.info().handles, 1, "the worker's handle was closed with it");
      shared.close();
    });
  }
}
