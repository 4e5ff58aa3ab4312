// The receiving side of one migration, inside a target agent: take the
// images, move the address in, restore, and hold the restored tree at CRIU's
// post-restore point (not yet running, network still locked) until the
// source says commit. Without a commit — the source aborted, the channel
// dropped, the deadline passed — the hook fails and CRIU kills what it
// restored, so the process never runs on both sides.
import fs from 'node:fs';
import path from 'node:path';
import * as criu from '../criu/index.js';
import { makeIdentity, trustPeer } from '../net/cert.js';
import { SosError } from '../errors.js';
import type { AuthChannel, Message } from '../net/channel.js';
import { addAddress, deleteAddress, holdAddress, type Announce, type MoveAddress } from './address.js';
import { describe } from './errors.js';
import { failpoint } from '../failpoint.js';
import { ImageReceiver } from './images.js';
import { parseToAgent, send, type Incoming, type ToSource, type TargetState } from './messages.js';
import { alive, killTree, startedAt } from './proc.js';
import { syncTree, type RecordStore, type RecordState } from './record.js';
import { ProtocolError, hostAddress, type CriuFlags, type Mode } from './protocol.js';

/** In a migration folder: the moving address this target added, while its process has not resumed. */
export const ADDRESS_FILE = 'address.json';

/** How often the target tells the source how many page bytes arrived. */
const METER_MS = 250;

export interface Outcome {
  state: TargetState;
  /** It is failing: its final state is being recorded (a status asked now waits for it). */
  ending?: boolean;
  pid?: number;
  settled: Promise<void>;
}

export interface TargetConfig {
  workDir: string;
  announce: Announce;
  /** How long a restored tree waits for the source's commit (default 60 s). */
  commitTimeoutMs: number;
  /** Largest image set accepted (default 64 GiB). */
  maxImageBytes: number;
  log: (line: string) => void;
  /** Where the decisions are kept durably (see record.ts). */
  records: RecordStore;
  restoreOptions?: (id: string) => TargetRestoreOptions;
  onRestored?: (id: string, pid: number) => Promise<void>;
  onResumed?: (id: string, pid: number) => void;
}

/** What an agent's owner may add to a restore. */
export interface TargetRestoreOptions {
  inheritFds?: { key: string; fd: number }[];
}

export class TargetSession {
  readonly dir: string;
  readonly imagesDir: string;
  private readonly mode: Mode;
  private readonly move: MoveAddress | undefined;
  private readonly flags: CriuFlags;
  private readonly receiver: ImageReceiver;
  /** The source's certificate as it sent it (checked in prepare()). */
  private readonly peerCert: string;
  private tls: criu.CriuTls | null = null;
  /** Pre-copy: the CRIU page server the source's dump sends pages to. */
  private pageServer: criu.CriuDaemon | null = null;
  private pageServerDone: Promise<void> | null = null;
  /** Post-copy: where the source's dump serves pages. */
  private lazySource: { address: string; port: number } | null = null;
  private meter: NodeJS.Timeout | null = null;
  private addressAdded = false;
  private decision: { resolve: () => void; reject: (e: Error) => void } | null = null;
  private decided: 'commit' | Error | null = null;
  private lazy: criu.CriuDaemon | null = null;
  private settle!: () => void;
  readonly outcome: Outcome;
  private finished = false;
  private restoring = false;
  private preparing: Promise<void> | null = null;
  private step = 'transfer';
  /** Ends the drop of the moving address's packets (after the restore). */
  private release: (() => Promise<void>) | null = null;

  constructor(
    private readonly ch: AuthChannel,
    readonly id: string,
    m: Incoming,
    private readonly cfg: TargetConfig,
  ) {
    this.mode = m.mode;
    this.move = m.moveAddress;
    this.flags = m.criu;
    this.dir = path.join(cfg.workDir, id);
    this.imagesDir = path.join(this.dir, 'images');
    this.receiver = new ImageReceiver(ch, this.imagesDir, cfg.maxImageBytes, (e) => void this.fail('transfer', e));
    this.peerCert = m.cert;
    this.outcome = { state: 'receiving', settled: new Promise((r) => (this.settle = r)) };
  }

