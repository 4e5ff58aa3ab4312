// The sending side of a migration. The dump leaves the tree stopped and
// calls our post-dump hook with every image written; inside that hook the
// images travel, the target restores and holds at post-restore, we commit,
// and it resumes. Only when the target said "resumed" does the hook return
// (and we kill the stopped copy). If anything fails before that, the hook
// throws: CRIU then unlocks the network and resumes the source itself.
//
// This file holds the run from connecting to the result; the phases live beside it:
// source-options (checked options), source-link (the typed channel to the target),
// source-progress (progress events), source-commit (commit and in-doubt outcome),
// lazy-dump (post-copy's page server), source-rollback (undoing a failed run).
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import * as criu from '../criu/index.js';
import { SosError } from '../errors.js';
import { makeIdentity, trustPeer, type TlsIdentity } from '../net/cert.js';
import { AuthChannel } from '../net/channel.js';
import { deleteAddress } from './address.js';
import { InDoubtError, MigrationError, describe, type MigrationStep, type RunningOn } from './errors.js';
import { failpoint } from '../failpoint.js';
import { sendImages } from './images.js';
import { endPageServer, freePort } from './lazy-dump.js';
import { alive, holdStopped, killTree, placeId, startedAt } from './proc.js';
import { syncTree, type MigrationRecord, type RecordState, type RecordStore } from './record.js';
import { sourceRecords } from './resolve.js';
import { hostAddress } from './protocol.js';
import { restoreAndCommit, type Resumed } from './source-commit.js';
import { TargetLink } from './source-link.js';
import { check, liveness, type Checked } from './source-options.js';
import { ProgressMeter } from './source-progress.js';
import { criuLocks, dropNewLocks, dumpFailed, restoreBack, type Scene } from './source-rollback.js';
import type { MigrateOptions, MigrationResult, Phase } from './types.js';

/** Migrate the process tree rooted at `pid` (the init of its own PID namespace) to another node's agent. */
export async function migrate(pid: number, options: MigrateOptions): Promise<MigrationResult> {
  const o = check(pid, options);
  if (!alive(pid))
    throw new MigrationError(`no process ${pid}`, { code: 'ERR_NO_PROCESS', step: 'validate', runningOn: 'none' });
  return new SourceRun(pid, o, options).run();
}

/** Where source and target run, learnt from the target's `accepted`. */
interface Placement {
  /** The target shares this namespace (no address move, no lock to clean). */
  sameNetns: boolean;
  sameHost: boolean;
  /** Kill the source once the images are safe on the target (see MigrateOptions.strategy). */
  handover: boolean;
}

class SourceRun implements Scene {
  readonly id: string;
  readonly imagesDir: string;
  /** This side's TLS identity and the target's certificate, for CRIU's page-server connection. */
  private readonly tlsDir: string;
  private readonly meter: ProgressMeter;
  step: MigrationStep = 'connect';
  link: TargetLink | null = null;
  private place: Placement = { sameNetns: false, sameHost: false, handover: false };
  private tls: criu.CriuTls | null = null;
  /** Post-copy: where our dump serves pages. Pre-copy (commit): the target's page server. */
  private pageServer: { address: string; port: number } | null = null;
  locksBefore = new Set<string>();
  private frozenAt = 0;
  private outcome: Resumed | null = null;
  addressRemoved = false;
  /** Keep the images (an in-doubt hand-over: they are the process now). */
  private keep = false;
  /** The commit's outcome could not be learnt: the source copy stays stopped. */
  private inDoubt: InDoubtError | null = null;
  private readonly records: RecordStore;

  constructor(
    readonly pid: number,
    readonly o: Checked,
    private readonly user: MigrateOptions,
  ) {
    this.id = o.id ?? crypto.randomBytes(16).toString('hex');
    this.imagesDir = path.join(o.workDir, this.id);
    this.tlsDir = `${this.imagesDir}.tls`;
    this.meter = new ProgressMeter(user.onProgress);
    this.records = user.records ?? sourceRecords(o.workDir);
  }

