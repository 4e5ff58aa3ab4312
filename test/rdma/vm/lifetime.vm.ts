// Inside the soft-RoCE VM: object lifetime as the kernel sees it. The
// device's resource counts (`rdma resource show`) come back to where they
// were after objects are garbage-collected without close(), after a worker
// thread holding every kind of object (a CQ being awaited, a listening
// rdma_cm id) ends or is terminated, and after a whole process is killed.
import t from 'tap';
import { execFileSync, spawn } from 'node:child_process';
import readline from 'node:readline';
import { Worker } from 'node:worker_threads';
import * as rdma from '../../../lib/rdma/index.js';
import { DEV, HOST } from './env.js';

const gc = (globalThis as { gc?: () => void }).gc;
const KINDS = ['pd', 'cq', 'qp', 'cm_id', 'mr', 'ctx', 'srq'] as const;
type Counts = Record<(typeof KINDS)[number], number>;

function counts(): Counts {
  const line =
    execFileSync('rdma', ['resource', 'show'], { encoding: 'utf8' })
      .split('\n')
      .find((l) => l.includes(`${DEV}:`)) ?? '';
  const out = {} as Counts;
  for (const k of KINDS) out[k] = Number(new RegExp(`\\b${k} (\\d+)`).exec(line)?.[1] ?? 0);
  return out;
}

/**
 * Poll the device's counts (collecting garbage between polls) until `cond` holds. The deadline
 * only turns a hang into a failure: the caller's assertion then reports what is left.
 */
async function settle(cond: () => boolean): Promise<void> {
  const end = Date.now() + 60_000;
  while (!cond() && Date.now() < end) {
    gc?.();
    await new Promise((r) => setTimeout(r, 50));
  }
}

const same = (a: Counts, b: Counts) => KINDS.every((k) => a[k] === b[k]);

// Everything the binding has, left open; returns nothing so all of it becomes garbage.
function leakEverything(port: number): void {
  const ctx = rdma.Context.open(DEV);
  const pd = ctx.allocPd();
  const ch = ctx.createCompChannel();
  const cq = ctx.createCq(64, ch);
  const srq = pd.createSrq({ maxWr: 8 });
  const qp = pd.createQp(cq, cq, { srq });
  pd.registerMemory(new Uint8Array(8192));
  qp.toInit();
  const cm = new rdma.CmEventChannel();
  cm.createId();
  cm.createId().bind(HOST, port); // a bound id holds the device (counted as a cm_id)
}

t.ok(gc, 'run with --expose-gc');
// librdmacm keeps one device context open per device for the life of the
// process once an id used it: open it now, so that it is in the baseline.
{
  using ch = new rdma.CmEventChannel();
  ch.createId().bind(HOST, 7499);
}

void t.test('objects dropped without close() are released by the garbage collector', async (t) => {
  t.setTimeout(120_000);
  const before = counts();
  for (let i = 0; i < 5; i++) leakEverything(7500 + i);
  const during = counts();
  t.ok(
    during.qp >= before.qp + 5 && during.mr >= before.mr + 5 && during.cm_id >= before.cm_id + 5,
    `allocated: ${JSON.stringify(during)}`,
  );
  await settle(() => same(counts(), before));
  t.same(counts(), before, 'every pd, cq, qp, srq, mr, context and cm id released');
});

const workerCode = `
import { parentPort, workerData } from 'node:worker_threads';
const rdma = await import(workerData.lib);
const ctx = rdma.Context.open('${DEV}');
const pd = ctx.allocPd();
const ch = ctx.createCompChannel();
const cq = ctx.createCq(64, ch);
const qp = pd.createQp(cq, cq);
pd.registerMemory(new Uint8Array(4096));
qp.toInit();
ctx.events.on('event', () => {});
void cq.next();  // awaited on the worker's loop when it goes away
const cm = new rdma.CmEventChannel();
const listener = cm.createId();
listener.on('request', (r) => r.reject());
listener.listen('${HOST}', workerData.port);
// Report only once the device lists the QP: what the parent counts next.
const { execFileSync } = await import('node:child_process');
const listed = () => {
  try {
    return execFileSync('rdma', ['resource', 'show', 'qp', 'link', '${DEV}/1', 'lqpn', String(qp.qpNum)], { encoding: 'utf8' });
  } catch {
    return '';
  }
};
while (!(listed() + ' ').includes('lqpn ' + qp.qpNum + ' ')) await new Promise((r) => setTimeout(r, 20));
parentPort.postMessage('ready');
if (workerData.exit) process.exit(0);
`;

