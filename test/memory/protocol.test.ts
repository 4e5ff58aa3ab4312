// The memory node against a client that breaks the protocol (test/memory/wire.ts speaks it from TypeScript):
// malformed, truncated, oversize, tampered and out-of-bounds frames, a wrong version or magic, another
// application's region, a client gone in the middle of a WRITE. After each, one node is still serving a
// good client whose pages are intact, and its counters moved by exactly what the abuse should cost.
import t, { type Test } from 'tap';
import crypto from 'node:crypto';
import { MemoryNode, type MemoryNodeStats } from '../../lib/memory/index.js';
import { until, within } from '../../testkit/wait.js';
import { MAGIC, MAX_BATCH, MAX_BODY, PAGE, S, T, WireClient, clientHello, header } from './wire.js';

const MiB = 1 << 20;
const PAGES = 8;
const secrets = { alpha: crypto.randomBytes(32), beta: crypto.randomBytes(32) };
const node = new MemoryNode({ capacity: 16 * MiB, applications: secrets });
t.teardown(() => node.close());
const { host, port } = await node.listen();

// The good client: one region of alpha's, written once, read back after every abuse.
const good = await WireClient.connect(host, port, 'alpha', secrets.alpha);
t.teardown(() => good.destroy());
const { region } = await good.alloc(PAGES);
const pages = crypto.randomBytes(PAGES * PAGE);
t.equal((await good.write(region, 0, pages)).status, S.OK);

const alpha = () => WireClient.connect(host, port, 'alpha', secrets.alpha);

/** What the node's counters moved by between two snapshots (only the ones an abuse may touch). */
function moved(a: MemoryNodeStats, b: MemoryNodeStats) {
  const app = (k: 'alpha' | 'beta') => ({
    requests: b.applications[k].requests - a.applications[k].requests,
    errors: b.applications[k].errors - a.applications[k].errors,
    bytesIn: b.applications[k].bytesIn - a.applications[k].bytesIn,
  });
  return {
    badFrames: b.badFrames - a.badFrames,
    totalErrors: b.total.errors - a.total.errors,
    alpha: app('alpha'),
    beta: app('beta'),
  };
}

const none = { requests: 0, errors: 0, bytesIn: 0 };
let badSoFar = 0;

interface Expect {
  badFrames?: number;
  alpha?: Partial<typeof none>;
  beta?: Partial<typeof none>;
  /** The node's last log line says this. */
  log?: RegExp;
}

/**
 * Run `abuse` (it ends with its connection closed, or leaves one it made open: closed here), wait until the
 * node holds only the good client's connection, then check the counters and that the node still serves.
 */
async function check(t: Test, abuse: () => Promise<WireClient | void>, e: Expect) {
  const before = node.stats();
  // Cases are ordered so that no two in a row log the same thing: the line checked below is this one's.
  if (e.log) t.notMatch(before.log.at(-1) ?? '', e.log, 'the last line logged so far is not this case');
  const left = await abuse();
  left?.destroy();
  await until(() => node.stats().connections === 1, 10_000, 'only the good client is connected');
  if (e.log) await until(() => e.log!.test(node.stats().log.at(-1) ?? ''), 10_000, `the node logs ${e.log}`);
  badSoFar += e.badFrames ?? 0;
  const after = node.stats();
  const errs = (e.alpha?.errors ?? 0) + (e.beta?.errors ?? 0);
  t.same(
    moved(before, after),
    {
      badFrames: e.badFrames ?? 0,
      totalErrors: errs,
      alpha: { ...none, ...e.alpha },
      beta: { ...none, ...e.beta },
    },
    'the counters moved by exactly this',
  );
  t.equal(after.unauthenticated, 0, 'no connection left in the handshake');
  // Still serving: the good client's pages, over its old connection and over a new one.
  const r = await good.read(region, 0, PAGES);
  t.equal(r.status, S.OK);
  t.ok(r.payload.equals(pages), "the good client's pages are intact");
  const fresh = await alpha();
  const f = await fresh.read(region, 3, 1);
  t.ok(f.status === S.OK && f.payload.equals(pages.subarray(3 * PAGE, 4 * PAGE)), 'a new connection is served');
  fresh.destroy();
  await until(() => node.stats().connections === 1, 10_000, 'the new connection to go');
}

/** Send `bytes` on `c` and wait for the node to close the connection. */
async function closes(c: WireClient, bytes: Buffer): Promise<void> {
  await c.send(bytes);
  await within(c.closed, 10_000, 'the node to close the connection');
}

// After the handshake, a bad frame costs a bad frame and an error of its application; `requests` counts
// frames that were authentic and got as far as the request parser.
const badAuthFrame = (requests: number, log: RegExp): Expect => ({
  badFrames: 1,
  alpha: { errors: 1, requests },
  log,
});

