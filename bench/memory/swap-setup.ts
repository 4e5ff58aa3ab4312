/**
 * What the swap part of bench/memory (swap.ts) changes on the machine, and takes down again however the
 * run ends: swap on a file or on zram, and a memory cgroup per capped run. Every change pushes its undo
 * onto one stack; undos are synchronous so that the 'exit' and signal hook (testkit/cleanup.ts) can run
 * them too, last change first.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { exec } from '../../lib/exec.js';
import { onExit } from '../../testkit/cleanup.js';

const undos: (() => void)[] = [];
let hooked = false;

/** Remember `fn` as the undo of a change just made; the returned function runs it now (once). */
export function onUndo(fn: () => void): () => void {
  if (!hooked) {
    hooked = true;
    onExit(undoAll);
  }
  undos.push(fn);
  return () => {
    const i = undos.lastIndexOf(fn);
    if (i >= 0) undos.splice(i, 1)[0]();
  };
}

/** Undo everything still in place, last first; a failing undo is reported and the others still run. */
export function undoAll(): void {
  while (undos.length) {
    try {
      undos.pop()!();
    } catch (e) {
      console.error(`bench/memory swap cleanup: ${(e as Error).message}`);
    }
  }
}

const read = (f: string) => fs.readFileSync(f, 'utf8').trim();

/** Block for `ms` (inside synchronous undos, which cannot await). */
function pause(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** The swap areas in use (/proc/swaps), by file or device name. */
export function activeSwaps(): string[] {
  return read('/proc/swaps')
    .split('\n')
    .slice(1)
    .filter(Boolean)
    .map((l) => l.split(/\s+/)[0]);
}

function swapoff(dev: string): void {
  // With its workload gone nothing is left to page back in: swapoff is quick.
  if (activeSwaps().includes(dev)) execFileSync('swapoff', [dev], { timeout: 600_000 });
}

export interface Swap {
  /** The file or device in /proc/swaps. */
  device: string;
  /** swapoff and remove it. */
  close(): void;
}

/** A swap file of `bytes` under /var/tmp (the root file system here), formatted and on. */
export async function diskSwap(bytes: number): Promise<Swap> {
  const dir = fs.mkdtempSync('/var/tmp/sos-bench-swap-');
  const rm = onUndo(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'swapfile');
  // Written, not fallocate'd: swapon refuses files with unwritten extents on some file systems.
  // oflag=direct: the zeros need not crowd the page cache.
  const mib = Math.ceil(bytes / 2 ** 20);
  await exec('dd', ['if=/dev/zero', `of=${file}`, 'bs=1M', `count=${mib}`, 'oflag=direct', 'status=none'], {
    timeout: 1_800_000,
  });
  fs.chmodSync(file, 0o600);
  await exec('mkswap', [file], { timeout: 120_000 });
  const off = onUndo(() => swapoff(file));
  await exec('swapon', [file], { timeout: 120_000 });
  return {
    device: file,
    close: () => {
      off();
      rm();
    },
  };
}

export interface ZramSwap extends Swap {
  /** The compressor in use: lz4 when the kernel has it. */
  algorithm: string;
  /** Why it is not lz4, if it is not. */
  note?: string;
  /** Start counting a run: mem_used_max back to the current use. */
  resetPeak(): void;
  /** The most memory zram used since resetPeak(), and the pages it stored uncompressed since it was set up. */
  usage(): { memUsedMax: number; hugePagesSince: number };
}

/** A zram device of `bytes` compressing with lz4 (else the kernel's default), formatted and on as swap. */
export async function zramSwap(bytes: number): Promise<ZramSwap> {
  const closers: (() => void)[] = [];
  let id: number;
  const zram0 = '/sys/block/zram0';
  if (fs.existsSync(zram0) && read(`${zram0}/initstate`) === '0' && !activeSwaps().includes('/dev/zram0')) id = 0;
  else if (fs.existsSync('/sys/class/zram-control/hot_add')) {
    id = Number(read('/sys/class/zram-control/hot_add'));
    closers.unshift(onUndo(() => fs.writeFileSync('/sys/class/zram-control/hot_remove', String(id))));
  } else throw new Error('zram: /sys/block/zram0 is missing or in use, and there is no /sys/class/zram-control');
  const sys = `/sys/block/zram${id}`;
  const dev = `/dev/zram${id}`;
  closers.unshift(onUndo(() => fs.writeFileSync(`${sys}/reset`, '1')));
  // "lzo [lz4] zstd": the bracketed one is in use.
  const listed = read(`${sys}/comp_algorithm`);
  const names = listed.split(/\s+/).map((s) => s.replace(/^\[|\]$/g, ''));
  const algorithm = names.includes('lz4') ? 'lz4' : (/\[([^\]]+)\]/.exec(listed)?.[1] ?? names[0]);
  fs.writeFileSync(`${sys}/comp_algorithm`, algorithm); // before disksize: fixed once the device is set up
  fs.writeFileSync(`${sys}/disksize`, String(bytes));
  await exec('mkswap', [dev], { timeout: 120_000 });
  closers.unshift(onUndo(() => swapoff(dev)));
  await exec('swapon', [dev], { timeout: 120_000 });
  return {
    device: dev,
    algorithm,
    note: algorithm === 'lz4' ? undefined : `no lz4 in this kernel's zram (${listed}): ${algorithm}`,
    resetPeak: () => fs.writeFileSync(`${sys}/mem_used_max`, '0'),
    usage: () => {
      // orig_data_size compr_data_size mem_used_total mem_limit mem_used_max same_pages pages_compacted huge_pages huge_pages_since
      const f = read(`${sys}/mm_stat`).split(/\s+/).map(Number);
      return { memUsedMax: f[4], hugePagesSince: f[8] ?? NaN };
    },
    close: () => {
      for (const c of closers) c();
    },
  };
}

