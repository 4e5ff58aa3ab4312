// What this machine offers ServerlessOS: probed, never assumed.
import fs from 'node:fs';
import os from 'node:os';
import { Userfaultfd, type KernelSupport } from './uffd/index.js';

export interface NodeInfo {
  hostname: string;
  kernel: string;
  cpus: number;
  memoryBytes: number;
  userfaultfd: { available: boolean; dev: boolean; features: string[]; error?: string };
  cgroup: { v2: boolean; v1Controllers: string[]; v2Controllers: string[] };
}

function cgroupInfo(): NodeInfo['cgroup'] {
  let v2Controllers: string[] = [];
  let v2 = false;
  try {
    v2Controllers = fs.readFileSync('/sys/fs/cgroup/cgroup.controllers', 'utf8').trim().split(/\s+/).filter(Boolean);
    v2 = true;
  } catch {
    try {
      v2Controllers = fs
        .readFileSync('/sys/fs/cgroup/unified/cgroup.controllers', 'utf8')
        .trim()
        .split(/\s+/)
        .filter(Boolean);
    } catch {
      /* no cgroup2 mount */
    }
  }
  const v1Controllers: string[] = [];
  try {
    for (const line of fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
      const m = / - cgroup \S+ (\S+)$/.exec(line);
      if (m)
        for (const opt of m[1].split(','))
          if (!['rw', 'ro', 'relatime', 'nosuid', 'nodev', 'noexec'].includes(opt)) v1Controllers.push(opt);
    }
  } catch {
    /* not Linux */
  }
  return { v2, v1Controllers: [...new Set(v1Controllers)].sort(), v2Controllers };
}

export function nodeInfo(): NodeInfo {
  let uf: NodeInfo['userfaultfd'];
  try {
    const s: KernelSupport = Userfaultfd.probe();
    let dev = false;
    try {
      Userfaultfd.probe('dev');
      dev = true;
    } catch {
      /* no /dev/userfaultfd */
    }
    uf = { available: true, dev, features: [...s.features] };
  } catch (e) {
    uf = { available: false, dev: false, features: [], error: (e as Error).message };
  }
  return {
    hostname: os.hostname(),
    kernel: os.release(),
    cpus: os.cpus().length,
    memoryBytes: os.totalmem(),
    userfaultfd: uf,
    cgroup: cgroupInfo(),
  };
}
