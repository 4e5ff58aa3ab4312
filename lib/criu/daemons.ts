// Post-copy building blocks: a CRIU page server (PAGE_SERVER_CHLD over RPC,
// its exit awaited with WAIT_PID on the same swrk session), the lazy-pages
// daemon (`criu lazy-pages`: RPC has no such request, so the CLI with a
// --status-fd pipe for readiness), and the lazy dump.
import { spawn } from 'node:child_process';
import { criuEnv, requireCriu } from './env.js';
import { AbortError } from '../errors.js';
import { CriuError } from './errors.js';
import { logTail } from './log.js';
import { checkDumpable } from './target.js';
import { dumpOpts, networkLockNeeded, pageServerAddress, prepare, tlsArgs, tlsOpts, type Prepared } from './options.js';
import { failure } from './ops.js';
import type { CriuReqType } from './rpc.js';
import { criuFields, swrkArgv, SwrkSession } from './swrk.js';
import type { CriuCommonOptions, CriuDaemon, DumpOptions, DumpResult, PageServerAddress } from './types.js';

function daemon(pid: number, port: number | undefined, exited: Promise<void>, stop: () => void): CriuDaemon {
  exited.catch(() => {
    /* observed through `exited` by whoever cares */
  });
  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      stop();
      await exited.catch(() => {});
    })();
    return closing;
  };
  return { pid, ...(port !== undefined ? { port } : {}), exited, close, [Symbol.asyncDispose]: close };
}

/**
 * Start a CRIU page server listening on address:port (port 0: any free port,
 * reported as `port`); it writes the pages a dump sends into imagesDir and exits
 * after that dump. Resolves once it listens.
 */
export async function pageServer(
  o: CriuCommonOptions & PageServerAddress & { lazyPages?: boolean },
): Promise<CriuDaemon> {
  const addr = pageServerAddress('options', o, true);
  const p = await prepare('page-server', o, true);
  let s: SwrkSession | undefined;
  try {
    p.opts.ps = { address: addr.address, port: addr.port };
    tlsOpts(addr.tls, p.opts);
    if (o.lazyPages === true) p.opts.lazyPages = true;
    const criuPath = requireCriu(p.op, p.criuPath);
    const { env } = await criuEnv();
    s = SwrkSession.start({ op: p.op, criuPath, env, netns: p.netns, hooks: p.hooks, signal: p.signal });
    const resp = await s.request({ type: 'PAGE_SERVER_CHLD', opts: p.opts, keepOpen: true });
    if (!resp.success || !resp.ps?.pid) throw await failure(p, resp, undefined, s.stderr);
    const pid = resp.ps.pid;
    const session = s;
    const exited = (async () => {
      try {
        const w = await session.request({ type: 'WAIT_PID', pid });
        const status = w.status ?? 0;
        // A wait status: exited 0, or killed by our close().
        if (!w.success || ((status & 0x7f) === 0 && status >> 8 !== 0)) {
          throw await failure(
            p,
            w,
            new CriuError(`page server ${pid} failed (wait status ${status})`, {
              code: 'ERR_CRIU',
              op: p.op,
              ...criuFields(w),
            }),
            session.stderr,
          );
        }
      } finally {
        await session.destroy();
        await p.release();
      }
    })();
    let stopped = false;
    return daemon(pid, resp.ps.port, exited, () => {
      if (stopped) return;
      stopped = true;
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    });
  } catch (e) {
    await s?.destroy();
    await p.release();
    throw e instanceof CriuError || (e as Error).name === 'AbortError' ? e : await failure(p, null, e);
  }
}

/**
 * Start `criu lazy-pages`: it takes page faults of a lazy restore on the same
 * workDir and pulls the pages from the dump's page server. Resolves once it is ready.
 */
