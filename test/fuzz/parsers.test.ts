// Property fuzzing (fast-check) of every parser that faces a peer: the channel's frame decoder
// and hello, the migration messages, the rdma_cm private data and sosd's request lines. Each
// either returns or throws a SosError with a code: never a TypeError from inside, never a
// hang. Fixed seed, bounded runs in the suite; `npm run fuzz` runs many more (FUZZ_RUNS).
import t from 'tap';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { SosError, SystemError } from '../../lib/errors.js';
import type { AuthChannel } from '../../lib/net/channel.js';
import { ImageReceiver } from '../../lib/migration/images.js';
import { decodeFrames, frameHeader } from '../../lib/net/frame.js';
import { parseHello, encodeHello } from '../../lib/net/handshake.js';
import {
  incomingHead,
  parseToAgent,
  parseToClient,
  parseToSource,
  type FileStart,
} from '../../lib/migration/messages.js';
import { NonceCache, decodeReply, decodeRequest, encodeRequest } from '../../lib/rdma/cm-auth.js';
import { parseRequest } from '../../lib/daemon/protocol.js';
import { fuzz as sosdPath } from './targets/sosd.js';
import { LineSplitter, MAX_LINE, parseDiscard, parseHello as parseShimHello } from '../../lib/memory/run-protocol.js';
import { MESSAGE_FIELDS, MESSAGE_OPS } from './vocabulary.js';

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
  check('decodeFrames in TLS', fc.tuple(bytesNear(valid), fc.nat(1)), ([b, n]: [Buffer, number]) =>
    decodeFrames(b, n, 0),
  );
  t.pass(
    `decodeFrames: ${tried.decodeFrames + tried['decodeFrames sealed'] + tried['decodeFrames in TLS']} inputs, 0 findings`,
  );
});

void t.test('channel hello', async (t) => {
  const valid = [encodeHello('client', crypto.randomBytes(32)), encodeHello('server', crypto.randomBytes(32))];
  check('parseHello', bytesNear(valid), (b: Buffer) => parseHello(b, 'server'));
  t.pass(`parseHello: ${tried.parseHello} inputs, 0 findings`);
});

