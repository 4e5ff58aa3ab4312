// Every workload kind survives a checkpoint/restore by the CRIU command line
// with its state intact (and, for 'tcp', a restore into another network
// namespace after its address moved there), and its check catches breakage.
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startWorkload, startEchoPeer, type WorkloadKind } from '../../testkit/workloads.js';
import { makeNet } from '../../testkit/netns.js';
import { cliDump, cliLazyDump, cliLazyPages, cliRestore } from '../../testkit/criu-cli.js';

// Short paths: the 'unix' workload binds a socket in its folder (108 bytes at most).
const base = fs.mkdtempSync(path.join(os.tmpdir(), 'sos-wl-'));
t.teardown(() => fs.rmSync(base, { recursive: true, force: true }));

const local: WorkloadKind[] = ['memory', 'threads', 'files', 'pipes', 'unix', 'timers', 'tree'];

for (const kind of local) {
  void t.test(`${kind}: checked state survives criu dump and restore; a poisoned state fails the check`, async (t) => {
    const w = await startWorkload(kind, { dir: path.join(base, kind) });
    t.teardown(() => w.kill());
    const before = await w.verify();
    t.match(before.detail, new RegExp(`^${kind}: `));

    const images = path.join(base, `${kind}.img`);
    const dumpMs = await cliDump(w.pid, images);
    const { pid, ms: restoreMs } = await cliRestore(images);
    t.comment(`${kind}: dump ${dumpMs.toFixed(0)} ms, restore ${restoreMs.toFixed(0)} ms`);
    t.not(pid, 0);
    const after = await w.verify(pid);
    t.ok(after.generation > before.generation, 'the restored process continues the generation count');
    t.equal(after.detail.split(':')[0], kind);
    w.pid = pid;
    t.ok((await w.gapMs()) > 0, 'the heartbeat saw the pause');

    await w.poison();
    await t.rejects(w.verify(), new RegExp(`failed its check: ${kind === 'threads' ? 'thread' : kind}`));
  });
}

