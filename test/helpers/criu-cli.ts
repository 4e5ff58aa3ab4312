// CRIU driven by hand through its command line, as the workload tests and
// the benchmark's baseline use it. Kept to these two functions so tests can
// switch to the library API in one place.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export const CRIU = process.env.SOS_CRIU ?? '/usr/local/sbin/criu';

export interface CliOptions {
  /** Run criu inside /run/netns/<netns> (the workload's, or the restore target's). */
  netns?: string;
  /** ESTABLISHED TCP connections (adds --tcp-established and nftables network locking). */
  tcp?: boolean;
  /** More criu arguments. */
  extra?: string[];
}

async function criu(args: string[], dir: string, log: string, opts: CliOptions): Promise<number> {
  const cmd = [CRIU, ...args, '-D', dir, '-o', log, '-v4'];
  if (opts.tcp) cmd.push('--tcp-established', '--network-lock', 'nftables');
  cmd.push(...(opts.extra ?? []));
  if (opts.netns) cmd.unshift('nsenter', `--net=/run/netns/${opts.netns}`);
  const start = performance.now();
  try {
    // CRIU_FAULT=130: on VMs whose debug breakpoints never fire, CRIU hangs without it.
    await run(cmd[0], cmd.slice(1), { env: { ...process.env, CRIU_FAULT: '130' }, timeout: 120_000 });
  } catch (e) {
    let tail = '';
    try {
      tail = fs.readFileSync(path.join(dir, log), 'utf8').split('\n').filter((l) => /Error|error/.test(l)).slice(-8).join('\n');
    } catch {
      // no log
    }
    throw new Error(`criu ${args[0]} failed (${(e as Error).message.split('\n')[0]}); ${path.join(dir, log)}:\n${tail}`);
  }
  return performance.now() - start;
}

/** `criu dump -t pid -D dir` (the process is killed unless `extra` has --leave-running); resolves with the ms it took. */
export function cliDump(pid: number, dir: string, opts: CliOptions = {}): Promise<number> {
  fs.mkdirSync(dir, { recursive: true });
  return criu(['dump', '-t', String(pid)], dir, 'dump.log', opts);
}

/** `criu restore -D dir --restore-detached`; resolves with the restored root's host pid and the ms it took. */
export async function cliRestore(dir: string, opts: CliOptions = {}): Promise<{ pid: number; ms: number }> {
  const pidfile = path.join(dir, 'restored.pid');
  fs.rmSync(pidfile, { force: true });
  const ms = await criu(['restore', '--restore-detached', '--pidfile', pidfile], dir, 'restore.log', opts);
  return { pid: Number(fs.readFileSync(pidfile, 'utf8').trim()), ms };
}
