// The sending side of a migration. The dump leaves the tree stopped and
// calls our post-dump hook with every image written; inside that hook the
// images travel, the target restores and holds at post-restore, we commit,
// and it resumes. Only when the target said "resumed" does the hook return
// (and we kill the stopped copy). If anything fails before that, the hook
// throws: CRIU then unlocks the network and resumes the source itself.
import crypto from 'node:crypto';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import { once } from 'node:events';
import path from 'node:path';
import { promisify } from 'node:util';
import * as criu from '../criu/index.js';
import { argType } from '../errors.js';
import { makeIdentity, trustPeer, type TlsIdentity } from '../net/cert.js';
import { AuthChannel, secretBuffer, type Liveness, type Message } from '../net/channel.js';
import { integer, object, oneOf } from '../validate.js';
import { addAddress, checkMoveAddress, deleteAddress, holdAddress, type MoveAddress } from './address.js';
import { MigrationError, describe, type MigrationStep, type RunningOn } from './errors.js';
import { sendImages } from './images.js';
import { alive, killTree, placeId, resumeTree, state } from './proc.js';
import { ID, hostAddress, pageServerAt, wireError, type CriuFlags, type Mode } from './protocol.js';

const run = promisify(execFile);

/** Phases reported through onProgress, in order. */
export type Phase = 'connect' | 'dump' | 'transfer' | 'restore' | 'commit' | 'pages' | 'done';

export interface Progress {
  phase: Phase;
  /** Bytes moved so far: image files, and memory pages as the target receives them. */
  bytes: number;
  /** Pages moved so far (memory page bytes / 4096). */
  pages: number;
}

export interface MigrateOptions {
  /** The target node's migration agent. */
  to: { host: string; port: number };
  /** The secret shared by the agents (≥ 16 bytes). */
  secret: Buffer | string;
  /** 'precopy' (default): all memory moves before the target resumes. 'postcopy': the target resumes at once and pulls pages. */
  mode?: Mode;
  /** Where this side writes its images (a folder per migration is made inside). */
  workDir: string;
  /** An address to move from this node to the target with the process. */
  moveAddress?: MoveAddress;
  /** Carry ESTABLISHED TCP connections (default true; locks the network with nftables while frozen). */
  tcpEstablished?: boolean;
  shellJob?: boolean;
  extUnixSk?: boolean;
  fileLocks?: boolean;
  /** Abort before the commit: the source resumes. */
  signal?: AbortSignal;
  onProgress?: (p: Progress) => void;
  /** How long to keep asking a target that went silent after our commit (default 30 s). */
  inDoubtMs?: number;
  /** Keep this side's images after success (default false). */
  keepImages?: boolean;
  /**
   * 'commit': the source stays frozen until the target runs the process, and resumes if it
   * never does. 'handover' (pre-copy only): the source goes once the target holds every image,
   * and is restored back here if the target cannot restore — needed when both sides share
   * state a frozen source still holds (one machine: FIFOs, files, one namespace's TCP 4-tuples).
   * 'auto' (default): handover on one machine, commit between machines.
   */
  strategy?: 'auto' | 'commit' | 'handover';
  /** A connection silent this long (ms) counts as cut (default 15000). */
  idleTimeoutMs?: number;
}

export interface MigrationResult {
  id: string;
  mode: Mode;
  /** From freezing the source to the target's report that the process runs again. */
  downtimeMs: number;
  totalMs: number;
  /** Bytes moved: image files plus post-copy page traffic. */
  bytes: number;
  pages: number;
  criu: { dump: criu.DumpStats | null; restore: criu.RestoreStats | null };
  sourcePid: number;
  /** The process's pid on the target (as the target sees it). */
  targetPid: number;
  /** How the hand-over went: 'commit' (source frozen until the target ran) or 'handover' (source gone once the images were safe on the target). */
  strategy: 'commit' | 'handover';
  /** Source and target ran on one machine (boot id). */
  sameHost: boolean;
  phases: { phase: Phase; ms: number }[];
}

