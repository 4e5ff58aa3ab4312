// A workload as pid 1 of its own PID namespace, in its own cgroup, its output in files: started,
// signalled, exited and removed against the real kernel, waiting only on conditions.
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { CGROUPS, open, stat, stateDir } from './kit.js';
import { until } from '../../testkit/wait.js';

/** A shell that prints, exits 3 on SIGTERM, echoes "ping" on SIGUSR1 (it can: it has handlers). */
const SERVER =
  'trap "exit 3" TERM; trap "echo ping" USR1; echo hello; echo oops >&2; while :; do sleep 1000 & wait $!; done';

void t.test('run: pid 1 of a new PID namespace, in its cgroup, output kept, SIGTERM, remove', async (t) => {
  const dir = stateDir(t);
  const w = await open(dir);
  t.teardown(() => w.close());
  const r = await w.run({ app: 'web', argv: ['sh', '-c', SERVER], limits: { memoryBytes: 64 << 20, pids: 32 } });
  t.match(r, { app: 'web', id: 1, vpid: 1, state: 'running', exitCode: null, argv: ['sh', '-c', SERVER] });
  t.match(
    fs.readFileSync(`/proc/${r.pid}/status`, 'utf8'),
    new RegExp(`^NSpid:\\s+${r.pid}\\s+1$`, 'm'),
    'NSpid: host pid, then 1',
  );

  const cgroupOf = fs.readFileSync(`/proc/${r.pid}/cgroup`, 'utf8');
  for (const dirOf of Object.values(r.cgroup.dirs)) t.ok(fs.statSync(dirOf).isDirectory(), `${dirOf} exists`);
  t.match(cgroupOf, new RegExp(`/${CGROUPS.prefix}/web/1$`, 'm'), 'the init is in web/1');
  const mem =
    r.cgroup.version === 1
      ? path.join(r.cgroup.dirs.memory, 'memory.limit_in_bytes')
      : path.join(r.cgroup.dirs.unified, 'memory.max');
  t.equal(fs.readFileSync(mem, 'utf8').trim(), String(64 << 20), 'the memory limit is in force');
  t.match(r.limits, { memoryBytes: 64 << 20, pids: 32 }, 'and recorded');

  // Not tied to us: its own session, away from our process group (a SIGKILL of sosd spares it).
  await until(() => Number(stat(r.pid)[3]) === r.pid, 60_000, 'the program leads its own session (setsid inside)');
  t.not(Number(stat(r.pid)[2]), Number(stat(process.pid)[2]), 'not in our process group');
  t.equal(Number(stat(r.supervisor!.pid)[3]), r.supervisor!.pid, 'the supervisor leads its own session');

  t.same(
    JSON.parse(fs.readFileSync(path.join(dir, 'web', '1', 'record.json'), 'utf8')),
    r,
    'the record is on disk when run resolves',
  );
  t.same(w.get('web', 1), r);
  t.same(w.list(), [r]);

  await until(() => w.logs('web', 1).stderr === 'oops\n', 60_000, 'stderr is captured');
  const offsets = { stdout: 6, stderr: 5 };
  t.same(w.logs('web', 1), { stdout: 'hello\n', stderr: 'oops\n', offsets });
  t.same(w.logs('web', 1, { stream: 'stdout' }), { stdout: 'hello\n', stderr: null, offsets });
  t.same(w.logs('web', 1, { stream: 'stderr', tailBytes: 2 }), { stdout: null, stderr: 's\n', offsets }, 'a tail');
  t.same(w.logs('web', 1, { from: offsets }), { stdout: '', stderr: '', offsets }, 'following: nothing new yet');
  t.same(w.logs('web', 1, { from: { stdout: 2 } }).stdout, 'llo\n', 'from an offset');
  t.throws(() => w.logs('web', 1, { from: { stdout: -1 } }), { code: 'ERR_OUT_OF_RANGE' });
  t.equal(fs.readFileSync(r.logs.stdout, 'utf8'), 'hello\n', 'logs are plain files');

  w.kill('web', 1, 'SIGUSR1');
  await until(() => w.logs('web', 1).stdout === 'hello\nping\n', 60_000, 'SIGUSR1 reached the init');
  const u = w.usage('web', 1);
  t.ok(u.pids !== null && u.pids >= 1, `tasks in the group: ${u.pids}`);
  t.ok(u.memoryBytes !== null && u.memoryBytes > 0, `memory: ${u.memoryBytes}`);
  t.ok(u.cpuSeconds !== null && u.cpuSeconds > 0, `cpu: ${u.cpuSeconds}`);

  await t.rejects(w.remove('web', 1), { code: 'ERR_APP_RUNNING' });
  const exits: unknown[] = [];
  w.on('exit', (x) => exits.push(x));
  w.kill('web', 1, 'SIGTERM');
  const done = await w.wait('web', 1);
  t.match(done, { state: 'exited', exitCode: 3, signal: null });
  t.ok(done.exitedAt, 'exit time recorded');
  t.same(exits, [done], "an 'exit' event");
  t.match(
    JSON.parse(fs.readFileSync(path.join(dir, 'web', '1', 'record.json'), 'utf8')),
    { state: 'exited', exitCode: 3 },
    'the exit is on disk',
  );
  t.throws(() => w.kill('web', 1, 'SIGTERM'), { code: 'ERR_APP_EXITED' });
  t.same(w.usage('web', 1).pids, 0, 'its group is empty');

  await w.remove('web', 1);
  for (const d of Object.values(r.cgroup.dirs)) t.notOk(fs.existsSync(d), `${d} is gone`);
  t.notOk(fs.existsSync(path.join(dir, 'web', '1')), 'its files are gone');
  t.throws(() => w.get('web', 1), { code: 'ERR_APP_NOT_FOUND' });
  const again = await w.run({ app: 'web', argv: ['true'] });
  t.equal(again.id, 2, 'ids are not reused');
  t.match(await w.wait('web', 2), { exitCode: 0, signal: null });
});