void t.test(
  'memory being rewritten: the dump is a consistent snapshot and writing goes on after restore',
  async (t) => {
    const w = await startWorkload('memory', { dir: path.join(base, 'memory-dirty'), memMiB: 32, memDirtyMiBps: 32 });
    t.teardown(() => w.kill());
    await w.verify();
    const images = path.join(base, 'memory-dirty.img');
    await cliDump(w.pid, images);
    const { pid } = await cliRestore(images);
    const first = await w.verify(pid);
    const rewrites = (s: string): number => Number(/\((\d+) page rewrites/.exec(s)?.[1]);
    const second = await w.verify(pid);
    t.ok(rewrites(second.detail) > rewrites(first.detail), 'the writer thread rewrites pages after restore');
  },
);

void t.test('memory being rewritten: post-copy (lazy pages) from one namespace to another', async (t) => {
  const net = await makeNet(2);
  t.teardown(() => net.close());
  const [a, b] = net.nodes;
  const w = await startWorkload('memory', {
    dir: path.join(base, 'memory-lazy'),
    netns: a.netns,
    memMiB: 64,
    memDirtyMiBps: 16,
  });
  t.teardown(() => w.kill());
  await w.verify();
  await w.resetGap();
  const images = path.join(base, 'memory-lazy.img');
  const server = { address: a.addr, port: 27000 };
  const dump = cliLazyDump(w.pid, images, server, { netns: a.netns });
  t.teardown(() => dump.kill());
  await dump.ready;
  const lazy = cliLazyPages(images, server, { netns: b.netns });
  t.teardown(() => lazy.kill());
  await lazy.ready;
  const { pid, ms } = await cliRestore(images, { netns: b.netns, extra: ['--lazy-pages'] });
  t.equal(fs.statSync(`/proc/${pid}/ns/net`).ino, fs.statSync(`/run/netns/${b.netns}`).ino, 'restored into b');
  await w.verify(pid); // touches every page: all of them come over from the page server
  const [dumpMs, lazyMs] = await Promise.all([dump.done, lazy.done]);
  t.comment(
    `post-copy 64 MiB: restore ${ms.toFixed(0)} ms, dump served ${dumpMs.toFixed(0)} ms, lazy-pages ${lazyMs.toFixed(0)} ms, gap seen ${(await w.gapMs()).toFixed(0)} ms`,
  );
  await w.verify(pid);
});

void t.test('memory: a byte changed from outside (/proc/PID/mem) fails the check', async (t) => {
  const w = await startWorkload('memory', { dir: path.join(base, 'memory-poke'), memMiB: 4 });
  t.teardown(() => w.kill());
  await w.verify();
  const at = Number(w.info.memAddr) + 3 * 4096 + 17;
  const fd = fs.openSync(`/proc/${w.pid}/mem`, 'r+');
  try {
    const b = Buffer.alloc(1);
    fs.readSync(fd, b, 0, 1, at);
    b[0] ^= 0x40;
    fs.writeSync(fd, b, 0, 1, at);
  } finally {
    fs.closeSync(fd);
  }
  await t.rejects(w.verify(), /first wrong byte at offset 12305/);
});

void t.test('helper: bad arguments, a pid that is not the workload, verify after kill, kill twice', async (t) => {
  await t.rejects(startWorkload('nope' as WorkloadKind, { dir: path.join(base, 'nope') }), TypeError);
  await t.rejects(startWorkload('tcp', { dir: path.join(base, 'nope') }), /needs tcpPeer/);
  await t.rejects(startWorkload('memory', { dir: path.join(base, 'nope'), memMiB: 0 }), TypeError);
  const w = await startWorkload('pipes', { dir: path.join(base, 'pipes-misuse') });
  t.teardown(() => w.kill());
  await t.rejects(w.verify(process.pid), /is not a live copy of the pipes workload/);
  await t.rejects(w.verify(-1), TypeError);
  await w.verify();
  await w.kill();
  await w.kill();
  await t.rejects(w.verify(), /is not a live copy/);
});

void t.test(
  'tcp: an ESTABLISHED connection keeps echoing after restore, in place and in another namespace',
  async (t) => {
    const net = await makeNet(3);
    t.teardown(() => net.close());
    const [a, b, peerNode] = net.nodes;
    const peer = await startEchoPeer({ netns: peerNode.netns, host: peerNode.addr, port: 0 });
    t.teardown(() => peer.close());
    const own = net.spareAddr(0); // the process's own address, which moves with it
    await net.addAddr(a, own);
    const w = await startWorkload('tcp', {
      dir: path.join(base, 'tcp'),
      netns: a.netns,
      tcpPeer: { host: peerNode.addr, port: peer.port },
      tcpBind: own,
    });
    t.teardown(() => w.kill());
    t.match(w.info.endpoints, `${own}:`);
    const v0 = await w.verify();
    t.match(v0.detail, /ESTABLISHED/);

    // In place: same namespace.
    const img1 = path.join(base, 'tcp-1.img');
    const d1 = await cliDump(w.pid, img1, { netns: a.netns, tcp: true });
    const r1 = await cliRestore(img1, { netns: a.netns, tcp: true });
    t.comment(`tcp in place: dump ${d1.toFixed(0)} ms, restore ${r1.ms.toFixed(0)} ms`);
    const v1 = await w.verify(r1.pid);
    t.ok(v1.generation > v0.generation);

    // Like a migration: dump in a, move the address to b, restore in b.
    const img2 = path.join(base, 'tcp-2.img');
    const d2 = await cliDump(r1.pid, img2, { netns: a.netns, tcp: true });
    const release = await net.holdAddr(b, own);
    await net.moveAddr(own, a, b);
    const r2 = await cliRestore(img2, { netns: b.netns, tcp: true });
    await release();
    t.comment(`tcp to another namespace: dump ${d2.toFixed(0)} ms, restore ${r2.ms.toFixed(0)} ms`);
    t.equal(fs.statSync(`/proc/${r2.pid}/ns/net`).ino, fs.statSync(`/run/netns/${b.netns}`).ino, 'restored into b');
    const v2 = await w.verify(r2.pid);
    t.match(
      v2.detail,
      new RegExp(
        `${own.replace(/\./g, '\\.')}:\\d+ -> ${peerNode.addr.replace(/\./g, '\\.')}:${peer.port} ESTABLISHED`,
      ),
    );
    w.pid = r2.pid;

    await w.poison();
    await t.rejects(w.verify(), /failed its check: tcp: echo \d+ differs/);
  },
);
