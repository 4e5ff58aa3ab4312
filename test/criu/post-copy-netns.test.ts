// Post-copy between two network namespaces through the library: the lazy dump
// serves pages from node a, lazy-pages and the lazy restore run in node b.
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { criu } from '../../lib/index.js';
import { startWorkload } from '../../testkit/workloads.js';
import { makeNet } from '../../testkit/netns.js';

const base = fs.mkdtempSync(path.join(os.tmpdir(), 'sos-cpn-'));
t.teardown(() => fs.rmSync(base, { recursive: true, force: true }));

void t.test('memory workload moved lazily from namespace a to b, every page checked', async (t) => {
  const net = await makeNet(2);
  t.teardown(() => net.close());
  const [a, b] = net.nodes;
  const w = await startWorkload('memory', { dir: path.join(base, 'w'), netns: a.netns, memMiB: 16 });
  t.teardown(() => w.kill());
  const v0 = await w.verify();
  const imagesDir = path.join(base, 'img');
  const workDir = path.join(base, 'work');
  fs.mkdirSync(workDir);
  const port = 21000 + (process.pid % 20000);
  const ld = await criu.dumpLazy({ pid: w.pid, imagesDir, netns: a.netns, pageServer: { address: a.addr, port } });
  t.teardown(() => ld.abort());
  await ld.imagesReady;
  const lp = await criu.lazyPages({ imagesDir, workDir, netns: b.netns, pageServer: { address: a.addr, port } });
  t.teardown(() => lp.close());
  const r = await criu.restore({ imagesDir, workDir, netns: b.netns, lazyPages: true });
  t.equal(fs.statSync(`/proc/${r.pid}/ns/net`).ino, fs.statSync(`/run/netns/${b.netns}`).ino, 'runs in b');
  const d = await ld.done;
  await lp.exited;
  const v1 = await w.verify(r.pid);
  t.ok(v1.generation > v0.generation, `state intact: ${v1.detail.slice(0, 70)}`);
  t.comment(
    `16 MiB lazily a→b: images ready ${d.imagesReadyMs?.toFixed(0)} ms, restore ${r.ms.toFixed(0)} ms, all pages moved after ${d.ms.toFixed(0)} ms`,
  );
  w.pid = r.pid;
});
