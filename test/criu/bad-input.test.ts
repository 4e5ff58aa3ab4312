// Bad input to the CRIU binding: typed errors with CRIU's reason and log, nothing left behind.
import t, { type Test } from 'tap';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { criu } from '../../lib/index.js';
import { decodeStats } from '../../lib/criu/stats.js';
import { alive, images, startTarget } from '../helpers/criu-target.js';
import { until } from '../../testkit/wait.js';

void t.test('wrong option types are refused before CRIU runs', async (t) => {
  const dir = path.join(images(t), 'never-made');
  const bad: [string, unknown][] = [
    ['no options', undefined],
    ['pid as a string', { pid: '12', imagesDir: dir }],
    ['pid 0', { pid: 0, imagesDir: dir }],
    ['pid fractional', { pid: 1.5, imagesDir: dir }],
    ['no imagesDir', { pid: 12 }],
    ['logLevel 9', { pid: 12, imagesDir: dir, logLevel: 9 }],
    ['manageCgroups nonsense', { pid: 12, imagesDir: dir, manageCgroups: 'maybe' }],
    ['networkLock nonsense', { pid: 12, imagesDir: dir, networkLock: 'ufw' }],
    ['leaveRunning not boolean', { pid: 12, imagesDir: dir, leaveRunning: 1 }],
    ['both leave options', { pid: 12, imagesDir: dir, leaveRunning: true, leaveStopped: true }],
    ['hooks with a non-function', { pid: 12, imagesDir: dir, hooks: { postDump: 1 } }],
    ['an unknown hook', { pid: 12, imagesDir: dir, hooks: { postDupm() {} } }],
    ['netns with a slash', { pid: 12, imagesDir: dir, netns: '../x' }],
    ['pageServer without port', { pid: 12, imagesDir: dir, pageServer: { address: '127.0.0.1' } }],
    ['logFile in a subfolder', { pid: 12, imagesDir: dir, logFile: 'a/b.log' }],
    ['signal not an AbortSignal', { pid: 12, imagesDir: dir, signal: {} }],
  ];
  for (const [what, o] of bad) {
    await t.rejects(
      criu.dump(o as criu.DumpOptions),
      { name: /TypeError|RangeError/, code: /ERR_INVALID_ARG_TYPE|ERR_OUT_OF_RANGE/ },
      what,
    );
  }
  await t.rejects(criu.restore({ imagesDir: dir, inheritFds: [{ key: 1 }] } as unknown as criu.RestoreOptions), {
    code: 'ERR_INVALID_ARG_TYPE',
  });
  await t.rejects(criu.restore({ imagesDir: dir, tcpClose: 'yes' } as unknown as criu.RestoreOptions), {
    code: 'ERR_INVALID_ARG_TYPE',
    message: /tcpClose/,
  });
  await t.rejects(
    criu.dumpLazy({ pid: 12, imagesDir: dir } as criu.DumpOptions & { pageServer: criu.PageServerAddress }),
    { code: 'ERR_INVALID_ARG_TYPE' },
  );
  await t.rejects(criu.lazyPages({ imagesDir: dir, pageServer: { address: '127.0.0.1', port: 70000 } }), {
    code: 'ERR_OUT_OF_RANGE',
  });
  t.notOk(existsSync(dir), 'no folder made for refused arguments');
});

