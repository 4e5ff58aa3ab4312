// Self-fencing against the real kernel: a workload with a deadline ahead runs on while the deadline
// is moved; its watchdog (one, however often it is ensured) kills every process of its cgroup once
// the deadline passes, and leaves its mark; with no deadline a workload is not fenced at all.
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import {
  ensureWatchdog,
  isFenced,
  FENCED_FILE,
  writeFenceDeadline,
  FENCE_MARGIN_MS,
} from '../../lib/apps/self-fence.js';
import { alive } from '../../lib/migration/proc.js';
import { open, stateDir } from './kit.js';
import { until } from '../../testkit/wait.js';

/** The watchdogs of `dir` (not counting one's child forked to exec sleep, which shows the same command line a moment). */
function watchdogs(dir: string): number[] {
  const all = fs
    .readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .filter((d) => {
      try {
        const argv = fs.readFileSync(`/proc/${d}/cmdline`, 'utf8').split('\0');
        return argv[3] === 'sos-fence' && argv[4] === dir;
      } catch {
        return false;
      }
    })
    .map(Number);
  const ppid = (pid: number) => {
    try {
      return Number(/^PPid:\s+(\d+)$/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]);
    } catch {
      return 0;
    }
  };
  return all.filter((p) => !all.includes(ppid(p)));
}

void t.test('a fenced workload dies when its deadline passes, and not before', async (t) => {
  const w = await open(stateDir(t));
  t.teardown(() => w.close());
  // Two processes in the group: the watchdog kills them all.
  const r = await w.run({ app: 'job', argv: ['sh', '-c', 'sleep 1000 & wait'] });
  const { dir, group } = w.where('job', r.id);
  t.notOk(isFenced(dir), 'not fenced until a deadline is written');

  writeFenceDeadline(dir, Date.now() + 60_000);
  ensureWatchdog(dir, group!);
  ensureWatchdog(dir, group!);
  await until(() => watchdogs(dir).length > 0, 30_000, 'the watchdog to run');
  ensureWatchdog(dir, group!);
  t.equal(watchdogs(dir).length, 1, 'one watchdog, however often it is ensured');
  t.ok(isFenced(dir));
  t.ok(alive(r.pid) && !fs.existsSync(path.join(dir, FENCED_FILE)), 'a deadline ahead: it runs on');

  const procs = fs.readFileSync(group!.procsFiles()[0], 'utf8').split('\n').filter(Boolean).map(Number);
  t.ok(procs.length >= 2, `its cgroup holds ${procs.length} processes`);
  // Due now (less than the margin ahead counts as due).
  writeFenceDeadline(dir, Date.now() + FENCE_MARGIN_MS - 1);
  await until(() => procs.every((p) => !alive(p)), 30_000, 'the watchdog to kill the group');
  t.pass('every process of the group was killed');
  t.ok(fs.existsSync(path.join(dir, FENCED_FILE)), 'and the watchdog left its mark');
  const done = await w.wait('job', r.id);
  t.equal(done.signal, 'SIGKILL', 'the workload exited by SIGKILL');
  await until(() => watchdogs(dir).length === 0, 30_000, 'the watchdog to end with the group');
  t.pass('the watchdog ended once the group was empty');
  t.ok(fs.existsSync(path.join(dir, 'fence-until')));
});
