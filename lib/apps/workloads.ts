// The workloads of one node: each application process as pid 1 of its own PID namespace, in its
// own cgroup, its output in files, its record durable, so a restarted sosd re-adopts what still
// runs. docs/apps.md has the state folder's layout and what survives a restart.
import type { ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import { Cgroups, type Cgroup, type CgroupLimits, type CgroupUsage, type CgroupsOptions } from '../cgroups/index.js';
import { syncDir, writeDurable } from '../durable.js';
import { argRange, argType, argValue } from '../errors.js';
import { AppError, callError } from './errors.js';
import { logFiles, openLog, readFrom, rotate, size, tail, type Stream } from './logs.js';
import { checkApp, checkArgv, checkEnv, checkId, checkSignal, signalName, APP_NAME } from './names.js';
import { isAlive, nsPids, startTime, treePids, type ProcIdentity } from './proc.js';
import { readExitStatus, readRecord, writeRecord, type WorkloadRecord } from './record.js';
import { findTools, startSupervisor, which, type Started, type Tools } from './supervisor.js';

/** What logs go to: pino's shape (a subset). */
export interface Logger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
}

export interface WorkloadsOptions {
  /** The folder of records and logs, made 0700 when missing; give it a folder of its own. */
  stateDir: string;
  /** Where the groups go (default: prefix 'serverlessos' at each hierarchy's root). */
  cgroups?: CgroupsOptions;
  log?: Logger;
  /** Milliseconds between checks of the running processes (exit, log size). Default 200. */
  pollMs?: number;
  /** Most bytes kept of each stream, in each of its two files (see docs/apps.md). Default 8 MiB. */
  maxLogBytes?: number;
  /** A start that reaches no handshake within this fails with ERR_APP_START. Default 30 000. */
  startTimeoutMs?: number;
}

export interface RunOptions {
  /** The cluster-wide application name: lowercase letters, digits and '-', at most 63. */
  app: string;
  /** The program (looked up on env.PATH when it has no '/') and its arguments. */
  argv: string[];
  /** The whole environment of the program (nothing is inherited from sosd); PATH defaults to the usual folders. */
  env?: Record<string, string>;
  /** An absolute folder to run in; default '/'. */
  cwd?: string;
  limits?: CgroupLimits;
  /**
   * The process's number, when someone else numbers them (sosd in a cluster: etcd makes it unique
   * cluster-wide); ERR_APP_EXISTS when this folder has it already. Default: the folder's next.
   */
  id?: number;
  /** Called with the workload's new folder before the program starts (files it must find there). */
  prepare?: (dir: string) => Promise<void>;
}

export interface LogsOptions {
  /** Default 'both'. */
  stream?: Stream | 'both';
  /** The last this many bytes of each stream asked for; default 65 536. With `from`: the most returned. */
  tailBytes?: number;
  /** Follow: each stream from this offset of its current file (a previous answer's `offsets`) instead of its tail. */
  from?: { stdout?: number; stderr?: number };
}

/** A stream's tail; null for a stream not asked for. */
export interface Logs {
  stdout: string | null;
  stderr: string | null;
  /** Where each stream's current file ends now: pass as `from` to read only what comes next. */
  offsets: { stdout: number; stderr: number };
}

export interface WorkloadsEvents {
  /** A workload exited (its record, durable already). */
  exit: [WorkloadRecord];
}

const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const OWNER = 'owner.json';
const NEXT_ID = 'next-id';
/** In a workload's folder while it migrates away: { migration, to }. */
const MOVING = 'moving.json';
/** In a folder made ready for a migration coming in, until its process runs here: its ArrivalOptions. */
const ARRIVING = 'arriving.json';
const open = new Set<string>();

interface Entry {
  rec: WorkloadRecord;
  dir: string;
  group: Cgroup | null;
  child?: ChildProcess;
  finishing: boolean;
  /** It is migrating away (the marker in its folder): its death is no exit until the move settles. */
  moving: MoveMarker | null;
  waiters: { resolve: (r: WorkloadRecord) => void; reject: (e: unknown) => void }[];
}