  /**
   * Make the folder and this side's TLS identity, and trust the source's certificate;
   * resolves with our certificate for the source. Throws (→ refused) when anything is wrong.
   */
  async prepare(): Promise<string> {
    await fs.promises.mkdir(this.imagesDir, { recursive: true, mode: 0o700 });
    const dir = path.join(this.dir, 'tls');
    const me = await makeIdentity(dir, `serverlessos-migration-${this.id}`);
    const caCert = await trustPeer(path.join(dir, 'peer.pem'), this.peerCert).catch((e: Error) => {
      throw new ProtocolError(`the source's certificate: ${e.message}`, { cause: e });
    });
    this.tls = { cert: me.certFile, key: me.keyFile, caCert };
    return me.certPem;
  }

  /** Accept at most `bytes` of images (the work folder's free space at admission). */
  limitImages(bytes: number): void {
    this.receiver.limit(bytes);
  }

  /** Record `state` durably (before anyone is told of it or CRIU acts on it). */
  async record(state: RecordState & TargetState, pid?: number): Promise<void> {
    const p = pid ?? this.outcome.pid;
    await this.cfg.records.put({
      id: this.id,
      role: 'target',
      state,
      mode: this.mode,
      ...(p ? { pid: p, started: startedAt(p) ?? undefined } : {}),
      updated: '',
    });
  }

  private set(state: TargetState, pid?: number) {
    this.outcome.state = state;
    if (pid !== undefined) this.outcome.pid = pid;
    if (state === 'resumed' || state === 'failed' || state === 'aborted') this.settle();
  }

  /** A message of this migration from the source. */
  onMessage(raw: Message): void {
    try {
      const m = parseToAgent(raw);
      switch (m.op) {
        case 'file':
          return this.receiver.open(m);
        case 'file-end':
          return this.receiver.end(m);
        case 'restore':
          return void this.restore();
        case 'page-server':
          return void this.startPageServer();
        case 'prepare':
          if (this.mode !== 'postcopy' || this.lazySource)
            throw new ProtocolError('prepare: not a post-copy, or asked twice');
          this.lazySource = m.pageServer;
          return void this.getReady();
        case 'flush':
          return void this.receiver.flushed().then(
            // The source copy goes once it hears this: the images must survive a power loss.
            async () => {
              await syncTree(this.imagesDir);
              this.send({ op: 'flushed', id: this.id });
            },
            (e: Error) => this.fail('transfer', e),
          );
        case 'commit':
          return this.decide('commit');
        case 'abort':
          return this.decide(new SosError(`the source aborted: ${m.reason}`, { code: 'ERR_MIGRATION' }));
        default:
          throw new ProtocolError(`unexpected message ${m.op}`);
      }
    } catch (e) {
      void this.fail('protocol', e as Error);
    }
  }

  /** A data frame of this migration. */
  onData(stream: number, chunk: Buffer): void {
    try {
      if (this.receiver.owns(stream)) this.receiver.data(chunk);
      else throw new ProtocolError(`data on unknown stream ${stream}`);
    } catch (e) {
      void this.fail('protocol', e as Error);
    }
  }

  /** The channel ended: without a commit the migration is off. */
  onClose(): void {
    this.decide(new SosError('the connection to the source was lost before its commit', { code: 'ECONNRESET' }));
    if (this.outcome.state === 'receiving')
      void this.fail('transfer', new SosError('the connection to the source was lost', { code: 'ECONNRESET' }));
  }

