// Every workload kind migrated by real agents in real namespaces, with real
// CRIU: within one namespace and between two, pre-copy (hand-over: the images
// travel over the agents' channel; commit: the dump streams pages to a page
// server on the target over mutual TLS) and post-copy (pages pulled over TLS). Each
// workload checks its complete state after every move, exactly one copy of it
// runs, and the TCP workload keeps its ESTABLISHED connection while its own
// address moves with it.
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { makeNet } from '../../testkit/netns.js';
import { startEchoPeer, startWorkload, WORKLOAD_KINDS, type Workload } from '../../testkit/workloads.js';
import { copies, requestMigrate, secretFile, startAgent, type AgentProcess } from '../../testkit/migration-agents.js';

type Flavour = 'precopy' | 'precopy-commit' | 'postcopy';
const MODES = (process.env.SOS_MIGRATION_MODES ?? 'precopy,precopy-commit,postcopy').split(',') as Flavour[];

void t.test('migration matrix', async (t) => {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'sos-mig-matrix-'));
  t.teardown(() => fs.rmSync(base, { recursive: true, force: true }));
  const net = await makeNet(3);
  t.teardown(() => net.close());
  const [a, b, peerNode] = net.nodes;
  const secret = secretFile(base);
  const flush = net.nodes.map((n) => n.netns);
  const agents: Record<string, AgentProcess> = {
    a: await startAgent({
      netns: a.netns,
      host: a.addr,
      workDir: path.join(base, 'agent-a'),
      secretFile: secret,
      flushNeigh: flush,
    }),
    b: await startAgent({
      netns: b.netns,
      host: b.addr,
      workDir: path.join(base, 'agent-b'),
      secretFile: secret,
      flushNeigh: flush,
    }),
  };
  t.teardown(async () => {
    for (const ag of Object.values(agents)) await ag.stop();
  });
  const peer = await startEchoPeer({ netns: peerNode.netns, host: peerNode.addr, port: 0 });
  t.teardown(() => peer.close());
  const nodes: Record<'a' | 'b', typeof a> = { a, b };

  for (const kind of WORKLOAD_KINDS) {
    void t.test(kind, async (t) => {
      const own = kind === 'tcp' ? net.spareAddr(0) : undefined;
      if (own) await net.addAddr(a, own);
      const dir = path.join(base, kind);
      const w: Workload = await startWorkload(kind, {
        dir,
        netns: a.netns,
        memMiB: 4,
        ...(kind === 'tcp' ? { tcpPeer: { host: peerNode.addr, port: peer.port }, tcpBind: own } : {}),
      });
      t.teardown(() => w.kill());
      let gen = (await w.verify()).generation;
      let at: 'a' | 'b' = 'a';
      // Each mode: a move within the node, then to the other node.
      // Post-copy and a committed pre-copy on one machine leave the frozen source holding what
      // the restore recreates: a FIFO's data would be there twice (the pipes workload's FIFO
      // lives in the shared filesystem), and within one namespace the TCP 4-tuple is taken
      // (docs/migration.md).
      const plan: { flavour: Flavour; to: 'a' | 'b' }[] = MODES.flatMap((flavour) => {
        const frozenSource = flavour !== 'precopy';
        if (frozenSource && kind === 'pipes') return [];
        const here = at;
        const there = (at = at === 'a' ? 'b' : 'a');
        return frozenSource && kind === 'tcp'
          ? [{ flavour, to: there }]
          : [
              { flavour, to: here },
              { flavour, to: there },
            ];
      });
      at = 'a';
      for (const step of plan) {
        const local = step.to === at;
        const seen = new Set<string>();
        const move = own && !local ? `${own}/24@eth0` : undefined;
        const mode = step.flavour === 'postcopy' ? 'postcopy' : 'precopy';
        const progress: { phase: string; bytes: number }[] = [];
        const run = await requestMigrate(agents[at], secret, w.pid, agents[step.to], {
          mode,
          ...(step.flavour === 'precopy-commit' ? { strategy: 'commit' as const } : {}),
          ...(move ? { moveAddress: move } : {}),
          onProgress: (p) => {
            seen.add(p.phase);
            progress.push(p);
          },
        });
        const label = `${kind} ${step.flavour} ${local ? 'within' : 'between'} ${at}→${step.to}`;
        if (!run.result) {
          t.fail(
            `${label}: ${JSON.stringify(run.error)} ${run.stderr}\n${agents.a.log().slice(-3000)}\n${agents.b.log().slice(-3000)}`,
          );
          return;
        }
        const r = run.result;
        t.equal(r.mode, mode);
        t.ok(r.sameHost, `${label}: one machine`);
        t.equal(r.strategy, step.flavour === 'precopy' ? 'handover' : 'commit', `${label}: strategy`);
        t.ok(r.targetPid > 0 && r.targetPid !== w.pid, `${label}: a new pid`);
        t.same(copies(w.dir), [r.targetPid], `${label}: exactly one copy runs, the target's`);
        t.equal(
          fs.statSync(`/proc/${r.targetPid}/ns/net`).ino,
          fs.statSync(`/run/netns/${nodes[step.to].netns}`).ino,
          `${label}: in ${step.to}'s namespace`,
        );
        for (const ph of ['connect', 'dump', 'transfer', 'restore', 'commit', 'done'])
          t.ok(seen.has(ph), `${label}: progress phase ${ph}`);
        t.ok(
          r.pages >= (w.kind === 'memory' ? 4 * 256 : 1) && r.bytes >= r.pages * 4096,
          `${label}: bytes and pages counted (${r.pages} pages)`,
        );
        t.ok(
          run.progress.every((p, i, all) => i === 0 || (p.bytes >= all[i - 1].bytes && p.pages >= all[i - 1].pages)),
          `${label}: progress bytes and pages never go back`,
        );
        t.same(
          run.progress.at(-1),
          { phase: 'done', bytes: r.bytes, pages: r.pages },
          `${label}: the last progress event carries the result's counts`,
        );
        t.ok(r.downtimeMs > 0 && r.downtimeMs <= r.totalMs, `${label}: downtime within the total`);
        const v = await w.verify(r.targetPid);
        t.ok(v.generation > gen, `${label}: the workload verifies its state (${v.detail.slice(0, 120)})`);
        gen = v.generation;
        if (own)
          t.match(
            v.detail,
            new RegExp(`${own.replace(/\./g, '\\.')}:\\d+ -> .* ESTABLISHED`),
            `${label}: the connection from ${own} is ESTABLISHED`,
          );
        t.comment(
          `${label}: downtime ${r.downtimeMs.toFixed(0)} ms, total ${r.totalMs.toFixed(0)} ms, ${r.bytes} bytes`,
        );
        w.pid = r.targetPid;
        at = step.to;
      }
    });
  }
});
