// Page server, lazy dump, lazy-pages daemon and lazy restore, locally, with the memory verified.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { criu } from '../../lib/index.js';
import { alive, images, scene, startTarget, workFolder } from '../helpers/criu-target.js';
import { until } from '../../testkit/wait.js';

void t.test('dump to a page server (port 0: CRIU picks one), restore, memory intact', async (t) => {
  const { target, restored, dir } = await scene(t, { mib: 4 });
  const ps = await criu.pageServer({ imagesDir: dir, address: '127.0.0.1', port: 0, logFile: 'ps.log' });
  t.teardown(() => ps.close());
  t.ok(ps.pid > 0 && alive(ps.pid), 'page server runs');
  t.ok(ps.port && ps.port > 0, `listens on port ${ps.port}`);
  const d = await criu.dump({ pid: target.pid, imagesDir: dir, pageServer: { address: '127.0.0.1', port: ps.port! } });
  await ps.exited;
  t.pass('the page server exits cleanly after the dump');
  t.ok(d.stats && d.stats.pagesWritten >= 4 * 256, 'pages went to the page server');
  const r = await criu.restore({ imagesDir: dir });
  restored.push(r.pid);
  t.equal((await target.verify(r.pid)).ok, true, 'memory intact');
  await ps.close();
  await ps.close();
});

void t.test('a page server closed before use', async (t) => {
  const ps = await criu.pageServer({ imagesDir: images(t), address: '127.0.0.1', port: 0 });
  await ps.close();
  t.notOk(alive(ps.pid), 'gone');
  await ps.exited;
});

void t.test('lazy dump + lazy-pages + lazy restore: imagesReady before the pages move; memory intact', async (t) => {
  const { target, restored, dir } = await scene(t, { mib: 8 });
  const work = workFolder(t);
  const port = 20000 + (process.pid % 20000);
  const seen: string[] = [];
  const ld = await criu.dumpLazy({
    pid: target.pid,
    imagesDir: dir,
    pageServer: { address: '127.0.0.1', port },
    hooks: {
      any: (e) => {
        seen.push(e.script);
      },
    },
  });
  let done = false;
  void ld.done.then(
    () => {
      done = true;
    },
    () => {
      done = true;
    },
  );
  await ld.imagesReady;
  t.notOk(done, 'the dump is still serving pages when the images are ready');
  t.ok(
    seen.includes('post-dump') && seen.at(-1) === 'status-ready',
    `status-ready follows the images (${seen.join(',')})`,
  );
  const lp = await criu.lazyPages({ imagesDir: dir, workDir: work, pageServer: { address: '127.0.0.1', port } });
  t.teardown(() => lp.close());
  const r = await criu.restore({ imagesDir: dir, workDir: work, lazyPages: true });
  restored.push(r.pid);
  const d = await ld.done;
  t.equal(d.stats, null, 'no CRIU stats for a lazy dump (4.1.1 resets them)');
  t.ok(d.imagesReadyMs! > 0 && d.imagesReadyMs! <= d.ms);
  await lp.exited;
  t.equal((await target.verify(r.pid)).ok, true, 'every page arrived: the pattern is intact');
  t.comment(
    `lazy: images ready after ${d.imagesReadyMs!.toFixed(0)} ms, restore ${r.ms.toFixed(0)} ms, dump done after ${d.ms.toFixed(0)} ms (8 MiB)`,
  );
  await until(() => !alive(target.pid), 30_000, 'the source process ends once its pages moved');
});

void t.test('lazy dump aborted while serving: the process is left running', async (t) => {
  const target = await startTarget();
  t.teardown(() => target.cleanup());
  const port = 20001 + (process.pid % 20000);
  const ld = await criu.dumpLazy({ pid: target.pid, imagesDir: images(t), pageServer: { address: '127.0.0.1', port } });
  await ld.imagesReady;
  ld.abort();
  await t.rejects(ld.done, { name: 'AbortError' });
  await until(
    () => {
      try {
        return /^\d+ \(.*\) [SR]/.test(readFileSync(`/proc/${target.pid}/stat`, 'utf8'));
      } catch {
        return false;
      }
    },
    10_000,
    'the frozen process runs again',
  );
  t.equal((await target.verify()).ok, true, 'runs with its memory');
});

void t.test('lazy-pages with nothing to serve fails with a typed error', async (t) => {
  const dir = images(t);
  const e = await criu.lazyPages({ imagesDir: dir, pageServer: { address: '127.0.0.1', port: 1 } }).then(
    async (d) => {
      await d.close();
      return null;
    },
    (x: unknown) => x as criu.CriuError,
  );
  t.equal(e?.code, 'ERR_CRIU', 'an empty images folder: CRIU refuses');
  t.equal(e?.logFile, `${dir}/lazy-pages.log`);
});
