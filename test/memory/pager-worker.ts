// Worker for the pager tests: attaches the far region by id and runs the
// seeded random workload against a reference copy it is given (and hands
// back, updated, at the end).
import { parentPort, workerData } from 'node:worker_threads';
import { Region } from '../../lib/index.js';
import { randomOps, xorshift } from './pager-workload.js';

const job = workerData as { id: number; ref: SharedArrayBuffer; seed: number; ops: number };
const r = Region.attach(job.id);
try {
  const bad = randomOps(new Uint32Array(r.buffer), new Uint32Array(job.ref), xorshift(job.seed), job.ops);
  parentPort!.postMessage({ bad });
} finally {
  r.close();
}
