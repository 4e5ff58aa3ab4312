// Self-checking workloads for CRIU tests (test/fixtures/criu, docs/workloads.md).
// Each runs as the init of its own PID namespace (optionally in a network
// namespace) with its stdio in its own folder, so CRIU can dump and restore it
// anywhere on this machine. Requests go through a file and SIGUSR1, answers
// come back in status.json: both survive checkpoint/restore and a move
// between network namespaces.
import { spawn, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { exec } from '../lib/exec.js';
import { onExit } from './cleanup.js';
import { within } from './wait.js';

export type WorkloadKind = 'memory' | 'threads' | 'files' | 'pipes' | 'unix' | 'timers' | 'tree' | 'tcp';
export const WORKLOAD_KINDS: readonly WorkloadKind[] = [
  'memory',
  'threads',
  'files',
  'pipes',
  'unix',
  'timers',
  'tree',
  'tcp',
];

export interface StartOptions {
  /** The workload's own folder (status files, its files); created. */
  dir: string;
  /** Start inside /run/netns/<netns> (nsenter --net=...). */
  netns?: string;
  /** 'memory': resident size to fill with a checkable pattern (default 8). */
  memMiB?: number;
  /** 'memory': MiB per second a writer thread rewrites (new page versions), so pre-copy has dirty pages to chase (default 0). */
  memDirtyMiBps?: number;
  /** 'tcp': the echo peer to connect to. */
  tcpPeer?: { host: string; port: number };
  /** 'tcp': the local address to connect from (an address that may move with the process). */
  tcpBind?: string;
}

export interface Heartbeat {
  /** Wall-clock ms of the last tick. */
  lastMs: number;
  /** Largest gap between two ticks (ticks are 1 ms apart), as the workload saw it. */
  maxGapMs: number;
  /** Wall-clock ms at the end of that gap. */
  maxGapEndMs: number;
  ticks: number;
}

export interface Workload {
  kind: WorkloadKind;
  /** Host PID of the workload's root: the init of its own PID namespace. */
  pid: number;
  dir: string;
  /** What the workload recorded at setup (e.g. memAddr/memBytes, tids, endpoints). */
  info: Record<string, string>;
  /**
   * Ask the process (pid defaults to this.pid; after a restore pass the
   * restored pid) to check its complete state; resolves with what it
   * reported, rejects with the detail of any mismatch or if it does not
   * answer within a deadline.
   */
  verify(pid?: number): Promise<{ ok: true; generation: number; detail: string }>;
  /** Make the process break its own state on purpose (a later verify() must reject). */
  poison(pid?: number): Promise<void>;
  /** Largest gap in the workload's heartbeat so far (downtime as the workload saw it). */
  gapMs(): Promise<number>;
  heartbeat(): Promise<Heartbeat>;
  /** Forget the largest gap so far (e.g. before the migration to measure). */
  resetGap(): Promise<void>;
  /** SIGKILL the whole tree (every copy, restored ones too), wait until gone; idempotent. */
  kill(): Promise<void>;
}

interface Status {
  nonce: string;
  generation: number;
  ok: boolean;
  detail: string;
}

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const sources = path.join(root, 'test/fixtures/criu');
let built: Promise<{ workload: string; echoPeer: string }> | undefined;

/**
 * Compile the fixtures with `cc` into .cache/criu-fixtures/<hash of the
 * sources>/ (once per source version; concurrent test files share it).
 */
export function fixtures(): Promise<{ workload: string; echoPeer: string }> {
  built ??= build().catch((e: unknown) => {
    built = undefined; // a later call tries again
    throw e;
  });
  return built;
}

async function build(): Promise<{ workload: string; echoPeer: string }> {
  const files = fs
    .readdirSync(sources)
    .filter((f) => /\.[ch]$/.test(f))
    .sort();
  const h = crypto.createHash('sha256');
  for (const f of files)
    h.update(f)
      .update('\0')
      .update(fs.readFileSync(path.join(sources, f)))
      .update('\0');
  const out = path.join(root, '.cache/criu-fixtures', h.digest('hex').slice(0, 16));
  const result = { workload: path.join(out, 'workload'), echoPeer: path.join(out, 'echo-peer') };
  if (fs.existsSync(result.workload) && fs.existsSync(result.echoPeer)) return result;
  fs.mkdirSync(path.dirname(out), { recursive: true });
  const tmp = fs.mkdtempSync(`${out}.tmp-`);
  try {
    const flags = ['-O2', '-g', '-Wall', '-Wextra', '-pthread'];
    const workloadSrc = files.filter((f) => f.endsWith('.c') && f !== 'echo-peer.c').map((f) => path.join(sources, f));
    await exec('cc', [...flags, '-o', path.join(tmp, 'workload'), ...workloadSrc, '-lrt'], { timeout: 120_000 });
    await exec('cc', [...flags, '-o', path.join(tmp, 'echo-peer'), path.join(sources, 'echo-peer.c')], {
      timeout: 120_000,
    });
    try {
      fs.renameSync(tmp, out);
    } catch (e) {
      // Another test file built the same sources first: use theirs.
      if (!fs.existsSync(result.workload)) throw e;
    }
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  return result;
}

function readJson<T>(file: string): T | undefined {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as T;
  } catch {
    return undefined; // not there yet (the workload renames it into place whole)
  }
}

function alive(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/^\d+ \(.*\) [ZX]/s.test(stat);
  } catch {
    return false;
  }
}

