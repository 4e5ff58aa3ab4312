// A node's migration agent: one authenticated TCP endpoint that takes
// migrations in (target side) and, asked by a client holding the same
// secret, sends a local process out (source side).
import fs from 'node:fs';
import net from 'node:net';
import { once } from 'node:events';
import path from 'node:path';
import * as criu from '../criu/index.js';
import { argType } from '../errors.js';
import type tls from 'node:tls';
import {
  AuthChannel,
  checkAuth,
  type ChannelAuth,
  type ChannelError,
  type ChannelTls,
  type Message,
} from '../net/channel.js';
import { integer } from '../validate.js';
import { SosError } from '../errors.js';
import {
  defaultAnnounce,
  checkMoveAddress,
  deleteAddress,
  releaseStaleHolds,
  type Announce,
  type MoveAddress,
} from './address.js';
import { MigrationError, describe } from './errors.js';
import {
  incomingHead,
  parseToAgent,
  send,
  type Incoming,
  type MigrateRequest,
  type ToClient,
  type ToSource,
} from './messages.js';
import {
  alive,
  bootId,
  commandLines,
  inUse,
  killTree,
  placeId,
  resumeTree,
  sameProcess,
  staleLazyDaemons,
  untraced,
} from './proc.js';
import { FileRecordStore, checkRecordStore, type RecordStore } from './record.js';
import { cleanOutgoing, resolveInDoubt, type SecretFor } from './resolve.js';
import { dropNewLocks } from './source-rollback.js';
import { ID, ProtocolError } from './protocol.js';
import { migrate } from './source.js';
import { liveness } from './source-options.js';
import type { MigrateOptions } from './types.js';
import { ADDRESS_FILE, TargetSession, type Outcome, type TargetRestoreOptions } from './target.js';

export interface AgentOptions {
  /**
   * Where the target's decisions are kept durably (default: files in `workDir/records`; in a cluster,
   * `EtcdRecordStore` from serverlessos/cluster).
   */
  records?: RecordStore;
  /** Address to listen on (default 127.0.0.1). */
  host?: string;
  /** Port (default 0: any free port, see `agent.port`). */
  port?: number;
  /**
   * Secret shared by all agents and their clients (32 random bytes: `generateSecret()`), or this node's
   * certificates for mutual TLS (`ChannelTls`; a cluster's: `memberTls` from serverlessos/cluster).
   */
  secret: ChannelAuth;
  /** Folder for images in transit (a subfolder per migration). */
  workDir: string;
  /** Tells the network the moved address is here now (default: arping if installed). */
  announce?: Announce;
  /**
   * Admission: return (or resolve with) a reason to refuse an incoming migration (a draining
   * node, a full disk, a migration the cluster never recorded…).
   */
  admit?: (req: {
    id: string;
    mode: 'precopy' | 'postcopy';
    /** The address the source asks this node to take with the process, if any. */
    moveAddress?: MoveAddress;
    /** In mutual TLS, the source's verified certificate (its subject names it). */
    peerCertificate: tls.PeerCertificate | null;
  }) => string | null | undefined | Promise<string | null | undefined>;
  /** Extra restore options for migration `id`: descriptors that stand in for the source's files (CRIU's inherit-fd). */
  restoreOptions?: (id: string) => TargetRestoreOptions;
  /** The tree of migration `id` is restored and held (not yet running): a throw aborts the migration, the source resumes. */
  onRestored?: (id: string, pid: number) => Promise<void>;
  /** Migration `id` runs here now as `pid` (its `resumed` record is durable). */
  onResumed?: (id: string, pid: number) => void;
  /** Incoming migration `id` is over here: refused, failed, aborted, or (`resumed`) its pages all in. */
  onSettled?: (id: string, state: string) => void;
  /** Serve clients' requests to send a local process out (default true). sosd says false: its API does that, by role. */
  acceptClients?: boolean;
  /** The secret of the target agent at `to`, for settling outgoing migrations in doubt (default: `secret`). */
  peerSecret?: SecretFor;
  /**
   * Where outgoing migrations (those an owner runs with `migrate()` and this store) keep their
   * decisions, for the agent's resolver (default: files in `workDir/out/records`). A cluster's:
   * the same `EtcdRecordStore` as `records` (a node is one side of a migration, never both).
   */
  outRecords?: RecordStore;
  /** How long a restored process waits for the source's commit (default 60 s). */
  commitTimeoutMs?: number;
  /** A connection silent this long (ms) counts as cut (default 15000). */
  idleTimeoutMs?: number;
  /** Where the agent logs what happens (default: nowhere). */
  log?: (line: string) => void;
  /** How long an outgoing migration keeps asking a target that went silent after the commit (default 30 s). */
  inDoubtMs?: number;
  /** Incoming migrations at once; more are refused (default 4). */
  maxIncoming?: number;
  /** Outgoing migrations at once (asked by clients); more are refused with ERR_TOO_MANY (default 4). */
  maxOutgoing?: number;
  /** Largest image set accepted, also bounded by the work folder's free space (default 64 GiB). */
  maxImageBytes?: number;
}

