// A workload's record: what a later sosd needs to find the process again, written durably
// (lib/durable.ts) at start and at exit, and read back shape-checked.
import fs from 'node:fs';
import path from 'node:path';
import type { CgroupDescription, CgroupLimits } from '../cgroups/index.js';
import { writeDurable } from '../durable.js';
import { AppError } from './errors.js';
import { APP_NAME } from './names.js';

/** One application process, as `run`, `list` and `get` return it. */
export interface WorkloadRecord {
  app: string;
  /** This process's number within its application, never reused in a state folder. */
  id: number;
  /** Its pid in its own PID namespace: always 1, the namespace's init (CRIU keeps it on restore). */
  vpid: number;
  /** Its pid on this host. */
  pid: number;
  /** ISO time of the start. */
  startedAt: string;
  /** 'migrated': it left this node by live migration (`movedTo` says where); it is not running here. */
  state: 'running' | 'exited' | 'migrated';
  argv: string[];
  cwd: string;
  limits: CgroupLimits;
  cgroup: CgroupDescription;
  logs: { stdout: string; stderr: string };
  /**
   * The exit status, 0-255, as the supervisor saw it (a death by signal N reads 128+N, as in a
   * shell); null while running, or when no supervisor was left to record it.
   */
  exitCode: number | null;
  /** The signal name when `exitCode` is 128+N for a signal N; null otherwise. */
  signal: string | null;
  exitedAt: string | null;
  /** The process's start time in clock ticks (/proc/PID/stat), to tell it from a reused pid. */
  startTime: number;
  /**
   * The supervisor between sosd and the init, which writes the exit status; null for a process that
   * came in by migration (CRIU restores the tree, not its parent): its exit code is then unknown.
   */
  supervisor: { pid: number; startTime: number } | null;
  /** Where it went, once migrated away; null otherwise. */
  movedTo?: string | null;
  /** The node it came from, when it came in by migration. */
  movedFrom?: string | null;
}

export const RECORD = 'record.json';

export async function writeRecord(dir: string, r: WorkloadRecord): Promise<void> {
  await writeDurable(path.join(dir, RECORD), `${JSON.stringify(r, null, 2)}\n`);
}

const isInt = (v: unknown): v is number => Number.isSafeInteger(v);
const isStr = (v: unknown): v is string => typeof v === 'string';

/** The record in `dir`, null when there is none; an AppError `ERR_BAD_RECORD` when it does not parse. */
export function readRecord(dir: string): WorkloadRecord | null {
  const file = path.join(dir, RECORD);
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new AppError(`cannot read ${file}`, { code: 'ERR_BAD_RECORD', path: file, cause: e });
  }
  let r: Partial<WorkloadRecord>;
  try {
    r = JSON.parse(text) as Partial<WorkloadRecord>;
  } catch (e) {
    throw new AppError(`${file} is not JSON`, { code: 'ERR_BAD_RECORD', path: file, cause: e });
  }
  const ok =
    r &&
    typeof r === 'object' &&
    isStr(r.app) &&
    APP_NAME.test(r.app) &&
    isInt(r.id) &&
    isInt(r.vpid) &&
    isInt(r.pid) &&
    r.pid > 0 &&
    isInt(r.startTime) &&
    (r.state === 'running' || r.state === 'exited' || r.state === 'migrated') &&
    Array.isArray(r.argv) &&
    r.argv.every(isStr) &&
    isStr(r.startedAt) &&
    r.cgroup &&
    typeof r.cgroup === 'object' &&
    (r.supervisor === null || (r.supervisor && isInt(r.supervisor.pid) && isInt(r.supervisor.startTime))) &&
    r.logs &&
    isStr(r.logs.stdout) &&
    isStr(r.logs.stderr);
  if (!ok) throw new AppError(`${file} is not a workload record`, { code: 'ERR_BAD_RECORD', path: file });
  return r as WorkloadRecord;
}

/** The status the supervisor wrote, or null when it has not (yet). */
export function readExitStatus(dir: string): number | null {
  try {
    const m = /^(\d{1,3})\n$/.exec(fs.readFileSync(path.join(dir, 'exit-status'), 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}