interface Checked extends Required<
  Pick<MigrateOptions, 'mode' | 'workDir' | 'inDoubtMs' | 'keepImages' | 'strategy' | 'idleTimeoutMs'>
> {
  to: { host: string; port: number };
  secret: Buffer;
  move?: MoveAddress;
  flags: CriuFlags;
}

function check(pid: unknown, o: MigrateOptions): Checked {
  integer('pid', pid, 1, 0x7fffffff);
  const opts = object('options', o);
  const to = object('options.to', opts.to);
  if (typeof to.host !== 'string' || to.host.length === 0)
    throw argType('options.to.host must be a host name or address');
  integer('options.to.port', to.port, 1, 65535);
  const secret = secretBuffer(o.secret, 'options.secret');
  if (typeof o.workDir !== 'string' || o.workDir.length === 0) throw argType('options.workDir must be a path');
  const mode = o.mode ?? 'precopy';
  if (mode !== 'precopy' && mode !== 'postcopy')
    throw argType(`options.mode must be 'precopy' or 'postcopy', got ${String(mode)}`);
  const flags: CriuFlags = { tcpEstablished: o.tcpEstablished ?? true };
  for (const k of ['shellJob', 'extUnixSk', 'fileLocks'] as const) {
    if (o[k] !== undefined && typeof o[k] !== 'boolean') throw argType(`options.${k} must be a boolean`);
    if (o[k]) flags[k] = true;
  }
  if (o.onProgress !== undefined && typeof o.onProgress !== 'function')
    throw argType('options.onProgress must be a function');
  return {
    to: { host: to.host, port: to.port as number },
    secret,
    mode,
    workDir: o.workDir,
    flags,
    ...(o.moveAddress !== undefined ? { move: checkMoveAddress(o.moveAddress, 'options.moveAddress') } : {}),
    inDoubtMs: o.inDoubtMs === undefined ? 30_000 : integer('options.inDoubtMs', o.inDoubtMs, 0),
    keepImages: o.keepImages ?? false,
    idleTimeoutMs: o.idleTimeoutMs === undefined ? 15_000 : integer('options.idleTimeoutMs', o.idleTimeoutMs, 100),
    strategy:
      o.strategy === undefined
        ? 'auto'
        : oneOf('options.strategy', o.strategy, ['auto', 'commit', 'handover'] as const),
  };
}

/** Keep-alive settings for a silence limit. */
export function liveness(idleTimeoutMs: number): Liveness {
  return { intervalMs: Math.max(50, Math.min(1000, Math.floor(idleTimeoutMs / 4))), timeoutMs: idleTimeoutMs };
}

async function nftTables(): Promise<Set<string>> {
  try {
    const { stdout } = await run('nft', ['list', 'tables'], { timeout: 10_000 });
    return new Set(
      stdout
        .split('\n')
        .filter((l) => /^table inet CRIU-/.test(l))
        .map((l) => l.slice('table '.length).trim()),
    );
  } catch {
    return new Set();
  }
}

/** Delete CRIU's network-lock tables that were not there `before` the dump. */
async function dropNewLocks(before: Set<string>): Promise<void> {
  for (const t of await nftTables())
    if (!before.has(t)) await run('nft', ['delete', 'table', ...t.split(' ')]).catch(() => undefined);
}

async function freePort(host: string): Promise<number> {
  const s = net.createServer().listen(0, host);
  await once(s, 'listening');
  const port = (s.address() as net.AddressInfo).port;
  s.close();
  return port;
}

/** Migrate the process tree rooted at `pid` (the init of its own PID namespace) to another node's agent. */
export async function migrate(pid: number, options: MigrateOptions): Promise<MigrationResult> {
  const o = check(pid, options);
  if (!alive(pid))
    throw new MigrationError(`no process ${pid}`, { code: 'ERR_NO_PROCESS', step: 'validate', runningOn: 'none' });
  return new SourceRun(pid, o, options).run();
}

