// Where the cgroup hierarchies are: read from /proc/self/mountinfo (and /proc/filesystems for
// the error when there are none), never assumed.
import fs from 'node:fs';
import { CgroupError } from './errors.js';

/** One mounted cgroup hierarchy. */
export interface Hierarchy {
  version: 1 | 2;
  /** Where it is mounted. */
  mountPoint: string;
  /** The folder of the hierarchy that the mount shows (mountinfo's root field; '/' unless bind-mounted). */
  mountRoot: string;
  /** v1: the controllers bound to it (e.g. `['cpu', 'cpuacct']`); v2: empty (read cgroup.controllers). */
  controllers: string[];
}

/** Which cgroup version the machine's controllers are on, and the hierarchies that hold them. */
export interface CgroupLayout {
  /** 2: the unified hierarchy (one folder per group); 1: one hierarchy per controller (or co-mounted set). */
  version: 1 | 2;
  /** v2: exactly one; v1: the mounts of the controllers this layer uses (memory, cpu, cpuacct, pids, cpuset). */
  hierarchies: Hierarchy[];
}

/** The v1 controllers a group is made in. */
export const V1_CONTROLLERS = ['memory', 'cpu', 'cpuacct', 'pids', 'cpuset'] as const;
const MOUNT_FLAGS = new Set(['rw', 'ro', 'relatime', 'noatime', 'nosuid', 'nodev', 'noexec', 'clone_children']);

/** mountinfo escapes space, tab, newline and backslash as octal (\040…). */
function unescape(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/** Every cgroup and cgroup2 mount in a mountinfo text, in order. */
export function parseMountinfo(text: string): Hierarchy[] {
  const out: Hierarchy[] = [];
  for (const line of text.split('\n')) {
    const sep = line.indexOf(' - ');
    if (sep < 0) continue;
    const left = line.slice(0, sep).split(' ');
    const [fstype, , superOpts = ''] = line.slice(sep + 3).split(' ');
    if (fstype !== 'cgroup' && fstype !== 'cgroup2') continue;
    const mountRoot = unescape(left[3] ?? '/');
    const mountPoint = unescape(left[4] ?? '');
    if (fstype === 'cgroup2') out.push({ version: 2, mountPoint, mountRoot, controllers: [] });
    else {
      const controllers = superOpts.split(',').filter((o) => o && !MOUNT_FLAGS.has(o) && !o.includes('='));
      out.push({ version: 1, mountPoint, mountRoot, controllers });
    }
  }
  return out;
}

/**
 * The layout a mountinfo text describes: v2 when a cgroup2 file system is mounted at
 * /sys/fs/cgroup (the unified layout); else v1 when controllers are bound to v1 mounts (a
 * hybrid layout's cgroup2 at /sys/fs/cgroup/unified holds no controllers then); else v2 on the
 * first cgroup2 mount found. Null when there is no cgroup mount at all.
 */
export function layoutOf(text: string): CgroupLayout | null {
  const all = parseMountinfo(text);
  const unified = all.find((h) => h.version === 2 && h.mountPoint === '/sys/fs/cgroup');
  if (unified) return { version: 2, hierarchies: [unified] };
  const v1: Hierarchy[] = [];
  const seen = new Set<string>();
  for (const h of all) {
    if (h.version !== 1 || !h.controllers.some((c) => (V1_CONTROLLERS as readonly string[]).includes(c))) continue;
    const key = h.controllers.slice().sort().join(',');
    if (seen.has(key)) continue; // the same hierarchy mounted twice
    seen.add(key);
    v1.push(h);
  }
  if (v1.length > 0) return { version: 1, hierarchies: v1 };
  const any2 = all.find((h) => h.version === 2);
  return any2 ? { version: 2, hierarchies: [any2] } : null;
}

/** This machine's layout; a CgroupError `ERR_NO_CGROUPS` when no cgroup file system is mounted. */
export function detectLayout(): CgroupLayout {
  const layout = layoutOf(fs.readFileSync('/proc/self/mountinfo', 'utf8'));
  if (layout) return layout;
  let kernel = '';
  try {
    const fsys = fs.readFileSync('/proc/filesystems', 'utf8');
    kernel = /\bcgroup2\b/.test(fsys)
      ? ' (the kernel has cgroup2: mount it at /sys/fs/cgroup)'
      : ' (the kernel lists no cgroup2)';
  } catch {
    // no /proc/filesystems: say nothing more
  }
  throw new CgroupError(`no cgroup file system is mounted${kernel}`, { code: 'ERR_NO_CGROUPS' });
}

/**
 * A process's cgroup paths from a /proc/<pid>/cgroup text: v1 by controller (`memory` → '/a/b';
 * a co-mounted set appears under each of its controllers), v2 under the key ''.
 */
export function parseProcCgroup(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split('\n')) {
    const m = /^\d+:([^:]*):(.*)$/.exec(line);
    if (!m) continue;
    if (m[1] === '') out.set('', m[2]);
    else for (const c of m[1].split(',')) out.set(c, m[2]);
  }
  return out;
}
