// One interface over cgroup v1 and v2: a group per application process, made under
// `<prefix>/<app>/<proc>` in every hierarchy that holds a controller we use (v1), or once in the
// unified hierarchy with its controllers enabled down the path (v2). docs/cgroups.md has the mapping.
import fs from 'node:fs';
import path from 'node:path';
import { argRange, argType, argValue } from '../errors.js';
import { CgroupError, cgroupError } from './errors.js';
import { detectLayout, parseMountinfo, parseProcCgroup, type CgroupLayout, type Hierarchy } from './mounts.js';

/** How to find and name groups. */
export interface CgroupsOptions {
  /** The folder (one or more names joined by '/') that holds every group, inside each hierarchy. Default 'serverlessos'. */
  prefix?: string;
  /**
   * 'root' (default): the prefix sits at the root of each hierarchy. 'self': under this process's
   * own cgroup in each hierarchy, so groups nest inside whatever limits the caller runs under (on v2
   * this needs a delegated, process-free cgroup to enable controllers in).
   */
  under?: 'root' | 'self';
  /** Use this cgroup2 mount point (e.g. one of your own) instead of detecting the layout. */
  v2Mount?: string;
}

/** Limits of a group; `null` lifts one, an absent field leaves it as it is. */
export interface CgroupLimits {
  /** Most bytes of memory (v1 memory.limit_in_bytes, v2 memory.max). */
  memoryBytes?: number | null;
  /** CPU time per period (v1 cpu.cfs_quota_us and cpu.cfs_period_us, v2 cpu.max); periodUs defaults to 100 000. */
  cpu?: { quotaUs: number; periodUs?: number } | null;
  /** Most tasks, processes and threads (pids.max). */
  pids?: number | null;
}

/** What a group uses now; null for a figure whose controller this group does not have. */
export interface CgroupUsage {
  /** v1 memory.usage_in_bytes, v2 memory.current. */
  memoryBytes: number | null;
  /** v1 cpuacct.usage (ns), v2 cpu.stat usage_usec, in seconds. */
  cpuSeconds: number | null;
  /** pids.current. */
  pids: number | null;
}

/** A group as kept in a record: enough to attach to it again later. */
export interface CgroupDescription {
  version: 1 | 2;
  /** The group's folder in each hierarchy, keyed by the hierarchy's controllers ('memory', 'cpu,cpuacct'…; 'unified' on v2). */
  dirs: Record<string, string>;
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
const V2_WANTED = ['cpu', 'memory', 'pids', 'cpuset'];
const UNLIMITED_V1 = 2 ** 62;

function checkName(v: unknown, what: string): string {
  if (typeof v !== 'string') throw argType(`${what} must be a string`);
  if (!NAME.test(v))
    throw argValue(
      `${what} must be 1-64 letters, digits, '_', '.' or '-', not starting with a symbol: ${JSON.stringify(v)}`,
    );
  return v;
}

function read(file: string, what: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw cgroupError(e, 'read', file, what);
  }
}

function write(file: string, value: string, what: string): void {
  try {
    fs.writeFileSync(file, value);
  } catch (e) {
    throw cgroupError(e, 'write', file, what);
  }
}

function readInt(file: string): number | null {
  try {
    return Number(fs.readFileSync(file, 'utf8').trim());
  } catch {
    return null;
  }
}

/** The hierarchies of this machine (or the given cgroup2 mount), with groups made under a prefix. */
export class Cgroups {
  readonly version: 1 | 2;
  /** The folder holding the prefix in each hierarchy used, with that hierarchy's controllers. */
  readonly bases: readonly { key: string; controllers: readonly string[]; dir: string }[];
  readonly prefix: string;

  private constructor(layout: CgroupLayout, prefix: string, under: 'root' | 'self') {
    this.version = layout.version;
    this.prefix = prefix;
    const self = under === 'self' ? parseProcCgroup(fs.readFileSync('/proc/self/cgroup', 'utf8')) : null;
    this.bases = layout.hierarchies.map((h) => {
      const key = h.version === 2 ? 'unified' : h.controllers.join(',');
      let rel = '/';
      if (self) {
        const p = self.get(h.version === 2 ? '' : h.controllers[0]) ?? '/';
        const root = h.mountRoot === '/' ? '' : h.mountRoot;
        if (p === h.mountRoot || p.startsWith(`${root}/`)) rel = p.slice(root.length) || '/';
      }
      return { key, controllers: h.controllers, dir: path.join(h.mountPoint, rel) };
    });
  }