void t.test('a handshake frame of the wrong type first', (t) =>
  check(
    t,
    async () => {
      const c = await WireClient.open(host, port);
      await closes(c, Buffer.concat([header(32, T.PROOF), Buffer.alloc(32)]));
    },
    { badFrames: 1, log: /unexpected frame type 18 in the handshake/ },
  ),
);

void t.test('a client hello longer than any, before its body arrives', (t) =>
  check(
    t,
    async () => {
      const c = await WireClient.open(host, port);
      await closes(c, header(1 << 20, T.CLIENT_HELLO));
    },
    { badFrames: 1, log: /handshake frame length 1048576 out of bounds/ },
  ),
);

void t.test('bad magic in the client hello', (t) =>
  check(
    t,
    async () => {
      const c = await WireClient.open(host, port);
      const h = clientHello('alpha', crypto.randomBytes(32));
      h.writeUInt32LE(MAGIC ^ 1, 0);
      await closes(c, Buffer.concat([header(h.length, T.CLIENT_HELLO), h]));
    },
    { badFrames: 1, log: /bad magic/ },
  ),
);

void t.test('a client hello whose name length disagrees with its length', (t) =>
  check(
    t,
    async () => {
      const c = await WireClient.open(host, port);
      const h = clientHello('alpha', crypto.randomBytes(32));
      h.writeUInt8(6, 6);
      await closes(c, Buffer.concat([header(h.length, T.CLIENT_HELLO), h]));
    },
    { badFrames: 1, log: /malformed client hello/ },
  ),
);

void t.test('a version the node does not speak: REFUSE with S_VERSION, not counted as a bad frame', (t) =>
  check(
    t,
    async () => {
      const e = await WireClient.connect(host, port, 'alpha', secrets.alpha, 2).catch((x: unknown) => x);
      t.equal((e as { status?: number }).status, S.VERSION);
    },
    { log: /refused, version 2/ },
  ),
);

void t.test('a truncated handshake frame, then the client closes', (t) =>
  check(
    t,
    async () => {
      const c = await WireClient.open(host, port);
      const h = clientHello('alpha', crypto.randomBytes(32));
      await c.send(Buffer.concat([header(h.length, T.CLIENT_HELLO), h]).subarray(0, 20));
      c.sock.end();
      await within(c.closed, 10_000, 'the connection to close');
    },
    {},
  ),
);

void t.test('nonzero flags on a sealed frame', (t) =>
  check(
    t,
    async () => {
      const c = await alpha();
      await closes(c, c.seal(T.READ, c.body(WireClient.range(region, 0, 1)).body, { flags: 1 }));
    },
    badAuthFrame(0, /frame flags must be 0/),
  ),
);

for (const type of [0, T.ATTACH_RDMA + 1, T.CLIENT_HELLO, T.READ | T.REPLY, 0xffff])
  void t.test(`unknown request type ${type}`, (t) =>
    check(
      t,
      async () => {
        const c = await alpha();
        await closes(c, c.seal(type, c.body(WireClient.range(region, 0, 1)).body));
      },
      badAuthFrame(0, new RegExp(`unknown request type ${type}$`)),
    ),
  );

void t.test('a sealed header shorter than an id', (t) =>
  check(
    t,
    async () => {
      const c = await alpha();
      await closes(c, c.seal(T.STATS, Buffer.alloc(2)));
    },
    badAuthFrame(0, /request length 2 out of bounds/),
  ),
);

void t.test('a sealed length over the largest WRITE, before its body arrives', (t) =>
  check(
    t,
    async () => {
      const c = await alpha();
      await closes(c, header(MAX_BODY + 1, T.WRITE));
    },
    badAuthFrame(0, new RegExp(`request length ${MAX_BODY + 1} out of bounds`)),
  ),
);

for (const [name, type, count] of [
  ['READ of 0 pages', T.READ, 0],
  [`READ of ${MAX_BATCH + 1} pages`, T.READ, MAX_BATCH + 1],
  ['WRITE of 0 pages', T.WRITE, 0],
  [`WRITE of ${MAX_BATCH + 1} pages`, T.WRITE, MAX_BATCH + 1],
  ['READ of 2^32-1 pages', T.READ, 0xffffffff],
] as const)
  void t.test(name, (t) =>
    check(
      t,
      async () => {
        const c = await alpha();
        await closes(c, c.seal(type, c.body(WireClient.range(region, 0, count)).body));
      },
      badAuthFrame(1, new RegExp(`page count ${count} out of bounds`)),
    ),
  );

void t.test('a WRITE whose ciphertext was tampered with: nothing written', (t) =>
  check(
    t,
    async () => {
      const c = await alpha();
      const f = c.seal(T.WRITE, c.body(Buffer.concat([WireClient.range(region, 0, 1), Buffer.alloc(PAGE, 0xee)])).body);
      f[8 + 30] ^= 0x80;
      await closes(c, f);
    },
    badAuthFrame(0, /failed authentication/),
  ),
);

