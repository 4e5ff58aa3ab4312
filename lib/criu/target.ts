// The process a dump names, checked before CRIU runs: CRIU's own answer for a
// missing pid or a kernel thread is "Unable to detach from N: No such process".
import { readFile } from 'node:fs/promises';
import { CriuError } from './errors.js';

const PF_KTHREAD = 0x00200000;

/** Refuse a pid that does not exist (ERR_NO_PROCESS, a zombie counts as gone) or is a kernel thread. */
export async function checkDumpable(op: string, pid: number): Promise<void> {
  let stat: string;
  try {
    stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  } catch {
    throw new CriuError(`${op}: no process ${pid}`, { code: 'ERR_NO_PROCESS', op });
  }
  // pid (comm) state ppid pgrp session tty_nr tpgid flags …; comm may hold spaces and parentheses.
  const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  if (fields[0] === 'Z')
    throw new CriuError(`${op}: process ${pid} (${comm}) has exited`, { code: 'ERR_NO_PROCESS', op });
  if (Number(fields[6]) & PF_KTHREAD) {
    throw new CriuError(`${op}: pid ${pid} (${comm}) is a kernel thread; CRIU checkpoints user processes only`, {
      code: 'ERR_CRIU_UNSUPPORTED',
      op,
    });
  }
}
