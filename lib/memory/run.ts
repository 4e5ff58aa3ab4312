/**
 * `memory.run(argv, options)` (and `sosctl run --local-memory`): an unmodified, dynamically linked
 * program with its large anonymous memory on memory nodes. The program gets the preload shim
 * (native/memory/run_shim.c); on its first large allocation the shim maps an arena (a MAP_SHARED
 * memfd, registered with a userfaultfd it creates) and names both descriptors to this monitor over a
 * unix socket; the monitor takes them with pidfd_getfd and serves the arena with a far-memory region
 * whose pager faults pages in from the nodes and drops them from its own mapping of the memfd
 * (MADV_REMOVE frees them from the program too). Every process of the program (children that exec
 * and allocate) gets its own arena and its own local bound. When the program exits, every remote page
 * is freed; attached descendants still running are stopped with it. Design and trade-offs:
 * docs/memory-run.md.
 */
import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { SosError, argRange, argType } from '../errors.js';
import { native } from '../native/index.js';
import { integer, object, oneOf } from '../validate.js';
import { detachArena, openArena, releaseArena, serveArena, type ArenaOptions, type ServedArena } from './arena-link.js';
import type { FarHandover } from './far-memory.js';
import type { FarStats } from './far-stats.js';

const PAGE = 4096;
const here = path.dirname(fileURLToPath(import.meta.url));
/** The preload shim, built by node-gyp beside the addon. */
export const SHIM_PATH = path.resolve(here, '..', '..', '..', 'build', 'Release', 'sos_run_shim.so');

export interface RunOptions extends ArenaOptions {
  /** The arena: the most far memory one process may hold, reserved on the nodes (default 8 GiB). */
  farBytes?: number;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  stdio?: StdioOptions;
  /** Start the program in its own session (setsid). CRIU dumps a process only with its session leader
   *  in its PID namespace, so a program to be checkpointed needs this when the caller's session leader
   *  is outside it. */
  detached?: boolean;
}

/** One attached process of the program: its pid and its pager's final counters. */
export interface RunProcess {
  pid: number;
  arenaBytes: number;
  stats: FarStats;
}

export interface RunResult {
  /** The program's exit code, or null when a signal ended it. */
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Every process that attached an arena, in attach order. */
  processes: RunProcess[];
  /** Their counters summed. */
  total: RunTotals;
}

export interface RunTotals {
  processes: number;
  faults: number;
  pagesFetched: number;
  evictions: number;
  writeBacks: number;
  bytesIn: number;
  bytesOut: number;
  prefetched: number;
  zeroFills: number;
  fetchErrors: number;
  storeErrors: number;
}

export interface ProgramRunEvents {
  /** A process of the program has its arena served (pid, arena bytes). */
  attached: [{ pid: number; arenaBytes: number }];
  /** A process could not get far memory (it sees ENOMEM, and the message on its stderr). */
  refused: [{ pid: number; error: SosError }];
  nodeLost: [{ pid: number; node: string; code: string }];
  error: [SosError];
}

/** A running program; `result` settles when it has exited and every remote page is freed. */
export class ProgramRun extends EventEmitter<ProgramRunEvents> {
  readonly pid: number;
  readonly result: Promise<RunResult>;
  private readonly child: ChildProcess;
  private readonly server: net.Server;
  private readonly dir: string;
  private readonly sockets = new Set<net.Socket>();
  private readonly attached: ServedArena[] = [];
  private readonly pending = new Set<Promise<unknown>>();

