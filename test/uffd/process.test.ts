// Faults of another process (uffd_child), served from this one: by a
// FaultEngine from a file or a region, by JS handlers; and the handler
// going away (its userfaultfd closed, its process killed) while the child
// waits on a fault: the child resumes, it never hangs.
import t from 'tap';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { FaultEngine, PageSource, Region } from '../../lib/index.js';
import type { PageFaultEvent } from '../../lib/uffd/index.js';
import { expectedSum, fillPattern, patternPages, sumLine, word } from '../helpers/pattern.js';
import { ServedChild } from '../helpers/served-child.js';
import { PAGE, sleepsInUserfault, until, within } from '../../testkit/wait.js';

const SEED = 41;

void t.test('a FaultEngine serves a child process from a file', async (t) => {
  t.setTimeout(20_000);
  const pages = 256;
  const file = path.join(os.tmpdir(), `sos-process-test-${process.pid}`);
  fs.writeFileSync(file, patternPages(0, pages + 64, SEED));
  t.teardown(() => fs.rmSync(file, { force: true }));
  const child = await ServedChild.start(t, pages * PAGE);
  const u = child.adopt();
  u.register(child.range);
  // Byte 64 pages into the file backs the child's first page.
  const source = PageSource.fromFile(file);
  const engine = new FaultEngine(u, { threads: 2, batchPages: 16 }).serve(child.range, source, {
    sourceOffset: 64 * PAGE,
  });
  t.teardown(() => {
    engine.close();
    u.close();
    source.close();
  });
  engine.on('error', (e) => t.fail(e.message));
  engine.start();
  t.equal(await child.ask('touch'), expectedSum(64, pages, SEED), 'the child read file pages 64..319');
  const s = engine.stop();
  t.equal(s.pages, pages, 'every page came from the engine');
  t.equal(s.faults, pages / 16, 'one fault per 16-page batch (the child reads in order)');
  t.equal(s.unserved + s.errors + s.zeroPages, 0);
  t.equal(await child.ask('touch'), expectedSum(64, pages, SEED), 'the pages stay; no engine needed any more');
});

void t.test('a FaultEngine serves a child process from a region, page by page', async (t) => {
  t.setTimeout(20_000);
  const pages = 128;
  const src = Region.anonymous(pages * PAGE);
  fillPattern(src.bytes(), SEED);
  const child = await ServedChild.start(t, pages * PAGE);
  const u = child.adopt();
  u.register(child.range);
  const engine = new FaultEngine(u, { batchPages: 1 }).serve(child.range, PageSource.fromRegion(src)).start();
  t.teardown(() => {
    engine.close();
    u.close();
    src.close();
  });
  t.equal(await child.ask('touch'), expectedSum(0, pages, SEED));
  const s = engine.stop();
  t.equal(s.faults, pages, 'batchPages 1: a fault per page');
  t.equal(s.pages, pages);
  t.equal(s.latency.count, pages);
});

void t.test('a JS handler serves a child process', async (t) => {
  t.setTimeout(20_000);
  const pages = 64;
  const child = await ServedChild.start(t, pages * PAGE, ['THREAD_ID']);
  const u = child.adopt();
  t.teardown(() => u.close());
  u.register(child.range);
  const faults: PageFaultEvent[] = [];
  u.on('pagefault', (ev) => {
    faults.push(ev);
    u.copy({ address: ev.address, length: PAGE }, patternPages((ev.address - child.address) / PAGE, 1, SEED));
  });
  t.equal(await child.ask('touch'), expectedSum(0, pages, SEED));
  t.same(
    faults.map((f) => (f.address - child.address) / PAGE),
    [...Array(pages).keys()],
    'a fault per page, in order',
  );
  t.ok(
    faults.every((f) => f.kind === 'missing' && !f.write && f.tid === child.pid),
    "the child's own thread faulted",
  );
  t.ok(
    faults.every((f) => f.region === undefined),
    'memory of another process belongs to no Region',
  );
});

