// Calls every native method with arbitrary arguments on live and closed
// handles (seeded). Run as a child process: it must exit 0, not crash or hang.
import { native } from '../../lib/native/index.js';
import { seeded } from './seeded.js';

type Obj = Record<string, (...a: unknown[]) => unknown>;
const { rnd, pick } = seeded(Number(process.argv[2] ?? 1));
const N = native as unknown as Record<string, new (...a: unknown[]) => Obj>;
const values: unknown[] = [
  undefined,
  null,
  0,
  1,
  -1,
  4096,
  8192,
  4095,
  1.5,
  NaN,
  Infinity,
  2 ** 53,
  2 ** 64,
  -4096,
  0n,
  4096n,
  -1n,
  2n ** 64n,
  'x',
  '',
  {},
  [],
  () => 1,
  Symbol('s'),
  new Uint8Array(8),
  new Uint8Array(8192),
  new ArrayBuffer(4096),
  { kind: 'anonymous', size: 4096 },
  { kind: 'memfd', size: 8192 },
  { kind: 'file', fd: 0, size: 4096 },
  { kind: 'zero' },
  'dontneed',
  'rw',
  'none',
  'r',
  'remove',
  'willneed',
];
const live: Obj[] = [];

function make(): void {
  const attempts: (() => Obj)[] = [
    () =>
      new N.NativeRegion(
        pick([
          { kind: 'anonymous', size: 65536 },
          { kind: 'memfd', size: 65536 },
        ]),
      ),
    () => {
      const u = new N.NativeUffd({ via: pick(['syscall', 'dev']) });
      if (rnd() < 0.8) u.api(pick([0n, 256n, 0x14cn]));
      return u;
    },
    () => new N.NativeSource(pick([{ kind: 'zero' }, { kind: 'region', region: pick(live) }])),
    () =>
      new N.NativeEngine(pick(live), { threads: 1 + Math.floor(rnd() * 3), batchPages: 1 + Math.floor(rnd() * 32) }),
    () => new N.NativeSeqPacket(),
  ];
  for (const f of attempts) {
    try {
      live.push(f());
    } catch {
      /* refused: fine */
    }
  }
}

function someAddress(): unknown {
  const r = live.find((x) => typeof x.address === 'function');
  try {
    return r ? (r.address() as number) + pick([0, 4096, 8192, 65536]) : 0;
  } catch {
    return 0;
  }
}

const pending: Promise<unknown>[] = [];
for (let i = 0; i < Number(process.argv[3] ?? 3000); i++) {
  if (rnd() < 0.05 || live.length < 4) make();
  const o = pick(live);
  const m = pick(Object.getOwnPropertyNames(Object.getPrototypeOf(o)).filter((n) => n !== 'constructor'));
  const args = Array.from({ length: 5 }, () => (rnd() < 0.4 ? someAddress() : rnd() < 0.5 ? pick(values) : pick(live)));
  if (m === 'start' || m === 'startEvents') args[0] = () => {};
  try {
    const r = o[m](...args);
    if (r instanceof Promise) pending.push(r.catch(() => {}));
  } catch (e) {
    if (!(e instanceof Error)) throw new Error(`a non-Error was thrown by ${m}`);
  }
  if (rnd() < 0.01) (globalThis as { gc?: () => void }).gc?.();
}
for (const o of [...live, ...live]) {
  try {
    o.close();
  } catch {
    /* e.g. a registered region */
  }
}
// After the closes: a SeqPacket recv() waits for a message until its close.
await Promise.all(pending);
console.log('done');