class SourceRun {
  private readonly t0 = performance.now();
  private readonly phases: { phase: Phase; ms: number }[] = [];
  private progress: Progress = { phase: 'connect', bytes: 0, pages: 0 };
  private readonly id = crypto.randomBytes(16).toString('hex');
  private ch: AuthChannel | null = null;
  /** The target shares this namespace (no address move, no lock to clean). */
  private sameNetns = false;
  private sameHost = false;
  /** Kill the source once the images are safe on the target (see MigrateOptions.strategy). */
  private handover = false;
  private step: MigrationStep = 'connect';
  private frozenAt = 0;
  private resumedAt = 0;
  private addressRemoved = false;
  private committed = false;
  private targetPid = 0;
  private restoreStats: criu.RestoreStats | null = null;
  private targetFailure: { step: string; code: string; message: string } | null = null;
  private stream = 1;
  private readonly imagesDir: string;
  /** This side's TLS identity and the target's certificate, for CRIU's page-server connection. */
  private readonly tlsDir: string;
  private tls: criu.CriuTls | null = null;
  /** Post-copy: where our dump serves pages. Pre-copy (commit): the target's page server. */
  private pageServer: { address: string; port: number } | null = null;
  /** Page bytes the target reported so far, and its final exact count. */
  private pageBytes = 0;
  private pageBytesExact: number | null = null;
  private pagesDone: () => void = () => {};

  constructor(
    private readonly pid: number,
    private readonly o: Checked,
    private readonly user: MigrateOptions,
  ) {
    this.imagesDir = path.join(o.workDir, this.id);
    this.tlsDir = `${this.imagesDir}.tls`;
  }

  private phase(p: Phase) {
    this.phases.push({ phase: p, ms: performance.now() - this.t0 });
    this.progress = { ...this.progress, phase: p };
    this.emit();
  }

  private emit() {
    try {
      this.user.onProgress?.({ ...this.progress });
    } catch {
      // a progress listener cannot break a migration
    }
  }

  private moved(n: number, pageBytes: boolean) {
    this.progress.bytes += n;
    if (pageBytes) this.progress.pages += n / 4096;
    this.emit();
  }

  private error(message: string, runningOn: RunningOn, cause?: unknown, code?: string): MigrationError {
    const where =
      runningOn === 'source'
        ? `the process runs on the source (pid ${this.pid})`
        : runningOn === 'target'
          ? `the process runs on the target (pid ${this.targetPid})`
          : runningOn === 'stopped-source'
            ? `the source copy (pid ${this.pid}) is kept stopped and nothing runs`
            : 'the process is lost';
    return new MigrationError(`migration ${this.id} failed at ${this.step}: ${message}; ${where}`, {
      step: this.step,
      runningOn,
      cause,
      ...(code ? { code } : {}),
      ...(runningOn === 'target' ? { pid: this.targetPid } : runningOn === 'none' ? {} : { pid: this.pid }),
    });
  }