/**
 * Host PIDs of every copy of the workload started from `bin` in `dir`: by exe
 * and cwd (kernel state: a post-copy restore may not have brought the argv
 * pages back yet, and /proc/PID/cmdline then reads empty), or by a command
 * line naming both (the unshare parent).
 */
function processesOf(bin: string, dir: string, among?: number[]): number[] {
  const out: number[] = [];
  for (const e of among?.map(String) ?? fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      if (fs.readlinkSync(`/proc/${e}/exe`) === bin && fs.readlinkSync(`/proc/${e}/cwd`) === dir) {
        out.push(Number(e));
        continue;
      }
    } catch {
      // gone, or a kernel thread
    }
    try {
      const argv = fs.readFileSync(`/proc/${e}/cmdline`, 'utf8').split('\0');
      if (argv.includes(bin) && argv.includes(dir)) out.push(Number(e));
    } catch {
      // gone while listing
    }
  }
  return out;
}

function killAll(bin: string, dir: string): number {
  const pids = processesOf(bin, dir);
  for (const p of pids) {
    try {
      process.kill(p, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  return pids.length;
}

/** The host PID of the init that `unshare --fork` (pid `parent`) started. */
async function initOf(parent: ChildProcess, logs: () => string): Promise<number> {
  const file = `/proc/${parent.pid}/task/${parent.pid}/children`;
  for (;;) {
    if (parent.exitCode !== null || parent.signalCode !== null) throw new Error(`workload did not start: ${logs()}`);
    let children = '';
    try {
      children = fs.readFileSync(file, 'utf8').trim();
    } catch {
      // not yet
    }
    if (children) return Number(children.split(/\s+/)[0]);
    await new Promise((r) => setTimeout(r, 2));
  }
}

/** Start a workload of `kind`; resolves once it has set up its state and answers requests. */
export async function startWorkload(kind: WorkloadKind, opts: StartOptions): Promise<Workload> {
  if (!WORKLOAD_KINDS.includes(kind)) throw new TypeError(`unknown workload kind '${String(kind)}'`);
  if (kind === 'tcp' && !opts.tcpPeer) throw new TypeError("the 'tcp' workload needs tcpPeer");
  const memMiB = opts.memMiB ?? 8;
  if (!Number.isInteger(memMiB) || memMiB < 1) throw new TypeError('memMiB must be a positive integer');
  const dirty = opts.memDirtyMiBps ?? 0;
  if (!Number.isInteger(dirty) || dirty < 0) throw new TypeError('memDirtyMiBps must be a non-negative integer');
  const { workload: bin } = await fixtures();
  const dir = path.resolve(opts.dir);
  fs.mkdirSync(dir, { recursive: true });
  for (const f of ['status.json', 'request', 'heartbeat', 'info.json']) fs.rmSync(path.join(dir, f), { force: true });

  const args = [bin, kind, dir, '--mem-mib', String(memMiB), '--dirty-mibps', String(dirty)];
  if (opts.tcpPeer) args.push('--peer', `${opts.tcpPeer.host}:${opts.tcpPeer.port}`);
  if (opts.tcpBind) args.push('--bind', opts.tcpBind);
  const cmd = ['unshare', '--pid', '--fork', ...args];
  if (opts.netns) cmd.unshift('nsenter', `--net=/run/netns/${opts.netns}`);

  // unshare's own output (never the workload's: it opens workload.log itself)
  const log = fs.openSync(path.join(dir, 'unshare.log'), 'a');
  const parent = spawn(cmd[0], cmd.slice(1), { stdio: ['ignore', log, log], detached: true });
  fs.closeSync(log);
  parent.unref();
  parent.on('error', () => {});
  const forget = onExit(() => void killAll(bin, dir));
  const logs = (): string =>
    ['unshare.log', 'workload.log']
      .map((f) => {
        try {
          return fs.readFileSync(path.join(dir, f), 'utf8').trim();
        } catch {
          return '';
        }
      })
      .filter(Boolean)
      .join('; ') || `exit ${parent.exitCode ?? parent.signalCode}`;
  const statusFile = path.join(dir, 'status.json');

  let queue: Promise<unknown> = Promise.resolve();
  const serial = <T>(f: () => Promise<T>): Promise<T> => {
    const p = queue.then(f, f);
    queue = p.catch(() => {});
    return p;
  };

  async function request(verb: 'verify' | 'poison', pid: number, ms: number): Promise<Status> {
    // Never signal a process that is not this workload (SIGUSR1 would kill most others).
    if (!Number.isInteger(pid) || pid <= 0) throw new TypeError(`not a pid: ${pid}`);
    if (!processesOf(bin, dir, [pid]).length)
      throw new Error(`pid ${pid} is not a live copy of the ${kind} workload in ${dir}`);
    const nonce = crypto.randomBytes(8).toString('hex');
    fs.writeFileSync(path.join(dir, 'request'), `${verb} ${nonce}\n`);
    process.kill(pid, 'SIGUSR1');
    const end = Date.now() + ms;
    for (;;) {
      const s = readJson<Status>(statusFile);
      if (s?.nonce === nonce) return s;
      if (!alive(pid)) throw new Error(`${kind} workload pid ${pid} is gone (${logs()})`);
      if (Date.now() > end) throw new Error(`${kind} workload pid ${pid} did not answer '${verb}' within ${ms} ms`);
      await new Promise((r) => setTimeout(r, 2));
    }
  }

  async function heartbeat(): Promise<Heartbeat> {
    const b = await fs.promises.readFile(path.join(dir, 'heartbeat'));
    const ns = (i: number): number => Number(b.readBigInt64LE(i * 8));
    return { lastMs: ns(0) / 1e6, maxGapMs: ns(1) / 1e6, maxGapEndMs: ns(2) / 1e6, ticks: ns(3) };
  }

  try {
    const init = await within(initOf(parent, logs), 60_000, `the ${kind} workload's init`);
    const end = Date.now() + 60_000 + memMiB * 20;
    while (readJson<Status>(statusFile)?.nonce !== 'ready') {
      if (!alive(init)) throw new Error(`${kind} workload failed to start: ${logs()}`);
      if (Date.now() > end) throw new Error(`${kind} workload did not get ready (${logs()})`);
      await new Promise((r) => setTimeout(r, 2));
    }
    const w: Workload = {
      kind,
      pid: init,
      dir,
      info: readJson<Record<string, string>>(path.join(dir, 'info.json')) ?? {},
      verify: (pid = w.pid) =>
        serial(async () => {
          const s = await request('verify', pid, 30_000 + memMiB * 20);
          if (!s.ok) throw new Error(`${kind} workload (pid ${pid}) failed its check: ${s.detail}`);
          return { ok: true as const, generation: s.generation, detail: s.detail };
        }),
      poison: (pid = w.pid) =>
        serial(async () => {
          await request('poison', pid, 30_000);
        }),
      gapMs: async () => (await heartbeat()).maxGapMs,
      heartbeat,
      resetGap: async () => {
        const fd = await fs.promises.open(path.join(dir, 'heartbeat'), 'r+');
        try {
          await fd.write(Buffer.alloc(16), 0, 16, 8);
        } finally {
          await fd.close();
        }
      },
      kill: async () => {
        const end = Date.now() + 60_000;
        while (killAll(bin, dir) > 0) {
          if (Date.now() > end) throw new Error(`${kind} workload in ${dir} does not die`);
          await new Promise((r) => setTimeout(r, 5));
        }
        forget();
      },
    };
    return w;
  } catch (e) {
    killAll(bin, dir);
    forget();
    throw e;
  }
}

/** A TCP echo server in `netns` (or here) on host:port (port 0: any; the chosen one is returned). */
export async function startEchoPeer(opts: {
  netns?: string;
  host: string;
  port: number;
}): Promise<{ port: number; pid: number; close(): Promise<void> }> {
  const { echoPeer } = await fixtures();
  const cmd = [echoPeer, opts.host, String(opts.port)];
  if (opts.netns) cmd.unshift('nsenter', `--net=/run/netns/${opts.netns}`);
  const child = spawn(cmd[0], cmd.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const forget = onExit(() => void child.kill('SIGKILL'));
  let out = '',
    err = '';
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  try {
    const port = await within(
      new Promise<number>((resolve, reject) => {
        child.stdout.on('data', (d: Buffer) => {
          out += d.toString();
          const m = /^listening (\d+)\n/.exec(out);
          if (m) resolve(Number(m[1]));
        });
        child.once('exit', (code) => reject(new Error(`echo peer exited (${code}): ${err.trim()}`)));
        child.once('error', reject);
      }),
      60_000,
      'the echo peer to listen',
    );
    let closed: Promise<void> | undefined;
    return {
      port,
      pid: child.pid!,
      close: () => {
        closed ??= (async () => {
          child.kill('SIGKILL');
          await exited;
          forget();
        })();
        return closed;
      },
    };
  } catch (e) {
    child.kill('SIGKILL');
    forget();
    throw e;
  }
}