function intOption(v: unknown, name: string, def: number, min: number, max: number): number {
  if (v === undefined) return def;
  if (typeof v !== 'number') throw argType(`${name} must be a number, got ${typeof v}`);
  if (!Number.isSafeInteger(v) || v < min || v > max)
    throw argRange(`${name} must be an integer in ${min}..${max}, got ${v}`);
  return v;
}

/** A workload migrating away, as its folder's marker says. */
export interface MoveMarker {
  app: string;
  id: number;
  migration: string;
  to: string;
}

/** A process coming in by migration: its folder, cgroup and log files, ready before the restore. */
export interface Arrival {
  /** Its folder here, and its cgroup (what watches it beside sosd: self-fencing). */
  readonly dir: string;
  readonly group: Cgroup;
  /** Open log files (O_APPEND) for the restored tree's stdout and stderr (CRIU's inherit-fd). */
  readonly stdoutFd: number;
  readonly stderrFd: number;
  /** Move the restored (still held) tree into the workload's cgroup. */
  place(pid: number): void;
  /** The tree runs: record it as this node's workload (durably) and watch it. */
  adopt(pid: number): Promise<WorkloadRecord>;
  /** The migration failed: forget it all. Idempotent. */
  abort(): Promise<void>;
}

export interface ArrivalOptions {
  /** The migration that brings it: a restarted sosd finds the arrival by it (see arrivals()). */
  migration: string;
  app: string;
  id: number;
  argv: string[];
  cwd: string;
  limits?: CgroupLimits;
  startedAt: string;
  from: string;
}

/** The application processes of one node, kept in a state folder. */
export class Workloads extends EventEmitter<WorkloadsEvents> implements Disposable {
  readonly stateDir: string;
  readonly cgroups: Cgroups;
  private readonly entries = new Map<string, Entry>();
  /** Folders made ready for arrivals by an earlier sosd, by migration id: adopted or let go after the restart. */
  private readonly arriving = new Map<string, { dir: string; o: ArrivalOptions }>();
  private readonly log: Logger | undefined;
  private readonly maxLogBytes: number;
  private readonly startTimeoutMs: number;
  private readonly tools: Tools;
  private timer: NodeJS.Timeout | undefined;
  private ticking: Promise<void> | null = null;
  private allocating: Promise<unknown> = Promise.resolve();
  private closed = false;
  private waiting = 0;

  private constructor(
    stateDir: string,
    cgroups: Cgroups,
    tools: Tools,
    o: Required<Pick<WorkloadsOptions, 'maxLogBytes' | 'startTimeoutMs'>> & { log?: Logger },
  ) {
    super();
    this.stateDir = stateDir;
    this.cgroups = cgroups;
    this.tools = tools;
    this.log = o.log;
    this.maxLogBytes = o.maxLogBytes;
    this.startTimeoutMs = o.startTimeoutMs;
  }

  /**
   * Open the state folder: take it over (an AppError `ERR_STATE_LOCKED` while another live
   * process holds it), read every record, adopt each process that still runs as the same process
   * (pid and start time), and record the exit of the others.
   */
  static async open(options: WorkloadsOptions): Promise<Workloads> {
    if (!options || typeof options !== 'object') throw argType('options must be an object');
    if (typeof options.stateDir !== 'string' || options.stateDir === '')
      throw argType('stateDir must be a non-empty string');
    const pollMs = intOption(options.pollMs, 'pollMs', 200, 1, 60_000);
    const maxLogBytes = intOption(options.maxLogBytes, 'maxLogBytes', 8 << 20, 4096, 2 ** 40);
    const startTimeoutMs = intOption(options.startTimeoutMs, 'startTimeoutMs', 30_000, 1, 600_000);
    const cgroups = Cgroups.open(options.cgroups);
    const tools = findTools();
    let dir = path.resolve(options.stateDir);
    try {
      fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
      dir = fs.realpathSync(dir);
    } catch (e) {
      throw callError(e, 'mkdir', dir, 'cannot make the state folder');
    }
    if (open.has(dir))
      throw new AppError(`${dir} is open already in this process`, { code: 'ERR_STATE_LOCKED', path: dir });
    await lock(dir);
    open.add(dir);
    const w = new Workloads(dir, cgroups, tools, { maxLogBytes, startTimeoutMs, log: options.log });
    try {
      await w.load();
      await w.tick();
    } catch (e) {
      w.close();
      throw e;
    }
    w.timer = setInterval(() => void w.tick(), pollMs).unref();
    return w;
  }