  private decide(d: 'commit' | Error) {
    if (this.decided !== null) return;
    this.decided = d;
    if (this.decision) {
      if (d === 'commit') this.decision.resolve();
      else this.decision.reject(d);
    } else if (d !== 'commit' && this.outcome.state === 'receiving') void this.fail('transfer', d, false);
  }

  private send(m: ToSource) {
    if (!this.ch.closed) send(this.ch, m);
  }

  /**
   * Pre-copy: start a CRIU page server for the source's dump (mutual TLS, the source's
   * certificate only) on the address the source reached us at, and tell it where.
   */
  private async startPageServer(): Promise<void> {
    try {
      if (this.mode !== 'precopy' || this.pageServer || this.outcome.state !== 'receiving')
        throw new ProtocolError('page-server: not a pre-copy, or asked twice or late');
      this.step = 'transfer';
      const address = hostAddress(this.ch.socket.localAddress);
      const ps = await criu.pageServer({
        imagesDir: this.imagesDir,
        workDir: this.dir,
        logFile: 'page-server.log',
        address,
        port: 0,
        tls: this.tls!,
      });
      this.pageServer = ps;
      if (this.finished) return void (await ps.close());
      const stop = this.startMeter(() => this.pageFileBytes());
      // The page server exits once the dump has sent every page: the pages are on disk then.
      this.pageServerDone = ps.exited.finally(async () => {
        stop();
        this.send({ op: 'pages-received', id: this.id, bytes: await this.pageFileBytes() });
      });
      this.pageServerDone.catch(() => undefined);
      if (ps.port === undefined) throw new SosError('the page server did not say its port', { code: 'ERR_CRIU' });
      this.send({ op: 'page-server', id: this.id, pageServer: { address, port: ps.port } });
    } catch (e) {
      await this.fail('transfer', e as Error);
    }
  }

  /** Page bytes written by the page server so far. */
  private async pageFileBytes(): Promise<number> {
    let n = 0;
    for (const f of await fs.promises.readdir(this.imagesDir).catch(() => [])) {
      if (/^pages-\d+\.img$/.test(f))
        n += (await fs.promises.stat(path.join(this.imagesDir, f)).catch(() => ({ size: 0 }))).size;
    }
    return n;
  }

  /** Tell the source every METER_MS how many page bytes arrived (for its progress events); returns stop. */
  private startMeter(count: () => Promise<number>): () => void {
    let last = 0;
    this.meter = setInterval(() => {
      void count().then(
        (bytes) => {
          if (bytes > last && this.meter) this.send({ op: 'pages-received', id: this.id, bytes });
          last = Math.max(last, bytes);
        },
        () => undefined,
      );
    }, METER_MS);
    this.meter.unref();
    return () => {
      if (this.meter) clearInterval(this.meter);
      this.meter = null;
    };
  }

  /** Images on disk, address here (held), post-copy's lazy-pages daemon running: all a restore needs. */
  private prepareRestore(): Promise<void> {
    this.preparing ??= (async () => {
      if (this.outcome.state !== 'receiving') throw new ProtocolError('restore asked twice');
      this.set('restoring');
      this.restoring = true;
      this.step = 'transfer';
      await this.receiver.flushed();
      if (this.pageServerDone) await this.pageServerDone;
      if (this.decided instanceof Error) throw this.decided;
      this.step = 'address';
      if (this.move) {
        const a = { address: this.move.address, prefix: this.move.prefix, dev: this.move.targetDev ?? this.move.dev };
        this.release = await holdAddress(a.address);
        // Until the process runs here, this file says the address is ours to take back
        // (an agent started after this one died does: see MigrationAgent.listen).
        await fs.promises.writeFile(path.join(this.dir, ADDRESS_FILE), JSON.stringify(a));
        await addAddress(a);
        this.addressAdded = true;
        await this.cfg.announce(a);
      }
      this.step = 'restore';
      if (this.mode === 'postcopy') {
        if (!this.lazySource) throw new ProtocolError('restore: the source did not say where its pages are');
        this.lazy = await criu.lazyPages({
          imagesDir: this.imagesDir,
          workDir: this.dir,
          pageServer: { ...this.lazySource, tls: this.tls! },
          ...this.flags,
        });
      }
    })();
    return this.preparing;
  }