/** JSON-like messages with the known field names, so the parsers get past their first checks. */
const message = fc
  .tuple(
    fc.constantFrom(...MESSAGE_OPS),
    fc.dictionary(
      fc.constantFrom(...MESSAGE_FIELDS),
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

void t.test("sosd's whole request path with hostile args: field names, nesting, prototypes", async (t) => {
  // The guided target's checks (test/fuzz/targets/sosd.ts): one JSON line back with the request's id, a
  // documented code and a bounded message, and no op reached by a TLS peer whose role may not call it.
  const key = fc.oneof(
    fc.string({ maxLength: 200 }),
    fc.constantFrom(
      '__proto__',
      'constructor',
      'toString',
      '~',
      '/',
      '~0',
      '~1',
      'a b',
      '~/x',
      'pid',
      'opts',
      'list',
      'k',
    ),
  );
  const value = fc.oneof(
    fc.jsonValue({ maxDepth: 3 }),
    fc.dictionary(key, fc.jsonValue({ maxDepth: 2 }), { maxKeys: 4 }),
  );
  const args = fc.dictionary(key, fc.oneof(value, fc.dictionary(key, value, { maxKeys: 4 })), { maxKeys: 6 });
  let n = 0;
  await fc.assert(
    fc.asyncProperty(
      fc.constantFrom('deep', 'ping', 'admin', 'status'),
      fc.oneof(fc.integer(), fc.constant(1)),
      args,
      async (op, id, a) => {
        n++;
        await sosdPath(Buffer.from(JSON.stringify({ v: 1, id, op, args: a })));
      },
    ),
    { numRuns: Math.ceil(RUNS / 2), seed: SEED },
  );
  t.pass(`sosd request path: ${n} inputs, 0 findings`);
});

void t.test("sosctl run's monitor lines (from the shim in the program)", async (t) => {
  const ARENA = 2 ** 30;
  const num = fc.oneof(
    fc.nat().map(String),
    fc.constantFrom('0', '4096', String(ARENA), String(2 ** 47), '9007199254740993', '-1', '01', '1e3', ''),
  );
  const line = fc.oneof(
    fc.string({ maxLength: 300 }),
    fc
      .tuple(fc.constantFrom('hello', 'discard', 'x'), fc.array(num, { maxLength: 8 }))
      .map(([w, f]) => [w, ...f].join(' ')),
  );
  check('shim hello', line, (l: string) => {
    const h = parseShimHello(l, ARENA);
    if (h.bytes !== ARENA || h.address % 4096 || !Number.isSafeInteger(h.address + h.bytes) || h.pid < 1)
      throw new Error(`accepted ${l}`);
  });
  check('shim discard', line, (l: string) => {
    const d = parseDiscard(l, ARENA);
    if (d.offset % 4096 || d.bytes % 4096 || d.offset + d.bytes > ARENA) throw new Error(`accepted ${l}`);
  });
  // Lines come out the same however the stream is cut, and no more than MAX_LINE is held.
  check(
    'shim lines',
    fc.tuple(fc.array(line, { maxLength: 6 }), fc.array(fc.nat(400), { maxLength: 6 })),
    ([ls, cuts]: [string[], number[]]) => {
      const all = ls.map((l) => `${l}\n`).join('');
      const whole = new LineSplitter();
      let want: string[] | Error;
      try {
        want = whole.push(all);
      } catch (e) {
        want = e as Error;
      }
      const pieces = new LineSplitter();
      const got: string[] = [];
      let at = 0;
      try {
        for (const c of [...cuts, all.length]) {
          got.push(...pieces.push(all.slice(at, at + c)));
          at += c;
        }
        got.push(...pieces.push(all.slice(at)));
      } catch (e) {
        if (!(want instanceof Error)) throw e;
        return;
      }
      if (want instanceof Error) {
        if (ls.every((l) => l.length <= MAX_LINE)) throw new Error('refused short lines');
        return;
      }
      if (JSON.stringify(got) !== JSON.stringify(want)) throw new Error('lines differ with the cuts');
    },
  );
  t.pass(`monitor lines: ${tried['shim hello'] + tried['shim discard'] + tried['shim lines']} inputs, 0 findings`);
});

// Found by the coverage-guided targets (test/fuzz/targets/): each threw a TypeError, or reported a
// bare Node error, where a SosError with a code belongs.
void t.test('regressions', async (t) => {
  const version = (f: () => unknown) => t.throws(f, { code: 'ERR_VERSION' });
  version(() => parseHello(Buffer.from('{"v":{"toString":1}}'), 'server'));
  // sosd: a version that is not a number is a malformed frame.
  t.throws(() => parseRequest('{"v":{"toString":1},"id":1,"op":"status"}', new Set(['status'])), {
    code: 'ERR_BAD_FRAME',
  });

  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'sos-fuzz-regress-'));
  t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));
  const dir = path.join(root, 'images');
  fs.mkdirSync(dir);
  const outside = path.join(root, 'outside');
  fs.writeFileSync(outside, 'untouched');
  fs.symlinkSync(outside, path.join(dir, 'core-1.img'));
  const receiver = () => {
    const reported: Error[] = [];
    const ch = { socket: { pause() {}, resume() {} } } as unknown as AuthChannel;
    return { rec: new ImageReceiver(ch, dir, 1 << 20, (e) => reported.push(e)), reported };
  };
  const file = (name: string, size = 0, stream = 1): FileStart => ({ op: 'file', id: 'x', stream, name, size });

  // Names the parser refuses are refused by the receiver too (nothing is opened outside its folder).
  for (const name of ['', '.', '..', '../escaped', '/tmp/escaped', 'a/b', 'x\0y'])
    t.throws(() => receiver().rec.open(file(name)), { code: 'ERR_BAD_MESSAGE' }, JSON.stringify(name));
  t.throws(() => receiver().rec.open(file('a', -1)), { code: 'ERR_BAD_MESSAGE' });

  // A name sent twice is the peer's error, said at once (it was a bare EEXIST from the write).
  const twice = receiver().rec;
  twice.open(file('pages-1.img'));
  twice.end({ op: 'file-end', id: 'x', stream: 1, size: 0 });
  t.throws(() => twice.open(file('pages-1.img', 0, 2)), { code: 'ERR_BAD_MESSAGE' });
  await twice.flushed();

  // A name already taken in the folder (here by a symlink out of it): a SystemError, nothing written through.
  const { rec, reported } = receiver();
  rec.open(file('core-1.img', 2));
  rec.data(Buffer.from('xx'));
  rec.end({ op: 'file-end', id: 'x', stream: 1, size: 2 });
  await t.rejects(rec.flushed(), { code: 'EEXIST' });
  t.ok(reported[0] instanceof SystemError, 'reported as a SystemError');
  t.equal(fs.readFileSync(outside, 'utf8'), 'untouched');
  t.same(fs.readdirSync(root).sort(), ['images', 'outside']);
});
