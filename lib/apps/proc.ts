// What /proc says about a process: whether a pid is still the process we started (pids are
// reused, so a pid is compared together with its start time), and its pid in its own namespace.
import fs from 'node:fs';

/** A process as kept in a record: its pid and its start time in clock ticks since boot. */
export interface ProcIdentity {
  pid: number;
  startTime: number;
}

/** Fields of /proc/PID/stat after the command (which may hold spaces and ')'). */
function statFields(pid: number): string[] | null {
  let text: string;
  try {
    text = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  return text.slice(text.lastIndexOf(')') + 2).split(' ');
}

/** The start time of `pid` (field 22 of /proc/PID/stat), or null when there is no such process. */
export function startTime(pid: number): number | null {
  const f = statFields(pid);
  return f ? Number(f[19]) : null;
}

/** Whether `id` is still running: the same pid with the same start time, and not a zombie. */
export function isAlive(id: ProcIdentity): boolean {
  const f = statFields(id.pid);
  return f !== null && Number(f[19]) === id.startTime && f[0] !== 'Z' && f[0] !== 'X';
}

/** `pid`'s pid in each PID namespace it is in, outermost first (NSpid of /proc/PID/status). */
export function nsPids(pid: number): number[] | null {
  try {
    const m = /^NSpid:\s+(.*)$/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? m[1].trim().split(/\s+/).map(Number) : null;
  } catch {
    return null;
  }
}

/** `pid` and every process below it (through each thread's children list), parents first. */
export function treePids(pid: number): number[] {
  const out: number[] = [];
  const todo = [pid];
  while (todo.length) {
    const p = todo.shift()!;
    if (out.includes(p)) continue;
    out.push(p);
    let tasks: string[];
    try {
      tasks = fs.readdirSync(`/proc/${p}/task`);
    } catch {
      continue;
    }
    for (const t of tasks) {
      try {
        const kids = fs.readFileSync(`/proc/${p}/task/${t}/children`, 'utf8').trim();
        if (kids) todo.push(...kids.split(/\s+/).map(Number));
      } catch {
        // the thread ended meanwhile
      }
    }
  }
  return out;
}