  async run(): Promise<MigrationResult> {
    this.phase('connect');
    const identity = makeIdentity(this.tlsDir, `serverlessos-migration-${this.id}`);
    identity.catch(() => undefined);
    try {
      this.ch = await AuthChannel.connect({
        ...this.o.to,
        secret: this.o.secret,
        signal: this.user.signal,
        liveness: liveness(this.o.idleTimeoutMs),
      });
    } catch (e) {
      await identity.catch(() => undefined);
      await fs.promises.rm(this.tlsDir, { recursive: true, force: true }).catch(() => undefined);
      throw this.error(
        `cannot reach the target agent at ${this.o.to.host}:${this.o.to.port}: ${describe(e)}`,
        'source',
        e,
      );
    }
    const ch = this.ch;
    try {
      this.step = 'accept';
      let me: TlsIdentity;
      try {
        me = await identity;
      } catch (e) {
        throw this.error(`cannot make this side's TLS identity in ${this.tlsDir}: ${describe(e)}`, 'source', e);
      }
      ch.send({
        op: 'incoming',
        id: this.id,
        mode: this.o.mode,
        criu: { ...this.o.flags },
        cert: me.certPem,
        ...(this.o.move ? { moveAddress: { ...this.o.move } } : {}),
      });
      const r = await ch.waitFor(
        (m) => m.id === this.id && (m.op === 'accepted' || m.op === 'refused'),
        30_000,
        'the answer to our migration request',
      );
      if (r.op === 'refused')
        throw this.error(
          `the target refused: ${typeof r.reason === 'string' ? r.reason.slice(0, 1000) : 'no reason'}`,
          'source',
          undefined,
          'ERR_MIGRATION_REFUSED',
        );
      try {
        this.tls = {
          cert: me.certFile,
          key: me.keyFile,
          caCert: await trustPeer(path.join(this.tlsDir, 'peer.pem'), r.cert),
        };
      } catch (e) {
        ch.send({ op: 'abort', id: this.id, reason: describe(e) });
        throw this.error(`the target's certificate: ${describe(e)}`, 'source', e, 'ERR_BAD_MESSAGE');
      }
      const here = placeId();
      const there = typeof r.place === 'string' ? r.place : '';
      this.sameNetns = there === here;
      this.sameHost = there.split('/')[0] === here.split('/')[0];
      this.handover =
        this.o.mode === 'precopy' && (this.o.strategy === 'handover' || (this.o.strategy === 'auto' && this.sameHost));
      ch.on('message', (m) => this.onMessage(m));
      return await this.migrate();
    } catch (e) {
      if (e instanceof MigrationError) throw e;
      throw this.error(describe(e), 'source', e);
    } finally {
      ch.close();
      await fs.promises.rm(this.tlsDir, { recursive: true, force: true }).catch(() => undefined);
      if (!this.o.keepImages && !this.keep)
        await fs.promises.rm(this.imagesDir, { recursive: true, force: true }).catch(() => undefined);
    }
  }

  private onMessage(m: Message) {
    if (m.id !== this.id) return;
    if (m.op === 'pages-received' || m.op === 'pages-done') {
      // The target counts the page bytes its CRIU received (we cannot see CRIU's TLS stream).
      const n = typeof m.bytes === 'number' && Number.isSafeInteger(m.bytes) && m.bytes >= 0 ? m.bytes : this.pageBytes;
      if (n > this.pageBytes) {
        this.moved(n - this.pageBytes, true);
        this.pageBytes = n;
      }
      if (m.op === 'pages-done') {
        // Exact, where the running post-copy estimate counted protocol bytes too: for the result only.
        this.pageBytesExact = n;
        this.pagesDone();
      }
    } else if (m.op === 'failed') this.targetFailure ??= wireError(m);
  }

  /** The lazy dump serves pages (CRIU's status-ready): the target may restore. */
  private served: () => void = () => {};
  /** Keep the images (an in-doubt hand-over: they are the process now). */
  private keep = false;

  /**
   * Make a lazy dump's page server give up: connect and hang up at once (retrying until it
   * listens). That fails its TLS handshake, so the dump ends and CRIU lets the source run.
   */
  private endPageServer(ms = 30_000) {
    const ps = this.pageServer;
    if (!ps) return;
    const end = Date.now() + ms;
    const attempt = () => {
      const s = net.connect(ps.port, ps.address);
      s.once('connect', () => s.destroy());
      s.once('error', () => {
        s.destroy();
        if (Date.now() < end) setTimeout(attempt, 20);
      });
    };
    attempt();
  }

