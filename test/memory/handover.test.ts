// The hand-over of a program run on far memory (ProgramRun.detach, adoptProcess): the shim parks the
// program's threads and drops its userfaultfd, the pages stay on the memory nodes, and another monitor
// adopts the process with the handed-over regions. A python program (run-programs/handover.py: 32 MiB
// of distinct pages, 4 MiB local) keeps its checksum across two rounds, across refused adoptions, and
// across a CRIU dump and restore; every remote page is freed once it exits.
import t, { type Test } from 'tap';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import type { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { startMemoryNodes, reservedBytes, type MemoryNodeProc } from '../../testkit/memory-nodes.js';
import { until, within } from '../../testkit/wait.js';
import { adoptProcess, run, type FarHandover, type ProgramRun } from '../../lib/memory/index.js';
import { criu } from '../../lib/index.js';

const MiB = 1 << 20;
const here = path.dirname(fileURLToPath(import.meta.url));
const PROGRAM = path.resolve(here, '../../../test/memory/run-programs/handover.py');
const APP = 'handover-test';
const FAR = 256 * MiB;

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sos-handover-test-'));
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
const secretFile = path.join(dir, 'secret');
const secret = crypto.randomBytes(32);
fs.writeFileSync(secretFile, secret, { mode: 0o600 });

type MemoryNode = MemoryNodeProc;
const startNodes = (t: Test, n: number, o: { capacity?: number; leaseMs?: number } = {}) =>
  startMemoryNodes(t, n, { app: APP, secretFile, ...o });
const reserved = reservedBytes;

const reservedAll = (nodes: MemoryNode[]) => Promise.all(nodes.map((m) => reserved(m)));

const options = (nodes: MemoryNode[]) => ({
  localBytes: 4 * MiB,
  nodes: nodes.map((m) => ({ host: m.host, port: m.port })),
  replicas: 2,
  application: APP,
  secret,
});

/** The lines a stream prints, one at a time. */
class Lines {
  private readonly queue: string[] = [];
  private waiter: ((l: string) => void) | null = null;
  constructor(input: Readable) {
    readline.createInterface({ input }).on('line', (l) => {
      if (this.waiter) {
        const w = this.waiter;
        this.waiter = null;
        w(l);
      } else this.queue.push(l);
    });
  }
  /** Lines printed and not read yet. */
  get pending(): number {
    return this.queue.length;
  }
  next(what = 'a line from the program'): Promise<string> {
    const l = this.queue.shift();
    if (l !== undefined) return Promise.resolve(l);
    return within(new Promise<string>((resolve) => (this.waiter = resolve)), 60_000, what);
  }
}

/** handover.py with its commands on stdin. */
function startProgram(
  t: Test,
  nodes: MemoryNode[],
): { r: ProgramRun; out: Lines; ask: (cmd: string) => Promise<string> } {
  const r = run(['python3', PROGRAM], { ...options(nodes), farBytes: FAR, stdio: ['pipe', 'pipe', 'inherit'] });
  t.teardown(() => void r.kill('SIGKILL'));
  r.stdin!.on('error', () => undefined);
  const out = new Lines(r.stdout!);
  return {
    r,
    out,
    ask: (cmd) => {
      r.stdin!.write(`${cmd}\n`);
      return out.next(`the answer to ${cmd}`);
    },
  };
}

/**
 * Whether `pid` is parked by its shim: every thread but one (the shim's control thread) sleeps in
 * FUTEX_WAIT for value 1 on one word inside the shim's image (its gate, in its data or bss), as its
 * /proc syscall lines say.
 */
function parked(pid: number): boolean {
  let maps: string[];
  let tids: string[];
  try {
    maps = fs.readFileSync(`/proc/${pid}/maps`, 'latin1').split('\n');
    tids = fs.readdirSync(`/proc/${pid}/task`);
  } catch {
    return false;
  }
  // The shim's mappings, and the anonymous one right after them (its bss).
  let lo = Infinity;
  let hi = 0;
  for (const [i, l] of maps.entries()) {
    if (!l.endsWith('/sos_run_shim.so')) continue;
    const [a, b] = l.split(' ')[0].split('-');
    lo = Math.min(lo, parseInt(a, 16));
    hi = Math.max(hi, parseInt(b, 16));
    const after = (maps[i + 1] ?? '').trim().split(/\s+/);
    if (after.length === 5 && parseInt(after[0].split('-')[0], 16) === parseInt(b, 16))
      hi = Math.max(hi, parseInt(after[0].split('-')[1], 16));
  }
  const words = new Set<number>();
  let waiting = 0;
  for (const tid of tids) {
    let f: string[];
    try {
      f = fs.readFileSync(`/proc/${pid}/task/${tid}/syscall`, 'latin1').trim().split(' ');
    } catch {
      return false;
    }
    const word = parseInt(f[1] ?? '', 16);
    if (f[0] === '202' && f[2] === '0x0' && f[3] === '0x1' && word >= lo && word < hi) {
      waiting++;
      words.add(word);
    }
  }
  return tids.length >= 3 && waiting === tids.length - 1 && words.size === 1;
}

void t.test('detach, adopt, write, detach and adopt again: the same memory; all freed at the exit', async (t) => {
  const nodes = await startNodes(t, 2);
  const { r, out, ask } = startProgram(t, nodes);
  t.equal(await out.next(), 'ready', 'the program filled its memory');
  const before = await ask('sum');
  t.match(before, /^sum [0-9a-f]{64} True$/, 'a checksum, and the spin thread ran');
  t.notOk(parked(r.pid), 'not parked while served');

  let t0 = performance.now();
  const h = await within(r.detach(r.pid), 60_000, 'the detach');
  const detachMs = performance.now() - t0;
  t.equal(h.size, FAR, 'the handover names the arena');
  t.equal(h.application, APP, 'and its application');
  t.equal(h.replicas.length, 2, 'both replicas handed over');
  t.same(h.replicas.map((x) => x.node.port).sort(), nodes.map((m) => m.port).sort(), 'one on each node');
  t.ok(
    h.replicas.every((x) => /^[0-9a-f]{16}$/.test(x.region)),
    'region ids of 16 hex digits',
  );
  t.same(JSON.parse(JSON.stringify(h)), h, 'plain JSON');
  t.same(await reservedAll(nodes), [FAR, FAR], 'the nodes keep the regions while it is detached');
  await until(() => parked(r.pid), 10_000, 'every thread but the control thread parked on the gate');
  t.pass('every thread but the control thread sleeps on the shim gate');

  r.stdin!.write('sum\n'); // read by nobody until a monitor adopts the process
  await until(() => parked(r.pid), 10_000, 'still parked');
  t.equal(out.pending, 0, 'no answer while detached');
  t0 = performance.now();
  const a = await within(adoptProcess(r.pid, h, options(nodes)), 60_000, 'the adoption');
  const adoptMs = performance.now() - t0;
  t.equal(a.pid, r.pid, 'the adopted pid');
  t.equal(a.arenaBytes, FAR, 'the whole arena adopted');
  t.equal(await out.next(), before, 'the command sent while detached is answered: the same checksum');
  t.ok(a.stats().faults > 0, 'the adopter serves its faults');
  t.notOk(parked(r.pid), 'not parked once adopted');

  t.equal(await ask('write 5'), 'written', 'the program wrote every page');
  const written = await ask('sum');
  t.not(written, before, 'the write changed the checksum');

  const h2 = await within(a.detach(), 60_000, 'the second detach');
  t.same(h2.replicas.map((x) => x.region).sort(), h.replicas.map((x) => x.region).sort(), 'the same regions again');
  const last = await within(a.ended, 60_000, "the first adopter's end");
  t.ok(last.faults > 0 && last.evictions > 0, 'the first adopter paged');
  await until(() => parked(r.pid), 10_000, 'parked again');
  t.same(await reservedAll(nodes), [FAR, FAR], 'a detach frees nothing');
  const b = await within(adoptProcess(r.pid, h2, options(nodes)), 60_000, 'the second adoption');
  t.equal(await ask('sum'), written, 'the written memory read back by the second adopter');

  r.stdin!.write('exit\n');
  const res = await within(r.result, 60_000, 'the run');
  t.equal(res.code, 0, 'exit code 0');
  t.equal(res.processes.length, 1, 'one process attached to the run');
  const final = await within(b.ended, 60_000, "the second adopter's end");
  t.ok(final.faults > 0, 'the second adopter served faults');
  t.same(await reservedAll(nodes), [0, 0], 'every remote page freed on both nodes');
  t.comment(`detach ${detachMs.toFixed(1)} ms, adopt ${adoptMs.toFixed(1)} ms`);
});

void t.test('refusals leave the process as it was', async (t) => {
  const nodes = await startNodes(t, 2);
  const { r, out, ask } = startProgram(t, nodes);
  t.equal(await out.next(), 'ready', 'the program filled its memory');
  const before = await ask('sum');

  await t.rejects(r.detach(r.pid + 1_000_000), { code: 'ERR_NOT_ATTACHED' }, 'detach of a pid not in the run');
  await t.rejects(r.detach(process.pid), { code: 'ERR_NOT_ATTACHED' }, 'detach of a process of no run');

  const fake: FarHandover = {
    size: FAR,
    application: APP,
    replicas: nodes.map((m) => ({ node: { host: m.host, port: m.port }, region: '0123456789abcdef' })),
    stored: Buffer.alloc(FAR / 4096 / 8).toString('base64'),
  };
  await t.rejects(
    adoptProcess(process.pid, fake, options(nodes)),
    { code: 'ERR_NOT_ATTACHED' },
    'adopt of a process with no shim',
  );
  await t.rejects(
    adoptProcess(r.pid, fake, options(nodes)),
    { code: 'ERR_ADOPT', message: /not detached/ },
    'adopt of a process still served',
  );
  t.equal(await ask('sum'), before, 'the program still answers, served as before');

  const h = await within(r.detach(r.pid), 60_000, 'the detach');
  await t.rejects(r.detach(r.pid), { code: 'ERR_NOT_ATTACHED' }, 'detach of a process handed over already');

  const bad: [string, FarHandover, string][] = [
    ['another size', { ...h, size: h.size - 4096 }, 'ERR_PROTOCOL'],
    ['another application', { ...h, application: 'someone-else' }, 'ERR_INVALID_ARG_VALUE'],
    [
      'a malformed region id',
      { ...h, replicas: h.replicas.map((x) => ({ ...x, region: 'not-a-region' })) },
      'ERR_INVALID_ARG_VALUE',
    ],
    [
      'regions the nodes do not have',
      { ...h, replicas: h.replicas.map((x) => ({ ...x, region: '00000000000000ab' })) },
      'ERR_NO_NODES',
    ],
  ];
  for (const [what, handover, cause] of bad) {
    const e = (await adoptProcess(r.pid, handover, options(nodes)).then(
      () => null,
      (x: unknown) => x,
    )) as (Error & { code?: string; cause?: { code?: string } }) | null;
    t.equal(e?.code, 'ERR_ADOPT', `${what}: ERR_ADOPT (${e?.message})`);
    t.equal(e?.cause?.code, cause, `${what}: the cause is ${cause}`);
    await until(() => parked(r.pid), 10_000, `still parked after ${what}`);
  }
  t.same(await reservedAll(nodes), [FAR, FAR], 'the regions are still there');

  const a = await within(adoptProcess(r.pid, h, options(nodes)), 60_000, 'the adoption with the right handover');
  t.equal(await ask('sum'), before, 'adopted after the refusals: the same checksum');
  r.stdin!.write('exit\n');
  t.equal((await within(r.result, 60_000, 'the run')).code, 0, 'exit code 0');
  await within(a.ended, 60_000, "the adopter's end");
  t.same(await reservedAll(nodes), [0, 0], 'every remote page freed on both nodes');
});

/** One command over a fresh TCP connection to handover.py --tcp; its answer ('' for exit). */
function tcpAsk(port: number, cmd: string): Promise<string> {
  return within(
    new Promise<string>((resolve, reject) => {
      const s = net.connect(port, '127.0.0.1');
      let d = '';
      s.setEncoding('latin1');
      s.on('data', (x: string) => (d += x));
      s.on('close', () => resolve(d.trim()));
      s.on('error', reject);
      s.write(`${cmd}\n`);
    }),
    60_000,
    `the answer to ${cmd}`,
  );
}

function alive(pid: number): boolean {
  try {
    const st = fs.readFileSync(`/proc/${pid}/stat`, 'latin1');
    return st.slice(st.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

// CRIU found where the library looks for it (criu.check()), or the test is skipped.
const haveCriu = (await criu.check()).criuPath !== null;
void (haveCriu ? t.test.bind(t) : t.skip.bind(t))(
  'detach, CRIU dump and restore, adopt the restored process: the same memory',
  async (t) => {
    const nodes = await startNodes(t, 2);
    const images = path.join(dir, 'images');
    fs.mkdirSync(images);
    const log = path.join(dir, 'program.log');
    const outFd = fs.openSync(log, 'a'); // CRIU cannot dump a pipe to this process: a file
    // In its own session: CRIU refuses a process whose session leader is outside its PID namespace,
    // as the runner's is when CI runs in one.
    const r = run(['python3', PROGRAM, '--tcp'], {
      ...options(nodes),
      farBytes: FAR,
      stdio: ['ignore', outFd, outFd],
      detached: true,
    });
    fs.closeSync(outFd);
    let restored = 0;
    t.teardown(() => {
      r.kill('SIGKILL');
      if (restored && alive(restored)) process.kill(restored, 'SIGKILL');
    });
    let port = 0;
    await until(
      () => {
        port = Number(/^ready (\d+)$/m.exec(fs.readFileSync(log, 'latin1'))?.[1] ?? 0);
        return port > 0;
      },
      60_000,
      'the program to listen',
    );
    const before = await tcpAsk(port, 'sum');
    t.match(before, /^sum [0-9a-f]{64} True$/, 'a checksum, and the spin thread ran');

    const h = await within(r.detach(r.pid), 60_000, 'the detach');
    await until(() => parked(r.pid), 10_000, 'parked');
    let t0 = performance.now();
    const d = await criu.dump({ pid: r.pid, imagesDir: images, shellJob: true });
    const dumpMs = performance.now() - t0;
    const ran = await within(r.result, 60_000, 'the run to end with the dump');
    t.equal(ran.signal, 'SIGKILL', 'the dump killed the program');
    t.same(await reservedAll(nodes), [FAR, FAR], 'the run freed nothing handed over');
    const written = d.stats?.pagesWritten ?? 0;
    t.ok(written > 0 && written < (32 * MiB) / 4096, `the image holds less than the 32 MiB (${written} pages)`);

    t0 = performance.now();
    const rs = await criu.restore({ imagesDir: images, shellJob: true });
    const restoreMs = performance.now() - t0;
    restored = rs.pid;
    t.equal(rs.pid, r.pid, 'restored with its pid');
    await until(() => parked(rs.pid), 10_000, 'the restored process parked as it was dumped');
    t.pass('the restored process is parked');
    t0 = performance.now();
    const a = await within(adoptProcess(rs.pid, h, options(nodes)), 60_000, 'the adoption of the restored process');
    const adoptMs = performance.now() - t0;
    t.equal(await tcpAsk(port, 'sum'), before, 'the same checksum after the restore');
    t.ok(a.stats().pagesFetched > 0, 'its pages came from the memory nodes');
    await tcpAsk(port, 'exit');
    const last = await within(a.ended, 60_000, "the adopter's end");
    t.ok(last.faults > 0, 'the adopter served faults');
    await until(() => !alive(rs.pid), 60_000, 'the restored process to exit');
    t.same(await reservedAll(nodes), [0, 0], 'every remote page freed on both nodes');
    t.comment(
      `dump ${dumpMs.toFixed(0)} ms (${written} pages written), restore ${restoreMs.toFixed(0)} ms, adopt ${adoptMs.toFixed(1)} ms`,
    );
  },
);
