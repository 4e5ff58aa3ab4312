// A restarted sosd re-adopts: the Workloads runs in a child process that is SIGKILLed, the
// workload goes on (output still captured), and a new Workloads on the same state folder finds it,
// reads its logs, signals it, and records its exit, with the status the supervisor kept.
import t, { type Test } from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { WorkloadRecord } from '../../lib/apps/index.js';
import { isAlive } from '../../lib/apps/proc.js';
import { open, stateDir } from './kit.js';
import { until } from '../../testkit/wait.js';

const holder = path.join(path.dirname(fileURLToPath(import.meta.url)), 'holder.js');
// The trap is set before "started": a signal before it would reach a pid 1 with no handler, and be dropped.
const SERVER = 'trap "echo ping" USR1; echo started; while :; do sleep 1000 & wait $!; done';

/** Run SERVER from a child "sosd", then SIGKILL that child; the workload's record. */
async function runInDoomedSosd(t: Test, dir: string): Promise<WorkloadRecord> {
  const child = spawn(process.execPath, [holder, dir, 'sh', '-c', SERVER], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.teardown(() => void child.kill('SIGKILL'));
  let out = '';
  child.stdout.setEncoding('utf8');
  const rec = await new Promise<WorkloadRecord>((resolve, reject) => {
    child.stdout.on('data', (d: string) => {
      out += d;
      if (out.includes('\n')) resolve(JSON.parse(out) as WorkloadRecord);
    });
    child.once('exit', (c, s) => reject(new Error(`the holder exited (${s ?? c})`)));
  });
  await t.rejects(open(dir), { code: 'ERR_STATE_LOCKED' }, 'the folder is taken while its sosd lives');
  const gone = new Promise((r) => child.once('exit', r));
  child.kill('SIGKILL');
  await gone;
  t.ok(isAlive(rec), 'the workload outlived its sosd');
  t.ok(isAlive(rec.supervisor!), 'and so did its supervisor');
  return rec;
}

void t.test('re-adoption of a running workload after sosd was SIGKILLed', async (t) => {
  const dir = stateDir(t);
  const rec = await runInDoomedSosd(t, dir);
  // Output is captured while no sosd runs.
  await until(() => fs.readFileSync(rec.logs.stdout, 'utf8') === 'started\n', 60_000, 'the program is up');
  process.kill(rec.pid, 'SIGUSR1');
  await until(
    () => fs.readFileSync(rec.logs.stdout, 'utf8') === 'started\nping\n',
    60_000,
    'output while sosd is down',
  );

  const w = await open(dir);
  t.teardown(() => w.close());
  t.same(w.list(), [rec], 'the record is found, running, as it was written');
  t.equal(w.logs('web', rec.id).stdout, 'started\nping\n');
  w.kill('web', rec.id, 'SIGUSR1');
  await until(
    () => w.logs('web', rec.id).stdout === 'started\nping\nping\n',
    60_000,
    'a signal through the new Workloads',
  );
  t.ok(w.usage('web', rec.id).pids! >= 1, 'usage from its cgroup');
  w.kill('web', rec.id, 'SIGKILL');
  t.match(
    await w.wait('web', rec.id),
    { state: 'exited', exitCode: 137, signal: 'SIGKILL' },
    'the exit of an adopted workload, with its status',
  );
  t.match(JSON.parse(fs.readFileSync(path.join(dir, 'web', String(rec.id), 'record.json'), 'utf8')), {
    state: 'exited',
    exitCode: 137,
  });
  await w.remove('web', rec.id);
  for (const d of Object.values(rec.cgroup.dirs)) t.notOk(fs.existsSync(d), `${d} is gone`);
});

void t.test('a workload that exited while no sosd ran: the supervisor kept its status', async (t) => {
  const dir = stateDir(t);
  const rec = await runInDoomedSosd(t, dir);
  process.kill(rec.pid, 'SIGKILL');
  await until(
    () => fs.existsSync(path.join(dir, 'web', String(rec.id), 'exit-status')),
    60_000,
    'the supervisor wrote the status',
  );
  const w = await open(dir);
  t.teardown(() => w.close());
  await until(() => w.get('web', rec.id).state === 'exited', 60_000, 'the exit is recorded');
  t.match(w.get('web', rec.id), { exitCode: 137, signal: 'SIGKILL' });
  await w.remove('web', rec.id);
});

void t.test('a pid now held by another process is not adopted', async (t) => {
  const dir = stateDir(t);
  const w1 = await open(dir);
  const r = await w1.run({ app: 'web', argv: ['true'] });
  await w1.wait('web', r.id);
  w1.close();
  // The same record, as if still running, naming a pid that is alive now (ours) but started at another time.
  const file = path.join(dir, 'web', String(r.id), 'record.json');
  const forged = { ...r, state: 'running', exitCode: null, signal: null, exitedAt: null, pid: process.pid };
  fs.writeFileSync(file, JSON.stringify(forged));
  fs.rmSync(path.join(dir, 'web', String(r.id), 'exit-status'));
  const w = await open(dir);
  t.teardown(() => w.close());
  t.match(w.get('web', r.id), { state: 'exited', exitCode: null, signal: null }, 'exited, status unknown');
  t.throws(() => w.kill('web', r.id, 'SIGKILL'), { code: 'ERR_APP_EXITED' }, 'and never signalled');
  await w.remove('web', r.id);
});

void t.test('leftovers: a start cut short (no record) is cleaned up, a bad record is skipped', async (t) => {
  const dir = stateDir(t);
  const logs: string[] = [];
  const log = {
    info: (_o: object, m?: string) => logs.push(m ?? ''),
    warn: (_o: object, m?: string) => logs.push(m ?? ''),
  };
  fs.mkdirSync(path.join(dir, 'web', '5'), { recursive: true });
  fs.mkdirSync(path.join(dir, 'web', '6'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'web', '6', 'record.json'), '{"app":');
  const w = await open(dir, { log });
  t.teardown(() => w.close());
  t.notOk(fs.existsSync(path.join(dir, 'web', '5')), 'the folder of a start cut short is gone');
  t.same(w.list(), []);
  t.ok(logs.includes('workload record skipped'), 'the bad record is logged');
  const r = await w.run({ app: 'web', argv: ['true'] });
  t.equal(r.id, 7, 'ids go past what the folder holds');
  await w.wait('web', r.id);
  await w.remove('web', r.id);
  fs.rmSync(path.join(dir, 'web', '6'), { recursive: true });
});