for (const [name, type, fields] of [
  [
    'WRITE whose pages are one byte short',
    T.WRITE,
    Buffer.concat([WireClient.range(0n, 0, 1), Buffer.alloc(PAGE - 1)]),
  ],
  ['READ with a byte too many', T.READ, Buffer.concat([WireClient.range(0n, 0, 1), Buffer.alloc(1)])],
  ['ALLOC with no page count', T.ALLOC, Buffer.alloc(0)],
  ['FREE with a short region id', T.FREE, Buffer.alloc(7)],
  ['STATS with a field', T.STATS, Buffer.alloc(4)],
  ['ATTACH_RDMA without its endpoint', T.ATTACH_RDMA, Buffer.alloc(8)],
] as const)
  void t.test(`${name}: the wrong length for its type`, (t) =>
    check(
      t,
      async () => {
        const c = await alpha();
        const { body } = c.body(fields);
        await closes(c, c.seal(type, body));
      },
      badAuthFrame(1, new RegExp(`request type ${type} with length ${4 + fields.length}$`)),
    ),
  );

void t.test('a replayed frame', (t) =>
  check(
    t,
    async () => {
      const c = await alpha();
      const f = c.seal(T.STATS, c.body(Buffer.alloc(0)).body);
      await c.send(f);
      t.equal((await c.readReply()).status, S.OK, 'the first time it is served');
      await closes(c, f);
    },
    badAuthFrame(1, /failed authentication/),
  ),
);

void t.test('a truncated header after the handshake, then the client closes', (t) =>
  check(
    t,
    async () => {
      const c = await alpha();
      await c.send(header(28, T.READ).subarray(0, 5));
      c.sock.end();
      await within(c.closed, 10_000, 'the connection to close');
    },
    { log: /ended inside a frame/ },
  ),
);

void t.test('a WRITE over the good pages whose GCM tag was tampered with: nothing written', (t) =>
  check(
    t,
    async () => {
      const c = await alpha();
      const f = c.seal(T.WRITE, c.body(Buffer.concat([WireClient.range(region, 0, 1), Buffer.alloc(PAGE, 0xee)])).body);
      f[f.length - 1] ^= 0x01;
      await closes(c, f);
    },
    badAuthFrame(0, /failed authentication/),
  ),
);

void t.test("another application's region: unknown to it, whatever it asks", (t) =>
  check(
    t,
    async () => {
      const b = await WireClient.connect(host, port, 'beta', secrets.beta);
      t.equal((await b.read(region, 0, 1)).status, S.NO_REGION, 'READ');
      t.equal((await b.write(region, 0, Buffer.alloc(PAGE, 0xbb))).status, S.NO_REGION, 'WRITE');
      t.equal((await b.regionOp(T.RENEW, region)).status, S.NO_REGION, 'RENEW');
      t.equal((await b.regionOp(T.FREE, region)).status, S.NO_REGION, 'FREE');
      // The connection stays: these are answers, not bad frames.
      t.equal((await b.request(T.STATS, Buffer.alloc(0))).status, S.OK, 'still served');
      return b;
    },
    { beta: { requests: 5, errors: 4 } },
  ),
);

void t.test('out of the region: S_RANGE, also where first + count wraps around', (t) =>
  check(
    t,
    async () => {
      const c = await alpha();
      t.equal((await c.read(region, PAGES, 1)).status, S.RANGE);
      t.equal((await c.read(region, PAGES - 1, 2)).status, S.RANGE);
      const wrap = WireClient.range(region, 0, MAX_BATCH);
      wrap.writeBigUInt64LE(2n ** 64n - 1n, 8);
      t.equal((await c.request(T.READ, wrap)).status, S.RANGE);
      return c;
    },
    { alpha: { requests: 3, errors: 3 } },
  ),
);

void t.test('a client that vanishes in the middle of a WRITE: nothing written', (t) =>
  check(
    t,
    async () => {
      const c = await alpha();
      const f = c.seal(
        T.WRITE,
        c.body(Buffer.concat([WireClient.range(region, 0, 4), Buffer.alloc(4 * PAGE, 0xff)])).body,
      );
      await c.send(f.subarray(0, f.length >> 1));
      c.destroy();
    },
    { log: /ended inside a frame/ },
  ),
);

void t.test('the good client survived every case on one connection', async (t) => {
  const s = node.stats();
  t.equal(s.connections, 1);
  t.equal(s.applications.alpha.regions, 1);
  t.equal(s.applications.alpha.heldBytes, PAGES * PAGE, 'no abuse wrote a page');
  t.equal(s.badFrames, badSoFar, 'every bad frame was counted once');
});