/** Free space kept in the work folder beyond any migration's images. */
const DISK_HEADROOM = 2 ** 20;
/** How often in-doubt outgoing migrations are asked about again. */
const RESOLVE_EVERY_MS = 5000;

/** Resolves once none of `pids` runs any more (at most ~2 s). */
async function killed(pids: number[]): Promise<void> {
  const end = performance.now() + 2000;
  while (pids.some(alive) && performance.now() < end) await new Promise((r) => setTimeout(r, 10));
}

/** A migration agent listening on one node. */
export class MigrationAgent {
  private readonly outcomes = new Map<string, Outcome>();
  private outgoing = 0;
  private readonly channels = new Set<AuthChannel>();
  readonly host: string;
  readonly port: number;
  private resolver: NodeJS.Timeout | null = null;
  private constructor(
    private readonly server: net.Server,
    private readonly o: Required<
      Omit<
        AgentOptions,
        | 'admit'
        | 'host'
        | 'port'
        | 'restoreOptions'
        | 'onRestored'
        | 'onResumed'
        | 'onSettled'
        | 'peerSecret'
        | 'outRecords'
      >
    > &
      Pick<
        AgentOptions,
        'admit' | 'restoreOptions' | 'onRestored' | 'onResumed' | 'onSettled' | 'peerSecret' | 'outRecords'
      > & {
        secret: Buffer | ChannelTls;
        idleTimeoutMs: number;
        records: RecordStore;
      },
  ) {
    const a = server.address() as net.AddressInfo;
    this.host = a.address;
    this.port = a.port;
    // Outgoing migrations left in doubt (by us, or by an agent that died): ask their targets
    // until each is settled, and act on the answer.
    const out = path.join(o.workDir, 'out');
    let busy = false;
    const resolve = () => {
      if (busy) return;
      busy = true;
      void resolveInDoubt({
        workDir: out,
        secret: o.peerSecret ?? o.secret,
        idleTimeoutMs: o.idleTimeoutMs,
        log: o.log,
        ...(o.outRecords ? { records: o.outRecords } : {}),
      })
        .catch((e: unknown) => o.log(`resolving in-doubt migrations: ${describe(e)}`))
        .finally(() => (busy = false));
    };
    resolve();
    this.resolver = setInterval(resolve, RESOLVE_EVERY_MS);
    this.resolver.unref();
  }