  private async migrate(): Promise<MigrationResult> {
    this.step = 'dump';
    this.phase('dump');
    const before = await nftTables();
    const postcopy = this.o.mode === 'postcopy';
    const ch = this.ch!;
    const pagesDone = new Promise<void>((r) => (this.pagesDone = r));
    if (postcopy) {
      // Our dump serves the pages, on the address the target sees us at.
      const address = hostAddress(ch.socket.localAddress);
      this.pageServer = { address, port: await freePort(address) };
    } else if (!this.handover) {
      // Pages go straight from the dump to a page server on the target (a hand-over keeps
      // them here instead, to restore back from if the target cannot restore).
      const failed = this.targetFailed();
      failed.catch(() => undefined);
      ch.send({ op: 'page-server', id: this.id });
      try {
        const m = await Promise.race([
          ch.waitFor((x) => x.id === this.id && x.op === 'page-server', 0, "the target's page server"),
          failed,
        ]);
        this.pageServer = pageServerAt(m);
      } catch (e) {
        return await this.dumpFailed(e, before);
      }
    }
    let dumpStats: criu.DumpStats | null = null;
    const served = new Promise<void>((r) => (this.served = r));
    const dumping = criu.dump({
      pid: this.pid,
      imagesDir: this.imagesDir,
      leaveStopped: true,
      ...this.o.flags,
      ...(this.o.flags.tcpEstablished ? { networkLock: 'nftables' as const } : {}),
      ...(postcopy ? { lazyPages: true } : {}),
      ...(this.pageServer ? { pageServer: { ...this.pageServer, tls: this.tls! } } : {}),
      ...(this.user.signal ? { signal: this.user.signal } : {}),
      hooks: {
        preDump: () => {
          this.frozenAt = performance.now();
        },
        any: (e) => {
          if (e.script === 'status-ready') this.served();
        },
        postDump: () =>
          this.afterDump().catch((e: unknown) => {
            // A lazy dump starts its page server even after a failed post-dump hook and
            // would wait for a lazy-pages daemon forever: end that wait, so CRIU resumes the source.
            if (postcopy) this.endPageServer();
            throw e;
          }),
      },
    });
    try {
      if (postcopy) {
        // The page server listens (status-ready): restore on the target now, pages flow.
        const early = await Promise.race([
          served.then(() => null),
          dumping.then(
            () => new Error('the lazy dump ended before the target restored'),
            (e: unknown) => e,
          ),
        ]);
        if (early) throw early instanceof Error ? early : new Error(describe(early));
        try {
          await this.restoreOnTarget();
          this.step = 'pages';
          this.phase('pages');
        } catch (e) {
          // Not resumed on the target: end the page server so CRIU lets the source run again.
          this.endPageServer();
          await dumping.catch(() => undefined);
          throw e;
        }
      }
      const res = await dumping;
      // CRIU 4.1.1 zeroes its counters when the lazy page server starts: no dump figures then.
      dumpStats = postcopy ? null : res.stats;
      // The target's last count of page bytes follows at once (its lazy-pages daemon ended first).
      if (postcopy) await Promise.race([pagesDone, new Promise((r) => setTimeout(r, 2000).unref())]);
    } catch (e) {
      return await this.dumpFailed(e, before);
    }
    // The dump returned: the source tree is stopped (and, post-copy, every page has moved).
    if (!this.frozenAt) this.frozenAt = performance.now();
    await killTree(this.pid);
    if (this.handover) {
      // Hand-over: the stopped copy is gone; its images stay here until the target runs,
      // to restore back if it cannot.
      try {
        await this.restoreOnTarget();
      } catch (e) {
        if (this.ch && !this.ch.closed) this.ch.send({ op: 'abort', id: this.id, reason: describe(e) });
        return await this.restoreBack(e);
      }
    }
    if (!this.sameNetns) {
      // The lock CRIU left in this namespace guards 4-tuples that now live on the target.
      await dropNewLocks(before);
    }
    this.phase('done');
    return {
      id: this.id,
      mode: this.o.mode,
      downtimeMs: this.resumedAt - this.frozenAt,
      totalMs: performance.now() - this.t0,
      ...this.totals(),
      criu: { dump: dumpStats, restore: this.restoreStats },
      sourcePid: this.pid,
      targetPid: this.targetPid,
      strategy: this.handover ? 'handover' : 'commit',
      sameHost: this.sameHost,
      phases: this.phases,
    };
  }

  /** Bytes and pages moved, with the target's exact page count where it sent one. */
  private totals(): { bytes: number; pages: number } {
    const fix = this.pageBytesExact === null ? 0 : this.pageBytesExact - this.pageBytes;
    return { bytes: this.progress.bytes + fix, pages: Math.round(this.progress.pages + fix / 4096) };
  }

