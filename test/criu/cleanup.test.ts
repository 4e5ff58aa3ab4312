// Workloads and test networks die with the test process that made them, on
// a plain exit and on SIGTERM (tap's timeout), even without kill()/close().
import t from 'tap';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { until, within } from '../../testkit/wait.js';

const testkit = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../testkit');
const base = fs.mkdtempSync(path.join(os.tmpdir(), 'sos-cl-'));
t.teardown(() => fs.rmSync(base, { recursive: true, force: true }));

/**
 * A node process that starts a workload and a net, prints their pid/namespace, then ends as
 * told: 'exit' exits (code 0) once the test writes a line to its stdin, after the test saw
 * both exist; 'wait' runs until killed.
 */
async function leaver(
  how: 'exit' | 'wait',
  dir: string,
): Promise<{ child: ReturnType<typeof spawn>; exited: Promise<void>; pid: number; netns: string }> {
  const script = `
    const { startWorkload } = await import(${JSON.stringify(path.join(testkit, 'workloads.js'))});
    const { makeNet } = await import(${JSON.stringify(path.join(testkit, 'netns.js'))});
    const w = await startWorkload('tree', { dir: ${JSON.stringify(dir)} });
    const net = await makeNet(1);
    console.log(JSON.stringify({ pid: w.pid, netns: net.nodes[0].netns }));
    if (${JSON.stringify(how)} === 'exit') process.stdin.once('data', () => process.exit(0));
    else setInterval(() => {}, 1000);`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const line = await within(
    new Promise<string>((resolve, reject) => {
      readline.createInterface({ input: child.stdout }).once('line', resolve);
      child.once('exit', (code) => reject(new Error(`helper process exited with ${code}`)));
    }),
    60_000,
    'the helper process to start its workload',
  );
  return { child, exited, ...(JSON.parse(line) as { pid: number; netns: string }) };
}

const gone = (pid: number): boolean => {
  try {
    return /^\d+ \(.*\) [ZX]/s.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return true;
  }
};

for (const how of ['exit', 'wait'] as const) {
  void t.test(
    `a workload and a net are removed when the process ${how === 'exit' ? 'exits' : 'gets SIGTERM'}`,
    async (t) => {
      const { child, exited, pid, netns } = await leaver(how, path.join(base, how));
      t.notOk(gone(pid), 'the workload runs');
      t.ok(fs.existsSync(`/run/netns/${netns}`), 'the namespace exists');
      if (how === 'wait') child.kill('SIGTERM');
      else child.stdin!.end('exit\n');
      await within(exited, 30_000, 'the helper process to end');
      await until(() => gone(pid), 20_000, 'the workload is gone');
      t.notOk(fs.existsSync(`/run/netns/${netns}`), 'the namespace is gone');
    },
  );
}
