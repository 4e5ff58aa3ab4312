// Property fuzzing (fast-check) of every parser that faces a peer: the channel's frame decoder
// and hello, the migration messages, the rdma_cm private data and sosd's request lines. Each
// either returns or throws a SosError with a code: never a TypeError from inside, never a
// hang. Fixed seed, bounded runs in the suite; `npm run fuzz` runs many more (FUZZ_RUNS).
import t from 'tap';
import crypto from 'node:crypto';
import fc from 'fast-check';
import { SosError } from '../../lib/errors.js';
import { decodeFrames, frameHeader } from '../../lib/net/frame.js';
import { parseHello, encodeHello } from '../../lib/net/handshake.js';
import { incomingHead, parseToAgent, parseToClient, parseToSource } from '../../lib/migration/messages.js';
import { NonceCache, decodeReply, decodeRequest, encodeRequest } from '../../lib/rdma/cm-auth.js';
import { parseRequest } from '../../lib/daemon/protocol.js';

const RUNS = Number(process.env.FUZZ_RUNS ?? 2000);
const SEED = Number(process.env.FUZZ_SEED ?? 20261203);
const tried: Record<string, number> = {};

/** Run `f`; only a SosError with a string code may come out. */
function contained(name: string, f: () => unknown): boolean {
  tried[name] = (tried[name] ?? 0) + 1;
  try {
    f();
    return true;
  } catch (e) {
    if (e instanceof SosError && typeof e.code === 'string') return true;
    throw e;
  }
}

/** Random bytes, and mutations of a valid input (flipped, cut, extended). */
function bytesNear(valid: Buffer[]): fc.Arbitrary<Buffer> {
  const mutated = fc
    .tuple(
      fc.constantFrom(...valid),
      fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 6 }),
      fc.nat(64),
      fc.uint8Array({ maxLength: 64 }),
    )
    .map(([v, flips, cut, extra]) => {
      const b = Buffer.from(v);
      for (const [at, x] of flips) if (b.length) b[at % b.length] = x;
      return Buffer.concat([b.subarray(0, Math.max(0, b.length - (cut % (b.length + 1)))), Buffer.from(extra)]);
    });
  return fc.oneof(
    fc.uint8Array({ maxLength: 512 }).map((a) => Buffer.from(a)),
    mutated,
  );
}

const check = (name: string, arb: fc.Arbitrary<unknown>, f: (x: never) => unknown) =>
  fc.assert(
    fc.property(arb, (x) => contained(name, () => f(x as never))),
    { numRuns: RUNS, seed: SEED },
  );

void t.test('channel frames', async (t) => {
  const valid = [
    Buffer.concat([frameHeader(0x10, 3), Buffer.from([1, 2, 3])]),
    Buffer.concat([frameHeader(0x01, 20), crypto.randomBytes(20)]),
  ];
  check('decodeFrames', bytesNear(valid), (b: Buffer) => decodeFrames(b));
  check('decodeFrames sealed', fc.tuple(bytesNear(valid), fc.nat(3)), ([b, n]: [Buffer, number]) => decodeFrames(b, n));
  t.pass(`decodeFrames: ${tried.decodeFrames + tried['decodeFrames sealed']} inputs, 0 findings`);
});

void t.test('channel hello', async (t) => {
  const valid = [encodeHello('client', crypto.randomBytes(32)), encodeHello('server', crypto.randomBytes(32))];
  check('parseHello', bytesNear(valid), (b: Buffer) => parseHello(b, 'server'));
  t.pass(`parseHello: ${tried.parseHello} inputs, 0 findings`);
});

/** JSON-like messages with the known field names, so the parsers get past their first checks. */
const FIELDS = [
  'op',
  'id',
  'mode',
  'criu',
  'cert',
  'moveAddress',
  'stream',
  'name',
  'size',
  'reason',
  'pageServer',
  'state',
  'pid',
  'restore',
  'bytes',
  'step',
  'code',
  'message',
  'error',
  'to',
  'strategy',
  'phase',
  'pages',
  'result',
  'place',
  'ms',
  'alive',
];
const OPS = [
  'incoming',
  'file',
  'file-end',
  'restore',
  'page-server',
  'prepare',
  'flush',
  'commit',
  'abort',
  'status',
  'migrate',
  'accepted',
  'refused',
  'ready',
  'resumed',
  'failed',
  'pages-received',
  'pages-done',
  'flushed',
  'prepared',
  'error',
  'progress',
  'result',
];
const message = fc
  .tuple(
    fc.constantFrom(...OPS),
    fc.dictionary(
      fc.constantFrom(...FIELDS),
      fc.oneof(fc.anything(), fc.stringMatching(/^[0-9a-f]{32}$/), fc.integer()),
      { maxKeys: 8 },
    ),
  )
  .map(([op, rest]) => ({ ...rest, op }));

void t.test('migration messages', async (t) => {
  for (const [name, parse] of [
    ['parseToAgent', parseToAgent],
    ['parseToSource', parseToSource],
    ['parseToClient', parseToClient],
    ['incomingHead', incomingHead],
  ] as const) {
    check(name, message, (m: never) => parse(m));
    t.pass(`${name}: ${tried[name]} inputs, 0 findings`);
  }
});

void t.test('rdma_cm private data', async (t) => {
  const secret = crypto.randomBytes(32);
  const valid = [encodeRequest(secret, 7, { addr: 4096, rkey: 1, length: 4096 })];
  check('decodeRequest', fc.option(bytesNear(valid), { nil: undefined }), (b: Buffer | undefined) =>
    decodeRequest(secret, 7, b, new NonceCache(60_000)),
  );
  check('decodeReply', fc.option(bytesNear(valid), { nil: undefined }), (b: Buffer | undefined) =>
    decodeReply(secret, Buffer.alloc(8), 7, b),
  );
  t.pass(`rdma_cm: ${tried.decodeRequest + tried.decodeReply} inputs, 0 findings`);
});

void t.test('sosd request lines', async (t) => {
  const ops = new Set(['status', 'ping']);
  const line = fc.oneof(
    fc.string({ maxLength: 300 }),
    fc.json(),
    fc
      .record(
        {
          v: fc.oneof(fc.constant(1), fc.anything()),
          id: fc.anything(),
          op: fc.constantFrom('status', 'ping', 'x'),
          args: fc.anything(),
        },
        { requiredKeys: [] },
      )
      .map((o) => JSON.stringify(o) ?? ''),
  );
  check('parseRequest', line, (l: string) => parseRequest(l, ops));
  t.pass(`parseRequest: ${tried.parseRequest} inputs, 0 findings`);
});