  /** Start `argv` as pid 1 of a new PID namespace in its own cgroup; resolves once its record is durable. */
  async run(options: RunOptions): Promise<WorkloadRecord> {
    this.live();
    if (!options || typeof options !== 'object') throw argType('options must be an object');
    const app = checkApp(options.app);
    const argv = checkArgv(options.argv);
    const env = checkEnv(options.env);
    env.PATH ??= DEFAULT_PATH;
    const cwd = options.cwd ?? '/';
    if (typeof cwd !== 'string') throw argType('cwd must be a string');
    if (!path.isAbsolute(cwd)) throw argValue(`cwd must be an absolute path, got ${JSON.stringify(cwd)}`);
    try {
      if (!fs.statSync(cwd).isDirectory()) throw Object.assign(new Error('not a folder'), { code: 'ENOTDIR' });
    } catch (e) {
      throw callError(e, 'chdir', cwd, 'cannot run in cwd');
    }
    const limits = options.limits ?? {};
    if (!limits || typeof limits !== 'object') throw argType('limits must be an object');
    if (which(argv[0], env.PATH) === null)
      throw new AppError(`cannot run ${JSON.stringify(argv[0])}: no such executable on PATH ${env.PATH}`, {
        code: 'ENOENT',
        syscall: 'execve',
        path: argv[0],
      });

    const id = options.id === undefined ? await this.allocate(app) : this.claim(app, options.id);
    const dir = path.join(this.stateDir, app, String(id));
    let group: Cgroup | undefined;
    let started: Started | undefined;
    try {
      fs.mkdirSync(dir, { mode: 0o700 });
      await options.prepare?.(dir);
      group = await this.makeGroup(app, id);
      if (Object.keys(limits).length > 0) group.setLimits(limits);
      const out = openLog(dir, 'stdout');
      const err = openLog(dir, 'stderr');
      try {
        started = await startSupervisor({
          dir,
          argv,
          env,
          cwd,
          procsFiles: group.procsFiles(),
          stdoutFd: out,
          stderrFd: err,
          tools: this.tools,
          timeoutMs: this.startTimeoutMs,
          stderrTail: () => tail(dir, 'stderr', 4096),
        });
      } finally {
        fs.closeSync(out);
        fs.closeSync(err);
      }
      const pids = group.pids();
      if (pids.length !== 1)
        throw new AppError(`the init is not alone in its cgroup: ${pids.join(' ')}`, { code: 'ERR_APP_START' });
      const pid = pids[0];
      const vpid = nsPids(pid)?.at(-1);
      const st = startTime(pid);
      const supSt = startTime(started.child.pid!);
      if (vpid !== 1 || st === null || supSt === null)
        throw new AppError(`pid ${pid} is not the init of a new PID namespace (NSpid ${nsPids(pid)?.join(' ')})`, {
          code: 'ERR_APP_START',
        });
      const rec = runningRecord(dir, group, {
        app,
        id,
        vpid,
        pid,
        startedAt: new Date().toISOString(),
        argv,
        cwd,
        startTime: st,
        supervisor: { pid: started.child.pid!, startTime: supSt },
      });
      await writeRecord(dir, rec);
      started.go();
      const entry: Entry = { rec, dir, group, child: started.child, finishing: false, moving: null, waiters: [] };
      started.child.on('error', () => undefined);
      started.child.once('exit', () => void this.tick());
      this.entries.set(key(app, id), entry);
      this.log?.info({ app, id, pid, argv }, 'workload started');
      return copy(rec);
    } catch (e) {
      started?.abort();
      await group?.remove({ kill: true }).catch(() => undefined);
      fs.rmSync(dir, { recursive: true, force: true });
      throw e;
    }
  }

