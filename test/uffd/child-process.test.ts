// Faults of another process, served from this one: by the native engine, by
// a JS handler, through a FORK event for its child, with non-cooperative
// events, poisoned pages, and a handler that goes away.
import t from 'tap';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { FaultEngine, PageSource, Region, Userfaultfd } from '../../lib/index.js';
import type { UffdEvent } from '../../lib/uffd/index.js';
import { UffdChild } from '../helpers/child.js';

const PAGE = 4096;
const PAGES = 256;

/** A source whose page i starts with the u64 i+1; the child's SUM is then n(n+1)/2. */
function numberedPages(pages: number): Region {
  const r = Region.anonymous(pages * PAGE);
  const v = Buffer.from(r.buffer);
  for (let i = 0; i < pages; i++) v.writeBigUInt64LE(BigInt(i + 1), i * PAGE);
  return r;
}
const expectedSum = (n: number) => `SUM ${(n * (n + 1)) / 2}`;

void t.test('a child process served by the native engine', async (t) => {
  const child = await UffdChild.start(PAGES * PAGE);
  t.teardown(() => child.kill());
  const uffd = child.adopt();
  uffd.register({ address: child.address, length: child.size });
  const src = numberedPages(PAGES);
  const engine = new FaultEngine(uffd, { batchPages: 8 })
    .serve({ address: child.address, length: child.size }, PageSource.fromRegion(src))
    .start();
  t.equal(await child.send('touch'), expectedSum(PAGES));
  t.equal(engine.stop().pages, PAGES);
  t.equal(await child.send('touch'), expectedSum(PAGES), 'pages stay');
  engine.close();
  uffd.close();
  src.close();
});

void t.test('a child process served by a JavaScript handler', async (t) => {
  const child = await UffdChild.start(64 * PAGE);
  t.teardown(() => child.kill());
  const uffd = child.adopt();
  uffd.register({ address: child.address, length: child.size });
  const faults: number[] = [];
  uffd.on('pagefault', (ev) => {
    const i = (ev.address - child.address) / PAGE;
    faults.push(i);
    const page = Buffer.alloc(PAGE);
    page.writeBigUInt64LE(BigInt(i + 1));
    uffd.copy({ address: ev.address, length: PAGE }, page);
  });
  t.equal(await child.send('touch'), expectedSum(64));
  t.equal(faults.length, 64);
  t.same(faults, [...Array(64).keys()], 'faults arrive in touch order, one per page');
  uffd.close();
});

void t.test('FORK: the child of the served process is served through the new userfaultfd', async (t) => {
  const child = await UffdChild.start(32 * PAGE, ['EVENT_FORK']);
  t.teardown(() => child.kill());
  const uffd = child.adopt();
  uffd.register({ address: child.address, length: child.size });
  const src = numberedPages(32);
  const engine = new FaultEngine(uffd).serve({ address: child.address, length: child.size }, PageSource.fromRegion(src)).start();
  const forked = new Promise<UffdEvent>((res) => uffd.once('fork', res));
  const answer = child.send('fork');  // the grandchild touches every page
  const ev = await forked;
  t.equal(ev.type, 'fork');
  const gc = (ev as { uffd: Userfaultfd }).uffd;
  t.ok(gc instanceof Userfaultfd);
  t.ok(gc.features.has('EVENT_FORK'), 'inherits the negotiated features');
  // The grandchild's address space has the same layout: serve it the same way.
  const gcEngine = new FaultEngine(gc).serve({ address: child.address, length: child.size }, PageSource.fromRegion(src)).start();
  t.equal(await answer, expectedSum(32));
  t.equal(gcEngine.stop().pages, 32);
  gcEngine.close();
  gc.close();
  engine.close();
  uffd.close();
  src.close();
});

void t.test('REMAP, UNMAP and REMOVE events from the served process', async (t) => {
  const child = await UffdChild.start(16 * PAGE, ['EVENT_REMAP', 'EVENT_UNMAP', 'EVENT_REMOVE']);
  t.teardown(() => child.kill());
  const uffd = child.adopt();
  uffd.register({ address: child.address, length: child.size });
  const events: UffdEvent[] = [];
  const iter = (async () => {
    for await (const ev of uffd) {
      if (ev.type === 'pagefault') uffd.zeropage({ address: ev.address - (ev.address % PAGE), length: PAGE });
      else events.push(ev);
    }
  })();
  t.equal(await child.send('touch'), 'SUM 0');
  const moved = await child.send('remap 131072');
  const to = Number(/^REMAPPED (\d+)$/.exec(moved)![1]);
  t.equal(await child.send('unmap'), 'UNMAPPED');
  t.equal(await child.send('dontneed'), 'REMOVED');
  // (growing with mremap may add UNMAP events of its own: look for each one we caused)
  const has = (want: object) => events.some((e) => Object.entries(want).every(([k, v]) => (e as unknown as Record<string, unknown>)[k] === v));
  t.ok(has({ type: 'remap', from: child.address, to, length: 16 * PAGE }), 'REMAP with the old and new address');
  t.ok(has({ type: 'unmap', start: to, end: to + PAGE }), 'UNMAP of the first page');
  t.ok(has({ type: 'remove', start: to + PAGE, end: to + 32 * PAGE }), 'REMOVE of the rest (madvise DONTNEED)');
  uffd.close();
  await iter;  // the iterator ends when the userfaultfd closes
});

void t.test('POISON: the served process gets SIGBUS on a poisoned page', async (t) => {
  const child = await UffdChild.start(4 * PAGE, ['POISON']);
  t.teardown(() => child.kill());
  const uffd = child.adopt();
  uffd.register({ address: child.address, length: child.size });
  t.equal(uffd.poison({ address: child.address + PAGE, length: PAGE }), PAGE);
  uffd.on('pagefault', (ev) => uffd.zeropage({ address: ev.address - (ev.address % PAGE), length: PAGE }));
  child.proc.stdin.write('touch\n');
  const { signal } = await child.exited;
  t.equal(signal, 'SIGBUS');
  uffd.close();
});

void t.test('the served process resumes when its only handler closes the userfaultfd', async (t) => {
  const child = await UffdChild.start(8 * PAGE);
  t.teardown(() => child.kill());
  const uffd = child.adopt();
  uffd.register({ address: child.address, length: child.size });
  t.equal(await child.send('closefd'), 'CLOSED');
  const answer = child.send('touch');  // blocks: nobody serves
  await new Promise((r) => setTimeout(r, 100));
  uffd.close();
  t.equal(await answer, 'SUM 0', 'woken with fresh zero pages');
});

void t.test('the served process resumes when its handler process is killed', async (t) => {
  const child = await UffdChild.start(8 * PAGE);
  t.teardown(() => child.kill());
  const lib = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../lib/index.js');
  // A handler process that adopts the fd, registers, and then never serves.
  const handler = spawn(process.execPath, ['--input-type=module', '-e', `
    import { Userfaultfd } from ${JSON.stringify(lib)};
    const u = Userfaultfd.fromProcess(${child.pid}, ${child.fd});
    u.register({ address: ${child.address}, length: ${child.size} });
    console.log('registered');
    setInterval(() => {}, 1000);`], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise((r) => handler.stdout.once('data', r));
  t.equal(await child.send('closefd'), 'CLOSED');
  const answer = child.send('touch');
  await new Promise((r) => setTimeout(r, 100));
  handler.kill('SIGKILL');
  t.equal(await answer, 'SUM 0');
});
