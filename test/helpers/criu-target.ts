// A process to checkpoint in the CRIU tests: test/fixtures/criu-target.py run
// as the init of its own PID namespace and session (`unshare --pid --fork setsid`).
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, unlinkSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Test } from 'tap';
import { until } from '../../testkit/wait.js';

const fixture = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../test/fixtures/criu-target.py');

export interface Target {
  /** Host PID of the namespace's init (the python process). */
  pid: number;
  dir: string;
  /** Ask process `pid` (default the original) for its report: memory intact and tick count. */
  verify(pid?: number): Promise<{ ok: boolean; ticks: number }>;
  /** SIGKILL `pid` (and the original) if alive; remove the folder. */
  cleanup(...pids: number[]): void;
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    // A zombie still answers kill(0): look at its state.
    const st = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/^\d+ \(.*\) Z/.test(st);
  } catch {
    return false;
  }
}

/** `sharedPidns`: run in this PID namespace (setsid only), so a restore needs its very PID. */
// Targets not cleaned up by their test (a test that threw early): killed when this process exits.
const started = new Set<number>();
process.once('exit', () => {
  for (const p of started) {
    try {
      process.kill(p, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
});

export async function startTarget(opts: { mib?: number; netns?: string; sharedPidns?: boolean } = {}): Promise<Target> {
  const dir = mkdtempSync('/tmp/sos-criu-');
  const report = path.join(dir, 'report');
  const argv = ['unshare', '--pid', '--fork', 'setsid', 'python3', fixture, String(opts.mib ?? 1), report];
  if (opts.sharedPidns) argv.splice(0, 4, 'setsid', '--fork', '--wait');
  if (opts.netns) argv.unshift('nsenter', `--net=/run/netns/${opts.netns}`);
  const u = spawn(argv[0], argv.slice(1), { stdio: 'ignore', detached: true });
  u.unref();
  let pid = 0;
  try {
    await until(
      () => {
        try {
          pid = Number(readFileSync(`/proc/${u.pid}/task/${u.pid}/children`, 'utf8').trim().split(' ')[0]);
        } catch {
          /* not yet */
        }
        return pid > 0 && existsSync(report + '.ready');
      },
      15_000,
      'the CRIU test target started',
    );
  } catch (e) {
    for (const p of [pid, u.pid ?? 0])
      if (p > 0) {
        try {
          process.kill(p, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  const first = pid;
  started.add(first);
  return {
    pid,
    dir,
    async verify(p = first) {
      try {
        unlinkSync(report);
      } catch {
        /* none yet */
      }
      process.kill(p, 'SIGUSR1');
      await until(() => existsSync(report), 10_000, `process ${p} reported`);
      const [state, ticks] = readFileSync(report, 'utf8').trim().split(' ');
      return { ok: state === 'ok', ticks: Number(ticks) };
    },
    cleanup(...pids) {
      started.delete(first);
      for (const p of [first, ...pids]) {
        try {
          process.kill(p, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A fresh images folder under /tmp, removed after the test. */
export function images(t: Test): string {
  const d = mkdtempSync('/tmp/sos-criu-img-');
  t.teardown(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

/** A fresh CRIU work folder under /tmp, removed after the test. */
export function workFolder(t: Test): string {
  const d = mkdtempSync('/tmp/sos-criu-work-');
  t.teardown(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

/** A target (killed after the test with every pid pushed to `restored`) and an images folder. */
export async function scene(
  t: Test,
  opts: Parameters<typeof startTarget>[0] = {},
): Promise<{ target: Target; restored: number[]; dir: string }> {
  const target = await startTarget(opts);
  const restored: number[] = [];
  t.teardown(() => target.cleanup(...restored));
  return { target, restored, dir: images(t) };
}
