// Migration agents as separate processes inside test nodes (network
// namespaces), and the CLI client that asks a source agent to migrate.
import { spawn, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { MigrationResult } from '../lib/migration/index.js';
import { within } from './wait.js';

const main = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../lib/migration/agent-main.js');

// Agents outlive nothing: a test process that ends (even on a failure) takes them along.
const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const c of live) c.kill('SIGKILL');
});

export interface AgentProcess {
  netns: string;
  host: string;
  port: number;
  workDir: string;
  child: ChildProcess;
  log(): string;
  /** SIGKILL (fault injection) or SIGTERM; waits until it exited. */
  stop(signal?: NodeJS.Signals): Promise<void>;
}

/** A secret file for agents and clients; returns its path. */
export function secretFile(dir: string, secret = crypto.randomBytes(32)): string {
  const f = path.join(dir, `secret-${crypto.randomBytes(4).toString('hex')}`);
  fs.writeFileSync(f, secret, { mode: 0o600 });
  return f;
}

export async function startAgent(o: {
  netns: string;
  host: string;
  workDir: string;
  secretFile: string;
  flushNeigh?: string[];
  refuse?: string;
  idleTimeoutMs?: number;
  inDoubtMs?: number;
  /** Listen on this port (default: any free one); a restarted agent keeps its address. */
  port?: number;
  /** Crash points to arm in the agent (lib/migration/failpoint.ts). */
  failpoints?: string[];
  /** More environment for the agent (e.g. a libfaketime preload: testkit/clock.ts). */
  env?: Record<string, string>;
}): Promise<AgentProcess> {
  fs.mkdirSync(o.workDir, { recursive: true, mode: 0o700 });
  const logFile = `${o.workDir}.log`;
  const log = fs.openSync(logFile, 'a');
  const args = [
    '--net=/run/netns/' + o.netns,
    process.execPath,
    main,
    'listen',
    '--secret-file',
    o.secretFile,
    '--work-dir',
    o.workDir,
    '--host',
    o.host,
  ];
  if (o.flushNeigh) args.push('--flush-neigh', o.flushNeigh.join(','));
  if (o.refuse) args.push('--refuse', o.refuse);
  if (o.idleTimeoutMs) args.push('--idle-timeout-ms', String(o.idleTimeoutMs));
  if (o.inDoubtMs !== undefined) args.push('--in-doubt-ms', String(o.inDoubtMs));
  if (o.port !== undefined) args.push('--port', String(o.port));
  const child = spawn('nsenter', args, {
    stdio: ['ignore', 'pipe', log],
    env: { ...process.env, ...o.env, SOS_FAILPOINTS: (o.failpoints ?? []).join(',') },
  });
  fs.closeSync(log);
  live.add(child);
  let stopping = false;
  const exited = new Promise<void>((r) =>
    child.once('exit', (code, signal) => {
      live.delete(child);
      // An agent that dies unasked is a finding: its log says why (on the test's stderr, in CI's output).
      if (!stopping)
        process.stderr.write(
          `agent ${o.host} (${o.workDir}) exited unasked (${signal ?? code}); its log:\n${readLog()}\n`,
        );
      r();
    }),
  );
  const readLog = () => {
    try {
      return fs.readFileSync(logFile, 'utf8');
    } catch {
      return '(no log)';
    }
  };
  const first = await within(
    new Promise<string>((resolve, reject) => {
      const rl = readline.createInterface({ input: child.stdout! });
      const early = () => reject(new Error(`agent exited: ${readLog()}`));
      child.once('exit', early);
      rl.once('line', (l) => {
        child.off('exit', early);
        resolve(l);
      });
    }),
    // Only a hang reaches this: on a loaded machine an agent's start-up took more than 20 s.
    120_000,
    'the agent to listen',
  );
  const { listening } = JSON.parse(first) as { listening: { host: string; port: number } };
  return {
    netns: o.netns,
    host: listening.host,
    port: listening.port,
    workDir: o.workDir,
    child,
    log: readLog,
    stop: async (signal = 'SIGTERM') => {
      stopping = true;
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      await exited;
    },
  };
}

