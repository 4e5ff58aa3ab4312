// Bad input to the CRIU binding: typed errors with CRIU's reason and log, nothing left behind.
import t from 'tap';
import { existsSync, readFileSync, readdirSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { criu } from '../../lib/index.js';
import { decodeStats } from '../../lib/criu/stats.js';
import { alive, images, startTarget } from '../helpers/criu-target.js';

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
  await t.rejects(
    criu.dumpLazy({ pid: 12, imagesDir: dir } as criu.DumpOptions & { pageServer: criu.PageServerAddress }),
    { code: 'ERR_INVALID_ARG_TYPE' },
  );
  await t.rejects(criu.lazyPages({ imagesDir: dir, pageServer: { address: '127.0.0.1', port: 70000 } }), {
    code: 'ERR_OUT_OF_RANGE',
  });
  t.notOk(existsSync(dir), 'no folder made for refused arguments');
});

void t.test("unknown PID, PID 1 and a kernel thread: CRIU's reason and the log", async (t) => {
  // An unused PID: above pid_max.
  const unknown = 4194304 + 1000;
  for (const [what, pid] of [
    ['unknown pid', unknown],
    ['pid 1 (init of this machine)', 1],
    ['kthreadd', 2],
  ] as const) {
    const dir = images(t);
    const e = await criu.dump({ pid, imagesDir: dir, leaveRunning: true }).then(
      () => null,
      (x: unknown) => x as criu.CriuError,
    );
    t.ok(e instanceof criu.CriuError, `${what}: CriuError`);
    t.equal(e?.code, 'ERR_CRIU', what);
    t.equal(e?.op, 'dump');
    t.equal(e?.logFile, path.join(dir, 'dump.log'));
    t.ok((e?.logTail ?? '').length > 0, `${what}: the log's tail is attached`);
    t.match(e?.message, /dump failed: .+\(log: /, `${what}: ${e?.message}`);
  }
  t.ok(alive(1));
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