  /** Detect the layout (or use `options.v2Mount`) and name groups under `options.prefix`. */
  static open(options: CgroupsOptions = {}): Cgroups {
    const { prefix = 'serverlessos', under = 'root', v2Mount } = options;
    if (typeof prefix !== 'string' || !prefix.split('/').every((s) => NAME.test(s)))
      throw argValue(`prefix must be names joined by '/': ${JSON.stringify(prefix)}`);
    if (under !== 'root' && under !== 'self') throw argValue(`under must be 'root' or 'self'`);
    let layout: CgroupLayout;
    if (v2Mount !== undefined) {
      if (typeof v2Mount !== 'string') throw argType('v2Mount must be a string');
      const mp = path.resolve(v2Mount);
      const h: Hierarchy | undefined = parseMountinfo(fs.readFileSync('/proc/self/mountinfo', 'utf8')).find(
        (m) => m.version === 2 && m.mountPoint === mp,
      );
      if (!h) throw new CgroupError(`no cgroup2 file system is mounted at ${mp}`, { code: 'ERR_NO_CGROUPS', path: mp });
      layout = { version: 2, hierarchies: [h] };
    } else layout = detectLayout();
    return new Cgroups(layout, prefix, under);
  }

  /** The controllers groups can get: v1 those mounted; v2 those the base's cgroup.controllers offers. */
  controllers(): string[] {
    if (this.version === 1) return this.bases.flatMap((b) => b.controllers).sort();
    try {
      return fs
        .readFileSync(path.join(this.bases[0].dir, 'cgroup.controllers'), 'utf8')
        .trim()
        .split(/\s+/)
        .filter(Boolean)
        .sort();
    } catch {
      return [];
    }
  }

  /**
   * Make the group `<prefix>/<app>/<proc>` (in every hierarchy on v1; once on v2, with the
   * controllers the parent offers enabled down the path). v1's cpuset gets its parent's cpus and
   * mems at every level. A CgroupError `EEXIST` when the group exists already.
   */
  create(app: string, proc: string): Cgroup {
    checkName(app, 'app');
    checkName(proc, 'proc');
    const made: string[] = [];
    const dirs: Record<string, string> = {};
    try {
      for (const b of this.bases) {
        const levels = [...this.prefix.split('/'), app, proc];
        let dir = b.dir;
        for (let i = 0; i < levels.length; i++) {
          const parent = dir;
          if (this.version === 2) enableControllers(parent);
          dir = path.join(dir, levels[i]);
          const leaf = i === levels.length - 1;
          try {
            fs.mkdirSync(dir);
            if (leaf) made.push(dir);
          } catch (e) {
            if (leaf || (e as NodeJS.ErrnoException).code !== 'EEXIST')
              throw cgroupError(e, 'mkdir', dir, `cannot make cgroup ${app}/${proc}`);
          }
          if (b.controllers.includes('cpuset')) inheritCpuset(parent, dir);
        }
        dirs[b.key] = dir;
      }
    } catch (e) {
      for (const d of made) {
        try {
          fs.rmdirSync(d);
        } catch {
          // already gone
        }
      }
      throw e;
    }
    return new Cgroup({ version: this.version, dirs });
  }

  /** The group `<prefix>/<app>/<proc>` by name, whether or not it exists (e.g. to remove one a crash left). */
  group(app: string, proc: string): Cgroup {
    checkName(app, 'app');
    checkName(proc, 'proc');
    const dirs: Record<string, string> = {};
    for (const b of this.bases) dirs[b.key] = path.join(b.dir, ...this.prefix.split('/'), app, proc);
    return new Cgroup({ version: this.version, dirs });
  }

  /** The group a record describes (made earlier, maybe by another process). */
  attach(desc: CgroupDescription): Cgroup {
    if (!desc || (desc.version !== 1 && desc.version !== 2) || typeof desc.dirs !== 'object')
      throw argType('desc must be a CgroupDescription');
    for (const d of Object.values(desc.dirs))
      if (typeof d !== 'string' || !this.bases.some((b) => d.startsWith(`${path.join(b.dir, this.prefix)}/`)))
        throw argValue(`cgroup folder ${JSON.stringify(d)} is not under this prefix`);
    return new Cgroup({ version: desc.version, dirs: { ...desc.dirs } });
  }

