// dump, pre-dump and restore: one swrk request each.
import { writeFile } from 'node:fs/promises';
import { check } from './check.js';
import { criuEnv, requireCriu } from './env.js';
import { CriuError } from './errors.js';
import { errorLines, logTail, realMessage } from './log.js';
import { checkDumpable } from './target.js';
import { dumpOpts, networkLockNeeded, prepare, restoreOpts, str, type Prepared } from './options.js';
import type { CriuReq, CriuReqType, CriuResp } from './rpc.js';
import { readDumpStats, readRestoreStats } from './stats.js';
import { criuFields, SwrkSession, type SwrkOptions } from './swrk.js';
import type { CriuNotify, DumpOptions, DumpResult, RestoreOptions, RestoreResult } from './types.js';

/** A failed response (or a thrown CriuError) → CriuError with the log path and tail. */
export async function failure(p: Prepared, resp: CriuResp | null, thrown?: unknown, stderr = ''): Promise<Error> {
  // Errors before CRIU opened its log (bad folders, options) go to its stderr.
  const tail = (await logTail(p.logFile)) || stderr.trim().split('\n').slice(-20).join('\n');
  if (thrown !== undefined && !(thrown instanceof CriuError)) return thrown as Error;
  const errs = errorLines(await logTail(p.logFile, 2000)).concat(errorLines(stderr));
  const base = thrown instanceof CriuError ? thrown : null;
  const fields = resp ? criuFields(resp) : {};
  // CRIU's cr_errmsg is its first error line, which is most often the RLIMIT_NOFILE complaint:
  // criuMessage and the message say the first real error instead.
  const first = realMessage(fields.criuMessage) ?? errs[0];
  if (resp && first !== undefined) fields.criuMessage = first;
  else delete fields.criuMessage;
  const why = first ?? 'see the log';
  // A restore needs the tree's old PIDs free (unless it is the init of its own PID namespace).
  const busy =
    p.op === 'restore' ? errs.map((l) => /Can't fork for (\d+): File exists/.exec(l)).find(Boolean) : undefined;
  const message = busy
    ? `restore failed: PID ${busy[1]} is in use; the tree keeps its PIDs, so run it as the init of its own PID namespace (unshare --pid --fork) (log: ${p.logFile})`
    : base
      ? `${base.message} (log: ${p.logFile})`
      : `${p.op} failed: ${why} (log: ${p.logFile})`;
  return new CriuError(message, {
    code: busy ? 'ERR_CRIU_PID_BUSY' : (base?.code ?? 'ERR_CRIU'),
    op: p.op,
    logFile: p.logFile,
    logTail: tail,
    ...(base?.criuErrno !== undefined ? { criuErrno: base.criuErrno } : {}),
    ...(base?.criuMessage !== undefined ? { criuMessage: base.criuMessage } : {}),
    ...fields,
    ...(base?.cause !== undefined ? { cause: base.cause } : {}),
    ...(base?.exitCode !== undefined ? { exitCode: base.exitCode } : {}),
  });
}

/** The first descriptor number CRIU gets ours at (0-2 are stdio, 3 the RPC socket). */
const FIRST_PASSED_FD = 4;

export interface RunExtra {
  onNotify?: (n: CriuNotify) => void;
  onSession?: (s: SwrkSession) => void;
}

/** Run one request for a prepared call; returns the successful response. */
export async function run(p: Prepared, type: CriuReqType, extra: RunExtra = {}): Promise<CriuResp> {
  const criuPath = requireCriu(p.op, p.criuPath);
  const { env } = await criuEnv();
  const so: SwrkOptions = { op: p.op, criuPath, env, netns: p.netns, hooks: p.hooks, signal: p.signal };
  if (extra.onNotify) {
    so.onNotify = extra.onNotify;
    p.opts.notifyScripts = true;
  }
  // CRIU opens an inherited descriptor in its own process: ours travel as its fds 4, 5, …
  const inherit = p.opts.inheritFd as { key: string; fd: number }[] | undefined;
  if (inherit?.length) {
    so.fds = inherit.map((x) => x.fd);
    p.opts.inheritFd = inherit.map((x, i) => ({ ...x, fd: FIRST_PASSED_FD + i }));
  }
  const req: CriuReq = { type, opts: p.opts };
  const s = SwrkSession.start(so);
  extra.onSession?.(s);
  let resp: CriuResp;
  try {
    resp = await s.request(req);
  } catch (e) {
    await s.destroy();
    throw await failure(p, null, e, s.stderr);
  }
  await s.finish();
  if (!resp.success) throw await failure(p, resp, undefined, s.stderr);
  return resp;
}

/** pre-dump and trackMem need soft-dirty bits: say so plainly instead of CRIU's log line. */
async function needDirtyTracking(op: string, criuPath: string | undefined): Promise<void> {
  const c = await check(criuPath !== undefined ? { criuPath } : {});
  if (!c.dirtyTracking) {
    throw new CriuError(
      `${op}: memory change tracking (soft-dirty) is not available on this kernel; ` +
        'pre-dump and trackMem need it (a full dump works)',
      { code: 'ERR_CRIU_UNSUPPORTED', op },
    );
  }
}

async function doDump(
  op: 'dump' | 'pre-dump',
  type: CriuReqType,
  o: DumpOptions,
  extra: RunExtra = {},
): Promise<DumpResult> {
  const t0 = performance.now();
  dumpOpts(o, { imagesDirFd: -1 }, false); // arguments first, before any folder is made
  const p = await prepare(op, o, true, () => checkDumpable(op, o.pid));
  try {
    dumpOpts(o, p.opts, false);
    if (!(await networkLockNeeded(o, p.netns))) delete p.opts.networkLock;
    if (p.opts.trackMem) await needDirtyTracking(op, p.criuPath);
    await run(p, type, extra);
    const stats = await readDumpStats(p.workDir); // CRIU writes it in its working folder
    return { stats, imagesDir: p.imagesDir, logFile: p.logFile, ms: performance.now() - t0 };
  } finally {
    await p.release();
  }
}

/** Checkpoint the process tree rooted at `pid` into imagesDir (killed afterwards unless leaveRunning/leaveStopped). */
export function dump(o: DumpOptions): Promise<DumpResult> {
  return doDump('dump', 'DUMP', o);
}

/** Pre-copy round: write the memory of `pid` while it keeps running (needs soft-dirty tracking);
 *  a later dump with `parentDir` pointing here writes only what changed since. */
export function preDump(o: DumpOptions): Promise<DumpResult> {
  return doDump('pre-dump', 'PRE_DUMP', { ...o, trackMem: true });
}

/** Restore the tree whose images are in imagesDir; resolves with the restored root's pid (as seen from here). */
export async function restore(o: RestoreOptions): Promise<RestoreResult> {
  const t0 = performance.now();
  restoreOpts(o, { imagesDirFd: -1 });
  const p = await prepare('restore', o, false);
  try {
    restoreOpts(o, p.opts);
    const resp = await run(p, 'RESTORE');
    const pid = resp.restore?.pid ?? 0;
    if (o.pidfile !== undefined) await writeFile(str('pidfile', o.pidfile), `${pid}\n`);
    const stats = await readRestoreStats(p.workDir);
    return { pid, stats, logFile: p.logFile, ms: performance.now() - t0 };
  } finally {
    await p.release();
  }
}

export { doDump };
