// The process tree being migrated, seen through /proc.
import fs from 'node:fs';

/** The fields of /proc/PID/stat after the command name (state first, start time at 19), or null if gone. */
function statFields(pid: number): string[] | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return null;
  }
}

/** Whether `pid` exists (a zombie counts as gone). */
export function alive(pid: number): boolean {
  const f = statFields(pid);
  return f !== null && f[0] !== 'Z';
}

/** The one-letter state of `pid` (R, S, T, t, Z…), or null if gone. */
export function state(pid: number): string | null {
  return statFields(pid)?.[0] ?? null;
}

/** `pid` and all its descendants (parents first). */
export function tree(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${name}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      const list = children.get(ppid) ?? [];
      list.push(Number(name));
      children.set(ppid, list);
    } catch {
      // gone meanwhile
    }
  }
  const out: number[] = [];
  const walk = (p: number) => {
    out.push(p);
    for (const c of children.get(p) ?? []) walk(c);
  };
  walk(pid);
  return out;
}

/** Whether any thread of `pid` is stopped (job control 'T' or ptrace 't'). */
function anyThreadStopped(pid: number): boolean {
  let tids: string[];
  try {
    tids = fs.readdirSync(`/proc/${pid}/task`);
  } catch {
    return false;
  }
  return tids.some((tid) => {
    try {
      const stat = fs.readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const st = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
      return st === 'T' || st === 't';
    } catch {
      return false;
    }
  });
}

/**
 * Queue a SIGSTOP on every process of a tree CRIU holds frozen: it takes effect only when the
 * tree is let go, so a CRIU that dies (SIGKILL, OOM) or lets go without a decision leaves it
 * stopped instead of running. A copy may then be running elsewhere; only resumeTree() lets it run.
 */
export function holdStopped(pid: number): void {
  for (const p of tree(pid)) {
    try {
      process.kill(p, 'SIGSTOP');
    } catch {
      // gone
    }
  }
}

/**
 * SIGCONT every process of the tree (which also drops a SIGSTOP holdStopped() queued), then
 * each one that has a stopped thread, until none has been seen stopped for a few polls in a
 * row (CRIU may still be detaching, and a root thread that is running says nothing of its
 * other threads), or `ms`.
 */
export async function resumeTree(pid: number, ms = 5_000): Promise<void> {
  const end = performance.now() + ms;
  for (const p of tree(pid)) {
    try {
      process.kill(p, 'SIGCONT');
    } catch {
      // gone
    }
  }
  for (let quiet = 0; quiet < 5 && performance.now() < end;) {
    let stopped = false;
    for (const p of tree(pid)) {
      if (!anyThreadStopped(p)) continue;
      stopped = true;
      try {
        process.kill(p, 'SIGCONT');
      } catch {
        // gone
      }
    }
    quiet = stopped ? 0 : quiet + 1;
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Resolves once no tracer (CRIU) holds `pid` any more, or it is gone, or `ms` passed. */
export async function untraced(pid: number, ms = 30_000): Promise<void> {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    let tracer: string | undefined;
    try {
      tracer = /^TracerPid:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
    } catch {
      return;
    }
    if (tracer === '0') return;
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** SIGKILL the tree rooted at `pid` and wait (up to `ms`) until its root is gone. */
export async function killTree(pid: number, ms = 10_000): Promise<void> {
  for (const p of tree(pid)) {
    try {
      process.kill(p, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  const end = performance.now() + ms;
  while (alive(pid) && performance.now() < end) await new Promise((r) => setTimeout(r, 10));
}

/**
 * When `pid` started (clock ticks since boot, /proc/PID/stat field 22), with the boot id: a
 * record names its process by pid and this, so a pid reused later is never taken for it.
 */
export function startedAt(pid: number): string | null {
  const f = statFields(pid);
  return f && startOf(f);
}

/** The start ("boot/ticks") in a stat's fields. */
const startOf = (f: string[]): string | null => (f[19] ? `${bootId()}/${f[19]}` : null);

/** This boot of the machine (changes at every restart). */
export function bootId(): string {
  return fs.readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
}

/** Whether `pid` is the process a record named (same pid, same start). */
export function sameProcess(pid: number | undefined, started: string | undefined): boolean {
  // A zombie is gone: a killed owner whose parent does not reap it (a container's pid 1 that is no
  // init) would otherwise hold its migrations as running for ever.
  const f = pid && started ? statFields(pid) : null;
  return f !== null && f[0] !== 'Z' && startOf(f) === started;
}

/** This process's boot and network namespace ("boot/netns"), to tell two agents on one machine or in one namespace apart. */
export function placeId(): string {
  return `${bootId()}/${fs.statSync('/proc/self/ns/net').ino}`;
}

export interface CommandLine {
  pid: number;
  argv: string[];
}

/** Every live process's command line (arguments split): one pass over /proc, to ask several questions of. */
export function commandLines(): CommandLine[] {
  const out: { pid: number; argv: string[] }[] = [];
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      out.push({ pid: Number(name), argv: fs.readFileSync(`/proc/${name}/cmdline`, 'utf8').split('\0') });
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

/** Whether one of `procs` names `dir` or a path inside it on its command line. */
export function inUse(dir: string, procs: CommandLine[]): boolean {
  const d = dir.replace(/\/+$/, '');
  return procs.some(({ argv }) => argv.some((a) => a === d || a.startsWith(`${d}/`)));
}

/**
 * `criu lazy-pages` daemons left by an agent that died before their restore connected:
 * their command line names a folder under `workDir`, and they hold no userfaultfd yet.
 * (One that holds userfaultfds serves a running process and must live: without it, the
 * process's missing pages would read as zeros.)
 */
export function staleLazyDaemons(workDir: string, procs: CommandLine[]): number[] {
  const out: number[] = [];
  const prefix = `${workDir.replace(/\/+$/, '')}/`;
  for (const { pid, argv } of procs) {
    if (argv[1] !== 'lazy-pages' || !argv.some((a) => a.startsWith(prefix))) continue;
    try {
      const serving = fs.readdirSync(`/proc/${pid}/fd`).some((fd) => {
        try {
          return fs.readlinkSync(`/proc/${pid}/fd/${fd}`) === 'anon_inode:[userfaultfd]';
        } catch {
          return false;
        }
      });
      if (!serving) out.push(pid);
    } catch {
      // gone meanwhile
    }
  }
  return out;
}