  /** Remove the prefix's empty folders (applications without groups, then the prefix); best effort. */
  removeEmpty(): void {
    for (const b of this.bases) {
      const top = path.join(b.dir, this.prefix);
      let apps: string[] = [];
      try {
        apps = fs
          .readdirSync(top, { withFileTypes: true })
          .filter((d) => d.isDirectory())
          .map((d) => d.name);
      } catch {
        continue;
      }
      for (const a of apps) {
        try {
          fs.rmdirSync(path.join(top, a));
        } catch {
          // still holds groups
        }
      }
      const segs = this.prefix.split('/');
      for (let i = segs.length; i > 0; i--) {
        try {
          fs.rmdirSync(path.join(b.dir, ...segs.slice(0, i)));
        } catch {
          break;
        }
      }
    }
  }
}

/** v2: enable in `dir`'s cgroup.subtree_control each wanted controller its cgroup.controllers offers (best effort). */
function enableControllers(dir: string): void {
  let offered: string[];
  let enabled: string[];
  try {
    offered = fs.readFileSync(path.join(dir, 'cgroup.controllers'), 'utf8').trim().split(/\s+/);
    enabled = fs.readFileSync(path.join(dir, 'cgroup.subtree_control'), 'utf8').trim().split(/\s+/);
  } catch {
    return;
  }
  for (const c of V2_WANTED) {
    if (!offered.includes(c) || enabled.includes(c)) continue;
    try {
      fs.writeFileSync(path.join(dir, 'cgroup.subtree_control'), `+${c}`);
    } catch {
      // EBUSY: the folder holds processes (v2's no-internal-process rule); the group goes without it
    }
  }
}

/** v1 cpuset: a new group has no cpus or mems until given some; copy the parent's. */
function inheritCpuset(parent: string, dir: string): void {
  for (const f of ['cpuset.cpus', 'cpuset.mems']) {
    const mine = path.join(dir, f);
    if (fs.existsSync(mine) && read(mine, 'cannot read cpuset').trim() === '')
      write(mine, read(path.join(parent, f), 'cannot read the parent cpuset').trim(), 'cannot set cpuset');
  }
}

/** One application process's group, in every hierarchy (v1) or the unified one (v2). */
export class Cgroup {
  readonly version: 1 | 2;
  /** The group's folder by hierarchy ('memory', 'cpu,cpuacct'… on v1; 'unified' on v2). */
  readonly dirs: Readonly<Record<string, string>>;

  constructor(desc: CgroupDescription) {
    this.version = desc.version;
    this.dirs = Object.freeze({ ...desc.dirs });
  }

  toJSON(): CgroupDescription {
    return { version: this.version, dirs: { ...this.dirs } };
  }

  /** The cgroup.procs file of every hierarchy: writing a pid to each places it in the group. */
  procsFiles(): string[] {
    return Object.values(this.dirs).map((d) => path.join(d, 'cgroup.procs'));
  }

  /** The group's folder for `controller`, or null when the group has none for it. */
  dirFor(controller: string): string | null {
    if (this.version === 2) {
      const d = this.dirs.unified;
      try {
        return fs.readFileSync(path.join(d, 'cgroup.controllers'), 'utf8').split(/\s+/).includes(controller) ? d : null;
      } catch {
        return null;
      }
    }
    for (const [key, d] of Object.entries(this.dirs)) if (key.split(',').includes(controller)) return d;
    return null;
  }

  private need(controller: string, what: string): string {
    const d = this.dirFor(controller);
    if (d) return d;
    throw new CgroupError(
      `${what}: the ${controller} controller is not available to ${Object.values(this.dirs)[0]} (cgroup v${this.version})`,
      {
        code: 'ERR_CGROUP_UNSUPPORTED',
        path: Object.values(this.dirs)[0],
      },
    );
  }

