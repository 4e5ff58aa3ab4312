// Bad arguments fail with clear, typed errors, before anything is made.
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { AppError, Workloads } from '../../lib/apps/index.js';
import { SosError } from '../../lib/errors.js';
import { CGROUPS, open, stateDir } from './kit.js';

void t.test('bad arguments', async (t) => {
  const dir = stateDir(t);
  const w = await open(dir);
  t.teardown(() => w.close());
  const rejects = async (p: Promise<unknown>, code: string, msg: RegExp, what: string) => {
    const e = (await p.then(
      () => null,
      (err: unknown) => err,
    )) as { code?: string; message?: string } | null;
    t.ok(e instanceof SosError, `${what}: a SosError`);
    t.match(e, { code, message: msg }, what);
  };
  for (const app of ['Web', '', '-web', 'web-', 'a_b', 'a.b', 'x'.repeat(64), '../x'])
    await rejects(
      w.run({ app, argv: ['true'] }),
      'ERR_BAD_APP_NAME',
      /bad application name/,
      `app ${JSON.stringify(app)}`,
    );
  const long = await w.run({ app: 'x'.repeat(63), argv: ['true'] });
  t.match(await w.wait(long.app, long.id), { exitCode: 0 }, '63 characters is fine');
  await w.remove(long.app, long.id);
  await rejects(w.run({ app: 5 as never, argv: ['true'] }), 'ERR_INVALID_ARG_TYPE', /app must be a string/, 'app type');
  await rejects(w.run({ app: 'web', argv: [] }), 'ERR_INVALID_ARG_TYPE', /argv/, 'empty argv');
  await rejects(
    w.run({ app: 'web', argv: ['true', 3 as never] }),
    'ERR_INVALID_ARG_TYPE',
    /argv\[1\]/,
    'argv of a number',
  );
  await rejects(w.run({ app: 'web', argv: ['a\0b'] }), 'ERR_INVALID_ARG_VALUE', /NUL/, 'NUL in argv');
  await rejects(
    w.run({ app: 'web', argv: ['true'], env: { 'A=B': 'x' } }),
    'ERR_INVALID_ARG_VALUE',
    /env name/,
    'env name',
  );
  await rejects(
    w.run({ app: 'web', argv: ['true'], env: { A: 1 as never } }),
    'ERR_INVALID_ARG_TYPE',
    /env\.A/,
    'env value',
  );
  await rejects(w.run({ app: 'web', argv: ['true'], cwd: 'tmp' }), 'ERR_INVALID_ARG_VALUE', /absolute/, 'relative cwd');
  await rejects(
    w.run({ app: 'web', argv: ['true'], cwd: '/nonexistent' }),
    'ENOENT',
    /chdir \/nonexistent/,
    'missing cwd',
  );
  await rejects(
    w.run({ app: 'web', argv: ['no-such-program-here'] }),
    'ENOENT',
    /no such executable/,
    'program not found',
  );
  await rejects(w.run({ app: 'web', argv: ['true'], limits: { pids: 0 } }), 'ERR_OUT_OF_RANGE', /pids/, 'a bad limit');
  const notFound = t.throws(() => w.get('web', 999)) as AppError;
  t.ok(notFound instanceof AppError);
  t.equal(notFound.code, 'ERR_APP_NOT_FOUND');
  t.throws(() => w.get('web', 0), { code: 'ERR_INVALID_ARG_VALUE' }, 'id 0');
  t.throws(() => w.logs('web', 999), { code: 'ERR_APP_NOT_FOUND' });
  t.throws(() => w.kill('web', 999, 'SIGTERM'), { code: 'ERR_APP_NOT_FOUND' });
  await rejects(w.remove('web', 999), 'ERR_APP_NOT_FOUND', /no workload web\/999/, 'remove unknown');

  const r = await w.run({ app: 'web', argv: ['sleep', '1000'] });
  t.teardown(() => {
    try {
      w.kill('web', r.id, 'SIGKILL');
    } catch {
      // exited
    }
  });
  t.throws(() => w.kill('web', r.id, 'SIGFOO'), { code: 'ERR_INVALID_ARG_VALUE', message: /unknown signal "SIGFOO"/ });
  t.throws(() => w.kill('web', r.id, 9 as never), { code: 'ERR_INVALID_ARG_TYPE', message: /signal name/ });
  t.throws(() => w.logs('web', r.id, { stream: 'both2' as never }), {
    code: 'ERR_INVALID_ARG_VALUE',
    message: /stream/,
  });
  t.throws(() => w.logs('web', r.id, { tailBytes: -1 }), { code: 'ERR_OUT_OF_RANGE', message: /tailBytes/ });
  t.same(
    w.list().map((x) => x.id),
    [r.id],
    'nothing was made by the failed runs',
  );
  t.same(fs.readdirSync(path.join(dir, 'web')).sort(), [String(r.id), 'next-id'].sort(), 'no folder left by them');
  w.kill('web', r.id, 'SIGKILL');
  await w.wait('web', r.id);
  await w.remove('web', r.id);
});

void t.test('bad options and a closed Workloads', async (t) => {
  await t.rejects(Workloads.open(undefined as never), { code: 'ERR_INVALID_ARG_TYPE' });
  await t.rejects(Workloads.open({ stateDir: '' }), { code: 'ERR_INVALID_ARG_TYPE', message: /stateDir/ });
  await t.rejects(Workloads.open({ stateDir: '/tmp/x', pollMs: 0 }), { code: 'ERR_OUT_OF_RANGE', message: /pollMs/ });
  await t.rejects(Workloads.open({ stateDir: '/tmp/x', maxLogBytes: 10 }), {
    code: 'ERR_OUT_OF_RANGE',
    message: /maxLogBytes/,
  });
  await t.rejects(Workloads.open({ stateDir: '/tmp/x', cgroups: { prefix: '../x' } }), {
    code: 'ERR_INVALID_ARG_VALUE',
    message: /prefix/,
  });
  const dir = stateDir(t);
  const w = await open(dir);
  await t.rejects(
    Workloads.open({ stateDir: dir, cgroups: CGROUPS }),
    { code: 'ERR_STATE_LOCKED' },
    'one Workloads per folder',
  );
  w.close();
  w.close();
  t.pass('close is idempotent');
  t.throws(() => w.list(), { code: 'ERR_CLOSED' });
  await t.rejects(w.run({ app: 'web', argv: ['true'] }), { code: 'ERR_CLOSED' });
});
