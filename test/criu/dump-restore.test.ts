// dump and restore of a real process on this machine, through CRIU's RPC.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { criu } from '../../lib/index.js';
import { alive, images, scene, startTarget } from '../helpers/criu-target.js';
import { until } from '../../testkit/wait.js';

void t.test('dump (killed) then restore: memory intact, hooks in order, stats plausible', async (t) => {
  const { target, restored, dir } = await scene(t, { mib: 4 });
  const seen: string[] = [];
  const d = await criu.dump({
    pid: target.pid,
    imagesDir: dir,
    hooks: {
      any: (e) => {
        seen.push(e.script);
      },
    },
  });
  await until(() => !alive(target.pid), 30_000, 'the dumped process is gone');
  t.same(
    seen.filter((s) => s !== 'query-ext-files'),
    ['pre-dump', 'post-dump'],
    'dump notifications in order',
  );
  t.ok(d.stats, 'stats-dump read');
  const s = d.stats!;
  t.ok(s.pagesWritten >= 4 * 256, `at least the 4 MiB pattern written (${s.pagesWritten} pages)`);
  t.ok(s.pagesScanned >= s.pagesWritten);
  t.ok(s.frozenTimeUs > 0 && s.frozenTimeUs >= s.memdumpTimeUs, 'frozen time covers the memory dump');
  t.equal(s.pagesLazy, 0);
  t.equal(d.imagesDir, dir);
  t.equal(d.logFile, `${dir}/dump.log`);
  t.match(readFileSync(d.logFile, 'utf8'), /Dumping finished successfully/);

  const order: [string, number | undefined][] = [];
  const rec =
    (name: string) =>
    (e: criu.CriuNotify): void => {
      order.push([name, e.pid]);
    };
  const r = await criu.restore({
    imagesDir: dir,
    pidfile: `${dir}/restored.pid`,
    hooks: {
      preRestore: rec('preRestore'),
      setupNamespaces: rec('setupNamespaces'),
      postRestore: rec('postRestore'),
      preResume: rec('preResume'),
      postResume: rec('postResume'),
    },
  });
  restored.push(r.pid);
  t.ok(r.pid > 0 && alive(r.pid), 'restored root runs');
  t.equal(readFileSync(`${dir}/restored.pid`, 'utf8').trim(), String(r.pid), 'pidfile');
  t.same(
    order.map((o) => o[0]),
    ['preRestore', 'setupNamespaces', 'postRestore', 'preResume', 'postResume'],
    'restore hooks in order',
  );
  t.equal(order[1][1], r.pid, 'setup-namespaces carries the restored pid');
  t.equal(order[2][1], r.pid, 'post-restore carries the restored pid');
  t.ok(r.stats && r.stats.pagesRestored >= 4 * 256, `restore stats (${r.stats?.pagesRestored} pages)`);
  t.ok(r.stats!.restoreTimeUs > 0);
  const v = await target.verify(r.pid);
  t.equal(v.ok, true, 'memory pattern intact after restore');
  t.comment(
    `dump ${d.ms.toFixed(0)} ms (frozen ${(s.frozenTimeUs / 1000).toFixed(1)} ms), restore ${r.ms.toFixed(0)} ms, 4 MiB`,
  );
});

void t.test('leaveRunning and leaveStopped', async (t) => {
  const target = await startTarget();
  t.teardown(() => target.cleanup());
  await criu.dump({ pid: target.pid, imagesDir: images(t), leaveRunning: true, logLevel: 2 });
  t.ok(alive(target.pid), 'still alive');
  const before = await target.verify();
  t.equal(before.ok, true);
  await criu.dump({ pid: target.pid, imagesDir: images(t), leaveStopped: true });
  const state = (): string => readFileSync(`/proc/${target.pid}/stat`, 'utf8').replace(/^.*\) /, '')[0];
  t.equal(state(), 'T', 'left stopped');
  process.kill(target.pid, 'SIGCONT');
  await until(() => state() !== 'T', 30_000, 'continued');
  t.equal((await target.verify()).ok, true, 'runs on after SIGCONT');
});

void t.test('a hook that throws fails the dump cleanly; the process survives', async (t) => {
  const target = await startTarget();
  t.teardown(() => target.cleanup());
  const dir = images(t);
  const boom = new Error('refused by the test');
  const err = await criu
    .dump({ pid: target.pid, imagesDir: dir, hooks: { postDump: () => Promise.reject(boom) } })
    .then(
      () => null,
      (e: unknown) => e as criu.CriuError,
    );
  t.ok(err instanceof criu.CriuError);
  t.equal(err?.code, 'ERR_CRIU_HOOK');
  t.equal(err?.cause, boom, "the hook's error is the cause");
  t.equal(err?.logFile, `${dir}/dump.log`);
  t.ok(alive(target.pid), 'the process was not killed');
  t.equal((await target.verify()).ok, true, 'and still works');
  const err2 = await criu
    .dump({
      pid: target.pid,
      imagesDir: images(t),
      hooks: {
        preDump() {
          throw new Error('no');
        },
      },
    })
    .catch((e: unknown) => e);
  t.match(err2, { code: 'ERR_CRIU_HOOK' }, 'a synchronous throw in pre-dump too');
  t.ok(alive(target.pid));
});

void t.test('restore into a network namespace (nsenter --net)', async (t) => {
  const ns = `sos-criu-${process.pid}`;
  const { execFileSync } = await import('node:child_process');
  execFileSync('ip', ['netns', 'add', ns]);
  execFileSync('ip', ['-n', ns, 'link', 'set', 'lo', 'up']); // CRIU probes TCP repair over loopback
  t.teardown(() => {
    try {
      execFileSync('ip', ['netns', 'del', ns]);
    } catch {
      /* gone */
    }
  });
  const { target, restored, dir } = await scene(t, { netns: ns });
  await criu.dump({ pid: target.pid, imagesDir: dir, netns: ns });
  const r = await criu.restore({ imagesDir: dir, netns: ns });
  restored.push(r.pid);
  const { readlinkSync } = await import('node:fs');
  const nsIno = (p: string): string => readlinkSync(p);
  t.equal(
    nsIno(`/proc/${r.pid}/ns/net`),
    `net:[${execFileSync('stat', ['-Lc', '%i', `/run/netns/${ns}`])
      .toString()
      .trim()}]`,
    'the restored process lives in the namespace',
  );
  t.equal((await target.verify(r.pid)).ok, true);
});

void t.test('restore options: root and manageCgroups; a busy PID is named', async (t) => {
  const { target, restored, dir } = await scene(t);
  await criu.dump({ pid: target.pid, imagesDir: dir, manageCgroups: 'soft' });
  const r = await criu.restore({ imagesDir: dir, root: '/', manageCgroups: 'soft', logLevel: 2 });
  restored.push(r.pid);
  t.equal((await target.verify(r.pid)).ok, true, 'restored with --root / and soft cgroup management');

  // A tree that shares our PID namespace needs its very PID back: still taken here.
  const shared = await startTarget({ sharedPidns: true });
  t.teardown(() => shared.cleanup());
  const dir2 = images(t);
  await criu.dump({ pid: shared.pid, imagesDir: dir2, leaveRunning: true });
  const e = await criu.restore({ imagesDir: dir2 }).then(
    () => null,
    (x: unknown) => x as criu.CriuError,
  );
  t.equal(e?.code, 'ERR_CRIU_PID_BUSY');
  t.match(e?.message, new RegExp(`PID ${shared.pid} is in use`));
  t.ok(alive(shared.pid), 'the original is untouched');
});
