/**
 * bench/cluster's restore part, on a real 3-node local cluster (sosd in network namespaces, mutual
 * TLS): a process holding `sizeMiB` of memory is checkpointed (CRIU dump left running, the images
 * sent to two holders), then its node's sosd is SIGKILLed. Timed from that kill: the watchdog
 * killing the old copy (its lease lapsing), and the copy restored on a holder running
 * (`restore_failover_s`), against the lease TTL the cluster waits out in any case.
 */
import { alive } from '../../lib/migration/proc.js';
import type { ProcessEntry } from '../../lib/cluster/processes.js';
import type { CheckpointResult } from '../../lib/daemon/checkpoint-service.js';
import { localClusterFor } from '../../testkit/local-cluster.js';
import { waitFor } from '../../testkit/wait.js';

export interface RestoreFailover {
  sizeMiB: number;
  checkpoint: CheckpointResult;
  /** The node's sosd killed → the old copy dead (s). */
  fencedS: number;
  /** The node's sosd killed → the restored copy running on a holder (s). */
  restoredS: number;
  ttlS: number;
}

// Fills its memory, then counts: a restore goes on from the count.
const PROG = `
import sys, time
data = bytearray(int(sys.argv[1]) << 20)
for off in range(0, len(data), 4096):
    data[off] = 1
i = 0
while True:
    i += 1
    print(i, flush=True)
    time.sleep(0.05)
`;

export async function restoreFailover(sizeMiB = 64): Promise<RestoreFailover> {
  const downs: (() => unknown)[] = [];
  try {
    const { c, sosctl, json, leader: leaderOf } = await localClusterFor({ teardown: (f) => downs.push(f) }, 3);
    const leader = await leaderOf();
    const victim = c.nodes.find((n) => n.name !== leader)!;
    const run = await sosctl(
      // prettier-ignore
      ['run', '--app', 'bench', '--node', victim.name, '--json', '--', 'python3', '-c', PROG, String(sizeMiB)],
    );
    if (run.code !== 0) throw new Error(`sosctl run: ${run.stderr}`);
    const p = JSON.parse(run.stdout) as ProcessEntry;
    const name = `bench/${p.id}`;
    await waitFor(
      async () => /\n2\n/.test((await sosctl(['logs', name, '--stream', 'stdout'])).stdout),
      `${name} to run`,
    );
    const checkpoint = await json<CheckpointResult>(['checkpoint', name]);

    const at = performance.now();
    process.kill(victim.pid, 'SIGKILL');
    let fencedS = 0;
    await waitFor(() => {
      if (alive(p.pid)) return false;
      fencedS = (performance.now() - at) / 1000;
      return true;
    }, 'the old copy to be killed by its watchdog');
    let restoredS = 0;
    await waitFor(async () => {
      const ps = await json<ProcessEntry[]>(['ps']).catch(() => []);
      const e = ps.find((x) => x.app === 'bench' && x.id === p.id);
      if (!e || e.node === victim.name || e.state !== 'running') return false;
      restoredS = (performance.now() - at) / 1000;
      return true;
    }, `${name} to be restored on a holder`);
    // `cluster up` starts every sosd with its default lease TTL.
    return { sizeMiB, checkpoint, fencedS, restoredS, ttlS: 2 };
  } finally {
    for (const f of downs.reverse()) await f();
  }
}