  /** Post-copy: get ready, so the source can start serving pages. */
  private async getReady(): Promise<void> {
    try {
      await this.prepareRestore();
      this.send({ op: 'prepared', id: this.id });
    } catch (e) {
      this.restoring = false;
      await this.fail(this.step, e as Error, true, true);
    }
  }

  private async restore(): Promise<void> {
    try {
      await this.prepareRestore();
      const r = await criu.restore({
        imagesDir: this.imagesDir,
        workDir: this.dir,
        detached: true,
        lazyPages: this.mode === 'postcopy',
        ...this.flags,
        ...(this.cfg.restoreOptions?.(this.id) ?? {}),
        hooks: { postRestore: (e) => this.holdForCommit(e.pid) },
      });
      this.restoring = false;
      await this.release?.();
      await fs.promises.rm(path.join(this.dir, ADDRESS_FILE), { force: true });
      await this.record('resumed', r.pid).catch((e: unknown) =>
        this.cfg.log(`migration ${this.id}: cannot record the resume: ${describe(e)}`),
      );
      this.set('resumed', r.pid);
      this.cfg.log(`migration ${this.id}: resumed as pid ${r.pid}`);
      this.cfg.onResumed?.(this.id, r.pid);
      this.send({ op: 'resumed', id: this.id, pid: r.pid, restore: r.stats, ms: r.ms });
      if (this.lazy) await this.servePages(r.pid);
      else await this.cleanup(true);
    } catch (e) {
      this.restoring = false;
      await this.fail(this.step, e as Error, true, true);
    }
  }

  private async holdForCommit(pid: number | undefined): Promise<void> {
    if (this.decided instanceof Error) throw this.decided;
    if (pid && this.cfg.onRestored) await this.cfg.onRestored(this.id, pid);
    // A restarted agent finds the held tree by this pid (and kills it: it never got a commit).
    await this.record('ready', pid);
    this.set('ready', pid);
    this.send({ op: 'ready', id: this.id, pid: pid ?? 0 });
    if (this.decided !== 'commit') await this.awaitCommit();
    // The decision is durable before the process may run: a restarted agent answers
    // "resumed" from it (and resumes a tree CRIU left stopped when we died).
    await this.record('committed');
    failpoint('target-committed');
    this.set('committed');
  }