  /** Start an agent; resolves once it listens. */
  static async listen(options: AgentOptions): Promise<MigrationAgent> {
    if (options === null || typeof options !== 'object') throw argType('options must be an object');
    const secret = checkAuth(options.secret, 'options.secret');
    if (typeof options.workDir !== 'string' || !options.workDir) throw argType('options.workDir must be a path');
    const port = options.port === undefined ? 0 : integer('options.port', options.port, 0, 65535);
    await fs.promises.mkdir(options.workDir, { recursive: true, mode: 0o700 });
    await checkWorkDir(options.workDir);
    const maxIncoming = options.maxIncoming === undefined ? 4 : integer('options.maxIncoming', options.maxIncoming, 1);
    const maxOutgoing = options.maxOutgoing === undefined ? 4 : integer('options.maxOutgoing', options.maxOutgoing, 1);
    const maxImageBytes =
      options.maxImageBytes === undefined
        ? 64 * 2 ** 30
        : integer('options.maxImageBytes', options.maxImageBytes, 1, Number.MAX_SAFE_INTEGER);
    let agent: MigrationAgent | null = null;
    const log = options.log ?? (() => {});
    const records =
      checkRecordStore(options.records, 'options.records') ??
      new FileRecordStore(path.join(options.workDir, 'records'));
    await settleTargets(records, options.workDir, log);
    // A previous agent on this folder died between starting a lazy-pages daemon and the
    // restore: that daemon would wait for the restore forever.
    const workDir = path.resolve(options.workDir);
    const stale = staleLazyDaemons(workDir, commandLines());
    for (const pid of stale) {
      try {
        process.kill(pid, 'SIGKILL');
        log(`killed lazy-pages daemon ${pid} left by an earlier agent`);
      } catch {
        // gone meanwhile
      }
    }
    await killed(stale);
    const procs = commandLines();
    // Its migration folders (images of migrations that never finished) go too, unless a
    // process still uses one: a lazy-pages daemon serving a process that resumed here.
    for (const ent of await fs.promises.readdir(workDir, { withFileTypes: true })) {
      const dir = path.join(workDir, ent.name);
      if (!ent.isDirectory() || !ID.test(ent.name) || inUse(dir, procs)) continue;
      const moved = await fs.promises.readFile(path.join(dir, ADDRESS_FILE), 'utf8').then(
        (j) => JSON.parse(j) as unknown,
        () => null,
      );
      if (moved) {
        // It added a moving address for a process that never resumed here: take it back.
        try {
          const a = checkMoveAddress(moved);
          await deleteAddress(a);
          log(`deleted address ${a.address}/${a.prefix} on ${a.dev}, left by an earlier agent`);
        } catch (e) {
          log(`could not take back the address in ${dir}: ${describe(e)}`);
        }
      }
      await fs.promises.rm(dir, { recursive: true, force: true });
      log(`removed ${dir}, left by an earlier agent`);
    }
    for (const table of await releaseStaleHolds()) log(`deleted nftables table ${table}, left by an earlier agent`);
    await cleanOutgoing(path.join(workDir, 'out'), log);
    const idleTimeoutMs =
      options.idleTimeoutMs === undefined ? 15_000 : integer('options.idleTimeoutMs', options.idleTimeoutMs, 100);
    const server = AuthChannel.server(secret, (ch) => agent?.accept(ch), {
      liveness: liveness(idleTimeoutMs),
      onRefused: (e: ChannelError, peer) => log(`refused ${peer}: ${e.code} ${e.message}`),
    });
    server.listen(port, options.host ?? '127.0.0.1');
    await Promise.race([
      once(server, 'listening'),
      once(server, 'error').then(([e]) => {
        throw e;
      }),
    ]);
    agent = new MigrationAgent(server, {
      secret,
      workDir: options.workDir,
      announce: options.announce ?? defaultAnnounce,
      admit: options.admit,
      restoreOptions: options.restoreOptions,
      onRestored: options.onRestored,
      onResumed: options.onResumed,
      onSettled: options.onSettled,
      peerSecret: options.peerSecret,
      outRecords: checkRecordStore(options.outRecords, 'options.outRecords'),
      acceptClients: options.acceptClients ?? true,
      commitTimeoutMs: options.commitTimeoutMs ?? 60_000,
      idleTimeoutMs,
      log,
      records,
      inDoubtMs: options.inDoubtMs === undefined ? 30_000 : integer('options.inDoubtMs', options.inDoubtMs, 0),
      maxIncoming,
      maxOutgoing,
      maxImageBytes,
    });
    return agent;
  }