  /**
   * Mark `app/id` as migrating away as `migration` to node `to`, durably: from now its death is not
   * an exit until `settleMove` says how the migration ended (a restarted sosd finds the marker: see
   * `moving()`).
   */
  async beginMove(app: string, id: number, migration: string, to: string): Promise<void> {
    const e = this.find(app, id);
    if (e.rec.state !== 'running' || !isAlive(e.rec))
      throw new AppError(`${app}/${id} is not running`, { code: 'ERR_APP_EXITED' });
    if (e.moving) throw new AppError(`${app}/${id} is migrating already`, { code: 'ERR_APP_BUSY' });
    const m: MoveMarker = { app, id, migration, to };
    await writeDurable(path.join(e.dir, MOVING), `${JSON.stringify(m)}\n`);
    e.moving = m;
  }

  /** The workloads marked as migrating away (by this sosd or one before it). */
  moving(): MoveMarker[] {
    this.live();
    return [...this.entries.values()].flatMap((e) => (e.moving ? [{ ...e.moving }] : []));
  }

  /**
   * How `app/id`'s migration ended: `to` it runs there now (the record says 'migrated', its cgroup
   * goes), or null: it stayed here (watched again; if it died meanwhile, that is its exit).
   */
  async settleMove(app: string, id: number, to: string | null): Promise<void> {
    const e = this.find(app, id);
    if (!e.moving) return;
    if (to !== null) {
      const r = e.rec;
      r.state = 'migrated';
      r.movedTo = to;
      r.exitedAt = new Date().toISOString();
      await writeRecord(e.dir, r);
      await e.group
        ?.remove({ kill: true })
        .catch((err: unknown) =>
          this.log?.warn({ dir: e.dir, err: (err as Error).message }, 'cgroup of a migrated workload not removed'),
        );
      this.log?.info({ app, id, to }, 'workload migrated away');
      for (const w of e.waiters.splice(0)) w.resolve(copy(r));
    }
    await fs.promises.rm(path.join(e.dir, MOVING), { force: true });
    await syncDir(e.dir);
    e.moving = null;
    if (to === null) void this.tick();
  }

  /**
   * Make ready for `app/id` coming in by migration: its folder, cgroup (with `limits`) and log files;
   * ERR_APP_EXISTS when this folder has it already.
   */
  async receive(o: ArrivalOptions): Promise<Arrival> {
    this.live();
    const app = checkApp(o.app);
    if (typeof o.migration !== 'string' || !/^[A-Za-z0-9_-]{1,128}$/.test(o.migration))
      throw argValue('migration must be 1 to 128 of A-Z a-z 0-9 _ -');
    // It may come back: the record of its earlier stay here (it left by migration) gives way.
    const earlier = typeof o.id === 'number' ? this.entries.get(key(app, o.id)) : undefined;
    if (earlier?.rec.state === 'migrated') {
      this.entries.delete(key(app, o.id));
      await fs.promises.rm(earlier.dir, { recursive: true, force: true });
    }
    const id = this.claim(app, o.id);
    const argv = checkArgv(o.argv);
    const dir = path.join(this.stateDir, app, String(id));
    fs.mkdirSync(dir, { mode: 0o700 });
    let group: Cgroup | undefined;
    const fds = { stdout: -1, stderr: -1 };
    try {
      group = await this.makeGroup(app, id);
      if (o.limits && Object.keys(o.limits).length > 0) group.setLimits(o.limits);
      fds.stdout = openLog(dir, 'stdout');
      fds.stderr = openLog(dir, 'stderr');
      // Durable before the restore: a sosd restarted while it runs here finds it (arrivals()).
      const marker: ArrivalOptions = {
        migration: o.migration,
        app,
        id,
        argv,
        cwd: o.cwd,
        startedAt: o.startedAt,
        from: o.from,
      };
      await writeDurable(path.join(dir, ARRIVING), `${JSON.stringify(marker)}\n`);
      await syncDir(path.dirname(dir));
    } catch (e) {
      for (const fd of [fds.stdout, fds.stderr]) if (fd >= 0) fs.closeSync(fd);
      await group?.remove({ kill: true }).catch(() => undefined);
      fs.rmSync(dir, { recursive: true, force: true });
      throw e;
    }
    return this.arrival(dir, { ...o, app, id, argv }, group, fds);
  }

  /** The migrations that were coming in when the last sosd stopped (their folders are kept until reclaim()). */
  arrivals(): { migration: string; app: string; id: number }[] {
    this.live();
    return [...this.arriving.values()].map(({ o }) => ({ migration: o.migration, app: o.app, id: o.id }));
  }