void t.test('an unknown PID and a kernel thread are refused before CRIU runs', async (t) => {
  // An unused PID: above pid_max.
  const unknown = 4194304 + 1000;
  for (const [what, pid, code, message] of [
    ['unknown pid', unknown, 'ERR_NO_PROCESS', /^(pre-)?dump: no process 4195304$/],
    ['kthreadd', 2, 'ERR_CRIU_UNSUPPORTED', /^(pre-)?dump: pid 2 \(kthreadd\) is a kernel thread/],
  ] as const) {
    const dir = path.join(images(t), 'never-made');
    for (const call of [
      () => criu.dump({ pid, imagesDir: dir, leaveRunning: true }),
      () => criu.preDump({ pid, imagesDir: dir }),
      () => criu.dumpLazy({ pid, imagesDir: dir, pageServer: { address: '127.0.0.1', port: 1 } }),
    ]) {
      const e = await call().then(
        () => null,
        (x: unknown) => x as criu.CriuError,
      );
      t.ok(e instanceof criu.CriuError, `${what}: CriuError`);
      t.match(e, { code, op: /dump/, message }, `${what}: ${e?.message}`);
      t.equal(e?.logFile, undefined, `${what}: CRIU did not run`);
    }
    t.notOk(existsSync(dir), `${what}: no folder made`);
  }
});

void t.test("PID 1: CRIU's first real error, not its RLIMIT_NOFILE complaint, and the log", async (t) => {
  const dir = images(t);
  const e = await criu.dump({ pid: 1, imagesDir: dir, leaveRunning: true }).then(
    () => null,
    (x: unknown) => x as criu.CriuError,
  );
  t.ok(e instanceof criu.CriuError);
  t.match(e, { code: 'ERR_CRIU', op: 'dump', logFile: path.join(dir, 'dump.log') });
  t.ok((e?.logTail ?? '').length > 0, "the log's tail is attached");
  firstRealError(t, e, path.join(dir, 'dump.log'));
  t.ok(alive(1));
});

