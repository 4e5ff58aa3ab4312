// CRIU driven by hand through its command line, as the workload tests and
// the benchmark's baseline use it. Kept to these two functions so tests can
// switch to the library API in one place. Lazy (post-copy) runs use a
// dump serving pages, a lazy-pages daemon and `cliRestore(dir, { extra: ['--lazy-pages'] })`.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { exec } from '../lib/exec.js';

export const CRIU = process.env.SOS_CRIU ?? '/usr/local/sbin/criu';

export interface CliOptions {
  /** Run criu inside /run/netns/<netns> (the workload's, or the restore target's). */
  netns?: string;
  /** ESTABLISHED TCP connections (adds --tcp-established and nftables network locking). */
  tcp?: boolean;
  /** More criu arguments. */
  extra?: string[];
}

function command(args: string[], dir: string, log: string, opts: CliOptions): string[] {
  const cmd = [CRIU, ...args, '-D', dir, '-o', log, '-v4'];
  if (opts.tcp) cmd.push('--tcp-established', '--network-lock', 'nftables');
  cmd.push(...(opts.extra ?? []));
  if (opts.netns) cmd.unshift('nsenter', `--net=/run/netns/${opts.netns}`);
  return cmd;
}

function errorsIn(dir: string, log: string): string {
  try {
    return fs
      .readFileSync(path.join(dir, log), 'utf8')
      .split('\n')
      .filter((l) => /Error|error/.test(l))
      .slice(-8)
      .join('\n');
  } catch {
    return '';
  }
}

async function criu(args: string[], dir: string, log: string, opts: CliOptions): Promise<number> {
  const cmd = command(args, dir, log, opts);
  const start = performance.now();
  try {
    // CRIU_FAULT=130: on VMs whose debug breakpoints never fire, CRIU hangs without it.
    await exec(cmd[0], cmd.slice(1), { env: { ...process.env, CRIU_FAULT: '130' }, timeout: 120_000 });
  } catch (e) {
    throw new Error(
      `criu ${args[0]} failed (${(e as Error).message.split('\n')[0]}); ${path.join(dir, log)}:\n${errorsIn(dir, log)}`,
    );
  }
  return performance.now() - start;
}

/** A criu command that serves until its work is done (a lazy dump, lazy-pages). */
export interface Serving {
  /** Resolves once criu said it is ready (--status-fd), rejects if it ended first. */
  ready: Promise<void>;
  /** Resolves with the ms criu ran when it exits 0, rejects otherwise. */
  done: Promise<number>;
  kill(): void;
}

function serve(args: string[], dir: string, log: string, opts: CliOptions): Serving {
  const cmd = command([...args, '--status-fd', '3'], dir, log, opts);
  const start = performance.now();
  const child = spawn(cmd[0], cmd.slice(1), {
    stdio: ['ignore', 'ignore', 'ignore', 'pipe'],
    env: { ...process.env, CRIU_FAULT: '130' },
  });
  const done = new Promise<number>((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code, signal) => {
      if (code === 0) resolve(performance.now() - start);
      else
        reject(
          new Error(`criu ${args[0]} exited with ${code ?? signal}; ${path.join(dir, log)}:\n${errorsIn(dir, log)}`),
        );
    });
  });
  const status = child.stdio[3] as NodeJS.ReadableStream;
  const ready = new Promise<void>((resolve, reject) => {
    status.once('data', () => resolve());
    done.then(() => reject(new Error(`criu ${args[0]} ended before it was ready`)), reject);
  });
  return { ready, done, kill: () => void child.kill('SIGKILL') };
}

/** `criu dump --lazy-pages`: dumps, then serves the memory from a page server on address:port until the restored process has it all. */
export function cliLazyDump(
  pid: number,
  dir: string,
  server: { address: string; port: number },
  opts: CliOptions = {},
): Serving {
  fs.mkdirSync(dir, { recursive: true });
  return serve(
    ['dump', '-t', String(pid), '--lazy-pages', '--address', server.address, '--port', String(server.port)],
    dir,
    'dump.log',
    opts,
  );
}

/** `criu lazy-pages --page-server`: the target's daemon that fetches pages from the dump's page server for a `--lazy-pages` restore from `dir`. */
export function cliLazyPages(dir: string, server: { address: string; port: number }, opts: CliOptions = {}): Serving {
  return serve(
    ['lazy-pages', '--page-server', '--address', server.address, '--port', String(server.port)],
    dir,
    'lazy-pages.log',
    opts,
  );
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