export interface ClientRun {
  progress: { phase: string; bytes: number; pages: number }[];
  result?: MigrationResult;
  error?: { code: string; message: string; step: string; runningOn: string; pid?: number };
  stderr: string;
}

/** Ask `agent` (from inside its namespace) to migrate `pid` to `to`; `onLine` sees each output line as it comes. */
export async function requestMigrate(
  agent: AgentProcess,
  secretFile: string,
  pid: number,
  to: { host: string; port: number },
  opts: {
    mode?: 'precopy' | 'postcopy';
    moveAddress?: string;
    noTcp?: boolean;
    strategy?: 'commit' | 'handover';
    onProgress?: (p: { phase: string; bytes: number }) => void;
  } = {},
): Promise<ClientRun> {
  const args = [
    '--net=/run/netns/' + agent.netns,
    process.execPath,
    main,
    'migrate',
    '--secret-file',
    secretFile,
    '--agent',
    `${agent.host}:${agent.port}`,
    '--pid',
    String(pid),
    '--to',
    `${to.host}:${to.port}`,
    '--mode',
    opts.mode ?? 'precopy',
  ];
  if (opts.moveAddress) args.push('--move-address', opts.moveAddress);
  if (opts.noTcp) args.push('--no-tcp');
  if (opts.strategy) args.push('--strategy', opts.strategy);
  const child = spawn('nsenter', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(child);
  child.once('exit', () => live.delete(child));
  const out: ClientRun = { progress: [], stderr: '' };
  child.stderr.on('data', (d: Buffer) => (out.stderr += d.toString()));
  const rl = readline.createInterface({ input: child.stdout });
  rl.on('line', (l) => {
    const m = JSON.parse(l) as {
      progress?: ClientRun['progress'][0];
      result?: ClientRun['result'];
      error?: ClientRun['error'];
    };
    if (m.progress) {
      out.progress.push(m.progress);
      opts.onProgress?.(m.progress);
    }
    if (m.result) out.result = m.result;
    if (m.error) out.error = m.error;
  });
  await within(new Promise((r) => child.once('close', r)), 180_000, 'the migration client');
  return out;
}

/** Live copies of a workload: inits of a PID namespace whose command line names its folder. */
export function copies(dir: string): number[] {
  const out: number[] = [];
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const cmd = fs.readFileSync(`/proc/${name}/cmdline`, 'utf8');
      if (!cmd.split('\0').includes(dir)) continue;
      const status = fs.readFileSync(`/proc/${name}/status`, 'utf8');
      const nspid = /^NSpid:\s+(.*)$/m.exec(status)?.[1].trim().split(/\s+/) ?? [];
      const st = /^State:\s+(\S)/m.exec(status)?.[1];
      if (nspid[nspid.length - 1] === '1' && st !== 'Z' && nspid.length > 1) out.push(Number(name));
    } catch {
      // gone
    }
  }
  return out;
}

/** The one-letter state of a process ('T' stopped), or null when gone. */
export function procState(pid: number): string | null {
  try {
    return /^State:\s+(\S)/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? null;
  } catch {
    return null;
  }
}

/** Any process (CRIU daemon, stuck restore, agent) whose command line names `root`, except this one. */
export function strays(root: string): number[] {
  const out: number[] = [];
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e) || Number(e) === process.pid) continue;
    try {
      if (fs.readFileSync(`/proc/${e}/cmdline`, 'utf8').includes(root)) out.push(Number(e));
    } catch {
      // gone
    }
  }
  return out;
}

/**
 * A fresh folder under the OS temp dir for a test's agents and workloads; at the test's end
 * whatever still runs from it (strays) is killed and the folder removed.
 */
export function scratchDir(t: { teardown(f: () => void): void }, prefix: string): string {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  t.teardown(() => {
    for (const p of strays(base)) {
      try {
        process.kill(p, 'SIGKILL');
      } catch {
        // gone
      }
    }
    fs.rmSync(base, { recursive: true, force: true });
  });
  return base;
}