  private accept(ch: AuthChannel) {
    this.channels.add(ch);
    let session: TargetSession | null = null;
    const reply = (m: ToSource | ToClient) => {
      if (!ch.closed) send(ch, m);
    };
    const fail = (e: Error) => {
      this.o.log(`channel ${ch.peer}: ${describe(e)}`);
      if (!ch.closed) {
        try {
          reply({
            op: 'error',
            error: { code: (e as { code?: string }).code ?? 'ERR_BAD_MESSAGE', message: e.message },
          });
        } catch {
          // closed meanwhile
        }
        ch.close();
      }
    };
    ch.on('message', (m: Message) => {
      try {
        if (m.op === 'incoming') {
          if (session) throw new ProtocolError('one migration per connection');
          // A bad head is an error; past it, whatever is wrong with the request refuses it.
          const { id } = incomingHead(m);
          if (this.outcomes.has(id)) return reply({ op: 'refused', id, reason: 'a migration with this id exists' });
          if (this.outcomes.size >= this.o.maxIncoming)
            return reply({ op: 'refused', id, reason: `${this.o.maxIncoming} migrations are coming in already` });
          let s: TargetSession;
          let req: Incoming;
          try {
            req = parseToAgent(m) as Incoming;
            s = new TargetSession(ch, id, req, {
              workDir: this.o.workDir,
              announce: this.o.announce,
              commitTimeoutMs: this.o.commitTimeoutMs,
              maxImageBytes: this.o.maxImageBytes,
              log: this.o.log,
              records: this.o.records,
              ...(this.o.restoreOptions ? { restoreOptions: this.o.restoreOptions } : {}),
              ...(this.o.onRestored ? { onRestored: this.o.onRestored } : {}),
              ...(this.o.onResumed ? { onResumed: this.o.onResumed } : {}),
            });
          } catch (e) {
            this.o.log(`migration ${id} refused: ${describe(e)}`);
            return reply({ op: 'refused', id, reason: describe(e) });
          }
          session = s;
          this.outcomes.set(id, s.outcome);
          // Once settled, the durable record answers for it: the map holds only what is in flight.
          void s.outcome.settled.then(() => {
            this.outcomes.delete(id);
            this.o.onSettled?.(id, s.outcome.state);
          });
          void this.admit(ch, s, req);
        } else if (session && m.id === session.id && m.op !== 'status') {
          session.onMessage(m);
        } else {
          const req = parseToAgent(m);
          if (req.op === 'status') void this.status(ch, req.id);
          else if (req.op === 'migrate' && !this.o.acceptClients)
            reply({ op: 'error', error: { code: 'ERR_FORBIDDEN', message: 'this agent takes no client requests' } });
          else if (req.op === 'migrate') void this.sendOut(ch, req);
          else throw new ProtocolError(`unexpected message ${m.op}`);
        }
      } catch (e) {
        fail(e as Error);
      }
    });
    ch.on('data', (stream, chunk) => {
      if (session) session.onData(stream, chunk);
      else fail(new ProtocolError('data outside a migration'));
    });
    ch.on('close', () => {
      this.channels.delete(ch);
      session?.onClose();
    });
  }