  /** Record how far this run got, durably, before acting on it (see resolve.ts). */
  private async record(state: RecordState, extra: Partial<MigrationRecord> = {}): Promise<void> {
    await this.records.put({
      id: this.id,
      role: 'source',
      state,
      mode: this.o.mode,
      pid: this.pid,
      started: startedAt(this.pid) ?? undefined,
      to: { ...this.o.to },
      ...(this.o.move ? { move: { ...this.o.move } } : {}),
      tcp: this.o.flags.tcpEstablished === true,
      locksBefore: [...this.locksBefore],
      owner: { pid: process.pid, started: startedAt(process.pid) ?? '' },
      ...extra,
      updated: '',
    });
  }

  get frozen(): boolean {
    return this.frozenAt > 0;
  }

  get resumed(): boolean {
    return this.outcome !== null;
  }

  private enter(step: MigrationStep, phase?: Phase) {
    this.step = step;
    if (phase) this.meter.phase(phase);
  }

  error(message: string, runningOn: RunningOn, cause?: unknown, code?: string): MigrationError {
    const targetPid = this.outcome?.pid ?? 0;
    const where =
      runningOn === 'source'
        ? `the process runs on the source (pid ${this.pid})`
        : runningOn === 'target'
          ? `the process runs on the target (pid ${targetPid})`
          : runningOn === 'stopped-source'
            ? `the source copy (pid ${this.pid}) is kept stopped and nothing runs`
            : 'the process is lost';
    return new MigrationError(`migration ${this.id} failed at ${this.step}: ${message}; ${where}`, {
      step: this.step,
      runningOn,
      cause,
      ...(code ? { code } : {}),
      ...(runningOn === 'target' ? { pid: targetPid } : runningOn === 'none' ? {} : { pid: this.pid }),
    });
  }

