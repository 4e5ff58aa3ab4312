/**
 * The baseline: CRIU's command line driven the way an operator would type it,
 * between two network namespaces (the two "nodes").
 *
 * pre-copy:   criu dump (source ns) -> tar of the images over TCP to the target
 *             node -> criu restore -d (target ns)
 * post-copy:  criu dump --lazy-pages --address --port (source ns; it freezes the
 *             process, writes the non-memory images and then serves the pages) ->
 *             tar of those images over TCP -> criu lazy-pages --page-server
 *             (target ns) -> criu restore -d --lazy-pages (target ns); the pages
 *             arrive in the background until the lazy-pages daemon and the dump exit.
 *
 * The copy is a fair stand-in for the library's own TCP transfer: `tar c` into
 * a TCP socket (bash's /dev/tcp) in the source namespace, a tiny Node listener
 * piping into `tar x` in the target namespace (no netcat on these hosts). The
 * listener is started before the clock starts, as an operator would prepare
 * the target first. Readiness of the lazy dump and of the lazy-pages daemon is
 * CRIU's own --status-fd.
 *
 * Post-copy runs in the clear or, with `tls`, over CRIU's own mutual TLS (--tls
 * on the lazy dump's page server and on lazy-pages): the same certificates and
 * flags as migrate() (lib/net/cert.ts, lib/criu's tlsArgs), made before the clock
 * starts, as an operator would install them.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { deleteTable } from '../../lib/net/nft.js';
import {
  check,
  readDumpStats,
  readRestoreStats,
  type CriuTls,
  type DumpStats,
  type RestoreStats,
} from '../../lib/criu/index.js';
import { tlsArgs } from '../../lib/criu/options.js';
import { makeIdentity, trustPeer } from '../../lib/net/cert.js';
import { criuLocks } from '../../lib/migration/source-rollback.js';

export interface CliNode {
  netns: string;
  addr: string;
}

export interface CliOptions {
  criu: string;
  /** Environment for CRIU (CRIU_FAULT=130 on hosts whose debug breakpoints do not fire). */
  env: NodeJS.ProcessEnv;
  /** Extra flags for both dump and restore (e.g. --tcp-established), as the library uses them. */
  flags: string[];
  /** CRIU's -v level; null: CRIU's default. */
  logLevel: number | null;
  /** Two free TCP ports: the image copy and the lazy page server. */
  ports: [number, number];
  /** Post-copy only: the page server (source) and lazy-pages (target) talk mutual TLS. */
  tls?: CliTls;
}

/** Each node's TLS files for CRIU's page-server connection. */
export interface CliTls {
  source: CriuTls;
  target: CriuTls;
}

/**
 * Certificates as migrate() makes them: a fresh self-signed identity per side (in
 * `dir`/source and `dir`/target), each trusting exactly the other's certificate.
 */
export async function cliTls(dir: string): Promise<CliTls> {
  const [s, t] = await Promise.all([
    makeIdentity(path.join(dir, 'source'), 'bench-cli-source'),
    makeIdentity(path.join(dir, 'target'), 'bench-cli-target'),
  ]);
  return {
    source: {
      cert: s.certFile,
      key: s.keyFile,
      caCert: await trustPeer(path.join(dir, 'source', 'peer.pem'), t.certPem),
    },
    target: {
      cert: t.certFile,
      key: t.keyFile,
      caCert: await trustPeer(path.join(dir, 'target', 'peer.pem'), s.certPem),
    },
  };
}

export interface CliRun {
  /** Host PID of the restored process. */
  pid: number;
  /** Dump start -> everything on the target (pre-copy: restore returned; post-copy: last page moved). */
  totalMs: number;
  /** Dump start -> restore returned (the process runs again, on the target). */
  downtimeMs: number;
  /** Wall time of each step, in order. */
  phases: Record<string, number>;
  imageBytes: number;
  /** CRIU's stats-dump / stats-restore of the run (lib/criu's reader). */
  dump: DumpStats | null;
  restore: RestoreStats | null;
}

/**
 * CRIU as lib/criu runs it: its binary and environment (CRIU_FAULT where debug
 * breakpoints do not fire), and the dump/restore flags of migrate()'s defaults
 * (tcpEstablished: true, nftables network lock). The log level stays CRIU's
 * default (what an operator types); lib/criu logs at level 4.
 */
export async function criuSettings(): Promise<Omit<CliOptions, 'ports'>> {
  const c = await check();
  if (!c.criuPath) throw new Error(`criu not found: ${c.problems.join('; ')}`);
  if (!c.pipeMaxSizeOk)
    throw new Error(`fs.pipe-max-size is ${c.pipeMaxSize}: lazy dumps need more (scripts/setup-host.sh)`);
  const env: NodeJS.ProcessEnv = { ...process.env };
  if (c.faultInjection !== null) env.CRIU_FAULT = String(c.faultInjection);
  return { criu: c.criuPath, env, flags: ['--tcp-established', '--network-lock', 'nftables'], logLevel: null };
}