export interface MemoryCgroupKind {
  version: 1 | 2;
  /** Where capped groups are made. */
  parent: string;
}

/**
 * cgroup v2 when its memory controller is available, else v1's memory hierarchy. v1 groups go below this
 * process's own memory cgroup (whatever accounts for the bench then accounts for its child too); v2 ones
 * below the root, which alone may both hold processes and hand the controller to children.
 */
export function memoryCgroupKind(): MemoryCgroupKind {
  const mounts = read('/proc/mounts')
    .split('\n')
    .map((l) => l.split(' '));
  for (const [, dir, type] of mounts)
    if (type === 'cgroup2' && fs.existsSync(`${dir}/cgroup.controllers`)) {
      if (read(`${dir}/cgroup.controllers`).split(/\s+/).includes('memory')) return { version: 2, parent: dir };
    }
  const v1 = mounts.find(([, , type, o]) => type === 'cgroup' && o.split(',').includes('memory'));
  if (!v1) throw new Error('no cgroup memory controller: neither cgroup v2 with memory nor a v1 memory hierarchy');
  const own = read('/proc/self/cgroup')
    .split('\n')
    .map((l) => l.split(':'))
    .find(([, ctrl]) => ctrl.split(',').includes('memory'))?.[2];
  const mine = own ? path.join(v1[1], own) : v1[1];
  return { version: 1, parent: fs.existsSync(mine) ? mine : v1[1] };
}

export interface MemoryCgroup {
  dir: string;
  /** Write a pid here to move that process in. */
  procs: string;
  /** memory.stat, as numbers. */
  stat(): Record<string, number>;
  /** What the group was given, read back. */
  settings: Record<string, string>;
  /** Kill what is left in it, and rmdir it once empty. */
  remove(): void;
}

/** A memory cgroup capped at `capBytes` of memory, swap unlimited. */
export function memoryCgroup(kind: MemoryCgroupKind, capBytes: number): MemoryCgroup {
  if (kind.version === 2) {
    const ctl = `${kind.parent}/cgroup.subtree_control`;
    if (!read(ctl).split(/\s+/).includes('memory')) {
      fs.writeFileSync(ctl, '+memory');
      onUndo(() => {
        try {
          fs.writeFileSync(ctl, '-memory');
        } catch {
          // another group uses it now: left on
        }
      });
    }
  }
  const dir = path.join(kind.parent, `sos-bench-swap-${process.pid}`);
  fs.mkdirSync(dir);
  const procs = `${dir}/cgroup.procs`;
  const remove = onUndo(() => {
    const deadline = Date.now() + 60_000;
    for (;;) {
      for (const pid of read(procs).split('\n').filter(Boolean)) {
        try {
          process.kill(Number(pid), 'SIGKILL');
        } catch {
          // gone already
        }
      }
      try {
        fs.rmdirSync(dir);
        return;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EBUSY' || Date.now() > deadline) throw e;
      }
      pause(10); // a killed task leaves the group when it has exited
    }
  });
  const files: Record<string, string> =
    kind.version === 1
      ? { 'memory.limit_in_bytes': String(capBytes), 'memory.swappiness': '60' }
      : { 'memory.max': String(capBytes), 'memory.swap.max': 'max' };
  const settings: Record<string, string> = {};
  for (const [f, v] of Object.entries(files)) {
    if (!fs.existsSync(`${dir}/${f}`)) continue; // memory.swap.max: only with swap accounting
    fs.writeFileSync(`${dir}/${f}`, v);
    settings[f] = read(`${dir}/${f}`);
  }
  return {
    dir,
    procs,
    settings,
    stat: () => numbers(read(`${dir}/memory.stat`)),
    remove,
  };
}

function numbers(text: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const l of text.split('\n')) {
    const [k, v] = l.split(/\s+/);
    if (k && v !== undefined) out[k] = Number(v);
  }
  return out;
}

/** /proc/vmstat, as numbers (pswpin, pswpout: pages read from and written to swap, machine-wide). */
export function vmstat(): Record<string, number> {
  return numbers(read('/proc/vmstat'));
}