  /** Inside CRIU's post-dump hook: the tree is frozen, its images are written. */
  private async afterDump(): Promise<void> {
    if (!this.frozenAt) this.frozenAt = performance.now();
    const ch = this.ch!;
    if (this.o.move && !this.sameNetns) {
      this.step = 'address';
      this.addressRemoved = await deleteAddress(this.o.move);
    }
    this.step = 'transfer';
    this.phase('transfer');
    // Page images are here only in a hand-over (else the dump sent them to the target's page server).
    const pageFile = /^pages-\d+\.img$/;
    await sendImages(
      ch,
      this.id,
      this.imagesDir,
      () => this.stream++,
      (n, file) => this.moved(n, pageFile.test(file)),
      (name) => name === 'stats-dump' || name.endsWith('.log'),
    );
    if (this.targetFailure) throw new Error(`target: ${this.targetFailure.message}`);
    if (this.handover) {
      // The target must have every byte on disk before the source copy goes.
      const failed = this.targetFailed();
      failed.catch(() => undefined);
      ch.send({ op: 'flush', id: this.id });
      await Promise.race([ch.waitFor((m) => m.id === this.id && m.op === 'flushed', 0, 'the images on disk'), failed]);
      return;
    }
    if (this.o.mode === 'postcopy') {
      // The restore itself faults pages in (the sigframes on the stacks), so CRIU's page
      // server must run before it: the target gets ready, then this hook returns.
      this.step = 'restore';
      const failed = this.targetFailed();
      failed.catch(() => undefined);
      ch.send({ op: 'prepare', id: this.id, pageServer: { ...this.pageServer! } });
      await Promise.race([
        ch.waitFor((m) => m.id === this.id && m.op === 'prepared', 0, 'the target to get ready'),
        failed,
      ]);
      return;
    }
    await this.restoreOnTarget();
  }

  private targetFailed(): Promise<never> {
    return this.ch!.waitFor((m) => m.id === this.id && m.op === 'failed').then((m) => {
      const w = wireError(m);
      throw Object.assign(new Error(`target ${w.step} failed: ${w.message}`), { code: w.code });
    });
  }

  /** Ask the target to restore; commit when it holds the restored tree; wait until it runs. */
  private async restoreOnTarget(): Promise<void> {
    const ch = this.ch!;
    this.step = 'restore';
    this.phase('restore');
    const failed = this.targetFailed();
    failed.catch(() => undefined);
    if (this.targetFailure) throw new Error(`target ${this.targetFailure.step} failed: ${this.targetFailure.message}`);
    ch.send({ op: 'restore', id: this.id });
    await Promise.race([ch.waitFor((m) => m.id === this.id && m.op === 'ready', 0, 'the restored tree'), failed]);
    this.step = 'commit';
    this.phase('commit');
    this.committed = true;
    let resumed: Message;
    try {
      ch.send({ op: 'commit', id: this.id });
      resumed = await Promise.race([
        ch.waitFor((m) => m.id === this.id && m.op === 'resumed', 0, 'the resumed process'),
        failed,
      ]);
    } catch (e) {
      if (!ch.closed) throw e;
      resumed = await this.askOutcome(e);
    }
    this.resumedAt = performance.now();
    this.targetPid = typeof resumed.pid === 'number' ? resumed.pid : 0;
    this.restoreStats = (resumed.restore ?? null) as criu.RestoreStats | null;
  }