  /** @internal */
  constructor(
    argv: string[],
    private readonly o: Required<Pick<RunOptions, 'localBytes' | 'farBytes'>> & RunOptions,
  ) {
    super();
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sos-run-'));
    fs.chmodSync(this.dir, 0o700); // only our uid reaches the socket; peers are checked too
    const sockPath = path.join(this.dir, 'monitor.sock');
    this.server = net.createServer((s) => this.onConnection(s));
    let listening: () => void = () => undefined;
    const ready = new Promise<void>((resolve) => (listening = resolve));
    this.server.listen(sockPath, () => listening());
    const env = { ...(o.env ?? process.env) };
    env.LD_PRELOAD = env.LD_PRELOAD ? `${SHIM_PATH}:${env.LD_PRELOAD}` : SHIM_PATH;
    env.SOS_RUN_SOCK = sockPath;
    env.SOS_RUN_ARENA = String(o.farBytes);
    env.SOS_RUN_NAME = path.basename(this.dir); // unique: names the shims' hand-over sockets
    // The socket is bound synchronously by listen() on a unix path; the child connects only on its
    // first large allocation, and a refused connect is retried by nobody: wait for the bind.
    this.child = spawn(argv[0], argv.slice(1), { env, cwd: o.cwd, stdio: o.stdio ?? 'inherit', detached: o.detached });
    this.pid = this.child.pid ?? -1;
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve, reject) => {
      this.child.once('error', (e: Error & { code?: string }) =>
        reject(new SosError(`cannot run ${argv[0]}: ${e.message}`, { code: 'ERR_SPAWN', cause: e })),
      );
      this.child.once('exit', (code, signal) => resolve({ code, signal }));
    });
    this.result = (async () => {
      await ready;
      const exit = await exited.finally(() => this.shutdown());
      await this.closed;
      return { ...exit, ...this.summary() };
    })();
  }

  /** Send the program a signal. */
  kill(signal: NodeJS.Signals = 'SIGTERM'): boolean {
    return this.child.kill(signal);
  }

  /** The stdio pipes, when stdio was 'pipe'. */
  get stdout() {
    return this.child.stdout;
  }
  get stderr() {
    return this.child.stderr;
  }
  get stdin() {
    return this.child.stdin;
  }

  /** Live counters of each attached process. */
  processes(): RunProcess[] {
    return this.attached.map((a) => ({ pid: a.pid, arenaBytes: a.arenaBytes, stats: a.last ?? a.far.stats() }));
  }

  private closed: Promise<void> = Promise.resolve();

  // The program is gone: its descendants lose their monitor (their shims stop them), every region
  // is closed (its remote pages freed), the socket folder removed.
  private shutdown(): void {
    this.closed = (async () => {
      this.server.close();
      for (const s of this.sockets) s.destroy();
      // A destroyed socket's 'close' comes on a later tick: release every region here, not there.
      while (this.pending.size) await Promise.allSettled([...this.pending]);
      await Promise.allSettled(this.attached.map((a) => releaseArena(a)));
      fs.rmSync(this.dir, { recursive: true, force: true });
    })();
  }

  private track<T>(p: Promise<T>): Promise<T> {
    this.pending.add(p);
    void p.finally(() => this.pending.delete(p)).catch(() => undefined);
    return p;
  }

  private onConnection(sock: net.Socket): void {
    this.sockets.add(sock);
    let peer: number;
    try {
      peer = this.checkPeer(sock);
    } catch (e) {
      this.emit('error', e as SosError);
      sock.destroy();
      return;
    }
    serveArena(sock, [], {
      hello: (line) => this.hello(peer, line),
      refused: (error) => this.emit('refused', { pid: peer, error }),
      error: (e) => this.emit('error', e),
      track: (p) => void this.track(p),
    });
    sock.on('close', () => this.sockets.delete(sock));
  }

  // Only a process of this program, under our uid, may attach.
  private checkPeer(sock: net.Socket): number {
    const fd = (sock as unknown as { _handle?: { fd?: number } })._handle?.fd;
    if (typeof fd !== 'number' || fd < 0)
      throw new SosError('no descriptor for a monitor connection', { code: 'ERR_PEER' });
    const cred = native.peerCred(fd);
    if (cred.uid !== process.getuid!())
      throw new SosError(`monitor peer pid ${cred.pid} runs as another user`, { code: 'ERR_PEER' });
    let p = cred.pid;
    for (let hops = 0; hops < 128 && p > 1; hops++) {
      if (p === this.pid) return cred.pid;
      p = parentOf(p);
    }
    throw new SosError(`monitor peer pid ${cred.pid} is not part of the program`, { code: 'ERR_PEER' });
  }

  private async hello(peer: number, line: string): Promise<ServedArena> {
    const a = await openArena(peer, line, this.o.farBytes, this.o);
    a.far.on('nodeLost', (n) => this.emit('nodeLost', { pid: a.pid, ...n }));
    this.attached.push(a);
    this.emit('attached', { pid: a.pid, arenaBytes: a.arenaBytes });
    return a;
  }

  /**
   * Hand process `pid`'s arena over (detachArena): it stays parked, its pages on the memory nodes, for a
   * monitor elsewhere (after a checkpoint and restore, say) to adopt with adoptProcess(). Its counters
   * here stop. Rejects with ERR_NOT_ATTACHED (no such process attached) or ERR_DETACH.
   */
  async detach(pid: number): Promise<FarHandover> {
    const a = this.attached.find((x) => x.pid === pid && !x.handedOver && !x.released);
    if (!a) throw new SosError(`process ${pid} has no arena served by this run`, { code: 'ERR_NOT_ATTACHED' });
    return detachArena(a);
  }

  /** The live counters summed over the attached processes, and the bytes resident now. */
  totals(): RunTotals & { residentBytes: number } {
    const { processes, total } = this.summary();
    return { ...total, residentBytes: processes.reduce((a, p) => a + p.stats.residentPages * 4096, 0) };
  }

  private summary(): Pick<RunResult, 'processes' | 'total'> {
    const processes = this.processes();
    const total: RunTotals = {
      processes: processes.length,
      faults: 0,
      pagesFetched: 0,
      evictions: 0,
      writeBacks: 0,
      bytesIn: 0,
      bytesOut: 0,
      prefetched: 0,
      zeroFills: 0,
      fetchErrors: 0,
      storeErrors: 0,
    };
    for (const p of processes)
      for (const k of Object.keys(total) as (keyof RunTotals)[])
        if (k !== 'processes') total[k] += (p.stats as unknown as Record<string, number>)[k] ?? 0;
    return { processes, total };
  }
}

