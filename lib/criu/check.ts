// check(): what CRIU and this kernel offer, probed once and cached.
import { readFile } from 'node:fs/promises';
import { native } from '../native/index.js';
import { criuEnv, findCriu, probeHwBreakpoints } from './env.js';
import { CriuError } from './errors.js';
import { swrkRequest } from './swrk.js';
import type { CriuCheck } from './types.js';

/** CRIU's page pipes grow to PIPE_MAX_SIZE pages (8 pages of kernel pipe_buffers: 819 → 1024 pages). */
export const LAZY_PIPE_SIZE = 4 << 20;

let cached: Promise<CriuCheck> | undefined;
let cachedFor: string | undefined;

/** CRIU's version through the VERSION request, e.g. '4.1.1'. */
export async function version(opts: { criuPath?: string } = {}): Promise<string> {
  const criuPath = findCriu(opts.criuPath);
  if (!criuPath) throw new CriuError('version: criu not found', { code: 'ERR_CRIU_NOT_FOUND', op: 'version' });
  const { env } = await criuEnv();
  const r = await swrkRequest({ op: 'version', criuPath, env }, { type: 'VERSION' });
  if (!r.success || !r.version)
    throw new CriuError('version: CRIU refused the VERSION request', { code: 'ERR_CRIU', op: 'version' });
  const v = r.version;
  return [v.majorNumber, v.minorNumber, ...(v.sublevel !== undefined ? [v.sublevel] : [])].join('.');
}

/**
 * Probe CRIU and the kernel: CRIU's version and features (over RPC), whether
 * debug-register breakpoints fire (else the library runs CRIU with
 * CRIU_FAULT=130), fs.pipe-max-size, userfaultfd and soft-dirty tracking.
 * Runs once; `refresh` probes again.
 */
export function check(opts: { criuPath?: string; refresh?: boolean } = {}): Promise<CriuCheck> {
  if (!cached || opts.refresh || cachedFor !== opts.criuPath) {
    cachedFor = opts.criuPath;
    cached = probe(opts.criuPath, opts.refresh ?? false);
  }
  return cached;
}

async function probe(given: string | undefined, refresh: boolean): Promise<CriuCheck> {
  const problems: string[] = [];
  const hw = await probeHwBreakpoints(refresh);
  const { env, faultInjection } = await criuEnv();
  if (!hw.hwBreakpoints) {
    problems.push(
      `hardware breakpoints do not fire (${hw.detail}): CRIU runs with CRIU_FAULT=${faultInjection ?? '(unset)'}`,
    );
  }
  const criuPath = findCriu(given);
  let ver: string | null = null;
  const features = { memTrack: false, lazyPages: false, pidfdStore: false };
  if (!criuPath) {
    problems.push('criu not found (/usr/local/sbin/criu or PATH)');
  } else {
    try {
      ver = await version({ criuPath });
    } catch (e) {
      problems.push(`criu VERSION request failed: ${(e as Error).message}`);
    }
    try {
      const r = await swrkRequest(
        { op: 'check', criuPath, env },
        { type: 'FEATURE_CHECK', features: { memTrack: true, lazyPages: true, pidfdStore: true } },
      );
      features.memTrack = r.features?.memTrack === true;
      features.lazyPages = r.features?.lazyPages === true;
      features.pidfdStore = r.features?.pidfdStore === true;
    } catch (e) {
      problems.push(`criu FEATURE_CHECK request failed: ${(e as Error).message}`);
    }
  }
  let pipeMaxSize = 0;
  try {
    pipeMaxSize = Number((await readFile('/proc/sys/fs/pipe-max-size', 'utf8')).trim());
  } catch {
    /* reported below */
  }
  const pipeMaxSizeOk = pipeMaxSize >= LAZY_PIPE_SIZE;
  if (!pipeMaxSizeOk)
    problems.push(
      `fs.pipe-max-size is ${pipeMaxSize}, lazy dumps need ${LAZY_PIPE_SIZE} (sysctl -w fs.pipe-max-size=${LAZY_PIPE_SIZE})`,
    );
  let userfaultfd = false;
  try {
    native.NativeUffd.probe();
    userfaultfd = true;
  } catch (e) {
    problems.push(`userfaultfd unavailable (${(e as Error).message}): no lazy restore`);
  }
  if (!features.lazyPages && criuPath && ver) problems.push('CRIU reports no lazy-pages support on this kernel');
  if (!features.memTrack && criuPath && ver)
    problems.push('no soft-dirty memory tracking: pre-dump and trackMem are unavailable');
  const ok = criuPath !== null && ver !== null && (hw.hwBreakpoints || faultInjection !== null);
  return {
    ok,
    problems,
    criuPath,
    version: ver,
    features,
    hwBreakpoints: hw.hwBreakpoints,
    faultInjection,
    pipeMaxSize,
    pipeMaxSizeOk,
    userfaultfd,
    dirtyTracking: features.memTrack,
  };
}
