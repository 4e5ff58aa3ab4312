// check() against this machine's real CRIU and kernel.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { criu } from '../../lib/index.js';

void t.test('check() reports this machine and is cached', async (t) => {
  const c = await criu.check();
  t.equal(c.ok, true, `ok (problems: ${c.problems.join('; ')})`);
  t.equal(c.criuPath, '/usr/local/sbin/criu');
  t.equal(c.version, '4.1.1');
  t.equal(await criu.version(), '4.1.1', 'VERSION request');
  t.equal(typeof c.hwBreakpoints, 'boolean');
  // The probe decides the environment CRIU gets: CRIU_FAULT=130 exactly when breakpoints do not fire.
  t.equal(c.faultInjection, c.hwBreakpoints ? null : 130);
  t.equal(
    c.problems.some((p) => p.includes('hardware breakpoints')),
    !c.hwBreakpoints,
  );
  t.equal(c.pipeMaxSize, Number(readFileSync('/proc/sys/fs/pipe-max-size', 'utf8')));
  t.equal(c.pipeMaxSizeOk, c.pipeMaxSize >= criu.LAZY_PIPE_SIZE);
  t.equal(c.features.lazyPages, true, 'lazy pages (userfaultfd) on this kernel');
  t.equal(c.userfaultfd, true);
  t.equal(c.dirtyTracking, c.features.memTrack, "dirty tracking is CRIU's mem_track");
  // CRIU's own CLI agrees on soft-dirty tracking.
  let cli = true;
  try {
    execFileSync('/usr/local/sbin/criu', ['check', '--feature', 'mem_dirty_track'], {
      stdio: 'pipe',
      env: { ...process.env, CRIU_FAULT: '130' },
    });
  } catch {
    cli = false;
  }
  t.equal(c.dirtyTracking, cli, 'same answer as `criu check --feature mem_dirty_track`');
  t.equal(await criu.check(), c, 'cached: the same object');
  const again = await criu.check({ refresh: true });
  t.not(again, c);
  t.same(again, c, 'a refresh finds the same');
});

void t.test('a missing criu is reported, not thrown', async (t) => {
  const c = await criu.check({ criuPath: '/nonexistent/criu' });
  t.equal(c.ok, false);
  t.equal(c.criuPath, null);
  t.match(c.problems.join('\n'), /criu not found/);
  await t.rejects(criu.version({ criuPath: '/nonexistent/criu' }), { code: 'ERR_CRIU_NOT_FOUND' });
  await criu.check({ refresh: true });
});

void t.test('CRIU_FAULT: decided by the probe, seen by the CRIU process', async (t) => {
  const { faultEnv } = await import('../../lib/criu/env.js');
  t.same(
    faultEnv(false, { A: '1' }),
    { env: { A: '1', CRIU_FAULT: '130' }, faultInjection: 130 },
    'no breakpoints: 130',
  );
  t.same(faultEnv(true, { A: '1' }), { env: { A: '1' }, faultInjection: null }, 'breakpoints fire: nothing added');
  t.same(faultEnv(true, { CRIU_FAULT: '130' }).faultInjection, 130, 'a CRIU_FAULT set by the caller is kept');
  // End to end: the environment the CRIU process serving a dump starts with. Not read from its
  // /proc/<pid>/environ: CRIU's setproctitle() zeroes that area as soon as a request arrives.
  // criuPath is a wrapper that saves its environment, then execs criu with it unchanged.
  const { startTarget, images, workFolder } = await import('../helpers/criu-target.js');
  const target = await startTarget();
  t.teardown(() => target.cleanup());
  const c = await criu.check();
  const dir = workFolder(t);
  const saved = path.join(dir, 'environ');
  const wrapper = path.join(dir, 'criu');
  writeFileSync(wrapper, `#!/bin/sh\ncat /proc/$$/environ > '${saved}'\nexec '${c.criuPath}' "$@"\n`, { mode: 0o755 });
  await criu.dump({ pid: target.pid, imagesDir: images(t), leaveRunning: true, criuPath: wrapper });
  const environ = readFileSync(saved, 'utf8');
  t.equal(
    /(^|\0)CRIU_FAULT=130(\0|$)/m.test(environ),
    c.faultInjection === 130 || process.env.CRIU_FAULT === '130',
    `CRIU runs with CRIU_FAULT=130 exactly when the probe says so (hwBreakpoints=${c.hwBreakpoints})`,
  );
});