export async function lazyPages(o: CriuCommonOptions & { pageServer: PageServerAddress }): Promise<CriuDaemon> {
  const ps = pageServerAddress('pageServer', o.pageServer);
  const p = await prepare('lazy-pages', o, false);
  await p.release(); // the CLI takes paths
  const criuPath = requireCriu(p.op, p.criuPath);
  const { env } = await criuEnv();
  const args = [
    'lazy-pages',
    '--page-server',
    '--address',
    ps.address,
    '--port',
    String(ps.port),
    '-D',
    p.imagesDir,
    '-W',
    p.workDir,
    '-o',
    p.logFile,
    `-v${String(p.opts.logLevel)}`,
    '--status-fd',
    '3',
    ...tlsArgs(ps.tls),
  ];
  const [file, argv] = swrkArgv(criuPath, p.netns);
  const full = p.netns ? [...argv.slice(0, 1), criuPath, ...args] : args;
  if (p.signal?.aborted) throw new AbortError(p.signal);
  const child = spawn(file, full, { stdio: ['ignore', 'ignore', 'pipe', 'pipe'], env });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-4096);
  });
  const onAbort = (): void => {
    child.kill('SIGKILL');
  };
  p.signal?.addEventListener('abort', onAbort, { once: true });
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null; error?: Error }>((resolve) => {
    child.once('error', (error) => resolve({ code: null, signal: null, error }));
    child.once('close', (code, signal) => resolve({ code, signal }));
  });
  let killed = false;
  const exited = exit.then(async ({ code, signal, error }) => {
    p.signal?.removeEventListener('abort', onAbort);
    if (code === 0 || killed) return;
    if (p.signal?.aborted) throw new AbortError(p.signal);
    throw await failure(
      p,
      null,
      new CriuError(
        `lazy-pages ${error ? `could not start: ${error.message}` : signal ? `was killed by ${signal}` : `exited with code ${code}`}`,
        { code: error ? 'ERR_CRIU_NOT_FOUND' : 'ERR_CRIU', op: p.op, exitCode: code },
      ),
      stderr,
    );
  });
  // Ready: CRIU writes one byte to the status fd once its socket listens.
  const ready = await Promise.race([
    new Promise<boolean>((resolve) => {
      const st = child.stdio[3] as NodeJS.ReadableStream | null;
      st?.once('data', () => resolve(true));
      st?.once('end', () => resolve(false));
    }),
    exited.then(
      () => false,
      () => false,
    ),
  ]);
  if (!ready) {
    child.kill('SIGKILL');
    await exited; // rejects with the log's tail when it failed
    throw new CriuError(`lazy-pages exited before it was ready (log: ${p.logFile})`, {
      code: 'ERR_CRIU',
      op: p.op,
      logFile: p.logFile,
      logTail: await logTail(p.logFile),
    });
  }
  return daemon(child.pid!, undefined, exited, () => {
    killed = true;
    child.kill('SIGKILL');
  });
}

/**
 * A lazy (post-copy) dump: CRIU freezes the tree, writes every image but the
 * memory, then serves the memory on pageServer.address:port (any local address)
 * until a lazy restore has pulled all of it; the tree is killed then (unless
 * leaveRunning). `imagesReady` resolves at CRIU's "status-ready" notification,
 * sent once the images are complete and the page server listens: the moment a
 * restore may start. `done` settles when the dump is over.
 */
export async function dumpLazy(
  o: DumpOptions & { pageServer: PageServerAddress },
): Promise<{ imagesReady: Promise<void>; done: Promise<DumpResult>; abort(): void }> {
  const t0 = performance.now();
  pageServerAddress('pageServer', o.pageServer);
  dumpOpts(o, { imagesDirFd: -1 }, true);
  const p: Prepared = await prepare('dump', o, true, () => checkDumpable('dump', o.pid));
  try {
    dumpOpts(o, p.opts, true);
    if (!(await networkLockNeeded(o, p.netns))) delete p.opts.networkLock;
  } catch (e) {
    await p.release();
    throw e;
  }
  let readyResolve!: () => void;
  let readyReject!: (e: unknown) => void;
  const imagesReady = new Promise<void>((res, rej) => {
    readyResolve = res;
    readyReject = rej;
  });
  imagesReady.catch(() => {
    /* also reported through done */
  });
  let session: SwrkSession | undefined;
  let aborted = false;
  let readyMs: number | undefined;
  const type: CriuReqType = 'DUMP';
  const done = (async () => {
    try {
      const criuPath = requireCriu(p.op, p.criuPath);
      const { env } = await criuEnv();
      p.opts.notifyScripts = true;
      session = SwrkSession.start({
        op: p.op,
        criuPath,
        env,
        netns: p.netns,
        hooks: p.hooks,
        signal: p.signal,
        onNotify: (n) => {
          if (n.script !== 'status-ready') return;
          readyMs = performance.now() - t0;
          readyResolve();
        },
      });
      if (aborted) session.kill();
      let resp;
      try {
        resp = await session.request({ type, opts: p.opts });
      } catch (e) {
        await session.destroy();
        throw aborted && !(e instanceof CriuError && e.code === 'ERR_CRIU_HOOK')
          ? new AbortError(p.signal)
          : await failure(p, null, e, session.stderr);
      }
      await session.finish();
      if (!resp.success) throw await failure(p, resp, undefined, session.stderr);
      // CRIU 4.1.1 zeroes its dump counters when the lazy page server starts and
      // writes stats-dump only at the very end: those figures are not the dump's.
      return {
        stats: null,
        imagesDir: p.imagesDir,
        logFile: p.logFile,
        ms: performance.now() - t0,
        imagesReadyMs: readyMs,
      };
    } catch (e) {
      readyReject(e);
      throw e;
    } finally {
      await p.release();
    }
  })();
  done.catch(() => {
    /* the caller awaits done; never an unhandled rejection when it awaited only imagesReady */
  });
  return {
    imagesReady,
    done,
    abort() {
      aborted = true;
      session?.kill();
    },
  };
}
