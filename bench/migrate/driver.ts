/**
 * The source node's side of "ours": a process living in node A's network
 * namespace (nsenter --net) that calls lib/migration's migrate() for every
 * request, so that no process start-up lands inside the timing.
 * One JSON request per stdin line, one JSON answer per stdout line:
 *   {"pid":N,"mode":"precopy"|"postcopy","to":{"host","port"},"secretFile":F,"workDir":D}
 *   -> {"ok":true,"wallMs":…,"result":MigrationResult} | {"ok":false,"error":"…"}
 */
import fs from 'node:fs';
import { performance } from 'node:perf_hooks';
import readline from 'node:readline';
import { migrate, type Mode } from '../../lib/migration/index.js';

interface Request {
  pid: number;
  mode: Mode;
  to: { host: string; port: number };
  secretFile: string;
  workDir: string;
}

const out = (o: unknown) => process.stdout.write(`${JSON.stringify(o)}\n`);

async function handle(line: string): Promise<void> {
  try {
    const q = JSON.parse(line) as Request;
    const secret = fs.readFileSync(q.secretFile);
    const t0 = performance.now();
    // strategy 'commit': the two namespaces stand for two machines. ('auto' would pick the
    // one-machine hand-over, which keeps the pages on the source's disk to restore back from.)
    const result = await migrate(q.pid, { to: q.to, secret, mode: q.mode, workDir: q.workDir, strategy: 'commit' });
    out({ ok: true, wallMs: performance.now() - t0, result });
  } catch (e) {
    out({ ok: false, error: e instanceof Error ? e.message : String(e) });
  }
}

// One migration at a time: the benchmark waits for each answer.
let chain = Promise.resolve();
readline.createInterface({ input: process.stdin }).on('line', (l) => {
  chain = chain.then(() => handle(l));
});
out({ ready: true });