  private async admit(ch: AuthChannel, s: TargetSession, req: Incoming) {
    const { id, mode, moveAddress } = req;
    try {
      const why = await this.o.admit?.({
        id,
        mode,
        ...(moveAddress ? { moveAddress } : {}),
        peerCertificate: ch.peerCertificate,
      });
      if (why) throw new SosError(why, { code: 'ERR_MIGRATION_REFUSED' });
      if (await this.o.records.get(id))
        throw new SosError('a migration with this id exists', { code: 'ERR_MIGRATION_REFUSED' });
      const st = await fs.promises.statfs(this.o.workDir);
      const free = st.bavail * st.bsize - DISK_HEADROOM;
      if (free <= 0)
        throw new SosError(`the work folder ${this.o.workDir} has no space for images`, {
          code: 'ERR_MIGRATION_REFUSED',
        });
      s.limitImages(Math.min(this.o.maxImageBytes, free));
      const c = await criu.check();
      if (!c.criuPath)
        throw new SosError(`CRIU is not usable here: ${c.problems.join('; ')}`, { code: 'ERR_MIGRATION_REFUSED' });
      if (mode === 'postcopy' && (!c.features.lazyPages || !c.userfaultfd))
        throw new SosError(`post-copy is not possible here: ${c.problems.join('; ') || 'no lazy-pages support'}`, {
          code: 'ERR_MIGRATION_REFUSED',
        });
      const cert = await s.prepare();
      await s.record('receiving');
      send(ch, { op: 'accepted', id, place: placeId(), cert });
      this.o.log(`migration ${id} (${mode}) accepted from ${ch.peer}`);
    } catch (e) {
      this.o.log(`migration ${id} refused: ${describe(e)}`);
      s.outcome.state = 'aborted';
      this.outcomes.delete(id);
      this.o.onSettled?.(id, 'refused');
      await fs.promises.rm(s.dir, { recursive: true, force: true }).catch(() => undefined);
      // An admission refusal is its reason; anything else says what it was.
      const reason = e instanceof SosError && e.code === 'ERR_MIGRATION_REFUSED' ? e.message : describe(e);
      if (!ch.closed) send(ch, { op: 'refused', id, reason });
    }
  }

  /** What became of migration `id` here: in flight (waiting for it to settle), else its durable record. */
  private async status(ch: AuthChannel, id: string) {
    const o = this.outcomes.get(id);
    if (o && !['resumed', 'failed', 'aborted'].includes(o.state) && (o.state !== 'receiving' || o.ending)) {
      await Promise.race([o.settled, new Promise((r) => setTimeout(r, this.o.commitTimeoutMs + 5000))]);
    }
    let state = o?.state;
    let pid = o?.pid;
    if (state === undefined || state === 'resumed' || state === 'failed' || state === 'aborted') {
      const r = await this.o.records.get(id).catch(() => null);
      if (r && r.role === 'target') {
        state = r.state as typeof state;
        pid = r.pid;
      }
    }
    if (!ch.closed) send(ch, { op: 'status', id, state: state ?? 'unknown', ...(pid ? { pid } : {}) });
  }

  /** A client asks this node to migrate one of its processes to another agent. */
  private async sendOut(ch: AuthChannel, req: MigrateRequest) {
    const ac = new AbortController();
    ch.once('close', () => ac.abort(new SosError('the client went away', { code: 'ECONNRESET' })));
    const reply = (m: ToClient) => {
      if (!ch.closed) send(ch, m);
    };
    const { pid, to, mode, moveAddress, strategy } = req;
    if (this.outgoing >= this.o.maxOutgoing) {
      const message = `${this.o.maxOutgoing} migrations are going out already`;
      this.o.log(`migration of ${pid} refused: ${message}`);
      return reply({ op: 'error', error: { code: 'ERR_TOO_MANY', message } });
    }
    this.outgoing++;
    try {
      const opts: MigrateOptions = {
        to,
        mode,
        ...(moveAddress ? { moveAddress } : {}),
        ...(strategy ? { strategy } : {}),
        secret: this.o.secret,
        workDir: path.join(this.o.workDir, 'out'),
        idleTimeoutMs: this.o.idleTimeoutMs,
        inDoubtMs: this.o.inDoubtMs,
        signal: ac.signal,
        onProgress: (p) => reply({ op: 'progress', ...p }),
      };
      for (const k of ['tcpEstablished', 'shellJob', 'extUnixSk', 'fileLocks'] as const)
        if (req[k] !== undefined) opts[k] = req[k];
      this.o.log(`migrating pid ${pid} to ${opts.to.host}:${opts.to.port} (${opts.mode}) for ${ch.peer}`);
      const result = await migrate(pid, opts);
      this.o.log(
        `migrated pid ${pid}: downtime ${result.downtimeMs.toFixed(0)} ms, total ${result.totalMs.toFixed(0)} ms`,
      );
      reply({ op: 'result', result });
    } catch (e) {
      const err = e as MigrationError & { code?: string };
      this.o.log(`migration of ${pid} failed: ${describe(e)}`);
      reply({
        op: 'error',
        error: {
          code: err.code ?? 'ERR_MIGRATION',
          message: err.message,
          ...(e instanceof MigrationError
            ? { step: err.step, runningOn: err.runningOn, ...(err.pid !== undefined ? { pid: err.pid } : {}) }
            : {}),
        },
      });
    } finally {
      this.outgoing--;
    }
  }