  async run(): Promise<MigrationResult> {
    this.meter.phase('connect');
    const identity = makeIdentity(this.tlsDir, `serverlessos-migration-${this.id}`);
    identity.catch(() => undefined);
    let ch: AuthChannel;
    try {
      ch = await AuthChannel.connect({
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
    const link = (this.link = new TargetLink(ch, this.id, this.meter));
    let recorded = false;
    try {
      await this.accept(link, identity);
      this.locksBefore = await criuLocks();
      try {
        await this.record('started');
        recorded = true;
        failpoint('source-started'); // recorded, nothing frozen yet
      } catch (e) {
        link.abort(describe(e));
        throw this.error(`cannot record the migration in ${this.o.workDir}: ${describe(e)}`, 'source', e);
      }
      const result = await this.migrate(link);
      await this.record('done').catch(() => undefined);
      return result;
    } catch (e) {
      const err = e instanceof MigrationError ? e : this.error(describe(e), 'source', e);
      // What the resolver must still settle stays in doubt; anything else is over.
      if (recorded) {
        // In doubt: a commit's source copy kept stopped, or a hand-over's images kept (the process now).
        const doubt = err.code === 'ERR_MIGRATION_IN_DOUBT' && (err.runningOn === 'stopped-source' || this.keep);
        const lost = err.code === 'ERR_MIGRATION_PAGES';
        // No owner any more: the resolver (an agent's, every few seconds) may act on it now.
        await this.record(doubt ? 'in-doubt' : lost ? 'failed' : 'aborted', {
          owner: undefined,
          ...(this.keep ? { imagesDir: this.imagesDir } : {}),
        }).catch(() => undefined);
      }
      throw err;
    } finally {
      ch.close();
      await fs.promises.rm(this.tlsDir, { recursive: true, force: true }).catch(() => undefined);
      if (!this.o.keepImages && !this.keep)
        await fs.promises.rm(this.imagesDir, { recursive: true, force: true }).catch(() => undefined);
    }
  }

  /** Ask the target to take the migration; trust its certificate; learn where it runs. */
  private async accept(link: TargetLink, identity: Promise<TlsIdentity>): Promise<void> {
    this.enter('accept');
    let me: TlsIdentity;
    try {
      me = await identity;
    } catch (e) {
      throw this.error(`cannot make this side's TLS identity in ${this.tlsDir}: ${describe(e)}`, 'source', e);
    }
    link.send({
      op: 'incoming',
      id: this.id,
      mode: this.o.mode,
      criu: { ...this.o.flags },
      cert: me.certPem,
      ...(this.o.move ? { moveAddress: { ...this.o.move } } : {}),
    });
    const r = await link.ask(null, ['accepted', 'refused'], 'the answer to our migration request', 30_000);
    if (r.op === 'refused')
      throw this.error(`the target refused: ${r.reason}`, 'source', undefined, 'ERR_MIGRATION_REFUSED');
    try {
      this.tls = {
        cert: me.certFile,
        key: me.keyFile,
        caCert: await trustPeer(path.join(this.tlsDir, 'peer.pem'), r.cert),
      };
    } catch (e) {
      link.abort(describe(e));
      throw this.error(`the target's certificate: ${describe(e)}`, 'source', e, 'ERR_BAD_MESSAGE');
    }
    const here = placeId();
    const sameHost = r.place.split('/')[0] === here.split('/')[0];
    this.place = {
      sameNetns: r.place === here,
      sameHost,
      handover:
        this.o.mode === 'precopy' && (this.o.strategy === 'handover' || (this.o.strategy === 'auto' && sameHost)),
    };
  }

  /** Dump (its post-dump hook moves the images and commits), then end the stopped copy. */
  private async migrate(link: TargetLink): Promise<MigrationResult> {
    this.enter('dump', 'dump');
    if (this.user.beforeDump) {
      try {
        await this.user.beforeDump();
      } catch (e) {
        throw this.error(`before the dump: ${describe(e)}`, 'source', e);
      }
    }
    const postcopy = this.o.mode === 'postcopy';
    if (postcopy) {
      // Our dump serves the pages, on the address the target sees us at.
      const address = hostAddress(link.ch.socket.localAddress);
      this.pageServer = { address, port: await freePort(address) };
    } else if (!this.place.handover) {
      // Pages go straight from the dump to a page server on the target (a hand-over keeps
      // them here instead, to restore back from if the target cannot restore).
      try {
        const m = await link.ask({ op: 'page-server', id: this.id }, ['page-server'], "the target's page server");
        this.pageServer = m.pageServer;
      } catch (e) {
        return await dumpFailed(this, e);
      }
    }
    let served: () => void = () => {};
    const serving = new Promise<void>((r) => (served = r));
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
          failpoint('source-in-pre-dump'); // CRIU froze the tree and waits for this hook
        },
        any: (e) => {
          if (e.script === 'status-ready') served();
        },
        postDump: () =>
          this.afterDump(link).catch((e: unknown) => {
            // A lazy dump starts its page server even after a failed post-dump hook and
            // would wait for a lazy-pages daemon forever: end that wait, so CRIU resumes the source.
            if (postcopy) endPageServer(this.pageServer);
            throw e;
          }),
      },
    });
    let dumpStats: criu.DumpStats | null = null;
    try {
      if (postcopy) await this.restoreLazily(link, serving, dumping);
      const res = await dumping;
      // CRIU 4.1.1 zeroes its counters when the lazy page server starts: no dump figures then.
      dumpStats = postcopy ? null : res.stats;
      // The target's last count of page bytes follows at once (its lazy-pages daemon ended first).
      if (postcopy) await Promise.race([link.pagesDone, new Promise((r) => setTimeout(r, 2000).unref())]);
    } catch (e) {
      return await dumpFailed(this, e);
    }
    // The dump returned: the source tree is stopped (and, post-copy, every page has moved).
    if (!this.frozenAt) this.frozenAt = performance.now();
    if (this.inDoubt) throw this.stayStopped(this.inDoubt);
    if (this.place.handover) {
      // From here the images are the process: a dead agent's successor restores them if the
      // target says it never ran it. CRIU does not fsync them: on disk before the copy goes.
      await syncTree(this.imagesDir);
      await this.record('committing', { imagesDir: this.imagesDir });
    }
    await killTree(this.pid);
    if (this.place.handover) {
      // Hand-over: the stopped copy is gone; its images stay here until the target runs,
      // to restore back if it cannot.
      try {
        await this.restoreOnTarget(link);
      } catch (e) {
        link.abort(describe(e));
        return await restoreBack(this, e, () => (this.keep = true));
      }
    }
    // The lock CRIU left in this namespace guards 4-tuples that now live on the target.
    if (!this.place.sameNetns) await dropNewLocks(this.locksBefore);
    const outcome = this.outcome!;
    this.meter.phase('done');
    return {
      id: this.id,
      mode: this.o.mode,
      downtimeMs: outcome.at - this.frozenAt,
      totalMs: this.meter.elapsedMs,
      ...this.meter.totals(),
      criu: { dump: dumpStats, restore: outcome.restore },
      sourcePid: this.pid,
      targetPid: outcome.pid,
      strategy: this.place.handover ? 'handover' : 'commit',
      sameHost: this.place.sameHost,
      phases: this.meter.phases,
    };
  }

  /** Post-copy: once the lazy dump serves pages (status-ready), restore on the target; pages flow. */
  private async restoreLazily(link: TargetLink, serving: Promise<void>, dumping: Promise<unknown>): Promise<void> {
    const early = await Promise.race([
      serving.then(() => null),
      dumping.then(
        () => new SosError('the lazy dump ended before the target restored', { code: 'ERR_CRIU' }),
        (e: unknown) => e,
      ),
    ]);
    if (early) throw early instanceof Error ? early : new SosError(describe(early), { code: 'ERR_CRIU' });
    try {
      await this.restoreOnTarget(link);
      this.enter('pages', 'pages');
    } catch (e) {
      if (e instanceof InDoubtError) {
        // The target may run it and pull its pages: keep serving them until its lazy-pages
        // daemon is done or gone; the copy here stays stopped.
        this.inDoubt = e;
        await this.record('in-doubt').catch(() => undefined);
        return;
      }
      // Not resumed on the target: end the page server so CRIU lets the source run again.
      endPageServer(this.pageServer);
      await dumping.catch(() => undefined);
      throw e;
    }
  }

  /** Inside CRIU's post-dump hook: the tree is frozen, its images are written. */
  private async afterDump(link: TargetLink): Promise<void> {
    if (!this.frozenAt) this.frozenAt = performance.now();
    // From here a copy may come to run on the target: should CRIU die now (killed, OOM), the
    // tree it lets go stays stopped, not running beside that copy (resumeTree undoes this).
    holdStopped(this.pid);
    failpoint('source-in-post-dump');
    if (this.o.move && !this.place.sameNetns) {
      this.enter('address');
      this.addressRemoved = await deleteAddress(this.o.move);
    }
    this.enter('transfer', 'transfer');
    // Page images are here only in a hand-over (else the dump sent them to the target's page server).
    const pageFile = /^pages-\d+\.img$/;
    await sendImages(
      link,
      this.imagesDir,
      (n, file) => this.meter.sentBytes(n, pageFile.test(file)),
      (name) => name === 'stats-dump' || name.endsWith('.log'),
    );
    if (link.targetFailure) throw link.targetFailure;
    if (this.place.handover) {
      // The target must have every byte on disk before the source copy goes.
      await link.ask({ op: 'flush', id: this.id }, ['flushed'], 'the images on disk');
      return;
    }
    if (this.o.mode === 'postcopy') {
      // The restore itself faults pages in (the sigframes on the stacks), so CRIU's page
      // server must run before it: the target gets ready, then this hook returns.
      this.enter('restore');
      await link.ask(
        { op: 'prepare', id: this.id, pageServer: { ...this.pageServer! } },
        ['prepared'],
        'the target to get ready',
      );
      return;
    }
    try {
      await this.restoreOnTarget(link);
    } catch (e) {
      // In doubt: the hook succeeds, so CRIU leaves the tree stopped (never resumes it).
      if (!(e instanceof InDoubtError)) throw e;
      this.inDoubt = e;
      await this.record('in-doubt').catch(() => undefined);
    }
  }

  /** Restore on the target and commit; the process runs there when this resolves. */
  private async restoreOnTarget(link: TargetLink): Promise<void> {
    this.enter('restore', 'restore');
    this.outcome = await restoreAndCommit(link, this.o, async () => {
      // Durable before the commit goes out: a successor agent must know it may have.
      await this.record('committing', this.place.handover ? { imagesDir: this.imagesDir } : {});
      failpoint('source-committing');
      this.enter('commit', 'commit');
    });
  }

  /** The commit's outcome is unknown: nothing runs here, the copy stays stopped until resolved. */
  private stayStopped(e: InDoubtError): MigrationError {
    return this.error(
      `${describe(e)}; resolve it once the target is reachable: resolveMigration('${this.id}', { workDir: '${this.o.workDir}', secret }) ` +
        `or \`agent-main.js resolve --id ${this.id}\` (a migration agent retries by itself)`,
      'stopped-source',
      e,
      'ERR_MIGRATION_IN_DOUBT',
    );
  }
}