/** The message and criuMessage name the log's first error line, skipping RLIMIT_NOFILE and "FAILED." summaries. */
function firstRealError(t: Test, e: criu.CriuError | null, log: string): void {
  const errors = readFileSync(log, 'utf8')
    .split('\n')
    .filter((l) => /Error \(/.test(l) && !/RLIMIT_NOFILE|FAILED\./.test(l))
    .map((l) => l.replace(/^\([0-9. ]+\)\s*(\d+:\s*)?/, '').trim());
  t.ok(errors.length > 0, 'the log has an error line');
  t.equal(e?.criuMessage, errors[0], `criuMessage is the first real error: ${e?.criuMessage}`);
  t.ok(e?.message.includes(errors[0]), 'so is the message');
  t.notMatch(e?.criuMessage ?? '', /RLIMIT_NOFILE/);
}

void t.test('a restore names the first error (the cause), not the last', async (t) => {
  // A tree holding a file open whose size then changes: CRIU refuses it ("File … has bad
  // size"), then fails on what follows from that; the cause is the first error line.
  const dir = images(t);
  const work = mkdtempSync('/tmp/sos-criu-file-');
  t.teardown(() => rmSync(work, { recursive: true, force: true }));
  const file = path.join(work, 'data');
  writeFileSync(file, '');
  const u = spawn('unshare', ['--pid', '--fork', 'setsid', 'sh', '-c', `exec 3<>${file}; exec sleep 1000`], {
    stdio: 'ignore',
    detached: true,
  });
  u.unref();
  let pid = 0;
  await until(
    () => {
      try {
        pid = Number(readFileSync(`/proc/${u.pid}/task/${u.pid}/children`, 'utf8').trim().split(' ')[0]);
        return pid > 0 && readFileSync(`/proc/${pid}/cmdline`, 'utf8').startsWith('sleep');
      } catch {
        return false;
      }
    },
    15_000,
    'the workload started',
  );
  t.teardown(() => {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  });
  await criu.dump({ pid, imagesDir: dir });
  writeFileSync(file, 'x'.repeat(54));
  const e = await criu.restore({ imagesDir: dir }).then(
    (r) => (process.kill(r.pid, 'SIGKILL'), null),
    (x: unknown) => x as criu.CriuError,
  );
  t.ok(e instanceof criu.CriuError, 'the restore failed');
  t.match(e?.criuMessage, /has bad size 54 \(expect 0\)/);
  t.match(e?.message, /restore failed: .*has bad size 54 \(expect 0\)/);
  firstRealError(t, e, path.join(dir, 'restore.log'));
});

void t.test('nonexistent, empty, corrupt and truncated image folders', async (t) => {
  await t.rejects(criu.restore({ imagesDir: '/tmp/sos-criu-does-not-exist' }), {
    code: 'ERR_CRIU_IMAGES',
    op: 'restore',
  });
  const empty = images(t);
  await t.rejects(criu.restore({ imagesDir: empty }), { code: 'ERR_CRIU', op: 'restore' }, 'an empty folder');

  const target = await startTarget();
  t.teardown(() => target.cleanup());
  const good = images(t);
  await criu.dump({ pid: target.pid, imagesDir: good, leaveRunning: true, logLevel: 1 });
  const copy = (): string => {
    const d = images(t);
    for (const f of readdirSync(good)) writeFileSync(path.join(d, f), readFileSync(path.join(good, f)));
    return d;
  };
  const corrupt = copy();
  writeFileSync(path.join(corrupt, 'pstree.img'), Buffer.from('definitely not a CRIU image'));
  const e1 = await criu.restore({ imagesDir: corrupt }).then(
    () => null,
    (x: unknown) => x as criu.CriuError,
  );
  t.equal(e1?.code, 'ERR_CRIU', 'corrupt pstree.img');
  t.ok(e1?.logTail, 'with the log tail');

  const truncated = copy();
  const core = readdirSync(truncated).find((f) => f.startsWith('core-'))!;
  truncateSync(path.join(truncated, core), 12);
  truncateSync(path.join(truncated, 'pstree.img'), 10);
  await t.rejects(criu.restore({ imagesDir: truncated }), { code: 'ERR_CRIU' }, 'truncated images');
  t.ok(alive(target.pid), 'the original still runs');

  // The stats reader refuses what is not a stats image.
  await t.rejects(decodeStats(Buffer.from('garbage!garbage!'), 'x'), { code: 'ERR_CRIU_IMAGES' });
  await t.rejects(decodeStats(Buffer.alloc(4), 'x'), { code: 'ERR_CRIU_IMAGES' });
  rmSync(path.join(good, 'stats-dump'));
  t.equal(await criu.readDumpStats(good), null, 'no stats file: null');
});

void t.test('pre-dump / trackMem without soft-dirty tracking: a clear typed error', async (t) => {
  const c = await criu.check();
  const target = await startTarget();
  t.teardown(() => target.cleanup());
  const dir = images(t);
  if (c.dirtyTracking) {
    const r = await criu.preDump({ pid: target.pid, imagesDir: dir });
    t.ok(r.stats && r.stats.pagesWritten > 0, 'pre-dump wrote pages');
  } else {
    await t.rejects(criu.preDump({ pid: target.pid, imagesDir: dir }), {
      code: 'ERR_CRIU_UNSUPPORTED',
      op: 'pre-dump',
      message: /soft-dirty/,
    });
    await t.rejects(criu.dump({ pid: target.pid, imagesDir: dir, trackMem: true }), { code: 'ERR_CRIU_UNSUPPORTED' });
  }
  t.ok(alive(target.pid));
  t.equal((await target.verify()).ok, true);
});

void t.test('abort: a signal kills CRIU, the call rejects with AbortError, the process survives', async (t) => {
  const target = await startTarget();
  t.teardown(() => target.cleanup());
  const ac = new AbortController();
  const p = criu.dump({
    pid: target.pid,
    imagesDir: images(t),
    signal: ac.signal,
    hooks: {
      preDump: () => {
        ac.abort();
        return new Promise<void>(() => {});
      },
    }, // CRIU waits on us: abort meanwhile
  });
  await t.rejects(p, { name: 'AbortError', code: 'ABORT_ERR' });
  t.ok(alive(target.pid), 'the process was not dumped');
  t.equal((await target.verify()).ok, true);
  const pre = new AbortController();
  pre.abort();
  await t.rejects(
    criu.dump({ pid: target.pid, imagesDir: images(t), signal: pre.signal }),
    { name: 'AbortError' },
    'already aborted',
  );
});