async function runWorker(port: number, exit: boolean): Promise<void> {
  const w = new Worker(workerCode, {
    eval: true,
    workerData: { lib: new URL('../../../lib/rdma/index.js', import.meta.url).href, port, exit },
  });
  const exited = new Promise<number>((r) => w.once('exit', r));
  await new Promise<void>((resolve, reject) => {
    w.once('message', () => resolve());
    w.once('error', reject);
  });
  if (!exit) await w.terminate();
  await exited;
}

void t.test('a worker holding every kind of object ends or is terminated: all released, no crash', async (t) => {
  t.setTimeout(180_000);
  const before = counts();
  let port = 7600;
  for (const exit of [true, false]) {
    await runWorker(port++, exit);
    await settle(() => same(counts(), before));
    t.same(counts(), before, `worker ${exit ? 'exited' : 'terminated'}: released`);
  }
  // The main thread's binding still works.
  using ctx = rdma.Context.open(DEV);
  t.equal(ctx.queryPort(1).state, 'ACTIVE');
});

void t.test('a process killed with objects open: the kernel releases them', async (t) => {
  t.setTimeout(120_000);
  const before = counts();
  const child = spawn(
    process.execPath,
    [
      '--input-type=module',
      '-e',
      workerCode
        .replace(/workerData\.lib/g, JSON.stringify(new URL('../../../lib/rdma/index.js', import.meta.url).href))
        .replace(
          "import { parentPort, workerData } from 'node:worker_threads';",
          'const parentPort = { postMessage: (m) => console.log(m) }; const workerData = { port: 7700, exit: false };',
        ),
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const exited = new Promise((r) => child.once('exit', r));
  // 'ready' comes once the device lists the child's QP.
  await new Promise<void>((resolve, reject) => {
    readline.createInterface({ input: child.stdout }).once('line', () => resolve());
    void exited.then(() => reject(new Error('the child exited before it was ready')));
  });
  t.ok(counts().qp > before.qp, 'the child holds a QP');
  child.kill('SIGKILL');
  await exited;
  await settle(() => same(counts(), before));
  t.same(counts(), before);
});

void t.test('closing out of order and twice, after the parent closed: no crash, no leak', async (t) => {
  const before = counts();
  const ctx = rdma.Context.open(DEV);
  const pd = ctx.allocPd();
  const cq = ctx.createCq(16);
  const qp = pd.createQp(cq, cq);
  const mr = pd.registerMemory(new Uint8Array(4096));
  cq.close(); // a CQ with a QP on it: the QP closes first
  t.ok(qp.closed && !pd.closed && !mr.closed);
  ctx.close();
  for (const o of [mr, qp, cq, pd, ctx]) o.close();
  t.ok([mr, qp, cq, pd, ctx].every((o) => o.closed));
  t.same(counts(), before);
});

void t.test(
  'closing a parent under an awaited next() or a pending rdma_cm step rejects it with ERR_CLOSED',
  async (t) => {
    const ctx = rdma.Context.open(DEV);
    const ch = ctx.createCompChannel();
    const cq = ctx.createCq(8, ch);
    const waiting = cq.next();
    ctx.close();
    await t.rejects(waiting, { code: 'ERR_CLOSED' }, 'context closed');
    const ctx2 = rdma.Context.open(DEV);
    const ch2 = ctx2.createCompChannel();
    const cq2 = ctx2.createCq(8, ch2);
    const waiting2 = cq2.next();
    ch2.close();
    await t.rejects(waiting2, { code: 'ERR_CLOSED' }, 'channel closed');
    t.ok(cq2.closed && !ctx2.closed);
    ctx2.close();

    const cm = new rdma.CmEventChannel();
    const id = cm.createId();
    const resolving = id.resolve(HOST, 7999);
    cm.close();
    await t.rejects(resolving, { code: 'ERR_CLOSED' }, 'rdma_cm channel closed under a resolve');
    t.ok(id.closed);
  },
);