  /** An arrival an earlier sosd made ready (arrivals()): adopt its process, or abort it. */
  reclaim(migration: string): Arrival {
    this.live();
    const a = this.arriving.get(migration);
    if (!a) throw new AppError(`no arrival of migration ${migration} is kept here`, { code: 'ERR_APP_NOT_FOUND' });
    this.arriving.delete(migration);
    return this.arrival(a.dir, a.o, this.cgroups.group(a.o.app, String(a.o.id)), { stdout: -1, stderr: -1 });
  }

  private arrival(dir: string, o: ArrivalOptions, g: Cgroup, fds: { stdout: number; stderr: number }): Arrival {
    const { app, id } = o;
    const closeFds = () => {
      for (const fd of [fds.stdout, fds.stderr]) if (fd >= 0) fs.closeSync(fd);
      fds.stdout = fds.stderr = -1;
    };
    let done = false;
    return {
      dir,
      group: g,
      stdoutFd: fds.stdout,
      stderrFd: fds.stderr,
      place: (pid) => {
        for (const p of treePids(pid)) g.addProcess(p);
      },
      adopt: async (pid) => {
        const st = startTime(pid);
        const vpid = nsPids(pid)?.at(-1);
        if (st === null || vpid === undefined)
          throw new AppError(`the restored ${app}/${id} (pid ${pid}) is gone`, { code: 'ERR_APP_EXITED' });
        const rec = runningRecord(dir, g, {
          app,
          id,
          vpid,
          pid,
          startedAt: o.startedAt,
          argv: o.argv,
          cwd: o.cwd,
          startTime: st,
          supervisor: null,
          movedFrom: o.from,
        });
        await writeRecord(dir, rec);
        await fs.promises.rm(path.join(dir, ARRIVING), { force: true });
        done = true;
        closeFds();
        this.entries.set(key(app, id), { rec, dir, group: g, finishing: false, moving: null, waiters: [] });
        this.log?.info({ app, id, pid, from: o.from }, 'workload migrated in');
        return copy(rec);
      },
      abort: async () => {
        if (done) return;
        done = true;
        closeFds();
        await g.remove({ kill: true }).catch(() => undefined);
        fs.rmSync(dir, { recursive: true, force: true });
      },
    };
  }

  /** Where `app/id` lives here: its folder and cgroup (null: an exited one's group is gone). */
  where(app: string, id: number): { dir: string; group: Cgroup | null } {
    const e = this.find(app, id);
    return { dir: e.dir, group: e.group };
  }

  /** Every workload's record (running and exited), by app then id. */
  list(): WorkloadRecord[] {
    this.live();
    return [...this.entries.values()]
      .map((e) => copy(e.rec))
      .sort((a, b) => (a.app < b.app ? -1 : a.app > b.app ? 1 : a.id - b.id));
  }

  /** One workload's record; an AppError `ERR_APP_NOT_FOUND` when there is none. */
  get(app: string, id: number): WorkloadRecord {
    return copy(this.find(app, id).rec);
  }

  /** The tail of a workload's stdout and/or stderr (across the current file and the older one). */
  logs(app: string, id: number, options: LogsOptions = {}): Logs {
    const e = this.find(app, id);
    if (!options || typeof options !== 'object') throw argType('options must be an object');
    const { stream = 'both' } = options;
    if (stream !== 'stdout' && stream !== 'stderr' && stream !== 'both')
      throw argValue(`stream must be 'stdout', 'stderr' or 'both', got ${JSON.stringify(stream)}`);
    const tailBytes = intOption(options.tailBytes, 'tailBytes', 65_536, 0, 2 * this.maxLogBytes);
    const from = options.from;
    if (from !== undefined && (!from || typeof from !== 'object')) throw argType('from must be an object');
    const offsets = { stdout: size(e.dir, 'stdout'), stderr: size(e.dir, 'stderr') };
    const get = (s: Stream) => {
      if (stream !== s && stream !== 'both') return null;
      const at = from?.[s];
      if (at === undefined) return tail(e.dir, s, tailBytes, offsets[s]);
      if (typeof at !== 'number' || !Number.isSafeInteger(at) || at < 0)
        throw argRange(`from.${s} must be a byte offset, got ${String(at)}`);
      const r = readFrom(e.dir, s, at, tailBytes);
      offsets[s] = r.next;
      return r.text;
    };
    return { stdout: get('stdout'), stderr: get('stderr'), offsets };
  }