  /** Stop listening and drop every connection (migrations in flight fail over to their source). */
  async close(): Promise<void> {
    if (this.resolver) clearInterval(this.resolver);
    this.resolver = null;
    for (const ch of this.channels) ch.destroy();
    await new Promise<void>((r) => this.server.close(() => r()));
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

/** The agent restores processes as root from what arrives there: only root may write to it. */
async function checkWorkDir(dir: string): Promise<void> {
  const st = await fs.promises.lstat(dir);
  const uid = process.getuid?.() ?? 0;
  if (!st.isDirectory() || st.uid !== uid || (st.mode & 0o077) !== 0)
    throw new SosError(
      `the work folder ${dir} must be a directory owned by uid ${uid} with mode 0700 (it is ${
        st.isDirectory() ? `owned by ${st.uid}, mode ${(st.mode & 0o777).toString(8)}` : 'not a directory'
      })`,
      { code: 'ERR_UNSAFE_WORKDIR' },
    );
}

/**
 * A restarted agent settles what its predecessor left in flight as a target: a tree restored
 * but not committed is killed (aborted); a committed one runs (CRIU leaves it stopped when its
 * RPC peer dies in the hook: resume it), or, when the machine restarted since, is gone (failed).
 * Every answer is recorded before anyone can ask.
 */
async function settleTargets(records: RecordStore, workDir: string, log: (l: string) => void): Promise<void> {
  let touched = false;
  for (const r of await records.list()) {
    if (r.role !== 'target' || ['resumed', 'failed', 'aborted'].includes(r.state)) continue;
    const ours = sameProcess(r.pid, r.started);
    if (r.state === 'committed' && !ours && r.started && !r.started.startsWith(`${bootId()}/`)) {
      // The machine restarted (a power cut) after the commit: the process did not survive it.
      // 'failed' is a positive answer: a source still holding its stopped copy resumes it.
      await records.put({ ...r, state: 'failed' });
      log(`migration ${r.id}: committed, then this machine restarted: the process here is gone (failed)`);
      continue;
    }
    if (r.state === 'committed') {
      if (ours) {
        // A CRIU that lost its RPC peer in the hook leaves the tree stopped: once it let go, resume it.
        await untraced(r.pid!);
        await resumeTree(r.pid!);
        touched = true;
      }
      await records.put({ ...r, state: 'resumed' });
      log(`migration ${r.id}: committed before the last agent died; ${ours ? `resumed pid ${r.pid}` : 'it ran'}`);
      // Its address now belongs to the running process: not ours to take back.
      await fs.promises.rm(path.join(workDir, r.id, ADDRESS_FILE), { force: true });
    } else {
      if (ours) {
        await killTree(r.pid!);
        touched = true;
      }
      await records.put({ ...r, state: 'aborted' });
      log(`migration ${r.id}: ${r.state} when the last agent died, no commit: aborted`);
    }
  }
  // CRIU keeps the network locked on a tree it leaves stopped: nothing is in flight now.
  if (touched) await dropNewLocks(new Set());
}
