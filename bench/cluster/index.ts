/**
 * The cluster's control plane at N nodes (default 30), each a process of its own joined through a
 * mutual-TLS etcd from one cluster folder, with the defaults sosd uses (lease TTL 2 s, telemetry
 * sampled every 5 s):
 *   - control bytes per second per node, from etcd's own gRPC byte counters over `--window` seconds,
 *     at 3 nodes and at N, for change-only telemetry (ours) and, in the same run at N, for the
 *     publish-every-sample baseline;
 *   - dead-node detection: SIGKILL `--kill` nodes, time until a watcher sees each record vanish
 *     (bounded by the TTL), against a node that leaves (lease revoked at once);
 *   - leader failover: every node campaigns for the orchestrator as sosd does; SIGKILL the leader
 *     `--kill` times, time until the new leader's first fenced action (a decision under its term)
 *     reaches a watcher, against a leader that resigns;
 *   - memory failover (memory-failover.ts): a far-memory region on three memory nodes, the one holding
 *     a replica of every page killed: its death → the first page served from the survivor;
 *   - restore failover (restore-failover.ts): on a real 3-node local cluster, a checkpointed process's
 *     sosd killed → the process restored on a holder, and the checkpoint's own figures.
 *   scripts/bench.sh cluster [--nodes 30] [--window 60] [--kill 3] [--ttl 2] [--interval 5000]
 */
import fs from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startEtcd } from '../../lib/cluster/etcd-server.js';
import { initCluster, issueMember, loadMember, setEtcd } from '../../lib/cluster/folder.js';
import { storeFromFolder } from '../../lib/cluster/join.js';
import { DECISIONS, NODES } from '../../lib/cluster/keys.js';
import { currentLeader } from '../../lib/orchestrator/fence.js';
import { memoryFailover } from './memory-failover.js';
import { restoreFailover } from './restore-failover.js';
import { LineProcess } from '../../testkit/line-process.js';
import { parseOptions, round, table } from '../run.js';

const opts = parseOptions(process.argv.slice(2), {
  nodes: 'nodes (default 30)',
  window: 'seconds each traffic measurement lasts (default 60)',
  kill: 'nodes killed for the detection figure (default 3)',
  ttl: 'lease TTL in seconds (default 2, as sosd)',
  interval: 'telemetry sample interval in ms (default 5000, as sosd)',
  'checkpoint-mib': 'memory of the checkpointed process (default 64)',
});
const N = Number(opts.get('nodes') ?? 30);
const windowS = Number(opts.get('window') ?? 60);
const kills = Number(opts.get('kill') ?? 3);
const ttl = Number(opts.get('ttl') ?? 2);
const interval = Number(opts.get('interval') ?? 5000);
const here = path.dirname(fileURLToPath(import.meta.url));

const base = fs.mkdtempSync(path.join(os.tmpdir(), 'sos-bench-cluster-'));
const dir = path.join(base, 'cluster');
const procs: LineProcess[] = [];
let stopEtcd: () => Promise<void> = async () => {};
async function cleanup(): Promise<void> {
  for (const p of procs) p.kill();
  await stopEtcd();
  fs.rmSync(base, { recursive: true, force: true });
}
for (const s of ['SIGINT', 'SIGTERM'] as const) process.once(s, () => void cleanup().then(() => process.exit(130)));