interface Proc {
  child: ChildProcess;
  done: Promise<void>;
  stderr: () => string;
}

/** Start a command; `done` rejects with its stderr tail (and a log path) if it fails. */
function start(cmd: string, args: string[], env: NodeJS.ProcessEnv, statusFd = false, log?: string): Proc {
  const child = spawn(cmd, args, { env, stdio: ['ignore', 'ignore', 'pipe', statusFd ? 'pipe' : 'ignore'] });
  let err = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => {
    err = (err + d).slice(-4000);
  });
  const done = new Promise<void>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code, sig) => {
      if (code === 0) resolve();
      else {
        let tail = '';
        try {
          if (log)
            tail = fs
              .readFileSync(log, 'utf8')
              .split('\n')
              .filter((l) => /Error|error/.test(l))
              .slice(-6)
              .join('\n');
        } catch {
          /* no log */
        }
        reject(
          new Error(
            `${path.basename(args.find((a) => a.endsWith('criu')) ?? cmd)} ${args
              .filter((a) => !a.startsWith('--net'))
              .slice(1, 3)
              .join(' ')}: ` + `exit ${code ?? sig}${err ? `\n${err.trim()}` : ''}${tail ? `\n${log}:\n${tail}` : ''}`,
          ),
        );
      }
    });
  });
  done.catch(() => {
    /* observed by the caller */
  });
  return { child, done, stderr: () => err };
}

/** Resolves when the process writes to its fd 3 (CRIU's --status-fd) or closes it; rejects if it exits first. */
function ready(p: Proc): Promise<void> {
  const s = p.child.stdio[3] as NodeJS.ReadableStream;
  return new Promise<void>((resolve, reject) => {
    s.once('data', () => resolve());
    s.once('end', () => resolve());
    p.done.then(() => reject(new Error('exited before it was ready')), reject);
  });
}

function kill(ps: Proc[]): void {
  for (const p of ps) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
}

const RECEIVER =
  "const [a,p]=process.argv.slice(1);const s=require('net').createServer(c=>{s.close();c.pipe(process.stdout)})" +
  ".listen(+p,a,()=>process.stderr.write('ready\\n'));";

/** The target side of the copy: listening before it resolves; `done` when all images are unpacked. */
async function receiver(to: CliNode, port: number, dir: string, env: NodeJS.ProcessEnv): Promise<Proc> {
  const p = start(
    'bash',
    [
      '-o',
      'pipefail',
      '-c',
      'nsenter --net="/run/netns/$0" "$1" -e "$2" "$3" "$4" | tar x -C "$5"',
      to.netns,
      process.execPath,
      RECEIVER,
      to.addr,
      String(port),
      dir,
    ],
    env,
  );
  await new Promise<void>((resolve, reject) => {
    const poll = setInterval(() => {
      if (p.stderr().includes('ready')) {
        clearInterval(poll);
        resolve();
      }
    }, 2);
    p.done.then(
      () => {
        clearInterval(poll);
        reject(new Error('image receiver exited early'));
      },
      (e: unknown) => {
        clearInterval(poll);
        reject(e instanceof Error ? e : new Error(String(e)));
      },
    );
  });
  return p;
}

function sender(from: CliNode, to: CliNode, port: number, dir: string, env: NodeJS.ProcessEnv): Proc {
  return start(
    'nsenter',
    [`--net=/run/netns/${from.netns}`, 'bash', '-c', 'tar c -C "$0" . > "/dev/tcp/$1/$2"', dir, to.addr, String(port)],
    env,
  );
}

function dirBytes(dir: string): number {
  let n = 0;
  for (const f of fs.readdirSync(dir)) n += fs.statSync(path.join(dir, f)).size;
  return n;
}

/**
 * Migrate `pid` (running in `from`'s namespace) to `to` with the CRIU command
 * line. `srcDir` and `dstDir` must be empty directories ("local disk" of each node).
 */
