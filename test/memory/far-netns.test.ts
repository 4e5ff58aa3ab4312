// memory.region over TCP between network namespaces: three memory nodes (node-main processes) in their
// own namespaces, the client in a fourth. Random reads and writes against a reference copy with local
// memory far below the working set, the resident bound read from /proc while it runs; with replication
// on, one memory node is killed mid-run: the workload finishes with every byte right, the lost replica
// is re-made on the spare node. Bigger: SOS_FAR_MB=1024 SOS_FAR_LOCAL_MB=64 SOS_FAR_OPS=4000000.
import t from 'tap';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { makeNet, type TestNode } from '../../testkit/netns.js';
import { LineProcess } from '../../testkit/line-process.js';
import { RSS_WALK_SLACK } from './pager-workload.js';

const MB = 1 << 20;
const SIZE = Number(process.env.SOS_FAR_MB ?? 256) * MB;
const LOCAL = Number(process.env.SOS_FAR_LOCAL_MB ?? 16) * MB;
const OPS = Number(process.env.SOS_FAR_OPS ?? 400_000);
const here = path.dirname(fileURLToPath(import.meta.url));
const NODE_MAIN = path.resolve(here, '../../lib/memory/node-main.js');
const CLIENT = path.join(here, 'far-client.js');

function inNs(n: TestNode, args: string[], name: string, waitMs = 60_000): LineProcess {
  return new LineProcess('nsenter', [`--net=/run/netns/${n.netns}`, process.execPath, ...args], { name, waitMs });
}

interface Done {
  bad: number;
  wrong: number;
  worstResident: number;
  stats: Record<string, number>;
  replicas: { label: string; state: string }[];
  events: string[];
}

for (const kill of [false, true]) {
  void t.test(
    `${SIZE / MB} MiB far region, ${LOCAL / MB} MiB local, 2 replicas${kill ? ', a memory node killed mid-run' : ''}`,
    async (t) => {
      t.setTimeout(900_000);
      const net = await makeNet(4);
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sos-far-'));
      const procs: LineProcess[] = [];
      t.teardown(async () => {
        for (const p of procs) p.kill();
        await net.close();
        fs.rmSync(dir, { recursive: true, force: true });
      });
      const secretFile = path.join(dir, 'secret');
      fs.writeFileSync(secretFile, crypto.randomBytes(32), { mode: 0o600 });
      const nodes: { host: string; port: number }[] = [];
      for (const [i, n] of net.nodes.slice(0, 3).entries()) {
        const p = inNs(
          n,
          [
            NODE_MAIN,
            '--host',
            n.addr,
            '--port',
            '7400',
            '--capacity',
            String(SIZE * 2),
            '--app',
            `far-test=${secretFile}`,
          ],
          `memory node ${i}`,
        );
        procs.push(p);
        const l = JSON.parse(await p.line()) as { listening?: { host: string; port: number } };
        t.ok(l.listening, `memory node ${i} listens`);
        nodes.push(l.listening!);
      }
      const config = { size: SIZE, localBytes: LOCAL, ops: OPS, nodes, secretFile, replicas: 2, kill };
      const client = inNs(net.nodes[3], [CLIENT, JSON.stringify(config)], 'far client', 600_000);
      procs.push(client);
      let done: Done | undefined;
      for (;;) {
        const m = JSON.parse(await client.line()) as { phase?: string; error?: string; done?: Done };
        if (m.error) throw new Error(m.error);
        if (m.phase === 'kill-now') procs[0].kill(); // node 0 holds a replica of every page
        if (m.done) {
          done = m.done;
          break;
        }
      }
      t.equal(done.bad, 0, 'every read during the run matched the reference');
      t.equal(done.wrong, 0, 'every word right at the end');
      t.ok(
        done.worstResident <= LOCAL + RSS_WALK_SLACK,
        `resident bound held (worst ${done.worstResident} of ${LOCAL} bytes, smaps)`,
      );
      t.ok(done.stats.evictions > 0 && done.stats.writeBacks > 0, 'pages were evicted and written back');
      t.equal(done.stats.poisoned + done.stats.fetchErrors + done.stats.storeErrors, 0, 'the pager saw no error');
      if (kill) {
        t.ok(
          done.events.some((e) => e.startsWith(`lost ${nodes[0].host}`)),
          'the loss was reported',
        );
        t.ok(
          done.events.some((e) => e.startsWith(`replicated ${nodes[2].host}`)),
          'a new replica on the spare node',
        );
        t.same(
          done.replicas.filter((r) => r.state === 'live').map((r) => r.label.split(':')[0]),
          [nodes[1].host, nodes[2].host],
          'two live replicas again',
        );
      } else {
        t.same(done.events, [], 'no event');
      }
      t.same(JSON.parse(await client.line()), { closed: true }, 'closed: remote pages freed');
    },
  );
}