  /**
   * Send `signal` (a name, default SIGTERM) to the workload's init. As pid 1 of its namespace it
   * gets only the signals it has a handler for, and SIGKILL; SIGKILL ends the whole namespace.
   * An AppError `ERR_APP_EXITED` when it has exited.
   */
  kill(app: string, id: number, signal: string = 'SIGTERM'): void {
    const e = this.find(app, id);
    const sig = checkSignal(signal);
    if (e.rec.state === 'exited' || !isAlive(e.rec)) {
      void this.tick();
      throw new AppError(`${app}/${id} has exited`, { code: 'ERR_APP_EXITED' });
    }
    try {
      process.kill(e.rec.pid, sig);
    } catch (err) {
      throw callError(err, 'kill', String(e.rec.pid), `cannot signal ${app}/${id}`);
    }
  }

  /** What the workload's cgroup holds now: memory bytes, cpu seconds, tasks. */
  usage(app: string, id: number): CgroupUsage {
    const e = this.find(app, id);
    if (!e.group)
      throw new AppError(`${app}/${id}'s cgroup is not under this Workloads' prefix`, {
        code: 'ERR_BAD_RECORD',
        path: e.dir,
      });
    return e.group.usage();
  }

  /** Resolves with the record once the workload has exited (at once when it has). */
  wait(app: string, id: number): Promise<WorkloadRecord> {
    const e = this.find(app, id);
    if (e.rec.state !== 'running') return Promise.resolve(copy(e.rec));
    // a pending wait keeps the process alive (the poll timer is unref'd otherwise)
    this.waiting++;
    this.timer?.ref();
    const done = () => {
      if (--this.waiting === 0) this.timer?.unref();
    };
    return new Promise<WorkloadRecord>((resolve, reject) => e.waiters.push({ resolve, reject })).finally(done);
  }

  /** Forget an exited workload: its cgroup, record and logs go. An AppError `ERR_APP_RUNNING` while it runs. */
  async remove(app: string, id: number): Promise<void> {
    const e = this.find(app, id);
    if (e.rec.state === 'running')
      throw new AppError(`${app}/${id} is running: kill it first`, { code: 'ERR_APP_RUNNING' });
    await e.group?.remove({ kill: true });
    this.entries.delete(key(app, id));
    try {
      await fs.promises.rm(e.dir, { recursive: true, force: true });
      await syncDir(path.dirname(e.dir));
    } catch (err) {
      throw callError(err, 'rm', e.dir, `cannot remove ${app}/${id}'s files`);
    }
  }

  /** Stop watching and let the state folder go; the workloads go on running, for the next open. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    open.delete(this.stateDir);
    try {
      const owner = JSON.parse(fs.readFileSync(path.join(this.stateDir, OWNER), 'utf8')) as ProcIdentity;
      if (owner.pid === process.pid) fs.rmSync(path.join(this.stateDir, OWNER), { force: true });
    } catch {
      // no owner file
    }
    const err = new AppError('the Workloads was closed', { code: 'ERR_CLOSED' });
    for (const e of this.entries.values()) for (const w of e.waiters.splice(0)) w.reject(err);
  }

  [Symbol.dispose](): void {
    this.close();
  }

  private live(): void {
    if (this.closed) throw new AppError('the Workloads is closed', { code: 'ERR_CLOSED' });
  }

  private find(app: string, id: number): Entry {
    this.live();
    checkApp(app);
    checkId(id);
    const e = this.entries.get(key(app, id));
    if (!e) throw new AppError(`no workload ${app}/${id}`, { code: 'ERR_APP_NOT_FOUND' });
    return e;
  }

  /** The group of a new workload; an empty one left by a lost state folder is replaced. */
  private async makeGroup(app: string, id: number): Promise<Cgroup> {
    try {
      return this.cgroups.create(app, String(id));
    } catch (e) {
      if ((e as AppError).code !== 'EEXIST') throw e;
      await this.cgroups.group(app, String(id)).remove(); // EBUSY when it holds processes: then it is not ours to take
      return this.cgroups.create(app, String(id));
    }
  }

