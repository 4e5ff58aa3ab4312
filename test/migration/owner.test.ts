// A migration's owner is known by pid and start time; a zombie owner is gone (its runs may be resolved).
import { spawn } from 'node:child_process';
import t from 'tap';
import { sameProcess, startedAt, state } from '../../lib/migration/proc.js';
import { waitFor } from '../../testkit/wait.js';

void t.test('an owner that is a zombie no longer holds its migrations', async (t) => {
  // `sleep 0` is sh's child; sh then becomes `sleep 30`, which never reaps it: a zombie with a known pid.
  const parent = spawn('sh', ['-c', 'sleep 0 & echo $!; exec sleep 30'], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.teardown(() => parent.kill('SIGKILL'));
  let out = '';
  parent.stdout.on('data', (d: Buffer) => (out += d.toString()));
  await waitFor(() => /^\d+\n/.test(out), 'the child pid');
  const zombie = Number(out.trim());
  await waitFor(() => state(zombie) === 'Z', 'the child to become a zombie');
  const started = startedAt(zombie);
  t.ok(started, 'a zombie still has a start time');
  t.notOk(sameProcess(zombie, started ?? undefined), 'but it is not the owner any more');
  t.ok(sameProcess(parent.pid, startedAt(parent.pid!) ?? undefined), 'a live process with its start time is');
  t.notOk(sameProcess(parent.pid, 'another-boot/1'), 'one with another start time is not');
});