function parentOf(pid: number): number {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'latin1');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return 0;
  }
}

/** Run `argv` with its large memory on memory nodes: see ProgramRun. */
export function run(argv: string[], options: RunOptions): ProgramRun {
  if (!Array.isArray(argv) || argv.length === 0 || argv.some((a) => typeof a !== 'string'))
    throw argType('argv must be a non-empty array of strings');
  const o = object('options', options) as unknown as RunOptions;
  const localBytes = integer('options.localBytes', o.localBytes, 128 * PAGE);
  if (localBytes % PAGE) throw argRange(`options.localBytes must be a multiple of ${PAGE}, got ${localBytes}`);
  const farBytes = o.farBytes === undefined ? 8 * 2 ** 30 : integer('options.farBytes', o.farBytes, localBytes);
  if (farBytes % PAGE) throw argRange(`options.farBytes must be a multiple of ${PAGE}, got ${farBytes}`);
  if (!Array.isArray(o.nodes) || o.nodes.length === 0) throw argType('options.nodes must be a non-empty array');
  if (typeof o.application !== 'string') throw argType('options.application must be a string');
  if (o.detached !== undefined && typeof o.detached !== 'boolean') throw argType('options.detached must be a boolean');
  if (o.transport !== undefined) oneOf('options.transport', o.transport, ['tcp', 'rdma'] as const);
  if (!fs.existsSync(SHIM_PATH))
    throw new SosError(`the preload shim is not built (${SHIM_PATH}): run npm run build`, { code: 'ERR_NOT_BUILT' });
  return new ProgramRun(argv, { ...o, localBytes, farBytes });
}
