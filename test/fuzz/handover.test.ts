// Property fuzzing (fast-check) of checkHandover (lib/memory/far-memory.ts), the check of a far-memory
// hand-over that arrives from a peer with a migration: any JSON either passes or throws a SosError
// with a code; a valid hand-over comes back as it was; a valid one with one field spoiled is refused
// with an argument error. Fixed seed, bounded runs; FUZZ_RUNS for more.
import t from 'tap';
import fc from 'fast-check';
import { SosError } from '../../lib/errors.js';
import { checkHandover, type FarHandover } from '../../lib/memory/far-memory.js';

const RUNS = Number(process.env.FUZZ_RUNS ?? 2000);
const SEED = Number(process.env.FUZZ_SEED ?? 20261207);
const ARG_CODES = ['ERR_INVALID_ARG_VALUE', 'ERR_INVALID_ARG_TYPE', 'ERR_OUT_OF_RANGE'];

/** The bytes of the stored-page map of a region of `size` bytes: one bit a page, in 64-bit words. */
const storedBytes = (size: number) => Math.ceil(size / 4096 / 64) * 8;

const regionId = fc.stringMatching(/^[0-9a-f]{16}$/);
const node = fc.record(
  {
    host: fc.oneof(fc.constant('127.0.0.1'), fc.string({ minLength: 1, maxLength: 40 })),
    port: fc.integer({ min: 1, max: 65535 }),
    name: fc.string({ maxLength: 20 }),
  },
  { requiredKeys: ['host', 'port'] },
);
const valid: fc.Arbitrary<FarHandover> = fc
  .tuple(
    fc.oneof(
      fc.integer({ min: 1, max: 64 << 20 }),
      fc.integer({ min: 1, max: 4096 }).map((p) => p * 4096),
    ),
    fc.string({ maxLength: 64 }),
    fc.array(fc.record({ node, region: regionId }), { minLength: 1, maxLength: 16 }),
    fc.nat(),
  )
  .map(([size, application, replicas, seed]) => {
    const stored = Buffer.alloc(storedBytes(size));
    for (let i = 0; i < stored.length; i++) stored[i] = (seed >>> (i % 24)) & 0xff;
    return { size, application, replicas, stored: stored.toString('base64') };
  });

/** Run checkHandover on `v` as a peer sends it (JSON); only a SosError with a string code may come out. */
function contained(v: unknown, size: number, application: string): boolean {
  const sent = JSON.stringify(v);
  try {
    checkHandover(sent === undefined ? undefined : JSON.parse(sent), size, application);
  } catch (e) {
    if (e instanceof SosError && typeof e.code === 'string') return true;
    throw e;
  }
  return true;
}

// Keys that reach past a parser's first checks, and the ones that trip a careless String() or spread.
const key = fc.oneof(
  fc.string({ maxLength: 20 }),
  fc.constantFrom(
    'size',
    'application',
    'replicas',
    'stored',
    'node',
    'region',
    'host',
    'port',
    'name',
    '__proto__',
    'constructor',
  ),
);
const json = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: 'small' },
    fc.jsonValue({ maxDepth: 2 }),
    fc.array(tie('value'), { maxLength: 4 }),
    fc.dictionary(key, tie('value'), { maxKeys: 5 }),
  ),
})).value;

void t.test('any JSON: accepted, or refused with a SosError', async (t) => {
  let n = 0;
  fc.assert(
    fc.property(
      fc.oneof(
        json,
        valid.map((h) => JSON.parse(JSON.stringify(h)) as unknown),
      ),
      fc.integer({ min: 1, max: 1 << 30 }),
      fc.string({ maxLength: 10 }),
      (v, size, app) => {
        n++;
        return contained(v, size, app);
      },
    ),
    { numRuns: RUNS, seed: SEED },
  );
  // Near-valid ones: each field of a valid hand-over replaced by any JSON.
  fc.assert(
    fc.property(valid, fc.constantFrom('size', 'application', 'replicas', 'stored'), json, (h, k, v) => {
      n++;
      return contained({ ...h, [k]: v }, h.size, h.application);
    }),
    { numRuns: RUNS, seed: SEED },
  );
  fc.assert(
    fc.property(valid, fc.constantFrom('node', 'region', 'host', 'port', 'name'), json, fc.nat(15), (h, k, v, i) => {
      n++;
      const replicas = h.replicas.map((r, j) =>
        j !== i % h.replicas.length
          ? r
          : k === 'node' || k === 'region'
            ? { ...r, [k]: v }
            : { ...r, node: { ...r.node, [k]: v } },
      );
      return contained({ ...h, replicas }, h.size, h.application);
    }),
    { numRuns: RUNS, seed: SEED },
  );
  t.pass(`checkHandover: ${n} inputs, 0 findings`);
});

void t.test('an object whose toString is not a function: refused with a SosError', async (t) => {
  // A JSON object with a "toString" (or "valueOf") key cannot be converted by String(): the refusal's
  // message must not try to.
  for (const size of [{ toString: 1 }, [{ toString: 1 }], { valueOf: {}, toString: [] }])
    t.ok(
      (() => {
        try {
          return contained({ size }, 4096, 'a');
        } catch {
          return false;
        }
      })(),
      `size ${JSON.stringify(size)}`,
    );
});