try {
  await initCluster(dir, { cluster: 'bench' });
  await issueMember(dir, { name: 'etcd', role: 'node', hosts: ['127.0.0.1'] });
  const names = Array.from({ length: N }, (_, i) => `node-${i}`);
  for (const n of names) await issueMember(dir, { name: n, role: 'node' });
  const etcd = await startEtcd({ dir: path.join(base, 'etcd'), tls: loadMember(dir, 'node', 'etcd') });
  stopEtcd = () => etcd.stop();
  setEtcd(dir, [etcd.endpoint], 'etcd');
  const op = loadMember(dir, 'operator', 'operator');

  /** etcd's gRPC bytes received + sent so far (its own counters, read over mutual TLS). */
  const grpcBytes = (): Promise<number> =>
    new Promise((resolve, reject) => {
      const req = https.get(
        `${etcd.endpoint}/metrics`,
        { ca: op.caPem, cert: op.certPem, key: op.keyPem, checkServerIdentity: () => undefined },
        (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (d: string) => (body += d));
          res.on('end', () => {
            let sum = 0;
            for (const m of body.matchAll(/^etcd_network_client_grpc_(?:received|sent)_bytes_total (\S+)$/gm))
              sum += Number(m[1]);
            resolve(sum);
          });
        },
      );
      req.on('error', reject);
    });

  const store = storeFromFolder(dir, 'operator', 'operator');
  const spawnMembers = async (from: number, to: number): Promise<void> => {
    const started = procs.length;
    for (const n of names.slice(from, to))
      procs.push(
        new LineProcess(process.execPath, [path.join(here, 'member.js'), dir, n, String(ttl), String(interval)], {
          name: n,
        }),
      );
    for (const p of procs.slice(started))
      if ((await p.line(120_000)) !== 'JOINED') throw new Error(`${p.name} did not join`);
  };
  const measure = async (nodes: number): Promise<number> => {
    const a = await grpcBytes();
    const at = Date.now();
    await new Promise((r) => setTimeout(r, windowS * 1000));
    const b = await grpcBytes();
    return (b - a) / ((Date.now() - at) / 1000) / nodes;
  };
  // Before each measurement a sample interval passes: every node has written its first telemetry.
  const small = Math.min(3, N);
  await spawnMembers(0, small);
  await new Promise((r) => setTimeout(r, interval + 1000));
  const ours3 = await measure(small);
  const t0 = Date.now();
  await spawnMembers(small, N);
  const joinS = (Date.now() - t0) / 1000;
  await new Promise((r) => setTimeout(r, interval + 1000));
  const ours = await measure(N);
  for (const p of procs) p.write('always');
  await new Promise((r) => setTimeout(r, interval + 1000));
  const always = await measure(N);

  // Detection: a watcher on the nodes' prefix stamps each delete.
  const gone = new Map<string, number>();
  const w = await store.kv.watch().prefix(NODES).create();
  w.on('delete', (kv) => gone.set(kv.key.toString().slice(NODES.length), Date.now()));
  const until = async (name: string, ms: number) => {
    const end = Date.now() + ms;
    while (!gone.has(name)) {
      if (Date.now() > end) throw new Error(`${name}'s record did not vanish within ${ms} ms`);
      await new Promise((r) => setTimeout(r, 5));
    }
    return gone.get(name)!;
  };
  const dead: number[] = [];
  for (let i = 0; i < kills; i++) {
    const p = procs[i];
    const at = Date.now();
    p.proc.kill('SIGKILL');
    dead.push(((await until(p.name, ttl * 4000)) - at) / 1000);
  }
  const leaver = procs[kills];
  const at = Date.now();
  leaver.write('leave');
  const leaveS = ((await until(leaver.name, 30_000)) - at) / 1000;
  await w.cancel();

  // Leader failover: the first fenced action of a new term, seen by a watcher.
  const actions: { leader: string; term: string; at: number }[] = [];
  const dw = await store.kv.watch().prefix(DECISIONS).create();
  dw.on('put', (kv) => {
    const d = JSON.parse(kv.value.toString()) as { leader: string; term: string };
    actions.push({ leader: d.leader, term: d.term, at: Date.now() });
  });
  const nextAction = async (after: string, ms: number) => {
    const end = Date.now() + ms;
    for (;;) {
      const a = actions.find((x) => BigInt(x.term) > BigInt(after));
      if (a) return a;
      if (Date.now() > end) throw new Error(`no fenced action of a term after ${after} within ${ms} ms`);
      await new Promise((r) => setTimeout(r, 5));
    }
  };
  const leaderNow = async () => {
    for (;;) {
      const l = await currentLeader(store);
      if (l) return l;
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  const failovers: number[] = [];
  for (let i = 0; i < kills; i++) {
    const l = await leaderNow();
    const p = procs.find((x) => x.name === l.leader && x.proc.exitCode === null && x.proc.signalCode === null)!;
    const at = Date.now();
    p.proc.kill('SIGKILL');
    failovers.push(((await nextAction(l.term, ttl * 5000)).at - at) / 1000);
  }
  const l = await leaderNow();
  const resigner = procs.find((x) => x.name === l.leader)!;
  const rat = Date.now();
  resigner.write('leave');
  const resignS = ((await nextAction(l.term, 30_000)).at - rat) / 1000;
  await dw.cancel();
  store.close();

  await cleanup();
  const mem = await memoryFailover();
  const rf = await restoreFailover(Number(opts.get('checkpoint-mib') ?? 64));
  const ck = rf.checkpoint;
  const ckMiBps = ck.bytes / 2 ** 20 / (ck.sendMs / 1000);
  const meanDead = dead.reduce((a, b) => a + b, 0) / dead.length;
  const meanFailover = failovers.reduce((a, b) => a + b, 0) / failovers.length;
  console.log(
    table(
      ['figure', 'value'],
      [
        ['nodes', String(N)],
        [`${N - small} more joined (s)`, joinS.toFixed(1)],
        [`control B/s per node at ${small} nodes`, ours3.toFixed(0)],
        [`control B/s per node at ${N} nodes, change-only telemetry (ours)`, ours.toFixed(0)],
        [`control B/s per node at ${N} nodes, publish every sample`, always.toFixed(0)],
        [`dead node detected (s, mean of ${kills}, TTL ${ttl} s)`, meanDead.toFixed(2)],
        ['node that leaves, gone after (s)', leaveS.toFixed(3)],
        [`leader killed → new leader's first fenced action (s, mean of ${kills})`, meanFailover.toFixed(2)],
        ['leader resigns → new leader acts (s)', resignS.toFixed(3)],
        [`memory node killed → first page from the replica (s; ${mem.sizeMiB} MiB region)`, mem.failoverS.toFixed(4)],
        ['  a faulting read before it (ms, median)', mem.faultMs.toFixed(3)],
        ['  the region says the node is lost (s)', mem.lostS === null ? '-' : mem.lostS.toFixed(4)],
        ['  a fresh replica filled from the survivor (s)', mem.replicatedS === null ? '-' : mem.replicatedS.toFixed(2)],
        [
          `checkpoint of a ${rf.sizeMiB} MiB process (ms: dump + to ${ck.holders.length} holders)`,
          `${ck.ms.toFixed(0)} (${ck.dumpMs.toFixed(0)} + ${ck.sendMs.toFixed(0)})`,
        ],
        ['  images (MiB), sent at (MiB/s per holder)', `${(ck.bytes / 2 ** 20).toFixed(1)}, ${ckMiBps.toFixed(0)}`],
        ["its node's sosd killed → the old copy dead, by its watchdog (s)", rf.fencedS.toFixed(2)],
        ["its node's sosd killed → restored, running on a holder (s)", rf.restoredS.toFixed(2)],
      ],
    ),
  );
  console.log(
    JSON.stringify({
      bench: 'cluster',
      nodes: N,
      window_s: windowS,
      ttl_s: ttl,
      telemetry_interval_ms: interval,
      join_all_s: round(joinS),
      control_bytes_per_s_per_node: round(ours),
      control_bytes_per_s_per_node_3: round(ours3),
      control_bytes_per_s_per_node_always: round(always),
      dead_node_detect_s: round(meanDead),
      dead_node_detect_s_each: dead.map((d) => round(d)),
      leave_detect_s: round(leaveS),
      leader_failover_s: round(meanFailover),
      leader_failover_s_each: failovers.map((f) => round(f)),
      leader_resign_s: round(resignS),
      memory_failover_s: round(mem.failoverS),
      memory_fault_ms: round(mem.faultMs),
      memory_lost_s: mem.lostS === null ? null : round(mem.lostS),
      memory_replicated_s: mem.replicatedS === null ? null : round(mem.replicatedS),
      checkpoint_mib: rf.sizeMiB,
      checkpoint_ms: round(ck.ms),
      checkpoint_dump_ms: round(ck.dumpMs),
      checkpoint_send_ms: round(ck.sendMs),
      checkpoint_bytes: ck.bytes,
      checkpoint_send_mib_s: round(ckMiBps),
      restore_fenced_s: round(rf.fencedS),
      restore_failover_s: round(rf.restoredS),
      ratios: {
        control_always_vs_ours: round(always / ours),
        control_n_vs_3: round(ours / ours3),
        dead_detect_vs_ttl: round(meanDead / ttl),
        dead_detect_vs_leave: round(meanDead / leaveS),
        failover_vs_ttl: round(meanFailover / ttl),
        failover_vs_resign: round(meanFailover / resignS),
        memory_failover_vs_fault: round((mem.failoverS * 1000) / mem.faultMs),
        restore_failover_vs_ttl: round(rf.restoredS / rf.ttlS),
        restore_failover_vs_leader_failover: round(rf.restoredS / meanFailover),
        checkpoint_send_vs_dump: round(ck.sendMs / ck.dumpMs),
      },
    }),
  );
} catch (e) {
  await cleanup();
  throw e;
}