  /** The channel dropped after our commit: ask the target (new connections) whether it resumed. */
  private async askOutcome(lost: unknown): Promise<Message> {
    const end = Date.now() + this.o.inDoubtMs;
    while (Date.now() < end) {
      try {
        const ch = await AuthChannel.connect({
          ...this.o.to,
          secret: this.o.secret,
          timeoutMs: 5000,
          liveness: liveness(this.o.idleTimeoutMs),
        });
        try {
          ch.send({ op: 'status', id: this.id });
          const s = await ch.waitFor(
            (m) => m.op === 'status' && m.id === this.id,
            Math.max(1000, end - Date.now()),
            'the migration status',
          );
          if (s.state === 'resumed') return { op: 'resumed', id: this.id, pid: s.pid };
          throw Object.assign(
            new Error(`the connection dropped after the commit and the target reports ${String(s.state)}`),
            { settled: true },
          );
        } finally {
          ch.close();
        }
      } catch (e) {
        if ((e as { settled?: boolean }).settled) throw e;
        await new Promise((r) => setTimeout(r, 200));
      }
    }
    throw Object.assign(
      new Error(
        `the connection dropped after the commit (${describe(lost)}) and the target could not be asked within ${this.o.inDoubtMs} ms`,
      ),
      { inDoubt: true },
    );
  }

  /** The dump call failed: find out where the process runs, undo what we did here, and say so. */
  private async dumpFailed(e: unknown, before: Set<string>): Promise<never> {
    const cause =
      (e as { code?: string; cause?: unknown }).code === 'ERR_CRIU_HOOK' ? (e as { cause?: unknown }).cause : e;
    if (this.o.mode === 'postcopy' && this.resumedAt) {
      // The page transfer broke after the target resumed: the memory is split between the
      // nodes, the target kills its copy (its missing pages would read as zeros), and CRIU
      // leaves ours stopped. Running ours would replay what already ran there: keep it stopped.
      const st = state(this.pid);
      throw this.error(
        `the page transfer failed after the process resumed on the target: ${describe(cause)}`,
        st === 'T' || st === 't' ? 'stopped-source' : 'none',
        cause,
        'ERR_MIGRATION_PAGES',
      );
    }
    if (this.ch && !this.ch.closed) {
      try {
        this.ch.send({ op: 'abort', id: this.id, reason: describe(cause) });
      } catch {
        // gone
      }
    }
    // The target never ran it (else we would not be here): a lazy dump whose page server
    // was hung up on counts as done and leaves the tree stopped. Let every thread run again.
    await resumeTree(this.pid);
    const st = state(this.pid);
    const sourceRuns = st !== null && st !== 'T' && st !== 't' && st !== 'Z';
    if (sourceRuns && this.o.mode === 'postcopy' && this.frozenAt) {
      // CRIU 4.1.1 left its lock here after a failed lazy dump (scripts/criu/*lazy-dump-rollback.patch).
      await dropNewLocks(before);
    }
    if (this.addressRemoved && this.o.move) await addAddress(this.o.move).catch(() => undefined);
    if ((cause as { inDoubt?: boolean }).inDoubt && this.o.mode === 'precopy') {
      throw this.error(describe(cause), sourceRuns ? 'source' : 'stopped-source', cause, 'ERR_MIGRATION_IN_DOUBT');
    }
    throw this.error(describe(cause), sourceRuns ? 'source' : 'none', cause);
  }

  /** One namespace, the source copy already gone, the target could not restore: restore here. */
  private async restoreBack(cause: unknown): Promise<never> {
    if ((cause as { inDoubt?: boolean }).inDoubt) {
      this.keep = true;
      throw this.error(
        `${describe(cause)}; its images are kept in ${this.imagesDir}`,
        'none',
        cause,
        'ERR_MIGRATION_IN_DOUBT',
      );
    }
    let release: (() => Promise<void>) | null = null;
    try {
      if (this.addressRemoved && this.o.move) {
        release = await holdAddress(this.o.move.address);
        await addAddress(this.o.move);
        this.addressRemoved = false;
      }
      const r = await criu
        .restore({ imagesDir: this.imagesDir, detached: true, ...this.o.flags })
        .finally(() => release?.());
      throw new MigrationError(
        `migration ${this.id} failed at ${this.step}: ${describe(cause)}; the process was restored on the source (pid ${r.pid})`,
        { step: this.step, runningOn: 'source', pid: r.pid, cause },
      );
    } catch (e) {
      if (e instanceof MigrationError) throw e;
      throw this.error(`${describe(cause)}; restoring it back here failed too: ${describe(e)}`, 'none', cause);
    }
  }
}

export { ID };