void t.test('a valid hand-over is accepted as it is, also after a JSON round trip', async (t) => {
  let n = 0;
  fc.assert(
    fc.property(valid, (h) => {
      n++;
      const back = checkHandover(JSON.parse(JSON.stringify(h)), h.size, h.application);
      const again = checkHandover(back, h.size, h.application);
      return (
        JSON.stringify(back) === JSON.stringify(h) &&
        JSON.stringify(again) === JSON.stringify(h) &&
        back.replicas.every((r) => Object.keys(r.node).every((k) => ['host', 'port', 'name'].includes(k)))
      );
    }),
    { numRuns: RUNS, seed: SEED },
  );
  t.pass(`${n} valid hand-overs round-tripped`);
});

type Spoil = (h: FarHandover, pick: number) => { v: unknown; size: number; application: string; code?: string };

/** One field of a valid hand-over spoiled: what to check it against, and the code it must be refused with. */
const spoils: Record<string, Spoil> = {
  'another size': (h, p) => ({ v: h, size: h.size + 1 + (p % 8192), application: h.application }),
  'a smaller size': (h, p) => ({
    v: h,
    size: h.size > 1 ? 1 + (p % (h.size - 1)) : h.size + 1,
    application: h.application,
  }),
  'another application': (h, p) => ({ v: h, size: h.size, application: `${h.application}${'x'.repeat(1 + (p % 3))}` }),
  'not base64': (h, p) => {
    const at = p % (h.stored.length + 1);
    const c = '!*@# \n-_.'[p % 9];
    return {
      v: { ...h, stored: h.stored.slice(0, at) + c + h.stored.slice(at) },
      size: h.size,
      application: h.application,
    };
  },
  'its padding cut': (h) => ({
    v: { ...h, stored: h.stored.endsWith('=') ? h.stored.replace(/=+$/, '') : `${h.stored}=` },
    size: h.size,
    application: h.application,
  }),
  'a stored map of the wrong length': (h, p) => {
    const want = storedBytes(h.size);
    const len = p % 2 ? want + 1 + (p % 64) : Math.max(0, want - 1 - (p % want));
    return {
      v: { ...h, stored: Buffer.alloc(len, p & 0xff).toString('base64') },
      size: h.size,
      application: h.application,
    };
  },
  'a port out of range': (h, p) => {
    const port = [0, -1, 65536, 70000, 1.5, 2 ** 53, Number.MAX_VALUE][p % 7];
    const replicas = h.replicas.map((r, i) => (i === p % h.replicas.length ? { ...r, node: { ...r.node, port } } : r));
    return { v: { ...h, replicas }, size: h.size, application: h.application, code: 'ERR_OUT_OF_RANGE' };
  },
  'a port that is not a number': (h, p) => {
    const port = ['80', null, true, [80], { port: 80 }][p % 5];
    const replicas = h.replicas.map((r, i) => (i === p % h.replicas.length ? { ...r, node: { ...r.node, port } } : r));
    return { v: { ...h, replicas }, size: h.size, application: h.application, code: 'ERR_INVALID_ARG_TYPE' };
  },
  'a region id that is not 16 hex digits': (h, p) => {
    const r0 = h.replicas[p % h.replicas.length].region;
    const region = [
      r0.slice(1),
      `${r0}0`,
      r0.toUpperCase() === r0 ? `${r0.slice(1)}G` : r0.toUpperCase(),
      `${r0.slice(0, 15)}g`,
      ` ${r0.slice(1)}`,
      `0x${r0.slice(2)}`,
      '',
      16,
    ][p % 8];
    const replicas = h.replicas.map((r, i) => (i === p % h.replicas.length ? { ...r, region } : r));
    return { v: { ...h, replicas }, size: h.size, application: h.application };
  },
  'an empty host': (h, p) => {
    const host = ['', 7, null][p % 3];
    const replicas = h.replicas.map((r, i) => (i === p % h.replicas.length ? { ...r, node: { ...r.node, host } } : r));
    return { v: { ...h, replicas }, size: h.size, application: h.application };
  },
  'more than 16 replicas': (h, p) => {
    const replicas = Array.from({ length: 17 + (p % 16) }, (_, i) => h.replicas[i % h.replicas.length]);
    return { v: { ...h, replicas }, size: h.size, application: h.application };
  },
  'no replicas': (h, p) => ({
    v: { ...h, replicas: [[], {}, null, 'r'][p % 4] },
    size: h.size,
    application: h.application,
  }),
};

void t.test('a valid hand-over with one field spoiled is refused with an argument error', async (t) => {
  for (const [what, spoil] of Object.entries(spoils)) {
    let n = 0;
    fc.assert(
      fc.property(valid, fc.nat(), (h, pick) => {
        n++;
        const { v, size, application, code } = spoil(JSON.parse(JSON.stringify(h)) as FarHandover, pick);
        try {
          checkHandover(JSON.parse(JSON.stringify(v)), size, application);
        } catch (e) {
          const c = (e as SosError).code;
          return e instanceof SosError && (code ? c === code : ARG_CODES.includes(c));
        }
        return false;
      }),
      { numRuns: Math.ceil(RUNS / 4), seed: SEED },
    );
    t.pass(`${what}: ${n} refused`);
  }
});