  /** Move process `pid` (all its threads) into the group, in every hierarchy. */
  addProcess(pid: number): void {
    if (!Number.isSafeInteger(pid) || pid <= 0) throw argRange(`pid must be a positive integer, got ${pid}`);
    for (const f of this.procsFiles()) write(f, String(pid), `cannot move pid ${pid} into the cgroup`);
  }

  /** Set limits; a CgroupError `ERR_CGROUP_UNSUPPORTED` when the group lacks a controller one needs. */
  setLimits(limits: CgroupLimits): void {
    if (!limits || typeof limits !== 'object') throw argType('limits must be an object');
    const { memoryBytes, cpu, pids } = limits;
    if (memoryBytes !== undefined && memoryBytes !== null && (!Number.isSafeInteger(memoryBytes) || memoryBytes < 4096))
      throw argRange(`memoryBytes must be an integer of at least 4096, got ${memoryBytes}`);
    if (cpu !== undefined && cpu !== null) {
      if (typeof cpu !== 'object') throw argType('cpu must be { quotaUs, periodUs? }');
      const period = cpu.periodUs ?? 100_000;
      if (!Number.isSafeInteger(period) || period < 1000 || period > 1_000_000)
        throw argRange(`cpu.periodUs must be 1000..1000000, got ${period}`);
      if (!Number.isSafeInteger(cpu.quotaUs) || cpu.quotaUs < 1000)
        throw argRange(`cpu.quotaUs must be an integer of at least 1000, got ${cpu.quotaUs}`);
    }
    if (pids !== undefined && pids !== null && (!Number.isSafeInteger(pids) || pids < 1))
      throw argRange(`pids must be a positive integer, got ${pids}`);
    const v2 = this.version === 2;
    if (memoryBytes !== undefined) {
      const d = this.need('memory', 'cannot limit memory');
      if (v2)
        write(path.join(d, 'memory.max'), memoryBytes === null ? 'max' : String(memoryBytes), 'cannot limit memory');
      else
        write(
          path.join(d, 'memory.limit_in_bytes'),
          memoryBytes === null ? '-1' : String(memoryBytes),
          'cannot limit memory',
        );
    }
    if (cpu !== undefined) {
      const d = this.need('cpu', 'cannot limit cpu');
      const period = cpu?.periodUs ?? 100_000;
      if (v2) write(path.join(d, 'cpu.max'), `${cpu === null ? 'max' : cpu.quotaUs} ${period}`, 'cannot limit cpu');
      else {
        write(path.join(d, 'cpu.cfs_period_us'), String(period), 'cannot limit cpu');
        write(path.join(d, 'cpu.cfs_quota_us'), cpu === null ? '-1' : String(cpu.quotaUs), 'cannot limit cpu');
      }
    }
    if (pids !== undefined) {
      const d = this.need('pids', 'cannot limit pids');
      write(path.join(d, 'pids.max'), pids === null ? 'max' : String(pids), 'cannot limit pids');
    }
  }

  /** The limits in force (null: none), read back from the group's files; absent when the controller is. */
  limits(): CgroupLimits {
    const out: CgroupLimits = {};
    const mem = this.dirFor('memory');
    if (mem) {
      const v = read(
        path.join(mem, this.version === 2 ? 'memory.max' : 'memory.limit_in_bytes'),
        'cannot read memory limit',
      ).trim();
      out.memoryBytes = v === 'max' || Number(v) >= UNLIMITED_V1 ? null : Number(v);
    }
    const cpu = this.dirFor('cpu');
    if (cpu) {
      let quota: string;
      let period: string;
      if (this.version === 2)
        [quota, period] = read(path.join(cpu, 'cpu.max'), 'cannot read cpu limit').trim().split(' ');
      else {
        quota = read(path.join(cpu, 'cpu.cfs_quota_us'), 'cannot read cpu limit').trim();
        period = read(path.join(cpu, 'cpu.cfs_period_us'), 'cannot read cpu limit').trim();
      }
      out.cpu = quota === 'max' || Number(quota) < 0 ? null : { quotaUs: Number(quota), periodUs: Number(period) };
    }
    const pids = this.dirFor('pids');
    if (pids) {
      const v = read(path.join(pids, 'pids.max'), 'cannot read pids limit').trim();
      out.pids = v === 'max' ? null : Number(v);
    }
    return out;
  }