void t.test('a JS handler (async iterator) serves a child with copy and zeropage', async (t) => {
  t.setTimeout(20_000);
  const pages = 32;
  const child = await ServedChild.start(t, pages * PAGE);
  const u = child.adopt();
  t.teardown(() => u.close());
  u.register(child.range);
  let faults = 0;
  const loop = (async () => {
    for await (const ev of u) {
      if (ev.type !== 'pagefault') continue;
      faults++;
      const page = (ev.address - child.address) / PAGE;
      const where = { address: ev.address, length: PAGE };
      if (page % 2) u.copy(where, patternPages(page, 1, SEED));
      else u.zeropage(where);
    }
  })();
  const words = Array.from({ length: pages }, (_, i) => (i % 2 ? word(i, SEED) : 0n));
  t.equal(await child.ask('touch'), sumLine(words), 'odd pages copied, even pages zero');
  t.equal(faults, pages);
  u.close();
  await within(loop, 30_000, 'the iterator to end on close');
});

void t.test('the handler closes its userfaultfd while the child waits on a fault: the child resumes', async (t) => {
  t.setTimeout(20_000);
  const pages = 8;
  const child = await ServedChild.start(t, pages * PAGE, ['THREAD_ID']);
  const u = child.adopt();
  t.teardown(() => u.close());
  u.register(child.range);
  t.equal(await child.ask('closefd'), 'CLOSED', 'the child closed its own fd: ours is the only one');
  let served = 0;
  const stuck = new Promise<PageFaultEvent>((resolve) => {
    u.on('pagefault', (ev) => {
      if (served < 3) {
        u.copy({ address: ev.address, length: PAGE }, patternPages(served++, 1, SEED));
      } else resolve(ev); // the fourth fault is left unresolved
    });
  });
  const answer = child.ask('touch');
  const ev = await within(stuck, 10_000, 'the fourth fault');
  t.equal(ev.address, child.address + 3 * PAGE);
  await until(() => sleepsInUserfault(child.pid, child.pid), 10_000, 'the child sleeps in the fault');
  t.pass('the child sleeps in handle_userfault');
  u.close();
  const words = Array.from({ length: pages }, (_, i) => (i < 3 ? word(i, SEED) : 0n));
  t.equal(await answer, sumLine(words), 'woken: pages 0-2 as served, the rest fresh zero pages');
  t.equal(await child.ask('touch'), sumLine(words), 'and it goes on without a handler');
});

void t.test('the handler process is killed while the child waits on a fault: the child resumes', async (t) => {
  t.setTimeout(20_000);
  const pages = 8;
  const child = await ServedChild.start(t, pages * PAGE);
  const script = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../helpers/handler-process.js');
  const handler = spawn(
    process.execPath,
    [script, String(child.pid), String(child.fd), String(child.address), String(child.size), '3', String(SEED)],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  const handlerExit = new Promise<NodeJS.Signals | null>((resolve) =>
    handler.once('exit', (_c, signal) => resolve(signal)),
  );
  t.teardown(() => {
    if (handler.exitCode === null && handler.signalCode === null) handler.kill('SIGKILL');
  });
  const lines: string[] = [];
  const seen = (want: string) => {
    const hit = new Promise<void>((resolve) => {
      const check = () => lines.includes(want) && resolve();
      rl.on('line', check);
      check();
    });
    return within(hit, 10_000, `the handler to print ${want}`);
  };
  const rl = readline.createInterface({ input: handler.stdout });
  rl.on('line', (l) => lines.push(l));
  await seen('READY');
  t.equal(await child.ask('closefd'), 'CLOSED', 'the handler process holds the only fd');
  const answer = child.ask('touch');
  await seen('STUCK 3');
  t.same(lines, ['READY', 'SERVED 0', 'SERVED 1', 'SERVED 2', 'STUCK 3']);
  await until(() => sleepsInUserfault(child.pid, child.pid), 10_000, 'the child sleeps in the fault');
  handler.kill('SIGKILL');
  t.equal(await within(handlerExit, 10_000, 'the handler to die'), 'SIGKILL');
  const words = Array.from({ length: pages }, (_, i) => (i < 3 ? word(i, SEED) : 0n));
  t.equal(await answer, sumLine(words), 'woken: pages 0-2 as served, the rest zero');
});
