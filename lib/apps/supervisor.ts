// How a workload is started so that it outlives sosd and its exit status is still kept.
//
// sosd → `unshare --pid` exec'ing the supervisor (sh, its own session) → init (its first child,
// so pid 1 of the new PID namespace), which joins the workload's cgroups, waits for sosd's go,
// and execs the program through setsid.
//
// Why a shell and util-linux rather than a C helper: no extra binary to build, ship and find, and
// every piece of data (paths, argv) travels as a positional parameter expanded as "$@", never
// pasted into script text, so nothing needs quoting. The price: a shell sees a death by signal N
// as status 128+N, so a program that exits with 128+N itself reads the same (as in every shell).
//
// - The supervisor is spawned detached (setsid): not in sosd's process group or session, stdio on
//   the log files (O_APPEND) and /dev/null, so SIGKILL of sosd, or of its systemd unit in
//   KillMode=process, leaves it alone. When the init exits it writes the status to `exit-status`,
//   whether sosd is there or not. It writes with a shell builtin in one write(): once the
//   namespace's init is gone no process can be forked in it, so no mv or sync; sosd reads the
//   file and records the exit durably.
// - Not `unshare --fork`: that unshare re-raises the init's fatal signal on itself through
//   signal(SIGKILL, SIG_DFL), which fails, and exits 1 ("sigprocmask unblock failed").
// - The init writes 0 to each cgroup.procs (0 moves the writer itself) before exec, so the program
//   and all it forks are limited from the first instruction; sosd reads the init's host pid from
//   the fresh group meanwhile. fd 3 (a socket to sosd) is the handshake and is closed before exec;
//   if sosd dies before its go, the init reads EOF and exits 125.
// - setsid inside: the program leads its own session, as CRIU wants of a tree it dumps.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { Socket } from 'node:net';
import { AppError } from './errors.js';

/** The status the init exits with when its setup failed (a cgroup, the handshake). */
export const SETUP_FAILED = 125;

const SUPERVISOR = [
  'dir=$1 setsid=$2 init=$3',
  'shift 3',
  // the shell's own notes ("Killed") go nowhere, the init takes the log back from fd 4
  'exec 4>&2 2>/dev/null',
  '/bin/sh -c "$init" sos-init "$setsid" "$@"',
  'st=$?',
  'printf "%s\\n" "$st" > "$dir/exit-status"',
  'exit "$st"',
].join('\n');

const INIT = [
  'exec 2>&4 4>&-',
  'setsid=$1 n=$2',
  'shift 2',
  'case $n in "" | *[!0-9]*) echo "sos-init: bad cgroup count" >&2; exit 125 ;; esac',
  'while [ "$n" -gt 0 ]; do echo 0 > "$1" || exit 125; shift; n=$((n - 1)); done',
  'echo r >&3 || exit 125',
  'read -r go <&3 || exit 125',
  '[ "$go" = g ] || exit 125',
  'exec 3>&-',
  'exec "$setsid" -- "$@"',
].join('\n');

/** The tools the scripts run, by absolute path (found once, on sosd's PATH). */
export interface Tools {
  unshare: string;
  setsid: string;
}

/** Where `name` is on `pathVar`, or null. */
export function which(name: string, pathVar: string): string | null {
  if (name.includes('/')) return isExecutable(name) ? name : null;
  for (const d of pathVar.split(':')) {
    if (!d) continue;
    const f = path.join(d, name);
    if (isExecutable(f)) return f;
  }
  return null;
}

function isExecutable(f: string): boolean {
  try {
    fs.accessSync(f, fs.constants.X_OK);
    return fs.statSync(f).isFile();
  } catch {
    return false;
  }
}

export function findTools(pathVar = process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin'): Tools {
  const out: Partial<Tools> = {};
  for (const name of ['unshare', 'setsid'] as const) {
    const f = which(name, `${pathVar}:/usr/bin:/bin:/usr/sbin:/sbin`);
    if (!f)
      throw new AppError(`${name} is not installed (util-linux is needed)`, {
        code: 'ENOENT',
        syscall: 'execve',
        path: name,
      });
    out[name] = f;
  }
  return out as Tools;
}

/** A supervisor started and past the handshake's first half: the init waits for `go()`. */
export interface Started {
  child: ChildProcess;
  /** Let the init exec the program. */
  go(): void;
  /** Kill the supervisor, unshare and the init (one process group until the init's setsid). */
  abort(): void;
}

export interface StartSpec {
  dir: string;
  argv: string[];
  env: Record<string, string>;
  cwd: string;
  procsFiles: string[];
  stdoutFd: number;
  stderrFd: number;
  tools: Tools;
  /** Give up on a supervisor that neither fails nor reaches the handshake in this many ms. */
  timeoutMs: number;
  /** The tail of the stderr log, for the error when the start fails. */
  stderrTail: () => string;
}

/** Spawn the supervisor and wait until the init is in its cgroups and waits for the go. */
export async function startSupervisor(spec: StartSpec): Promise<Started> {
  const { tools } = spec;
  const args = [
    '--pid',
    '--',
    '/bin/sh',
    '-c',
    SUPERVISOR,
    'sos-supervise',
    spec.dir,
    tools.setsid,
    INIT,
    String(spec.procsFiles.length),
    ...spec.procsFiles,
    ...spec.argv,
  ];
  const child = spawn(tools.unshare, args, {
    detached: true,
    cwd: spec.cwd,
    env: spec.env,
    stdio: ['ignore', spec.stdoutFd, spec.stderrFd, 'pipe'],
  });
  const sock = child.stdio[3] as Socket;
  const abort = () => {
    try {
      if (child.pid) process.kill(-child.pid, 'SIGKILL');
    } catch {
      // already gone
    }
    sock.destroy();
  };
  await new Promise<void>((resolve, reject) => {
    let buf = '';
    const fail = (why: string, cause?: unknown) => {
      clearTimeout(timer);
      abort();
      const tail = spec.stderrTail().trim();
      reject(
        new AppError(`the workload did not start: ${why}${tail ? `: ${tail}` : ''}`, { code: 'ERR_APP_START', cause }),
      );
    };
    const timer = setTimeout(() => fail(`no handshake within ${spec.timeoutMs} ms`), spec.timeoutMs);
    child.once('error', (e) => fail(`spawn ${tools.unshare} failed (${(e as NodeJS.ErrnoException).code})`, e));
    child.once('exit', (code, signal) => fail(`the supervisor exited (${signal ?? `status ${code}`})`));
    sock.on('error', () => undefined);
    sock.on('data', (d: Buffer) => {
      buf += d.toString();
      if (!buf.includes('r\n')) return;
      clearTimeout(timer);
      child.removeAllListeners('exit');
      child.removeAllListeners('error');
      resolve();
    });
  });
  return {
    child,
    abort,
    go() {
      sock.end('g\n');
      sock.unref();
      child.unref();
    },
  };
}
