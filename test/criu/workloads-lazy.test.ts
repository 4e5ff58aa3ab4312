// Every workload kind moves by post-copy between namespaces with the CRIU
// command line (lazy dump serving pages, lazy-pages daemon on the target,
// lazy restore) and checks its state on the target; 'tcp' takes its address
// and its ESTABLISHED connection along.
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { exec } from '../../lib/exec.js';
import { startWorkload, startEchoPeer, WORKLOAD_KINDS } from '../../testkit/workloads.js';
import { makeNet } from '../../testkit/netns.js';
import { cliLazyDump, cliLazyPages, cliRestore } from '../../testkit/criu-cli.js';
const base = fs.mkdtempSync(path.join(os.tmpdir(), 'sos-wz-'));
t.teardown(() => fs.rmSync(base, { recursive: true, force: true }));

for (const kind of WORKLOAD_KINDS) {
  void t.test(`${kind}: post-copy to another namespace`, async (t) => {
    const net = await makeNet(3);
    t.teardown(() => net.close());
    const [a, b, peerNode] = net.nodes;
    const tcp = kind === 'tcp';
    const own = net.spareAddr(0);
    let tcpPeer: { host: string; port: number } | undefined;
    if (tcp) {
      const peer = await startEchoPeer({ netns: peerNode.netns, host: peerNode.addr, port: 0 });
      t.teardown(() => peer.close());
      tcpPeer = { host: peerNode.addr, port: peer.port };
      await net.addAddr(a, own);
    }
    const w = await startWorkload(kind, {
      dir: path.join(base, kind),
      netns: a.netns,
      tcpPeer,
      tcpBind: tcp ? own : undefined,
    });
    t.teardown(() => w.kill());
    await w.verify();

    const images = path.join(base, `${kind}.img`);
    const server = { address: a.addr, port: 27000 };
    const dump = cliLazyDump(w.pid, images, server, { netns: a.netns, tcp });
    t.teardown(() => dump.kill());
    await dump.ready;
    let release = async (): Promise<void> => {};
    if (tcp) {
      release = await net.holdAddr(b, own);
      await net.moveAddr(own, a, b);
    }
    if (kind === 'pipes') {
      // On one machine the source, frozen until its pages have moved, still
      // holds the FIFO: a restore opening the same path would share that pipe
      // and find the dumped bytes there twice. Another host has its own FIFO;
      // so does the target here once the path names a new one.
      const fifo = path.join(w.dir, 'fifo');
      fs.rmSync(fifo);
      await exec('mkfifo', ['-m', '600', fifo]);
    }
    const lazy = cliLazyPages(images, server, { netns: b.netns });
    t.teardown(() => lazy.kill());
    await lazy.ready;
    const { pid } = await cliRestore(images, { netns: b.netns, tcp, extra: ['--lazy-pages'] });
    await release();
    t.equal(fs.statSync(`/proc/${pid}/ns/net`).ino, fs.statSync(`/run/netns/${b.netns}`).ino, 'restored into b');
    const v = await w.verify(pid);
    t.equal(v.detail.split(':')[0], kind);
    await Promise.all([dump.done, lazy.done]);
    await w.verify(pid);
  });
}