export async function cliMigrate(
  mode: 'precopy' | 'postcopy',
  pid: number,
  from: CliNode,
  to: CliNode,
  srcDir: string,
  dstDir: string,
  o: CliOptions,
  deadlineMs = 600_000,
): Promise<CliRun> {
  const ns = (n: CliNode) => `--net=/run/netns/${n.netns}`;
  const v = o.logLevel === null ? [] : [`-v${o.logLevel}`];
  const procs: Proc[] = [];
  const track = (p: Proc) => {
    procs.push(p);
    return p;
  };
  const pidfile = path.join(dstDir, 'restored.pid');
  // Past the deadline every step's process is killed, so the awaited step fails and the run ends.
  let late = false;
  const timer = setTimeout(() => {
    late = true;
    kill(procs);
  }, deadlineMs);
  try {
    const recv = track(await receiver(to, o.ports[0], dstDir, o.env));
    const phases: Record<string, number> = {};
    const t0 = performance.now();
    let t = t0;
    const lap = (name: string) => {
      const now = performance.now();
      phases[name] = now - t;
      t = now;
      return now;
    };

    if (mode === 'precopy') {
      if (o.tls) throw new Error('the CLI baseline has TLS for post-copy pages only');
      const dump = track(
        start(
          'nsenter',
          [ns(from), o.criu, 'dump', '-t', String(pid), '-D', srcDir, '-o', 'dump.log', ...v, ...o.flags],
          o.env,
          false,
          path.join(srcDir, 'dump.log'),
        ),
      );
      await dump.done;
      lap('dump');
      const imageBytes = dirBytes(srcDir);
      await Promise.all([track(sender(from, to, o.ports[0], srcDir, o.env)).done, recv.done]);
      lap('copy');
      await track(
        start(
          'nsenter',
          [ns(to), o.criu, 'restore', '-D', dstDir, '-o', 'restore.log', ...v, '-d', '--pidfile', pidfile, ...o.flags],
          o.env,
          false,
          path.join(dstDir, 'restore.log'),
        ),
      ).done;
      const end = lap('restore');
      return {
        pid: Number(fs.readFileSync(pidfile, 'utf8').trim()),
        totalMs: end - t0,
        downtimeMs: end - t0,
        phases,
        imageBytes,
        dump: await readDumpStats(srcDir),
        restore: await readRestoreStats(dstDir),
      };
    }

    const page = ['--address', from.addr, '--port', String(o.ports[1])];
    const dump = track(
      start(
        'nsenter',
        [
          ns(from),
          o.criu,
          'dump',
          '-t',
          String(pid),
          '-D',
          srcDir,
          '-o',
          'dump.log',
          ...v,
          ...o.flags,
          '--lazy-pages',
          ...page,
          ...tlsArgs(o.tls?.source),
          '--status-fd',
          '3',
        ],
        o.env,
        true,
        path.join(srcDir, 'dump.log'),
      ),
    );
    await ready(dump);
    lap('dump'); // frozen, non-memory images written, page server listening
    const imageBytes = dirBytes(srcDir);
    await Promise.all([track(sender(from, to, o.ports[0], srcDir, o.env)).done, recv.done]);
    lap('copy');
    const lazy = track(
      start(
        'nsenter',
        [
          ns(to),
          o.criu,
          'lazy-pages',
          '--page-server',
          ...page,
          '-D',
          dstDir,
          '-o',
          'lazy-pages.log',
          ...v,
          ...tlsArgs(o.tls?.target),
          '--status-fd',
          '3',
        ],
        o.env,
        true,
        path.join(dstDir, 'lazy-pages.log'),
      ),
    );
    await ready(lazy);
    lap('lazy_daemon');
    await track(
      start(
        'nsenter',
        [
          ns(to),
          o.criu,
          'restore',
          '-D',
          dstDir,
          '-o',
          'restore.log',
          ...v,
          '-d',
          '--pidfile',
          pidfile,
          '--lazy-pages',
          ...o.flags,
        ],
        o.env,
        false,
        path.join(dstDir, 'restore.log'),
      ),
    ).done;
    const resumed = lap('restore');
    await Promise.all([lazy.done, dump.done]);
    const end = lap('pages');
    return {
      pid: Number(fs.readFileSync(pidfile, 'utf8').trim()),
      totalMs: end - t0,
      downtimeMs: resumed - t0,
      phases,
      imageBytes,
      dump: await readDumpStats(srcDir),
      restore: await readRestoreStats(dstDir),
    };
  } catch (e) {
    if (late) throw new Error(`hand-driven ${mode} did not finish within ${deadlineMs / 1000} s`, { cause: e });
    throw e;
  } finally {
    clearTimeout(timer);
    kill(procs);
    await Promise.allSettled(procs.map((p) => p.done));
  }
}

/**
 * After a CLI dump with --network-lock nftables, CRIU's lock table stays in the
 * source namespace (it guards 4-tuples that now live on the target); the
 * operator's clean-up, outside the timing.
 */
export async function dropLocks(node: CliNode): Promise<void> {
  const scope = { netns: node.netns };
  for (const name of await criuLocks(scope)) await deleteTable({ family: 'inet', name }, scope);
}