  /** What the group uses now; a figure is null when the group has no controller for it (e.g. memory on a v2 without it). */
  usage(): CgroupUsage {
    const v2 = this.version === 2;
    const mem = this.dirFor('memory');
    const memoryBytes = mem ? readInt(path.join(mem, v2 ? 'memory.current' : 'memory.usage_in_bytes')) : null;
    let cpuSeconds: number | null = null;
    if (v2) {
      // cpu.stat's usage_usec is kept for every v2 group, with or without the cpu controller
      try {
        const m = /^usage_usec (\d+)$/m.exec(fs.readFileSync(path.join(this.dirs.unified, 'cpu.stat'), 'utf8'));
        if (m) cpuSeconds = Number(m[1]) / 1e6;
      } catch {
        // no cpu.stat
      }
    } else {
      const acct = this.dirFor('cpuacct');
      const ns = acct ? readInt(path.join(acct, 'cpuacct.usage')) : null;
      cpuSeconds = ns === null ? null : ns / 1e9;
    }
    const pd = this.dirFor('pids');
    const pids = pd ? readInt(path.join(pd, 'pids.current')) : null;
    return { memoryBytes, cpuSeconds, pids };
  }

  /** The processes in the group (every hierarchy's cgroup.procs, merged), ascending; [] once it is removed. */
  pids(): number[] {
    const all = new Set<number>();
    for (const f of this.procsFiles()) {
      let text: string;
      try {
        text = fs.readFileSync(f, 'utf8');
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') continue;
        throw cgroupError(e, 'read', f, 'cannot list the cgroup');
      }
      for (const s of text.split('\n')) if (s) all.add(Number(s));
    }
    return [...all].sort((a, b) => a - b);
  }

  /** Whether cgroup.kill (v2, Linux 5.14+) is there. */
  get hasKill(): boolean {
    return this.version === 2 && fs.existsSync(path.join(this.dirs.unified, 'cgroup.kill'));
  }

  /**
   * Signal every process in the group: SIGKILL through cgroup.kill on v2 when the kernel has it
   * (which also catches processes forked meanwhile), else each pid in cgroup.procs.
   */
  kill(signal: NodeJS.Signals | number = 'SIGKILL'): void {
    if ((signal === 'SIGKILL' || signal === 9) && this.hasKill) {
      write(path.join(this.dirs.unified, 'cgroup.kill'), '1', 'cannot kill the cgroup');
      return;
    }
    for (const pid of this.pids()) {
      try {
        process.kill(pid, signal);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ESRCH') throw cgroupError(e, 'kill', String(pid), 'cannot signal');
      }
    }
  }

  /**
   * Remove the group's folders (and its application's folder when that is left empty). With
   * `kill`, SIGKILL what is in it and wait until it is empty first. Without, a group that holds
   * processes fails with `EBUSY`. A CgroupError `ETIMEDOUT` when it did not empty within
   * `timeoutMs` (default 10 000). Idempotent.
   */
  async remove(options: { kill?: boolean; timeoutMs?: number } = {}): Promise<void> {
    const { kill = false, timeoutMs = 10_000 } = options;
    const end = Date.now() + timeoutMs;
    if (kill) {
      while (this.pids().length > 0) {
        this.kill('SIGKILL');
        if (Date.now() > end)
          throw new CgroupError(`the cgroup did not empty within ${timeoutMs} ms`, {
            code: 'ETIMEDOUT',
            path: Object.values(this.dirs)[0],
          });
        await new Promise((r) => setTimeout(r, 5));
      }
    }
    for (const d of Object.values(this.dirs)) {
      for (;;) {
        try {
          fs.rmdirSync(d);
          break;
        } catch (e) {
          const code = (e as NodeJS.ErrnoException).code;
          if (code === 'ENOENT') break;
          // EBUSY right after the last task exits: the kernel lets go of it a moment later
          if (code === 'EBUSY' && (kill || this.pids().length === 0) && Date.now() < end) {
            await new Promise((r) => setTimeout(r, 5));
            continue;
          }
          throw cgroupError(e, 'rmdir', d, 'cannot remove the cgroup');
        }
      }
      try {
        fs.rmdirSync(path.dirname(d));
      } catch {
        // the application has other groups
      }
    }
  }
}