  /** The next id of `app`, kept in `<app>/next-id` (durable) so that ids are never reused. */
  /** `id`, given: free in this folder (no record, no folder), or ERR_APP_EXISTS. */
  private claim(app: string, id: unknown): number {
    if (typeof id !== 'number' || !Number.isSafeInteger(id) || id < 1)
      throw argRange(`id must be a positive integer, got ${String(id)}`);
    if (this.entries.has(key(app, id)) || fs.existsSync(path.join(this.stateDir, app, String(id))))
      throw new AppError(`${app}/${id} exists already in ${this.stateDir}`, { code: 'ERR_APP_EXISTS' });
    fs.mkdirSync(path.join(this.stateDir, app), { recursive: true, mode: 0o700 });
    return id;
  }

  private allocate(app: string): Promise<number> {
    const next = this.allocating.then(async () => {
      const appDir = path.join(this.stateDir, app);
      const file = path.join(appDir, NEXT_ID);
      fs.mkdirSync(appDir, { recursive: true, mode: 0o700 });
      let id = 1;
      try {
        id = Math.max(1, Number.parseInt(fs.readFileSync(file, 'utf8'), 10) || 1);
      } catch {
        // a new application
      }
      // past every folder too: a record skipped as bad still holds its id
      for (const name of fs.readdirSync(appDir))
        if (/^[1-9][0-9]{0,15}$/.test(name)) id = Math.max(id, Number(name) + 1);
      await writeDurable(file, `${id + 1}\n`);
      return id;
    });
    this.allocating = next.catch(() => undefined);
    return next;
  }

  /** Read the records; remove what a start cut short left behind (no record). */
  private async load(): Promise<void> {
    for (const app of fs.readdirSync(this.stateDir)) {
      const appDir = path.join(this.stateDir, app);
      if (!APP_NAME.test(app) || !fs.statSync(appDir).isDirectory()) continue;
      for (const name of fs.readdirSync(appDir)) {
        const dir = path.join(appDir, name);
        if (!/^[1-9][0-9]{0,15}$/.test(name) || !fs.statSync(dir).isDirectory()) continue;
        let rec: WorkloadRecord | null;
        try {
          rec = readRecord(dir);
        } catch (e) {
          this.log?.warn({ dir, err: (e as Error).message }, 'workload record skipped');
          continue;
        }
        const arriving = rec ? null : readArriving(dir);
        if (arriving && arriving.app === app && String(arriving.id) === name) {
          // Coming in by migration when sosd stopped: its process may run (the migration service decides).
          this.arriving.set(arriving.migration, { dir, o: arriving });
          this.log?.info({ app, id: arriving.id, migration: arriving.migration }, 'arrival found');
          continue;
        }
        if (!rec) {
          // sosd died before the record was written, so before the go: the init exits on EOF
          await this.cgroups
            .group(app, name)
            .remove({ kill: true })
            .catch((e: unknown) =>
              this.log?.warn({ dir, err: (e as Error).message }, 'cgroup of a cut-short start not removed'),
            );
          fs.rmSync(dir, { recursive: true, force: true });
          this.log?.info({ dir }, 'removed a start cut short');
          continue;
        }
        if (rec.app !== app || String(rec.id) !== name) {
          this.log?.warn({ dir }, 'workload record of another folder skipped');
          continue;
        }
        let group: Cgroup | null = null;
        try {
          group = this.cgroups.attach(rec.cgroup);
        } catch (e) {
          this.log?.warn({ dir, err: (e as Error).message }, 'workload cgroup not under this prefix');
        }
        this.entries.set(key(app, rec.id), { rec, dir, group, finishing: false, moving: readMoving(dir), waiters: [] });
        if (rec.state === 'running') this.log?.info({ app, id: rec.id, pid: rec.pid }, 'workload found');
      }
    }
  }

