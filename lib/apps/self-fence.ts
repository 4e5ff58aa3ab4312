// Self-fencing of a workload another node may restore (it has a checkpoint): its copy here must be
// dead before the cluster can take this node for dead, also when sosd itself is dead or cut off.
//
// A watchdog (sh, spawned detached like the supervisor, so it outlives sosd) kills every process of
// the workload's cgroup once the deadline in the workload's folder passes. sosd moves the deadline
// forward on every lease renewal etcd acknowledges, never past the moment the lease is surely held
// (Member.validUntil) less a margin; a dead or cut-off sosd moves it no more. The deadline is in
// /proc/uptime's centiseconds: a clock that the shell can read and that nobody sets.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { Cgroup } from '../cgroups/index.js';

/** The deadline (centiseconds of /proc/uptime), in the workload's folder. */
export const FENCE_FILE = 'fence-until';
/** Written by the watchdog when it killed the workload. */
export const FENCED_FILE = 'fenced';
const PID_FILE = 'watchdog.pid';
/** Kill this long before the lease may expire: the watchdog's poll, the kill and clock reads fit in it. */
export const FENCE_MARGIN_MS = 500;
const POLL_S = '0.1';

// $1 the folder, the rest the group's cgroup.procs files. It ends when the group is empty or gone.
const WATCHDOG = [
  'dir=$1',
  'shift',
  'while :; do',
  '  any=',
  '  for f; do read -r p < "$f" 2>/dev/null && any=1; done',
  '  [ -n "$any" ] || exit 0',
  '  if read -r until < "$dir/fence-until" 2>/dev/null; then',
  '    read -r up rest < /proc/uptime',
  '    now=${up%.*}${up#*.}',
  '    if [ "$now" -ge "$until" ]; then',
  '      [ -e "$dir/fenced" ] || echo "$now $until" > "$dir/fenced"',
  '      for f; do while read -r p; do kill -9 "$p" 2>/dev/null; done < "$f"; done',
  '    fi',
  '  fi',
  `  sleep ${POLL_S}`,
  'done',
].join('\n');

/** /proc/uptime now, in centiseconds. */
function uptimeCs(): number {
  const [up] = fs.readFileSync('/proc/uptime', 'utf8').split(' ');
  return Math.round(Number(up) * 100);
}

/**
 * Set `dir`'s deadline to `untilMs` (ms since the epoch) less the margin; 0 or a past time makes it
 * due at once. Replaced whole (rename), so the watchdog never reads half a number.
 */
export function writeFenceDeadline(dir: string, untilMs: number): void {
  const cs = Math.max(0, uptimeCs() + Math.floor((untilMs - FENCE_MARGIN_MS - Date.now()) / 10));
  const tmp = path.join(dir, `${FENCE_FILE}.tmp`);
  fs.writeFileSync(tmp, `${cs}\n`);
  fs.renameSync(tmp, path.join(dir, FENCE_FILE));
}

/** Whether `dir`'s workload is fenced (it has a deadline). */
export function isFenced(dir: string): boolean {
  return fs.existsSync(path.join(dir, FENCE_FILE));
}

/** The watchdogs this process started, by folder: one just spawned has not exec'd sh yet (its cmdline is ours). */
const started = new Map<string, ChildProcess>();

/** Start `dir`'s watchdog over `group` unless one runs (a restarted sosd finds the one before it). */
export function ensureWatchdog(dir: string, group: Cgroup): void {
  const mine = started.get(dir);
  if (mine && mine.exitCode === null && mine.signalCode === null) return;
  const file = path.join(dir, PID_FILE);
  let pid = 0;
  try {
    pid = Number(fs.readFileSync(file, 'utf8').trim());
  } catch {
    // none started yet
  }
  if (pid > 0 && isWatchdog(pid, dir)) return;
  const child = spawn('/bin/sh', ['-c', WATCHDOG, 'sos-fence', dir, ...group.procsFiles()], {
    detached: true,
    stdio: 'ignore',
  });
  child.unref();
  started.set(dir, child);
  child.once('exit', () => started.get(dir) === child && started.delete(dir));
  if (child.pid) fs.writeFileSync(file, `${child.pid}\n`);
}

/** Whether `pid` is the watchdog of `dir` (a pid file outlives its process, and pids are reused). */
function isWatchdog(pid: number, dir: string): boolean {
  try {
    const argv = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    return argv[3] === 'sos-fence' && argv[4] === dir;
  } catch {
    return false;
  }
}
