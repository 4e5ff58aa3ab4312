// Failure injection at each step of a migration, with real agents, CRIU and
// namespaces: the target refuses or has another secret, its agent dies during
// the image transfer or the restore, the network is cut, its disk is full.
// Each time exactly one copy of the workload runs afterwards (on the source,
// since the target never resumed it) and it still verifies its whole state.
// Plus bad input: unknown or undumpable PIDs, bad options, a wrong client.
import t, { type Test } from 'tap';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { migrate } from '../../lib/migration/index.js';
import { dropTo, listTables } from '../../lib/net/nft.js';
import { makeNet } from '../../testkit/netns.js';
import { startEchoPeer, startWorkload, type Workload } from '../../testkit/workloads.js';
import { until } from '../../testkit/wait.js';
import {
  copies,
  requestMigrate,
  secretFile,
  startAgent,
  scratchDir,
  type AgentProcess,
  type ClientRun,
} from '../../testkit/migration-agents.js';

void t.test('failures', async (t) => {
  // Strays: e.g. the lazy-pages daemon of a target agent killed before its restore (it waits for an
  // agent restarted on that folder, which no test here does).
  const base = scratchDir(t, 'sos-mig-fail-');
  const net = await makeNet(2);
  t.teardown(() => net.close());
  const [a, b] = net.nodes;
  const secret = secretFile(base);
  const idleTimeoutMs = 5000;
  const src = await startAgent({
    netns: a.netns,
    host: a.addr,
    workDir: path.join(base, 'agent-a'),
    secretFile: secret,
    idleTimeoutMs,
  });
  t.teardown(() => src.stop());
  let n = 0;
  const target = async (o: { refuse?: string; secret?: string; workDir?: string } = {}): Promise<AgentProcess> => {
    const ag = await startAgent({
      netns: b.netns,
      host: b.addr,
      workDir: o.workDir ?? path.join(base, `agent-b${n++}`),
      secretFile: o.secret ?? secret,
      idleTimeoutMs,
      ...(o.refuse ? { refuse: o.refuse } : {}),
    });
    t.teardown(() => ag.stop('SIGKILL'));
    return ag;
  };
  const workload = async (memMiB = 16): Promise<Workload> => {
    const w = await startWorkload('memory', { dir: path.join(base, `w${n++}`), netns: a.netns, memMiB });
    t.teardown(() => w.kill());
    await w.verify();
    return w;
  };
  /** A workload on A with an ESTABLISHED connection to an echo peer on B. */
  const tcpWorkload = async (): Promise<Workload> => {
    const peer = await startEchoPeer({ netns: b.netns, host: b.addr, port: 0 });
    t.teardown(() => peer.close());
    const w = await startWorkload('tcp', {
      dir: path.join(base, `w${n++}`),
      netns: a.netns,
      tcpPeer: { host: b.addr, port: peer.port },
    });
    t.teardown(() => w.kill());
    await w.verify();
    return w;
  };
  /** The survival rule: one copy, where the error says, verifying its state. */
  const survives = async (t: Test, w: Workload, run: ClientRun, step: RegExp) => {
    t.notOk(run.result, 'the migration did not succeed');
    const e = run.error!;
    t.match(e.step, step, `failed at ${e.step}: ${e.message}`);
    t.equal(e.runningOn, 'source', 'the error says the process runs on the source');
    t.match(e.message, /runs on the source|restored on the source/);
    const pid = e.pid ?? w.pid;
    await until(() => copies(w.dir).length === 1, 30_000, 'one copy left');
    t.same(copies(w.dir), [pid], `exactly one copy runs, pid ${pid}`);
    t.equal(fs.statSync(`/proc/${pid}/ns/net`).ino, fs.statSync(`/run/netns/${a.netns}`).ino, 'on the source node');
    const v = await w.verify(pid);
    t.ok(v.ok, `it verifies: ${v.detail.slice(0, 100)}`);
    w.pid = pid;
  };
  /** Migrate `pid` to `tgt`, SIGKILLing the target agent at the first progress report `when` accepts. */
  const killTargetWhen = async (
    t: Test,
    when: (p: { phase: string; bytes: number }) => boolean,
    pid: number,
    tgt: AgentProcess,
    opts: Parameters<typeof requestMigrate>[4] = {},
    what = 'the target agent was killed',
  ): Promise<ClientRun> => {
    let killed = false;
    const run = await requestMigrate(src, secret, pid, tgt, {
      ...opts,
      onProgress: (p) => {
        if (!killed && when(p)) {
          killed = true;
          void tgt.stop('SIGKILL');
        }
      },
    });
    t.ok(killed, what);
    return run;
  };
  const leftovers = (ag: AgentProcess) =>
    fs.existsSync(ag.workDir) ? fs.readdirSync(ag.workDir).filter((f) => /^[0-9a-f]{32}$/.test(f)) : [];

  void t.test('bad input', async (t) => {
    let free = 4_000_000;
    while (fs.existsSync(`/proc/${free}`)) free++;
    await t.rejects(migrate(free, { to: { host: b.addr, port: 1 }, secret: 'x'.repeat(32), workDir: base }), {
      code: 'ERR_NO_PROCESS',
      step: 'validate',
    });
    await t.rejects(
      migrate('1' as unknown as number, { to: { host: b.addr, port: 1 }, secret: 'x'.repeat(32), workDir: base }),
      { code: 'ERR_INVALID_ARG_TYPE' },
    );
    await t.rejects(
      migrate(1, { to: { host: b.addr, port: 1 }, secret: 'x'.repeat(32), workDir: base, mode: 'fast' as 'precopy' }),
      { code: 'ERR_INVALID_ARG_TYPE' },
    );
    await t.rejects(migrate(1, { to: { host: b.addr, port: 0 }, secret: 'x'.repeat(32), workDir: base }), {
      code: 'ERR_OUT_OF_RANGE',
    });
    await t.rejects(
      migrate(1, {
        to: { host: b.addr, port: 1 },
        secret: 'x'.repeat(32),
        workDir: base,
        moveAddress: { address: 'x;rm', prefix: 24, dev: 'eth0' },
      }),
      { code: 'ERR_INVALID_ARG_TYPE' },
    );

    const tgt = await target();
    // A kernel thread cannot be dumped: CRIU refuses, nothing changes.
    const k = await requestMigrate(src, secret, 2, tgt);
    t.equal(k.error?.step, 'dump', `kthreadd: ${k.error?.message}`);
    t.ok(fs.existsSync('/proc/2'));
    // An unknown pid, asked of the agent.
    const u = await requestMigrate(src, secret, free, tgt);
    t.equal(u.error?.code, 'ERR_NO_PROCESS');
    // A client with the wrong secret is refused before it can ask anything.
    const w = await workload();
    const wrong = await requestMigrate(src, secretFile(base), w.pid, tgt);
    t.equal(wrong.error?.code, 'ERR_AUTH', 'the source agent refuses a client without the secret');
    t.match(
      wrong.error,
      { step: 'connect', runningOn: 'source', message: /secrets? .*do not match/ },
      `a MigrationError at connect that says the secrets do not match: ${wrong.error?.message}`,
    );
    t.match(src.log(), /refused .*ERR_AUTH/);
    t.same(copies(w.dir), [w.pid]);
    t.same(leftovers(tgt), [], 'nothing left on the target');
  });

  void t.test('the target has another secret (a wrong peer)', async (t) => {
    const other = await target({ secret: secretFile(base) });
    const w = await workload();
    const run = await requestMigrate(src, secret, w.pid, other);
    await survives(t, w, run, /^connect$/);
    t.match(run.error!.message, /ERR_AUTH/);
    t.match(other.log(), /refused .*ERR_AUTH/);
  });

  void t.test('nobody listens at the target address', async (t) => {
    const w = await workload();
    const run = await requestMigrate(src, secret, w.pid, { host: b.addr, port: 9 });
    await survives(t, w, run, /^connect$/);
  });

  void t.test('the target refuses', async (t) => {
    const tgt = await target({ refuse: 'draining for maintenance' });
    const w = await workload();
    const run = await requestMigrate(src, secret, w.pid, tgt);
    await survives(t, w, run, /^accept$/);
    t.equal(run.error!.code, 'ERR_MIGRATION_REFUSED');
    t.match(run.error!.message, /draining for maintenance/);
  });

  for (const strategy of ['commit', 'handover'] as const) {
    void t.test(`the target agent dies during the image transfer (${strategy})`, async (t) => {
      const tgt = await target();
      const w = await workload(64);
      const run = await killTargetWhen(
        t,
        (p) => p.phase === 'transfer' && p.bytes > 1 << 20,
        w.pid,
        tgt,
        { strategy },
        'killed while images moved',
      );
      await survives(t, w, run, /^(transfer|restore)$/);
      t.equal(run.error!.pid ?? w.pid, w.pid, 'resumed in place (same pid)');
    });

    void t.test(`the target agent dies during the restore (${strategy})`, async (t) => {
      const tgt = await target();
      const w = await workload();
      const before = w.pid;
      const run = await killTargetWhen(t, (p) => p.phase === 'restore', w.pid, tgt, { strategy });
      await survives(t, w, run, /^(restore|commit)$/);
      if (strategy === 'commit') t.equal(w.pid, before, 'the frozen source resumed');
      else t.not(w.pid, before, 'the source restored it back from its images');
    });
  }

  void t.test('the target agent dies while the dump streams pages to its page server (commit)', async (t) => {
    const tgt = await target();
    const w = await workload(64);
    const run = await killTargetWhen(
      t,
      (p) => p.phase === 'dump' && p.bytes > 1 << 20,
      w.pid,
      tgt,
      { strategy: 'commit' },
      'killed while pages streamed',
    );
    await survives(t, w, run, /^(dump|transfer|restore)$/);
    t.equal(run.error!.pid ?? w.pid, w.pid, 'resumed in place (same pid)');
  });

  void t.test('post-copy: the target agent dies during the restore, before the commit', async (t) => {
    const tgt = await target();
    const w = await workload();
    const run = await killTargetWhen(t, (p) => p.phase === 'restore', w.pid, tgt, { mode: 'postcopy' });
    await survives(t, w, run, /^(restore|commit)$/);
    t.equal(run.error!.pid ?? w.pid, w.pid, 'the lazily dumped source runs again in place');
    const tables = await listTables({ netns: a.netns });
    t.notOk(
      tables.some((x) => x.name.startsWith('CRIU-')),
      "CRIU's network lock is gone from the source node",
    );
    // The dead agent's lazy-pages daemon waits for a restore that will never come; an agent
    // started again on the same folder ends it.
    const lazy = () =>
      execFileSync('pgrep', ['-f', `lazy-pages .*${tgt.workDir}/`], { encoding: 'utf8' })
        .trim()
        .split('\n')
        .filter(Boolean);
    const waiting = (() => {
      try {
        return lazy();
      } catch {
        return [];
      }
    })();
    t.equal(leftovers(tgt).length, 1, 'the dead agent left its migration folder');
    const again = await target({ workDir: tgt.workDir });
    await until(
      () => {
        try {
          return lazy().length === 0;
        } catch {
          return true;
        }
      },
      10_000,
      'the stale lazy-pages daemon to end',
    );
    t.pass(`a new agent on ${path.basename(tgt.workDir)} ended ${waiting.length} stale lazy-pages daemon(s)`);
    t.match(again.log(), waiting.length ? /killed lazy-pages daemon \d+ left by an earlier agent/ : /.*/);
    t.same(leftovers(again), [], "and removed the dead agent's migration folder");
  });

  void t.test(
    'post-copy: the target agent dies before the commit; the source resumes with its TCP connection',
    async (t) => {
      const w = await tcpWorkload();
      const tgt = await target();
      const run = await killTargetWhen(t, (p) => p.phase === 'restore', w.pid, tgt, { mode: 'postcopy' });
      await survives(t, w, run, /^(restore|commit)$/);
      t.match((await w.verify()).detail, /ESTABLISHED/, 'the connection still echoes');
    },
  );

  void t.test('post-copy: the page transfer breaks after the resume; nothing runs twice', async (t) => {
    const tgt = await target();
    const w = await workload(256);
    let killed = '';
    const run = await requestMigrate(src, secret, w.pid, tgt, {
      mode: 'postcopy',
      onProgress: (p) => {
        if (killed || p.phase !== 'pages') return;
        // The target's lazy-pages daemon dies with most pages still on the source.
        try {
          killed = execFileSync('pkill', ['-KILL', '-e', '-f', `lazy-pages .*${tgt.workDir}/`], {
            encoding: 'utf8',
          }).trim();
        } catch {
          killed = 'none';
        }
      },
    });
    t.match(killed, /killed/, `killed mid-transfer: ${killed}`);
    if (!run.error) return void t.fail('the migration did not fail');
    const e = run.error;
    t.equal(e.code, 'ERR_MIGRATION_PAGES', e.message);
    t.equal(e.runningOn, 'stopped-source', 'the source keeps its copy, stopped');
    t.equal(e.pid, w.pid);
    await until(() => copies(w.dir).length === 1, 30_000, 'the target to end its copy');
    t.same(copies(w.dir), [w.pid], "only the source's copy exists");
    t.match(
      fs.readFileSync(`/proc/${w.pid}/stat`, 'utf8'),
      /^\d+ \(.*\) [Tt] /,
      'and it is stopped: nothing runs twice',
    );
  });

  void t.test("an agent started on a dead target agent's folder takes back its moved address and hold", async (t) => {
    // What a target agent SIGKILLed between adding the moving address and the resume leaves:
    // its migration folder with the address record, the address, and its nftables hold.
    const dir = path.join(base, 'agent-crashed');
    const mig = path.join(dir, 'ab'.repeat(16));
    fs.mkdirSync(mig, { recursive: true, mode: 0o700 });
    const addr = net.spareAddr(7);
    execFileSync('ip', ['-n', b.netns, 'addr', 'add', `${addr}/24`, 'dev', 'eth0']);
    fs.writeFileSync(path.join(mig, 'address.json'), JSON.stringify({ address: addr, prefix: 24, dev: 'eth0' }));
    const dead = execFileSync('sh', ['-c', 'echo $$'], { encoding: 'utf8' }).trim();
    const table = `sos_hold_${dead}_0`;
    await dropTo(addr, table, { netns: b.netns }); // never released: the dead agent's hold
    const ag = await target({ workDir: dir });
    t.notMatch(
      execFileSync('ip', ['-n', b.netns, 'addr', 'show', 'dev', 'eth0'], { encoding: 'utf8' }),
      new RegExp(`inet ${addr.replace(/\./g, '\\.')}/`),
      'the address is gone',
    );
    t.notOk(
      (await listTables({ netns: b.netns })).some((x) => x.name === table),
      'so is the hold',
    );
    t.notOk(fs.existsSync(mig), 'and the folder');
    t.match(ag.log(), new RegExp(`deleted address ${addr.replace(/\./g, '\\.')}/24 on eth0`));
  });

  void t.test('the restore fails after the dump (commit): the source resumes with its TCP connection', async (t) => {
    // Within one namespace the frozen source still holds the connection's 4-tuple, so the
    // target's restore fails: a real restore failure after the network was locked.
    const w = await tcpWorkload();
    const run = await requestMigrate(src, secret, w.pid, src, { strategy: 'commit' });
    await survives(t, w, run, /^restore$/);
    t.equal(run.error!.pid, w.pid, 'resumed in place');
    t.match((await w.verify()).detail, /ESTABLISHED/, 'the connection still echoes');
  });

  void t.test('the connection drops between the commit and "resumed": the source asks again', async (t) => {
    const tgt = await target();
    const w = await workload();
    let cut = false;
    const run = await requestMigrate(src, secret, w.pid, tgt, {
      strategy: 'commit',
      onProgress: (p) => {
        if (cut || p.phase !== 'commit') return;
        cut = true;
        // Down for longer than the agents' silence limit, so the channel dies; the source's
        // fresh connections (asking the outcome) get through once it is up again.
        execFileSync('ip', ['-n', b.netns, 'link', 'set', 'eth0', 'down']);
        setTimeout(() => execFileSync('ip', ['-n', b.netns, 'link', 'set', 'eth0', 'up']), idleTimeoutMs + 1500);
      },
    });
    t.ok(cut, 'the link went down at the commit');
    if (run.result) {
      // The commit arrived: the target resumed, and the source learnt it by asking.
      const r = run.result;
      t.same(copies(w.dir), [r.targetPid], "exactly one copy runs, the target's");
      t.equal(
        fs.statSync(`/proc/${r.targetPid}/ns/net`).ino,
        fs.statSync(`/run/netns/${b.netns}`).ino,
        'on the target node',
      );
      t.ok((await w.verify(r.targetPid)).ok, 'it verifies');
      w.pid = r.targetPid;
      t.comment('outcome: resumed on the target, learnt through a new connection');
    } else {
      // The commit was lost with the link: the target dropped its copy and said so when asked.
      await survives(t, w, run, /^commit$/);
      t.comment(`outcome: ${run.error!.message}`);
    }
  });

  void t.test('the network is cut during the transfer', async (t) => {
    const tgt = await target();
    const w = await workload(128);
    let cut = false;
    const run = await requestMigrate(src, secret, w.pid, tgt, {
      strategy: 'commit',
      onProgress: (p) => {
        if (!cut && p.phase === 'transfer' && p.bytes > 1 << 20) {
          cut = true;
          execFileSync('ip', ['-n', b.netns, 'link', 'set', 'eth0', 'down']);
        }
      },
    });
    execFileSync('ip', ['-n', b.netns, 'link', 'set', 'eth0', 'up']);
    t.ok(cut);
    await survives(t, w, run, /^(transfer|restore)$/);
    t.match(run.error!.message, /ETIMEDOUT|nothing from the peer/);
    await until(() => leftovers(tgt).length === 0, 30_000, 'the target to drop its partial images');
    t.match(tgt.log(), /failed/, 'the target noticed too');
  });

  void t.test('the target disk is full', async (t) => {
    const dir = path.join(base, 'small');
    fs.mkdirSync(dir);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=24m', 'sos-mig-small', dir]);
    const held: { agent?: AgentProcess } = {};
    t.teardown(async () => {
      await held.agent?.stop('SIGKILL');
      execFileSync('umount', ['-l', dir]);
    });
    const tgt = (held.agent = await target({ workDir: path.join(dir, 'agent') }));
    const w = await workload(64);
    const run = await requestMigrate(src, secret, w.pid, tgt);
    await survives(t, w, run, /^transfer$/);
    t.match(run.error!.message, /ENOSPC/);
    t.same(leftovers(tgt), [], 'the target removed its partial images');
  });
});