  /** One pass over the running workloads: trim their logs, notice their exit. Never runs twice at once. */
  private tick(): Promise<void> {
    if (this.closed) return Promise.resolve();
    if (this.ticking) return this.ticking;
    const run = async () => {
      for (const e of [...this.entries.values()]) await this.check(e);
    };
    // cleared only after it is set: a pass with nothing to await settles within this call
    const p = run().finally(() => {
      if (this.ticking === p) this.ticking = null;
    });
    this.ticking = p;
    return p;
  }

  private async check(e: Entry): Promise<void> {
    if (e.rec.state !== 'running' || e.finishing || e.moving) return;
    for (const s of ['stdout', 'stderr'] as const) {
      try {
        rotate(e.dir, s, this.maxLogBytes);
      } catch (err) {
        this.log?.warn({ dir: e.dir, err: (err as Error).message }, 'log not trimmed');
      }
    }
    if (isAlive(e.rec)) return;
    // The init is gone; its supervisor writes the status right after, unless it is gone too.
    const status = readExitStatus(e.dir);
    if (status === null && e.rec.supervisor && isAlive(e.rec.supervisor)) return;
    e.finishing = true;
    const r = e.rec;
    r.state = 'exited';
    r.exitCode = status;
    r.signal = status !== null && status > 128 ? signalName(status - 128) : null;
    r.exitedAt = new Date().toISOString();
    try {
      await writeRecord(e.dir, r);
    } catch (err) {
      this.log?.warn({ dir: e.dir, err: (err as Error).message }, 'exit not recorded');
    }
    this.log?.info({ app: r.app, id: r.id, exitCode: r.exitCode, signal: r.signal }, 'workload exited');
    for (const w of e.waiters.splice(0)) w.resolve(copy(r));
    this.emit('exit', copy(r));
  }
}

/** Take the state folder: refused while the process named in owner.json is alive. */
async function lock(dir: string): Promise<void> {
  const file = path.join(dir, OWNER);
  try {
    const owner = JSON.parse(fs.readFileSync(file, 'utf8')) as ProcIdentity;
    if (owner.pid !== process.pid && Number.isSafeInteger(owner.pid) && isAlive(owner))
      throw new AppError(`${dir} is in use by pid ${owner.pid}`, { code: 'ERR_STATE_LOCKED', path: dir });
  } catch (e) {
    if (e instanceof AppError) throw e;
    // no owner, or a torn file: take it
  }
  const me: ProcIdentity = { pid: process.pid, startTime: startTime(process.pid) ?? 0 };
  await writeDurable(file, `${JSON.stringify(me)}\n`);
}

/** The record of a workload that runs now in `dir`, in `group` (started here, or arrived). */
function runningRecord(
  dir: string,
  group: Cgroup,
  r: Pick<WorkloadRecord, 'app' | 'id' | 'vpid' | 'pid' | 'startedAt' | 'argv' | 'cwd' | 'startTime' | 'supervisor'> &
    Partial<Pick<WorkloadRecord, 'movedFrom'>>,
): WorkloadRecord {
  const [stdout] = logFiles(dir, 'stdout');
  const [stderr] = logFiles(dir, 'stderr');
  return {
    ...r,
    state: 'running',
    limits: group.limits(),
    cgroup: group.toJSON(),
    logs: { stdout, stderr },
    exitCode: null,
    signal: null,
    exitedAt: null,
  };
}

function readArriving(dir: string): ArrivalOptions | null {
  try {
    const a = JSON.parse(fs.readFileSync(path.join(dir, ARRIVING), 'utf8')) as ArrivalOptions;
    const ok =
      typeof a.migration === 'string' &&
      typeof a.app === 'string' &&
      Number.isSafeInteger(a.id) &&
      Array.isArray(a.argv) &&
      typeof a.cwd === 'string' &&
      typeof a.startedAt === 'string' &&
      typeof a.from === 'string';
    return ok ? a : null;
  } catch {
    return null;
  }
}

function readMoving(dir: string): MoveMarker | null {
  try {
    const m = JSON.parse(fs.readFileSync(path.join(dir, MOVING), 'utf8')) as MoveMarker;
    return typeof m.migration === 'string' && typeof m.to === 'string' ? m : null;
  } catch {
    return null;
  }
}

function key(app: string, id: number): string {
  return `${app}/${id}`;
}

function copy(r: WorkloadRecord): WorkloadRecord {
  return structuredClone(r);
}
