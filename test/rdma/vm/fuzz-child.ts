// Child of fuzz.vm.ts: calls every native RDMA method (verbs and rdma_cm)
// with arbitrary arguments — other live or closed objects among them — on
// live and closed handles, seeded. It must exit 0: no crash, no hang, only
// Error objects thrown.
import fs from 'node:fs';
import { native } from '../../../lib/native/index.js';
import { DEV, HOST } from './env.js';
import { seeded } from '../../helpers/seeded.js';

const trace = process.env.FUZZ_TRACE === '1';
const show = (v: unknown): string =>
  typeof v === 'object' && v !== null
    ? (v.constructor?.name ?? 'Object')
    : typeof v === 'symbol'
      ? 'symbol'
      : typeof v === 'function'
        ? 'fn'
        : String(v);

type Obj = Record<string, (...a: unknown[]) => unknown>;
const seed = Number(process.argv[2] ?? 1);
const { rnd, pick } = seeded(seed);
const R = (native as unknown as { rdma: Record<string, new (...a: unknown[]) => Obj> }).rdma;
const values: unknown[] = [
  undefined,
  null,
  0,
  1,
  -1,
  7,
  4096,
  2 ** 32,
  2 ** 53,
  1.5,
  NaN,
  0n,
  2n ** 64n,
  -1n,
  'x',
  '',
  'RC',
  'UD',
  'INIT',
  'RTR',
  'RTS',
  'ERR',
  'RESET',
  'SEND',
  'RDMA_WRITE',
  'RDMA_READ',
  'ATOMIC_FETCH_AND_ADD',
  `::ffff:${HOST}`,
  HOST,
  '0.0.0.0',
  '::1',
  'fe80::1',
  {},
  [],
  [{}],
  () => 1,
  Symbol('s'),
  new Uint8Array(64),
  new Uint8Array(8192),
  new ArrayBuffer(4096),
  Buffer.alloc(100),
];
const live: Obj[] = [];
const any = (): unknown => (rnd() < 0.5 && live.length ? pick(live) : pick(values));

function attrs(): Record<string, unknown> {
  const keys = [
    'state',
    'portNum',
    'pkeyIndex',
    'access',
    'qkey',
    'pathMtu',
    'destQpNum',
    'rqPsn',
    'sqPsn',
    'maxDestRdAtomic',
    'maxRdAtomic',
    'minRnrTimer',
    'timeout',
    'retryCnt',
    'rnrRetry',
    'dgid',
    'sgidIndex',
    'type',
    'maxSendWr',
    'srq',
    'maxWr',
    'privateData',
    'qpNum',
  ];
  const o: Record<string, unknown> = {};
  for (let i = 0; i < 4; i++) o[pick(keys)] = any();
  if (rnd() < 0.5) o.state = pick(['INIT', 'RTR', 'RTS', 'ERR', 'RESET']);
  return o;
}

function wr(): Record<string, unknown> {
  const mr = live.find((o) => o instanceof R.RdmaMr);
  return {
    wrId: pick([0, 1, 2n ** 63n]),
    opcode: pick(['SEND', 'RDMA_WRITE', 'RDMA_READ', 'SEND_WITH_IMM', 'ATOMIC_CMP_AND_SWP', 'bad']),
    sge: rnd() < 0.7 && mr ? [{ mr, offset: pick([0, 8, 4095]), length: pick([0, 8, 64, 4096, 10 ** 9]) }] : any(),
    remoteAddr: any(),
    rkey: any(),
    imm: any(),
    ah: any(),
    remoteQpn: any(),
    signaled: rnd() < 0.5,
  };
}

function make(): void {
  const of = (name: string) => live.filter((o) => o instanceof R[name]);
  const one = (name: string) => (of(name).length ? pick(of(name)) : any());
  const attempts: (() => Obj)[] = [
    () => new R.RdmaContext(pick([DEV, DEV, 'nope'])),
    () => new R.RdmaPd(one('RdmaContext')),
    () => new R.RdmaChannel(one('RdmaContext')),
    () => new R.RdmaCq(one('RdmaContext'), pick([1, 16, 0, 2 ** 31]), rnd() < 0.5 ? one('RdmaChannel') : undefined),
    () =>
      new R.RdmaMr(
        one('RdmaPd'),
        pick([new Uint8Array(8192), new ArrayBuffer(4096), {}, 0, 4096]),
        pick([0, 8, 9000]),
        pick([8, 4096, 0]),
        pick([0, 1, 7, 15, 2 ** 31]),
      ),
    () => new R.RdmaAh(one('RdmaPd'), { dgid: pick([`::ffff:${HOST}`, 'x', 5]), sgidIndex: pick([0, 1, 300]) }),
    () => new R.RdmaSrq(one('RdmaPd'), { maxWr: pick([1, 16, 2 ** 20]) }),
    () =>
      new R.RdmaQp(one('RdmaPd'), one('RdmaCq'), one('RdmaCq'), {
        type: pick(['RC', 'UD', 'XX']),
        srq: rnd() < 0.3 ? one('RdmaSrq') : undefined,
        maxSendWr: pick([1, 64, 2 ** 20]),
      }),
    () => new R.RdmaCmChannel(),
    () => new R.RdmaCmId(one('RdmaCmChannel')),
  ];
  for (const f of attempts) {
    if (rnd() < 0.5) continue;
    try {
      if (trace) fs.writeSync(2, `make ${f.toString().slice(0, 60)}\n`);
      live.push(f());
    } catch (e) {
      if (!(e instanceof Error)) throw new Error('a constructor threw a non-Error');
    }
  }
}

let port = 20000 + (seed % 1000) * 10;
for (let i = 0; i < Number(process.argv[3] ?? 2000); i++) {
  if (rnd() < 0.05 || live.length < 6) make();
  if (live.length === 0) continue;
  const o = pick(live);
  const m = pick(Object.getOwnPropertyNames(Object.getPrototypeOf(o)).filter((n) => n !== 'constructor'));
  let args: unknown[] = [any(), any(), any(), any(), any()];
  if (m === 'start' || m === 'startEvents') args = [() => {}];
  else if (m === 'modify' || m === 'connect' || m === 'accept') args = [attrs()];
  else if (m === 'postSend' || m === 'postRecv') args = [Array.from({ length: 1 + Math.floor(rnd() * 3) }, wr)];
  else if (m === 'pollSpin') args = [pick([1, 16]), pick([0, 10, 1000])];
  else if (m === 'listen' || m === 'bind')
    args = m === 'bind' ? [pick([HOST, '0.0.0.0', 'x', 5]), port++] : [pick([1, 16, -1])];
  else if (m === 'resolveAddr') args = [pick([HOST, '10.0.2.99', '::1', 'x']), pick([1, port, 70000]), pick([50, 500])];
  if (trace) fs.writeSync(2, `${i} ${o.constructor.name}.${m}(${args.map(show).join(', ')})\n`);
  try {
    o[m](...args);
  } catch (e) {
    if (!(e instanceof Error)) throw new Error(`${m} threw a non-Error: ${String(e)}`);
  }
  if (rnd() < 0.01) (globalThis as { gc?: () => void }).gc?.();
  if (rnd() < 0.02) await new Promise((r) => setTimeout(r, 5)); // let events and completions arrive
}
for (const o of [...live, ...live].reverse()) {
  try {
    o.close();
  } catch {
    /* e.g. a deregistration that failed */
  }
}
console.log('done');