void t.test('exit status: by itself, by SIGKILL (the whole namespace goes)', async (t) => {
  const dir = stateDir(t);
  const w = await open(dir);
  t.teardown(() => w.close());
  const seven = await w.run({ app: 'job', argv: ['sh', '-c', 'echo bye; exit 7'], env: { A: 'x y' } });
  t.match(await w.wait('job', seven.id), { state: 'exited', exitCode: 7, signal: null });
  t.equal(w.logs('job', seven.id).stdout, 'bye\n');

  const env = await w.run({
    app: 'job',
    argv: ['sh', '-c', 'echo "$A|$PATH|$(pwd)"'],
    env: { A: 'it\'s "quoted" $HOME' },
    cwd: '/tmp',
  });
  await w.wait('job', env.id);
  t.match(
    w.logs('job', env.id).stdout,
    /^it's "quoted" \$HOME\|\/usr\/local\/sbin:.*\|\/tmp\n$/,
    'env and cwd as given, nothing expanded',
  );

  // The init forks a child; SIGKILL of the init takes every process of the namespace.
  const tree = await w.run({ app: 'job', argv: ['sh', '-c', 'sleep 1000 & echo started; wait'] });
  await until(
    () => w.logs('job', tree.id).stdout === 'started\n' && w.usage('job', tree.id).pids === 2,
    60_000,
    'the tree is up',
  );
  w.kill('job', tree.id, 'SIGKILL');
  t.match(await w.wait('job', tree.id), { exitCode: 137, signal: 'SIGKILL' }, 'status 128+9, read as SIGKILL');
  await until(() => w.usage('job', tree.id).pids === 0, 60_000, 'the group empties');
  await w.remove('job', tree.id);
});

void t.test('pids.max holds inside a workload', async (t) => {
  const dir = stateDir(t);
  const w = await open(dir);
  t.teardown(() => w.close());
  const r = await w.run({
    app: 'forky',
    argv: ['sh', '-c', 'i=0; while [ $i -lt 10 ]; do sleep 1000 & i=$((i+1)); done; wait'],
    limits: { pids: 4 },
  });
  if (r.cgroup.version === 1) {
    const events = path.join(r.cgroup.dirs.pids, 'pids.events');
    await until(() => /^max [1-9]/m.test(fs.readFileSync(events, 'utf8')), 60_000, 'a fork is refused');
  } else {
    await until(() => /fork/i.test(w.logs('forky', r.id).stderr ?? ''), 60_000, 'a fork is refused');
  }
  t.ok(w.usage('forky', r.id).pids! <= 4, `at most 4 tasks (${w.usage('forky', r.id).pids})`);
  // dash may give up at the refused fork and exit by itself
  t.doesNotThrow(() => {
    try {
      w.kill('forky', r.id, 'SIGKILL');
    } catch (e) {
      if ((e as { code?: string }).code !== 'ERR_APP_EXITED') throw e;
    }
  });
  await w.wait('forky', r.id);
  await w.remove('forky', r.id);
  for (const d of Object.values(r.cgroup.dirs)) t.notOk(fs.existsSync(d), `${d} is gone`);
});

void t.test('logs are bounded: the last maxLogBytes move to .1, the current file is truncated', async (t) => {
  const dir = stateDir(t);
  const w = await open(dir, { maxLogBytes: 4096, pollMs: 5 });
  t.teardown(() => w.close());
  // 300 numbered lines of 100 bytes on stdout, then END on stderr (which stays small), then it stays.
  const script = 'i=0; while [ $i -lt 300 ]; do printf "%099d\\n" $i; i=$((i+1)); done; echo END >&2; exec sleep 1000';
  const r = await w.run({ app: 'chatty', argv: ['sh', '-c', script] });
  const old = `${r.logs.stdout}.1`;
  await until(() => w.logs('chatty', r.id).stderr === 'END\n', 60_000, 'all written');
  await until(() => fs.existsSync(old) && fs.statSync(r.logs.stdout).size <= 4096, 60_000, 'stdout is trimmed');
  t.ok(fs.statSync(old).size <= 4096, `${old}: ${fs.statSync(old).size} bytes`);
  const kept = w.logs('chatty', r.id, { tailBytes: 8192 }).stdout!;
  t.ok(kept.length <= 8192, `${kept.length} bytes kept of 30 000`);
  t.notMatch(kept, /^0{99}\n/m, 'the first lines are dropped');
  // Rotation cuts the older file at a byte bound, and may lose what is written between its copy and truncation.
  t.match(kept.slice(kept.indexOf('\n') + 1), /^(\d{99}\n)*$/, 'whole lines after the first cut');
  w.kill('chatty', r.id, 'SIGKILL');
  await w.wait('chatty', r.id);
});