  private async awaitCommit(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () =>
          reject(
            new SosError(`no commit from the source within ${this.cfg.commitTimeoutMs} ms`, { code: 'ETIMEDOUT' }),
          ),
        this.cfg.commitTimeoutMs,
      );
      this.decision = {
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      };
    });
  }

  /** Post-copy: the process runs; wait until lazy-pages moved every page. */
  private async servePages(pid: number): Promise<void> {
    const lazy = this.lazy!;
    // The page bytes the daemon copied in so far, as its log records each copy (never more
    // than its final count: no protocol or TLS bytes), for progress.
    const stop = this.startMeter(lazyCopies(path.join(this.dir, 'lazy-pages.log')));
    try {
      await lazy.exited.finally(stop);
      this.send({ op: 'pages-done', id: this.id, bytes: await lazyPageBytes(path.join(this.dir, 'lazy-pages.log')) });
      await this.cleanup(true);
    } catch (e) {
      // Without its lazy-pages daemon the process's missing pages would read as zeros: end it.
      // (The source keeps its stopped copy.)
      await killTree(pid);
      this.send({
        op: 'failed',
        id: this.id,
        step: 'pages',
        code: (e as { code?: string }).code ?? 'ERR_MIGRATION',
        message: describe(e),
        alive: alive(pid),
      });
      this.cfg.log(
        `migration ${this.id}: page transfer failed after resume (${describe(e)}); the process here was killed`,
      );
      await this.cleanup(false);
    }
  }

  /** Anything before the process resumed here failed: undo what this side did and tell the source. */
  private async fail(step: string, e: Error, tell = true, fromRestore = false): Promise<void> {
    if (this.restoring && !fromRestore) {
      // restore() owns the cleanup: release its hold so CRIU kills what it restored.
      this.decide(e);
      return;
    }
    if (this.finished) return;
    this.finished = true;
    const state = this.outcome.state;
    if (state === 'resumed') return;
    this.cfg.log(`migration ${this.id}: ${step} failed: ${describe(e)}`);
    const final = this.decided instanceof Error ? 'aborted' : 'failed';
    this.outcome.ending = true;
    // Durable before the source hears it: the source resumes its copy on this answer.
    await this.record(final).catch((re: unknown) =>
      this.cfg.log(`migration ${this.id}: cannot record ${final}: ${describe(re)}`),
    );
    this.set(final);
    // Undo first, then tell: once the source hears of the failure, this side holds nothing
    // (no partial images, no address, no hold).
    await this.cleanup(false);
    if (tell)
      this.send({
        op: 'failed',
        id: this.id,
        step,
        code: (e as { code?: string }).code ?? 'ERR_MIGRATION',
        message: describe(e),
      });
  }

  private async cleanup(ok: boolean): Promise<void> {
    this.finished = true;
    if (this.meter) clearInterval(this.meter);
    if (this.pageServer) await this.pageServer.close().catch(() => undefined);
    if (this.lazy) await this.lazy.close().catch(() => undefined);
    await this.receiver.dispose();
    await this.release?.();
    if (!ok && this.addressAdded && this.move) {
      await deleteAddress({
        address: this.move.address,
        prefix: this.move.prefix,
        dev: this.move.targetDev ?? this.move.dev,
      }).catch(() => false);
      this.addressAdded = false;
    }
    await fs.promises.rm(this.dir, { recursive: true, force: true }).catch(() => undefined);
  }
}

/** The pages a finished lazy-pages daemon copied, from its log (CRIU logs "UFFD transferred pages: (n/total)" per task at -v4). */
async function lazyPageBytes(log: string): Promise<number> {
  const text = await fs.promises.readFile(log, 'utf8').catch(() => '');
  let pages = 0;
  for (const m of text.matchAll(/UFFD transferred pages: \((\d+)\/\d+\)/g)) pages += Number(m[1]);
  return pages * 4096;
}

/**
 * A counter of the page bytes a running lazy-pages daemon copied into the process: the sum of
 * its "uffd_copy: 0xADDR/LEN" lines (CRIU logs one per UFFDIO_COPY at -v4), read on from where
 * the last call stopped.
 */
function lazyCopies(log: string): () => Promise<number> {
  let offset = 0;
  let partial = '';
  let bytes = 0;
  let reading: Promise<number> | null = null;
  const readOn = async () => {
    const fh = await fs.promises.open(log, 'r').catch(() => null);
    if (!fh) return bytes;
    try {
      const buf = Buffer.alloc(1 << 20);
      for (;;) {
        const { bytesRead } = await fh.read(buf, 0, buf.length, offset);
        if (bytesRead === 0) break;
        offset += bytesRead;
        const lines = (partial + buf.toString('latin1', 0, bytesRead)).split('\n');
        partial = lines.pop() ?? '';
        for (const l of lines) {
          const m = /uffd_copy: 0x[0-9a-f]+\/(\d+)$/.exec(l);
          if (m) bytes += Number(m[1]);
        }
      }
    } finally {
      await fh.close();
    }
    return bytes;
  };
  // One read at a time: a slow one must not be overtaken by the next tick's.
  return () => (reading ??= readOn().finally(() => (reading = null)));
}
