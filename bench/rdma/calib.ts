/**
 * bench/rdma: per-call costs measured the same way on the host and inside
 * the VM, so that the report can say how much slower the emulated CPU (TCG)
 * makes each kind of work: a clock read, an N-API call that returns an
 * object, and allocation-heavy JavaScript (one work request copied the way a
 * typed layer copies it per post).
 */
import { performance } from 'node:perf_hooks';
import { rdma } from '../../lib/index.js';

/** Nanoseconds per call of f (after a warm-up), timed over `calls` calls. */
export function perCallNs(f: () => unknown, calls = 20_000): number {
  for (let i = 0; i < Math.min(Math.ceil(calls / 10), 2000); i++) f();
  const s = performance.now();
  for (let i = 0; i < calls; i++) f();
  return ((performance.now() - s) * 1e6) / calls;
}

export interface Calibration {
  clock_ns: number;
  napi_ns: number;
  js_ns: number;
}

export function calibrate(): Calibration {
  const mr = { raw: {} };
  const wrs = [{ wrId: 1, opcode: 'RDMA_READ', sge: [{ mr, length: 8 }], remoteAddr: 4096, rkey: 7 }];
  let sink = 0;
  const out = {
    clock_ns: perCallNs(() => performance.now()),
    napi_ns: perCallNs(() => rdma.status()),
    js_ns: perCallNs(() => {
      const copy = wrs.map((w) => ({ ...w, sge: w.sge.map((s) => ({ ...s, mr: s.mr.raw })) }));
      sink += copy.length;
    }),
  };
  if (sink < 0) throw new Error('unreachable');
  return out;
}
