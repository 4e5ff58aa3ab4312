// Exactly one copy through crashes and partitions after the point of no return: the link cut at
// the commit for longer than the in-doubt time, the target agent killed right after it recorded
// the commit (and restarted), the source agent killed at each phase (and restarted). Crash
// points are armed with SOS_FAILPOINTS (lib/failpoint.ts), so each crash lands at
// exactly its step. After each, at no moment do two copies run, and once the agents settle it
// exactly one copy runs and verifies its whole memory.
import t, { type Test } from 'tap';
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import { once } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import { makeNet } from '../../testkit/netns.js';
import { startWorkload, type Workload } from '../../testkit/workloads.js';
import { until } from '../../testkit/wait.js';
import { resolveMigration } from '../../lib/migration/index.js';
import { alive, state } from '../../lib/migration/proc.js';
import { SteppableClock } from '../../testkit/clock.js';
import {
  copies,
  requestMigrate,
  secretFile,
  startAgent,
  scratchDir,
  type AgentProcess,
} from '../../testkit/migration-agents.js';

/** Resolves once the agent's process ended by itself (a crash point). */
async function died(ag: AgentProcess): Promise<void> {
  if (ag.child.exitCode === null && ag.child.signalCode === null) await once(ag.child, 'exit');
}

/** An outgoing migration in `agentDir` recorded `state`. */
function recorded(agentDir: string, state: string): boolean {
  const dir = path.join(agentDir, 'out', 'records');
  return (fs.existsSync(dir) ? fs.readdirSync(dir) : []).some((f) => {
    try {
      return (
        f.endsWith('.json') &&
        (JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8')) as { state: string }).state === state
      );
    } catch {
      return false;
    }
  });
}

/**
 * The copies of the workload in `dir` that run: not stopped, not traced, and not a restored
 * tree CRIU still holds at its post-restore point (its root is still CRIU's child then).
 */
function running(dir: string): number[] {
  return copies(dir).filter((pid) => {
    try {
      const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
      const st = /^State:\s+(\S)/m.exec(status)?.[1];
      const ppid = /^PPid:\s+(\d+)/m.exec(status)?.[1];
      const parent = fs.readFileSync(`/proc/${ppid}/comm`, 'utf8').trim();
      // A SIGSTOP pending (CRIU's leave-stopped, or the source's hold) stops the task before it
      // runs another user instruction: not running, even while it waits for a CPU to get there.
      const pending = ['SigPnd', 'ShdPnd'].reduce(
        (m, k) => m | BigInt(`0x${new RegExp(`^${k}:\\s+([0-9a-f]+)$`, 'm').exec(status)?.[1] ?? '0'}`),
        0n,
      );
      const stopping = (pending & (1n << 18n)) !== 0n; // SIGSTOP is 19
      // Likewise SIGKILL pending: a stopped copy being ended wakes only to exit, and on a loaded
      // machine its exit can outlast two polls.
      const dying = (pending & (1n << 8n)) !== 0n || st === 'Z' || st === 'X'; // SIGKILL is 9
      return st !== 'T' && st !== 't' && !stopping && !dying && /^TracerPid:\s+0$/m.test(status) && parent !== 'criu';
    } catch {
      return false; // gone meanwhile
    }
  });
}

void t.test('in doubt', async (t) => {
  const base = scratchDir(t, 'sos-mig-doubt-');
  const net = await makeNet(2);
  t.teardown(() => net.close());
  const [a, b] = net.nodes;
  const secret = secretFile(base);
  const idleTimeoutMs = 2000;
  const inDoubtMs = 1500;
  let n = 0;
  const agent = async (
    node: typeof a,
    workDir: string,
    failpoints: string[] = [],
    port?: number,
    env?: Record<string, string>,
  ): Promise<AgentProcess> => {
    const ag = await startAgent({
      ...(port ? { port } : {}),
      ...(env ? { env } : {}),
      netns: node.netns,
      host: node.addr,
      workDir,
      secretFile: secret,
      idleTimeoutMs,
      inDoubtMs,
      failpoints,
    });
    t.teardown(() => ag.stop('SIGKILL'));
    agents.push(ag);
    return ag;
  };
  const workload = async (): Promise<Workload> => {
    const w = await startWorkload('memory', { dir: path.join(base, `w${n++}`), netns: a.netns, memMiB: 16 });
    t.teardown(() => w.kill());
    await w.verify();
    return w;
  };
  /** Never two running copies, checked every few ms while `p` runs. */
  const neverTwo = async <T>(t: Test, w: Workload, p: Promise<T>): Promise<T> => {
    let worst = 0;
    let done = false;
    // A copy counts as running when two polls in a row see it so: CRIU's hand-back of a tree
    // it leaves stopped (SIGSTOP queued, then detach) shows a task as not stopped for an instant.
    let before = new Set<number>();
    const watch = (async () => {
      while (!done) {
        const now = running(w.dir);
        worst = Math.max(worst, now.filter((p) => before.has(p)).length);
        before = new Set(now);
        await new Promise((r) => setTimeout(r, 5));
      }
    })();
    try {
      return await p;
    } finally {
      done = true;
      await watch;
      t.ok(worst <= 1, `never two running copies (at most ${worst} seen)`);
    }
  };
  /** Once settled, exactly one copy runs, in `netns`, and verifies. */
  const agents: AgentProcess[] = [];
  const oneCopy = async (t: Test, w: Workload, netns?: string) => {
    await until(
      () => running(w.dir).length === 1 && copies(w.dir).length === 1,
      60_000,
      'one copy left, running',
    ).catch((e: unknown) => {
      // What the agents saw, to tell why it did not settle.
      for (const ag of agents.slice(-3)) t.comment(`${ag.workDir}:\n${ag.log().slice(-3000)}`);
      t.comment(`copies ${JSON.stringify(copies(w.dir))}, running ${JSON.stringify(running(w.dir))}`);
      throw e;
    });
    const [pid] = running(w.dir);
    if (netns)
      t.equal(fs.statSync(`/proc/${pid}/ns/net`).ino, fs.statSync(`/run/netns/${netns}`).ino, `it runs in ${netns}`);
    const v = await w.verify(pid);
    t.ok(v.ok, `exactly one copy runs (pid ${pid}) and verifies: ${v.detail.slice(0, 80)}`);
    w.pid = pid;
    return pid;
  };

  /**
   * Migrate `w` with commit, the target's link cut when the commit goes out (`onCut` runs then) and
   * brought up again once the source is in doubt (or finished; `onDoubt` runs first), never two
   * copies running meanwhile. Resolves with the client's run and whether the cut happened.
   */
  const cutAtCommit = async (
    t: Test,
    w: Workload,
    src: AgentProcess,
    tgt: AgentProcess,
    mode: 'precopy' | 'postcopy',
    hooks: { onCut?: () => void; onDoubt?: () => void } = {},
    /**
     * The target agent runs with target-committed=stop: the link goes down once it has stopped there (it
     * recorded the commit, and cannot have answered), then it runs on. Without it the cut follows the
     * source's 'commit' progress, which may reach the test after the target's answer reached the source.
     */
    held = false,
  ) => {
    let cut = false;
    let finished = false;
    const cutNow = () => {
      cut = true;
      hooks.onCut?.();
      execFileSync('ip', ['-n', b.netns, 'link', 'set', 'eth0', 'down']);
    };
    const running_ = requestMigrate(src, secret, w.pid, tgt, {
      mode,
      strategy: 'commit',
      onProgress: (p) => {
        if (held || cut || p.phase !== 'commit') return;
        cutNow();
      },
    }).finally(() => (finished = true));
    if (held) {
      await until(() => finished || state(tgt.child.pid!) === 'T', 120_000, 'the target to stop after its commit');
      if (!finished) {
        cutNow();
        tgt.child.kill('SIGCONT');
      }
    }
    const run = await neverTwo(
      t,
      w,
      (async () => {
        // Up again only once the source gave up asking (post-copy keeps serving pages until
        // the link is back, so its run cannot end before).
        await until(() => finished || recorded(src.workDir, 'in-doubt'), 120_000, 'the source to be in doubt');
        hooks.onDoubt?.();
        execFileSync('ip', ['-n', b.netns, 'link', 'set', 'eth0', 'up']);
        return running_;
      })(),
    );
    return { run, cut };
  };

  /** An onProgress that SIGKILLs the source agent's CRIU processes when `phase` begins; `killed` counts them. */
  const criuKiller = (src: AgentProcess, phase: string) => {
    const k = {
      killed: 0,
      onProgress: (p: { phase: string }) => {
        if (k.killed || p.phase !== phase) return;
        for (const pid of descendantsNamed(src.child.pid!, 'criu')) {
          process.kill(pid, 'SIGKILL');
          k.killed++;
        }
      },
    };
    return k;
  };

  for (const mode of ['precopy', 'postcopy'] as const) {
    void t.test(`${mode}: the link is cut at the commit for longer than inDoubtMs`, async (t) => {
      const src = await agent(a, path.join(base, `a${n++}`));
      const tgt = await agent(b, path.join(base, `b${n++}`));
      const w = await workload();
      const { run, cut } = await cutAtCommit(t, w, src, tgt, mode);
      t.ok(cut, 'the link went down at the commit');
      if (run.error) {
        t.equal(run.error.code, 'ERR_MIGRATION_IN_DOUBT', run.error.message);
        t.equal(run.error.runningOn, 'stopped-source', 'the source copy is kept stopped');
        t.match(run.error.message, /resolve/, 'the error says how to resolve it');
      } else t.comment(`the source learnt the outcome before the deadline: ${JSON.stringify(run.result?.targetPid)}`);
      // The source agent asks again by itself once the target is reachable.
      await neverTwo(t, w, oneCopy(t, w));
    });
  }

  void t.test('the target agent hangs right after recording the commit, longer than inDoubtMs', async (t) => {
    const src = await agent(a, path.join(base, `a${n++}`));
    const tgt = await agent(b, path.join(base, `b${n++}`), ['target-committed=stop']);
    const w = await workload();
    const run = requestMigrate(src, secret, w.pid, tgt, { strategy: 'commit' });
    const r = await neverTwo(t, w, run);
    t.equal(r.error?.code, 'ERR_MIGRATION_IN_DOUBT', r.error?.message ?? 'no error');
    t.equal(r.error?.runningOn, 'stopped-source', 'the source copy is kept stopped');
    t.same(running(w.dir), [], 'nothing runs while in doubt');
    // The target wakes up, lets the committed process run; the source agent learns it and ends its copy.
    tgt.child.kill('SIGCONT');
    await neverTwo(t, w, oneCopy(t, w, b.netns));
  });

  for (const mode of ['precopy', 'postcopy'] as const)
    void t.test(`${mode}: the target agent dies right after recording the commit, and restarts`, async (t) => {
      const src = await agent(a, path.join(base, `a${n++}`));
      const bdir = path.join(base, `b${n++}`);
      const tgt = await agent(b, bdir, ['target-committed']);
      const w = await workload();
      const run = requestMigrate(src, secret, w.pid, tgt, { mode, strategy: 'commit' });
      await died(tgt);
      // Its successor on the same folder and address finds the commit recorded: the tree runs.
      await agent(b, bdir, [], tgt.port);
      const r = await neverTwo(t, w, run);
      t.comment(r.error ? `source: ${r.error.code} ${r.error.runningOn}` : `source: resumed as ${r.result?.targetPid}`);
      await neverTwo(t, w, oneCopy(t, w, b.netns));
    });

  for (const mode of ['precopy', 'postcopy'] as const)
    for (const fp of [
      'source-started',
      'source-in-pre-dump',
      'source-in-post-dump',
      'source-committing',
      'source-commit-sent',
    ] as const) {
      void t.test(`${mode}: the source agent dies at ${fp}, and restarts`, async (t) => {
        const adir = path.join(base, `a${n++}`);
        const src = await agent(a, adir, [fp]);
        const tgt = await agent(b, path.join(base, `b${n++}`));
        const w = await workload();
        const run = await neverTwo(t, w, requestMigrate(src, secret, w.pid, tgt, { mode, strategy: 'commit' }));
        t.notOk(run.result, 'the client saw no result');
        await died(src);
        await agent(a, adir, [], src.port);
        // Before the commit left, the source resumes; after it, the target runs it.
        await neverTwo(t, w, oneCopy(t, w, fp === 'source-commit-sent' ? b.netns : a.netns));
      });
    }

  void t.test("post-copy: the source's CRIU is killed during the page transfer", async (t) => {
    const src = await agent(a, path.join(base, `a${n++}`));
    const tgt = await agent(b, path.join(base, `b${n++}`));
    const w = await startWorkload('memory', { dir: path.join(base, `w${n++}`), netns: a.netns, memMiB: 256 });
    t.teardown(() => w.kill());
    await w.verify();
    const killer = criuKiller(src, 'pages');
    const run = await neverTwo(
      t,
      w,
      requestMigrate(src, secret, w.pid, tgt, {
        mode: 'postcopy',
        onProgress: killer.onProgress,
      }),
    );
    if (!killer.killed) return void t.comment('the pages moved before the kill could land: nothing to check');
    t.ok(run.error, `the migration failed: ${run.error?.message.slice(0, 160)}`);
    t.equal(run.error?.code, 'ERR_MIGRATION_PAGES');
    t.equal(run.error?.runningOn, 'stopped-source', 'the error says the source copy is kept stopped');
    // The target ran it and killed its copy (its missing pages would read as zeros); the source
    // copy CRIU let go when it died stays stopped: running it would replay what ran there.
    await until(() => copies(w.dir).length === 1, 30_000, "the target's copy to be gone");
    t.same(running(w.dir), [], 'no copy runs twice: none runs');
    t.ok(copies(w.dir).includes(w.pid), 'the source copy is kept, stopped');
    const id = /migration ([0-9a-f]{32})/.exec(run.error?.message ?? '')?.[1] ?? '';
    const r = await resolveMigration(id, { workDir: path.join(src.workDir, 'out'), secret: fs.readFileSync(secret) });
    t.equal(r.runningOn, 'stopped-source', `the record says so too: ${r.detail}`);
    t.same(running(w.dir), [], 'and resolving it does not let it run');
  });

  for (const mode of ['precopy', 'postcopy'] as const)
    void t.test(`${mode}: the source's CRIU is killed while the images move`, async (t) => {
      const src = await agent(a, path.join(base, `a${n++}`));
      const tgt = await agent(b, path.join(base, `b${n++}`));
      const w = await startWorkload('memory', { dir: path.join(base, `w${n++}`), netns: a.netns, memMiB: 64 });
      t.teardown(() => w.kill());
      await w.verify();
      const killer = criuKiller(src, 'transfer');
      const run = await neverTwo(
        t,
        w,
        requestMigrate(src, secret, w.pid, tgt, {
          mode,
          strategy: 'commit',
          onProgress: killer.onProgress,
        }),
      );
      t.ok(killer.killed, 'CRIU was killed during the transfer');
      t.equal(run.error?.runningOn, 'source', `it failed, and runs on the source: ${run.error?.message.slice(0, 160)}`);
      // Before the commit the target never ran it: the source copy runs again, its network unlocked.
      await oneCopy(t, w, a.netns);
    });

  /** The `updated` time of the records in an agent's `sub` folder ('out' or '.'), as the agent's clock had it. */
  const recordTimes = (agentDir: string, sub: string): number[] => {
    const dir = path.join(agentDir, sub, 'records');
    return fs
      .readdirSync(dir)
      .filter((f) => f.endsWith('.json'))
      .map((f) => Date.parse((JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8')) as { updated: string }).updated));
  };

  for (const mode of ['precopy', 'postcopy'] as const)
    void t.test(`${mode}: both agents' wall clocks step 10 minutes forward during the migration`, async (t) => {
      const clock = new SteppableClock(fs.mkdtempSync(path.join(base, 'clock-')));
      const src = await agent(a, path.join(base, `a${n++}`), [], undefined, clock.env);
      const tgt = await agent(b, path.join(base, `b${n++}`), [], undefined, clock.env);
      const w = await workload();
      let stepped = false;
      const run = await neverTwo(
        t,
        w,
        requestMigrate(src, secret, w.pid, tgt, {
          mode,
          strategy: 'commit',
          onProgress: (p) => {
            if (stepped || p.phase !== (mode === 'precopy' ? 'transfer' : 'restore')) return;
            clock.step('+10m');
            stepped = true;
          },
        }),
      );
      t.ok(stepped, 'the clocks stepped mid-migration');
      t.notOk(run.error, `no deadline fired early: ${run.error?.message ?? 'it migrated'}`);
      await oneCopy(t, w, b.netns);
      // The agents saw the step: what they recorded after it carries the stepped time.
      const ahead = (x: number) => x - Date.now() > 9 * 60_000;
      t.ok(recordTimes(src.workDir, 'out').some(ahead), "the source agent's clock was 10 minutes ahead");
      t.ok(recordTimes(tgt.workDir, '.').some(ahead), "the target agent's clock was 10 minutes ahead");
    });

  void t.test('precopy: the wall clock runs backwards from the commit, and the link is cut', async (t) => {
    const clock = new SteppableClock(fs.mkdtempSync(path.join(base, 'clock-')));
    const src = await agent(a, path.join(base, `a${n++}`), [], undefined, clock.env);
    const tgt = await agent(b, path.join(base, `b${n++}`), ['target-committed=stop'], undefined, clock.env);
    const w = await workload();
    // From the commit on, the wall clock steps 10 minutes back every 50 ms: a deadline on it,
    // whenever it was set, would never come; on the monotonic clock it is idleTimeoutMs + inDoubtMs.
    let back = 0;
    let stepping = false;
    const stepper = setInterval(() => stepping && clock.step(`-${(back += 10)}m`), 50);
    t.teardown(() => clearInterval(stepper));
    const { run, cut } = await cutAtCommit(
      t,
      w,
      src,
      tgt,
      'precopy',
      {
        onCut: () => (stepping = true),
        onDoubt: () => clearInterval(stepper),
      },
      true,
    );
    t.ok(cut && back > 0, `the link went down at the commit, the clock went back ${back} minutes`);
    t.equal(run.error?.code, 'ERR_MIGRATION_IN_DOUBT', run.error?.message ?? 'no error');
    t.equal(run.error?.runningOn, 'stopped-source', 'the source copy is kept stopped');
    await neverTwo(t, w, oneCopy(t, w));
  });

  void t.test('hand-over: the source machine loses power after its copy was killed', async (t) => {
    // The source's work folder on its own ext4 disk (a loop device): a copy of the disk's
    // backing file taken while it is mounted holds only what reached the disk — what a power
    // cut leaves. Unsynced data is still in the mounted file system's page cache.
    const disk = path.join(base, 'src-disk.img');
    const cutDisk = path.join(base, 'src-disk-after-power-cut.img');
    const dir = path.join(base, 'src-disk');
    execFileSync('truncate', ['-s', '256M', disk]);
    execFileSync('mkfs.ext4', ['-q', '-F', disk]);
    fs.mkdirSync(dir, { mode: 0o700 });
    const mount = (img: string) => {
      execFileSync('mount', ['-o', 'loop', img, dir]);
      fs.chmodSync(dir, 0o700);
    };
    mount(disk);
    let mounted = true;
    t.teardown(() => {
      if (mounted) execFileSync('umount', ['-l', dir]);
    });
    const adir = path.join(dir, 'agent');
    // It stops itself once its copy is killed and the target restored it, before the commit.
    const src = await agent(a, adir, ['source-committing=stop']);
    const tgt = await agent(b, path.join(base, `b${n++}`));
    const w = await workload();
    const run = requestMigrate(src, secret, w.pid, tgt, { strategy: 'handover' });
    await until(() => state(src.child.pid!) === 'T', 60_000, 'the source agent to stop before the commit');
    t.notOk(alive(w.pid), 'the source copy was killed: its images are the process now');
    // The power cut: only what reached the disk survives; the agent and its machine are gone.
    execFileSync('cp', ['--sparse=always', disk, cutDisk]);
    src.child.kill('SIGKILL');
    await died(src);
    const r = await neverTwo(t, w, run);
    t.notOk(r.result, 'the client saw no result');
    execFileSync('umount', [dir]);
    mounted = false;
    mount(cutDisk);
    mounted = true;
    // The machine is back: its agent finds the durable record and images, learns the target
    // never ran it (it dropped its copy when the source went silent), and restores it here.
    await agent(a, adir, [], src.port);
    await neverTwo(t, w, oneCopy(t, w, a.netns));
  });

  void t.test('the target machine loses power right after recording the commit', async (t) => {
    const src = await agent(a, path.join(base, `a${n++}`));
    const bdir = path.join(base, `b${n++}`);
    const tgt = await agent(b, bdir, ['target-committed']);
    const w = await workload();
    const run = requestMigrate(src, secret, w.pid, tgt, { strategy: 'commit' });
    await died(tgt);
    // The power cut takes the restored tree too; the machine comes back with another boot id
    // (written into the record as the restarted machine reads it: /proc/sys/kernel/random/boot_id).
    for (const pid of copies(w.dir)) if (pid !== w.pid) process.kill(pid, 'SIGKILL');
    await until(() => copies(w.dir).length === 1, 30_000, 'the restored tree to be gone');
    const recs = path.join(bdir, 'records');
    for (const f of fs.readdirSync(recs).filter((x) => x.endsWith('.json'))) {
      const r = JSON.parse(fs.readFileSync(path.join(recs, f), 'utf8')) as { started?: string };
      if (r.started) r.started = r.started.replace(/^[^/]+/, crypto.randomUUID());
      fs.writeFileSync(path.join(recs, f), JSON.stringify(r));
    }
    await agent(b, bdir, [], tgt.port);
    const r = await neverTwo(t, w, run);
    t.notOk(r.result, 'the client saw no result');
    // The target answers 'failed' (its copy did not survive): the source resumes its stopped copy.
    await neverTwo(t, w, oneCopy(t, w, a.netns));
  });

  void t.test("the source's disk is full", async (t) => {
    const dir = path.join(base, 'small-src');
    fs.mkdirSync(dir, { mode: 0o700 });
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=96k,mode=0700', 'sos-mig-small-src', dir]);
    t.teardown(() => execFileSync('umount', ['-l', dir]));
    const src = await agent(a, path.join(dir, 'agent'));
    const tgt = await agent(b, path.join(base, `b${n++}`));
    const w = await workload();
    const run = await neverTwo(t, w, requestMigrate(src, secret, w.pid, tgt, { strategy: 'commit' }));
    t.ok(run.error, `it failed: ${run.error?.message.slice(0, 200)}`);
    t.equal(run.error?.runningOn, 'source', 'the error says it runs on the source');
    await oneCopy(t, w, a.netns);
  });
});

/** Processes under `root` (at any depth) whose command is `comm`. */
function descendantsNamed(root: number, comm: string): number[] {
  const procs: { pid: number; ppid: number; comm: string }[] = [];
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${name}/stat`, 'utf8');
      const c = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      procs.push({ pid: Number(name), comm: c, ppid: Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) });
    } catch {
      // gone
    }
  }
  const under = new Set([root]);
  for (let grew = true; grew;) {
    grew = false;
    for (const p of procs)
      if (under.has(p.ppid) && !under.has(p.pid)) {
        under.add(p.pid);
        grew = true;
      }
  }
  return procs.filter((p) => p.comm === comm && under.has(p.pid) && p.pid !== root).map((p) => p.pid);
}
