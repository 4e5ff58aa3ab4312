// Inside the soft-RoCE VM: the memory node serving one-sided RDMA. A client authenticates over TCP, attaches
// its region and gets a queue pair of its own; pages then move with RDMA READ and WRITE, no node CPU per
// page. The node's exports follow its connections and regions, its limits hold, and a node process killed
// while a fault engine pages from a replica set of two leaves every byte right.
import t from 'tap';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { touch } from '../../../lib/uffd/index.js';
import { MemoryNode } from '../../../lib/memory/node.js';
import { RemoteStore } from '../../../lib/memory/remote.js';
import { ReplicaSet } from '../../../lib/memory/replica-set.js';
import { LineProcess } from '../../../testkit/line-process.js';
import { servedRegion } from '../../helpers/served-region.js';
import { DEV, GID_INDEX } from './env.js';

const MiB = 1 << 20;
const rdma = { device: DEV, gidIndex: GID_INDEX };
const NODE_MAIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../lib/memory/node-main.js');

void t.test('pages written over TCP are read one-sided, and written one-sided are read over TCP', async (t) => {
  const secret = crypto.randomBytes(32);
  const node = new MemoryNode({ capacity: 64 * MiB, applications: { app: secret }, rdma });
  t.teardown(() => node.close());
  const { host, port } = await node.listen();
  const size = 8 * MiB;
  const store = await RemoteStore.connect({ host, port, application: 'app', secret, size });
  t.teardown(() => store.close());
  const data = crypto.randomBytes(size);
  await store.write(0, data);
  const source = await store.rdmaPageSource(rdma);
  t.equal(node.stats().rdmaExports, 1, 'one export, for this connection');
  const before = node.stats().total.bytesOut;

  const { dst, engine } = servedRegion(t, size, source);
  await touch(dst);
  t.equal(Buffer.compare(Buffer.from(dst.buffer), data), 0, 'every page faulted in over RDMA is right');
  t.equal(engine.stop().errors, 0);
  t.equal(node.stats().total.bytesOut, before, 'no page went over TCP: the node CPU served none');

  const set = new ReplicaSet(size, [{ source, label: 'rdma' }]);
  t.teardown(() => set.close());
  const fresh = crypto.randomBytes(MiB);
  await set.write(3 * MiB, fresh);
  t.equal(Buffer.compare(await store.read(3 * MiB, MiB), fresh), 0, 'one-sided writes landed in the region');

  await store.close();
  await t.resolveMatch(
    waitFor(() => node.stats().rdmaExports === 0),
    true,
    'export gone with its connection',
  );
});

void t.test('exports are per connection and bounded; another region is not reachable', async (t) => {
  const secrets = { a: crypto.randomBytes(32), b: crypto.randomBytes(32) };
  const node = new MemoryNode({ capacity: 64 * MiB, applications: secrets, rdma: { ...rdma, perConnection: 1 } });
  t.teardown(() => node.close());
  const { host, port } = await node.listen();
  const a = await RemoteStore.connect({ host, port, application: 'a', secret: secrets.a, size: MiB });
  const b = await RemoteStore.connect({ host, port, application: 'b', secret: secrets.b, size: MiB });
  t.teardown(async () => {
    await a.close();
    await b.close();
  });
  await a.write(0, Buffer.alloc(MiB, 0xaa));
  await b.write(0, Buffer.alloc(MiB, 0xbb));
  const sa = await a.rdmaPageSource(rdma);
  await t.rejects(a.rdmaPageSource(rdma), { code: 'ERR_LIMIT' }, 'a second attach on one connection: ERR_LIMIT');
  const sb = await b.rdmaPageSource(rdma);
  t.equal(node.stats().rdmaExports, 2);
  const ra = servedRegion(t, MiB, sa);
  const rb = servedRegion(t, MiB, sb);
  await touch(ra.dst);
  await touch(rb.dst);
  t.ok(
    Buffer.from(ra.dst.buffer).every((x) => x === 0xaa),
    "a reads a's pages",
  );
  t.ok(
    Buffer.from(rb.dst.buffer).every((x) => x === 0xbb),
    "b reads b's pages",
  );
  t.ok(
    node.stats().log.some((l) => /RDMA attach refused: too many/.test(l)),
    'the refusal is logged',
  );
});

void t.test('a memory node process killed while paging over RDMA: the survivor serves, every byte right', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sos-memrdma-'));
  const secret = crypto.randomBytes(32);
  const secretFile = path.join(dir, 'secret');
  fs.writeFileSync(secretFile, secret, { mode: 0o600 });
  const procs: LineProcess[] = [];
  t.teardown(() => {
    for (const p of procs) p.kill();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const size = 16 * MiB;
  const stores: RemoteStore[] = [];
  t.teardown(() => Promise.allSettled(stores.map((s) => s.close())));
  const sources = [];
  for (const i of [0, 1]) {
    const args = [NODE_MAIN, '--capacity', String(64 * MiB), '--app', `far=${secretFile}`, '--rdma'];
    const p = new LineProcess(process.execPath, [...args, '--rdma-device', DEV, '--rdma-gid-index', `${GID_INDEX}`], {
      name: `memory node ${i}`,
    });
    procs.push(p);
    const { listening } = JSON.parse(await p.line()) as { listening: { host: string; port: number } };
    const store = await RemoteStore.connect({ ...listening, application: 'far', secret, size });
    stores.push(store);
    sources.push({ source: await store.rdmaPageSource(rdma), label: `node ${i}` });
  }
  const set = new ReplicaSet(size, sources);
  t.teardown(() => set.close());
  const data = crypto.randomBytes(size);
  await set.write(0, data);
  t.equal(Buffer.compare(await stores[0].read(0, size), data), 0, 'node 0 holds every page');
  t.equal(Buffer.compare(await stores[1].read(0, size), data), 0, 'node 1 holds every page');

  const { dst, engine } = servedRegion(t, size, set.source);
  await touch(dst, { length: size / 4 });
  const lost = once(set, 'lost');
  procs[0].kill(); // SIGKILL: its queue pairs and registrations vanish with it
  await touch(dst, { offset: size / 4, length: (3 * size) / 4 });
  const [ev] = (await lost) as [{ id: number; code: string }];
  t.ok(ev.code, `loss reported (${ev.code})`);
  t.equal(Buffer.compare(Buffer.from(dst.buffer), data), 0, 'every byte right after the loss');
  t.equal(engine.stop().errors, 0, 'the engine saw no error: the set failed over');
  t.same(
    set.replicas().map((r) => r.state),
    ['lost', 'live'],
  );
});

/** Resolves true once `cond` holds (polled on the event loop's timers, never a fixed sleep for a result). */
async function waitFor(cond: () => boolean): Promise<boolean> {
  while (!cond()) await new Promise((r) => setTimeout(r, 20));
  return true;
}
