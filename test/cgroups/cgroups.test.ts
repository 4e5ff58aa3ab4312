// cgroups v1 and v2 behind one interface, against the real kernel: limits read back from the
// group's files, pids.max refusing forks, usage, kill-and-remove leaving no folder. v2 runs on a
// cgroup2 file system of our own under /tmp; what its controllers (bound to v1 here) cannot do is
// skipped with the reason.
import t, { type Test } from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import {
  Cgroups,
  type Cgroup,
  CgroupError,
  layoutOf,
  parseMountinfo,
  parseProcCgroup,
} from '../../lib/cgroups/index.js';
import { SosError } from '../../lib/errors.js';
import { onExit } from '../../testkit/cleanup.js';
import { until } from '../../testkit/wait.js';

const PREFIX = `sos-test-cg-${process.pid}`;
const layout = Cgroups.open({ prefix: PREFIX, under: 'self' });

/** A `sleep` placed in `group`, killed at teardown. */
function sleeper(t: Test, group: Cgroup): ChildProcess {
  const child = spawn('sleep', ['1000'], { stdio: 'ignore' });
  t.teardown(() => void child.kill('SIGKILL'));
  group.addProcess(child.pid!);
  return child;
}

/** Remove every group left under the prefix, whatever a failed test left. */
function sweep(cg: Cgroups): void {
  for (const b of cg.bases) {
    const top = path.join(b.dir, cg.prefix);
    if (!fs.existsSync(top)) continue;
    for (const app of fs.readdirSync(top)) {
      const adir = path.join(top, app);
      if (!fs.statSync(adir).isDirectory()) continue;
      for (const proc of fs.readdirSync(adir)) {
        const d = path.join(adir, proc);
        if (!fs.statSync(d).isDirectory()) continue;
        for (const pid of fs.readFileSync(path.join(d, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean)) {
          try {
            process.kill(Number(pid), 'SIGKILL');
          } catch {
            // gone
          }
        }
      }
    }
  }
}
onExit(() => sweep(layout));
t.teardown(() => layout.removeEmpty());

void t.test('mountinfo: unified, hybrid and v1 layouts', async (t) => {
  const line = (id: number, root: string, mp: string, fstype: string, opts: string) =>
    `${id} 1 0:${id} ${root} ${mp} rw,relatime - ${fstype} ${fstype} ${opts}`;
  const unified = line(30, '/', '/sys/fs/cgroup', 'cgroup2', 'rw,nsdelegate');
  t.match(layoutOf(unified), { version: 2, hierarchies: [{ mountPoint: '/sys/fs/cgroup' }] });
  const hybrid = [
    line(31, '/', '/sys/fs/cgroup/cpu,cpuacct', 'cgroup', 'rw,cpu,cpuacct'),
    line(32, '/', '/sys/fs/cgroup/memory', 'cgroup', 'rw,memory'),
    line(33, '/', '/sys/fs/cgroup/unified', 'cgroup2', 'rw'),
    line(34, '/', '/sys/fs/cgroup/systemd', 'cgroup', 'rw,xattr,name=systemd'),
    line(35, '/', '/mnt/again', 'cgroup', 'rw,memory'),
  ].join('\n');
  t.same(
    layoutOf(hybrid)!.hierarchies.map((h) => h.controllers),
    [['cpu', 'cpuacct'], ['memory']],
    'v1 controllers win over an empty cgroup2; a second mount of a hierarchy counts once',
  );
  t.equal(parseMountinfo(line(36, '/', '/a\\040b', 'cgroup2', 'rw'))[0].mountPoint, '/a b', 'octal escapes');
  t.equal(layoutOf(line(37, '/', '/', 'ext4', 'rw')), null, 'no cgroup mount');
  t.same(
    [...parseProcCgroup('4:memory:/a/b\n2:cpu,cpuacct:/c\n0::/d\n')],
    [
      ['memory', '/a/b'],
      ['cpu', '/c'],
      ['cpuacct', '/c'],
      ['', '/d'],
    ],
  );
});

void t.test('the layout comes from mountinfo', async (t) => {
  t.ok(layout.version === 1 || layout.version === 2);
  t.ok(layout.bases.length > 0, `bases: ${layout.bases.map((b) => b.dir).join(', ')}`);
  const ctl = layout.controllers();
  t.ok(ctl.length > 0, `controllers: ${ctl.join(' ')}`);
});

void t.test(
  'v1: a group in every hierarchy, limits read back, usage, kill and remove',
  { skip: layout.version !== 1 && 'this machine is on cgroup v2' },
  async (t) => {
    const group = layout.create('web', '1');
    t.teardown(() => group.remove({ kill: true }));
    for (const c of ['memory', 'cpu', 'cpuacct', 'pids', 'cpuset']) t.ok(group.dirFor(c), `has a ${c} folder`);
    for (const d of Object.values(group.dirs)) t.ok(fs.statSync(d).isDirectory(), `${d} exists`);
    t.throws(() => layout.create('web', '1'), { code: 'EEXIST', syscall: 'mkdir' }, 'the same group twice');

    group.setLimits({ memoryBytes: 64 << 20, cpu: { quotaUs: 50_000 }, pids: 16 });
    const mem = group.dirFor('memory')!;
    t.equal(
      fs.readFileSync(path.join(mem, 'memory.limit_in_bytes'), 'utf8').trim(),
      String(64 << 20),
      'memory.limit_in_bytes',
    );
    t.equal(fs.readFileSync(path.join(group.dirFor('cpu')!, 'cpu.cfs_quota_us'), 'utf8').trim(), '50000');
    t.equal(fs.readFileSync(path.join(group.dirFor('pids')!, 'pids.max'), 'utf8').trim(), '16');
    t.same(group.limits(), { memoryBytes: 64 << 20, cpu: { quotaUs: 50_000, periodUs: 100_000 }, pids: 16 });
    group.setLimits({ memoryBytes: null, cpu: null, pids: null });
    t.same(group.limits(), { memoryBytes: null, cpu: null, pids: null }, 'null lifts each limit');

    const child = sleeper(t, group);
    t.same(group.pids(), [child.pid], 'the process is in the group');
    const u = group.usage();
    t.equal(u.pids, 1);
    t.ok(
      u.memoryBytes !== null && u.memoryBytes >= 0,
      `memory ${u.memoryBytes} (pages charged before the move stay with the old group)`,
    );
    t.ok(u.cpuSeconds !== null && u.cpuSeconds >= 0, `cpu ${u.cpuSeconds}`);

    await t.rejects(
      group.remove(),
      { code: 'EBUSY', syscall: 'rmdir' },
      'a group that holds processes is not removed without kill',
    );
    const exited = new Promise((r) => child.once('exit', (_c, s) => r(s)));
    await group.remove({ kill: true });
    t.equal(await exited, 'SIGKILL', 'its process was killed');
    for (const d of Object.values(group.dirs)) t.notOk(fs.existsSync(d), `${d} is gone`);
    t.notOk(fs.existsSync(path.dirname(group.dirs.memory)), "the application's folder went with its last group");
    await group.remove({ kill: true });
    t.pass('remove is idempotent');
    layout.removeEmpty();
    for (const b of layout.bases) t.notOk(fs.existsSync(path.join(b.dir, PREFIX)), `no prefix left in ${b.dir}`);
  },
);

void t.test(
  'v1: pids.max refuses forks past the limit',
  { skip: layout.version !== 1 && 'this machine is on cgroup v2' },
  async (t) => {
    const group = layout.create('forky', '1');
    t.teardown(() => group.remove({ kill: true }));
    group.setLimits({ pids: 4 });
    // A shell that joins the group itself (writing 0 moves the writer), then starts 10 sleeps.
    const procs = group.procsFiles();
    const script =
      'for f in "$@"; do echo 0 > "$f"; done; i=0; while [ $i -lt 10 ]; do sleep 1000 & i=$((i+1)); done; sleep 1000';
    const sh = spawn('sh', ['-c', script, 'sh', ...procs], { stdio: 'ignore' });
    t.teardown(() => void sh.kill('SIGKILL'));
    const events = path.join(group.dirFor('pids')!, 'pids.events');
    await until(() => /^max [1-9]/m.test(fs.readFileSync(events, 'utf8')), 60_000, 'a fork is refused (pids.events)');
    t.ok(group.pids().length <= 4, `at most 4 processes in the group (${group.pids().length})`);
    t.ok(group.usage().pids! <= 4, 'pids.current stays within pids.max');
    await group.remove({ kill: true });
    t.same(group.pids(), [], 'all killed');
    for (const d of Object.values(group.dirs)) t.notOk(fs.existsSync(d), `${d} is gone`);
  },
);

void t.test('v2 on a cgroup2 mount of our own', async (t) => {
  const mnt = fs.mkdtempSync(path.join(os.tmpdir(), 'sos-cgroup2-'));
  const m = spawnSync('mount', ['-t', 'cgroup2', 'none', mnt], { encoding: 'utf8' });
  if (m.status !== 0) {
    fs.rmdirSync(mnt);
    t.comment(`skip: cannot mount cgroup2 here: ${m.stderr.trim()}`);
    return;
  }
  const umount = () => {
    spawnSync('umount', [mnt]);
    fs.rmSync(mnt, { recursive: true, force: true });
  };
  onExit(umount);
  const cg = Cgroups.open({ prefix: PREFIX, v2Mount: mnt });
  t.teardown(() => {
    sweep(cg);
    umount();
  });
  t.equal(cg.version, 2);
  t.same(
    cg.bases.map((b) => b.key),
    ['unified'],
  );
  const group = cg.create('web', '1');
  t.teardown(() => group.remove({ kill: true }));
  t.equal(group.dirs.unified, path.join(mnt, PREFIX, 'web', '1'));
  const child = sleeper(t, group);
  t.same(group.pids(), [child.pid], 'the process is in the group');
  t.match(fs.readFileSync(`/proc/${child.pid}/cgroup`, 'utf8'), new RegExp(`^0::.*/${PREFIX}/web/1$`, 'm'));
  const u = group.usage();
  t.ok(u.cpuSeconds !== null, 'cpu seconds from cpu.stat, kept for every v2 group');

  const offered = cg.controllers();
  for (const [c, limits] of [
    ['memory', { memoryBytes: 32 << 20 }],
    ['pids', { pids: 8 }],
    ['cpu', { cpu: { quotaUs: 20_000, periodUs: 100_000 } }],
  ] as const) {
    if (!offered.includes(c)) {
      t.throws(
        () => group.setLimits(limits),
        { code: 'ERR_CGROUP_UNSUPPORTED' },
        `${c}: not offered to v2 here (bound to v1), so refused`,
      );
      continue;
    }
    group.setLimits(limits);
    t.match(group.limits(), limits, `${c} limit read back`);
  }
  if (!offered.includes('memory')) t.equal(u.memoryBytes, null, 'memory usage null without the controller');

  t.ok(group.hasKill, 'cgroup.kill (Linux 5.14+)');
  const exited = new Promise((r) => child.once('exit', (_c, s) => r(s)));
  await group.remove({ kill: true });
  t.equal(await exited, 'SIGKILL');
  t.notOk(fs.existsSync(group.dirs.unified), 'the group is gone');
  cg.removeEmpty();
  t.notOk(fs.existsSync(path.join(mnt, PREFIX)), 'and the prefix');
});

void t.test('bad arguments', async (t) => {
  const bad = (fn: () => unknown, code: string, msg: RegExp, what: string) => {
    const e = t.throws(fn, { code, message: msg }, what) as unknown;
    t.ok(e instanceof SosError, `${what}: a SosError`);
  };
  bad(() => Cgroups.open({ prefix: '../x' }), 'ERR_INVALID_ARG_VALUE', /prefix/, 'prefix with ..');
  bad(() => Cgroups.open({ under: 'x' as never }), 'ERR_INVALID_ARG_VALUE', /under/, 'under');
  bad(() => Cgroups.open({ v2Mount: 5 as never }), 'ERR_INVALID_ARG_TYPE', /v2Mount/, 'v2Mount type');
  bad(() => Cgroups.open({ v2Mount: os.tmpdir() }), 'ERR_NO_CGROUPS', /no cgroup2/, 'v2Mount not a cgroup2 mount');
  bad(() => layout.create('a/b', '1'), 'ERR_INVALID_ARG_VALUE', /app/, 'app with a slash');
  bad(() => layout.create('web', '..'), 'ERR_INVALID_ARG_VALUE', /proc/, 'proc ..');
  bad(() => layout.create(3 as never, '1'), 'ERR_INVALID_ARG_TYPE', /app/, 'app type');
  const group = layout.create('args', '1');
  t.teardown(() => group.remove({ kill: true }));
  bad(() => group.setLimits({ memoryBytes: 5 }), 'ERR_OUT_OF_RANGE', /memoryBytes/, 'memory too small');
  bad(() => group.setLimits({ pids: 0 }), 'ERR_OUT_OF_RANGE', /pids/, 'pids 0');
  bad(() => group.setLimits({ cpu: { quotaUs: 10 } }), 'ERR_OUT_OF_RANGE', /quotaUs/, 'quota too small');
  bad(() => group.setLimits({ cpu: { quotaUs: 10_000, periodUs: 1 } }), 'ERR_OUT_OF_RANGE', /periodUs/, 'period');
  bad(() => group.setLimits(null as never), 'ERR_INVALID_ARG_TYPE', /limits/, 'limits null');
  bad(() => group.addProcess(-1), 'ERR_OUT_OF_RANGE', /pid/, 'pid -1');
  bad(
    () => layout.attach({ version: 1, dirs: { memory: '/etc' } }),
    'ERR_INVALID_ARG_VALUE',
    /not under this prefix/,
    'attach outside',
  );
  const e = t.throws(() => group.addProcess(2 ** 22 + 12345)) as CgroupError;
  t.ok(e instanceof CgroupError, 'a pid that does not exist');
  t.equal(e.code, 'ESRCH');
  t.equal(e.syscall, 'write');
  t.match(e.message, /cgroup\.procs/, 'names the file');
});
