// What the workload tests share: a state folder and cgroup prefix of their own, and a teardown
// that kills and removes every workload a test left, even when the test failed half-way.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Test } from 'tap';
import { Workloads, type WorkloadsOptions } from '../../lib/apps/index.js';
import { startTime } from '../../lib/apps/proc.js';
import { onExit } from '../../testkit/cleanup.js';

/** Groups nest under this process's own cgroups, under a prefix of this test process (inherited by its children through the environment). */
export const CGROUPS = {
  prefix: (process.env.SOS_TEST_APPS_PREFIX ??= `sos-test-apps-${process.pid}`),
  under: 'self',
} as const;

/** A fresh state folder, removed (with every workload a record in it names) at teardown and on exit. */
export function stateDir(t: Test): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sos-apps-'));
  const sweep = () => {
    killRecorded(dir);
    fs.rmSync(dir, { recursive: true, force: true });
  };
  const cancel = onExit(sweep);
  t.teardown(async () => {
    cancel();
    // A Workloads of our own cleans the cgroups too (the dead owner's lock is taken over).
    killRecorded(dir);
    try {
      const w = await Workloads.open({ stateDir: dir, cgroups: CGROUPS });
      for (const r of w.list()) {
        await w.wait(r.app, r.id);
        await w.remove(r.app, r.id);
      }
      w.close();
      w.cgroups.removeEmpty();
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
  return dir;
}

/** SIGKILL every supervisor and init a record in `dir` names (synchronous: usable on exit). */
export function killRecorded(dir: string): void {
  for (const app of safeList(dir))
    for (const id of safeList(path.join(dir, app))) {
      try {
        const r = JSON.parse(fs.readFileSync(path.join(dir, app, id, 'record.json'), 'utf8')) as {
          pid: number;
          startTime: number;
          supervisor: { pid: number; startTime: number };
        };
        for (const p of [r, r.supervisor]) if (startTime(p.pid) === p.startTime) process.kill(p.pid, 'SIGKILL'); // never a reused pid
      } catch {
        // no record
      }
    }
}

function safeList(dir: string): string[] {
  try {
    return fs.readdirSync(dir);
  } catch {
    return [];
  }
}

export async function open(dir: string, more: Partial<WorkloadsOptions> = {}): Promise<Workloads> {
  return await Workloads.open({ stateDir: dir, cgroups: CGROUPS, ...more });
}

/** Fields of /proc/PID/stat after the command: [state, ppid, pgrp, session, …]. */
export function stat(pid: number): string[] {
  const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  return s.slice(s.lastIndexOf(')') + 2).split(' ');
}
