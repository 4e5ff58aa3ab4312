// The library API (RPC) on the shared self-checking workloads: each kind
// dumped and restored with its state verified, and an ESTABLISHED TCP
// connection moved to another namespace with tcpEstablished and nftables
// network locking (per connection: CRIU sends network-lock/unlock notifications
// only for a tree that owns its network namespace).
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { criu } from '../../lib/index.js';
import { startWorkload, startEchoPeer, type WorkloadKind } from '../../testkit/workloads.js';
import { makeNet } from '../../testkit/netns.js';

// Short paths: the 'unix' workload binds a socket in its folder.
const base = fs.mkdtempSync(path.join(os.tmpdir(), 'sos-cl-'));
t.teardown(() => fs.rmSync(base, { recursive: true, force: true }));

const kinds: WorkloadKind[] = ['memory', 'threads', 'files', 'pipes', 'unix', 'tree'];

void t.test('every local kind survives dump and restore through the library', async (t) => {
  for (const kind of kinds) {
    const w = await startWorkload(kind, { dir: path.join(base, kind) });
    t.teardown(() => w.kill());
    const before = await w.verify();
    const imagesDir = path.join(base, `${kind}.img`);
    const d = await criu.dump({ pid: w.pid, imagesDir });
    const r = await criu.restore({ imagesDir });
    const after = await w.verify(r.pid);
    t.ok(after.generation > before.generation, `${kind}: state intact after restore (${after.detail.slice(0, 60)})`);
    t.ok(d.stats && r.stats, `${kind}: stats`);
    t.comment(
      `${kind}: dump ${d.ms.toFixed(0)} ms (frozen ${((d.stats?.frozenTimeUs ?? 0) / 1000).toFixed(1)} ms), restore ${r.ms.toFixed(0)} ms`,
    );
    w.pid = r.pid;
  }
});

void t.test('tcp: ESTABLISHED connection moved to another namespace; network lock hooks in order', async (t) => {
  const net = await makeNet(3);
  t.teardown(() => net.close());
  const [a, b, peerNode] = net.nodes;
  const peer = await startEchoPeer({ netns: peerNode.netns, host: peerNode.addr, port: 0 });
  t.teardown(() => peer.close());
  const own = net.spareAddr(0);
  await net.addAddr(a, own);
  const w = await startWorkload('tcp', {
    dir: path.join(base, 'tcp'),
    netns: a.netns,
    tcpPeer: { host: peerNode.addr, port: peer.port },
    tcpBind: own,
  });
  t.teardown(() => w.kill());
  const v0 = await w.verify();

  const seen: string[] = [];
  const hooks: criu.CriuHooks = {
    any: (e) => {
      if (e.script !== 'query-ext-files') seen.push(e.script);
    },
  };
  const imagesDir = path.join(base, 'tcp.img');
  const d = await criu.dump({ pid: w.pid, imagesDir, netns: a.netns, tcpEstablished: true, hooks });
  t.same(seen, ['pre-dump', 'post-dump'], 'dump notifications (connections locked one by one: no network-lock script)');
  const release = await net.holdAddr(b, own);
  await net.moveAddr(own, a, b);
  seen.length = 0;
  const r = await criu.restore({ imagesDir, netns: b.netns, tcpEstablished: true, hooks });
  await release();
  t.same(
    seen,
    ['pre-restore', 'setup-namespaces', 'post-setup-namespaces', 'post-restore', 'pre-resume', 'post-resume'],
    'restore notifications',
  );
  t.equal(fs.statSync(`/proc/${r.pid}/ns/net`).ino, fs.statSync(`/run/netns/${b.netns}`).ino, 'restored into b');
  const v1 = await w.verify(r.pid);
  t.ok(v1.generation > v0.generation);
  t.match(v1.detail, /ESTABLISHED/);
  t.comment(`tcp to another namespace: dump ${d.ms.toFixed(0)} ms, restore ${r.ms.toFixed(0)} ms`);
  w.pid = r.pid;
});
