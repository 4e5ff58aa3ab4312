/**
 * sosd's migration role: the node's migration agent (lib/migration), and the ops that move a
 * workload by APP/ID to another node (`apps.migrate`, asked by an operator or the orchestrator).
 *
 * Who may do what:
 * - The agents speak mutual TLS with the nodes' certificates (lib/cluster/member-tls.ts): an agent
 *   serves only nodes of this cluster, a source talks only to the target node it recorded, and the
 *   target admits a migration only from the node the cluster recorded as its source. The agent takes
 *   no client requests: sending a process out is `apps.migrate`, by role, for this sosd's workloads.
 * - A source records the move in etcd (lib/cluster/moves.ts, fenced by its lease) before it asks the
 *   target. The target's `migration.expect` admits it only when that entry names this node as the
 *   target and the asking peer's certificate as the source, a live member; the agent then admits
 *   that migration id and no other. The target makes the workload's folder, cgroup and log files
 *   ready first, hands CRIU the new log files in place of the source's (inherit-fd), moves the held
 *   tree into the new cgroup before it runs, and records it as its workload once it runs.
 * - The source marks the workload as moving (durably, in its folder) before the dump, so its death
 *   there is not taken for an exit; how the migration ended (the agent's durable source record)
 *   settles the mark, also after a sosd restart.
 */
import crypto from 'node:crypto';
import path from 'node:path';
import type { Arrival } from '../apps/index.js';
import type { ClusterNode } from '../cluster/join.js';
import { listNodes, type NodeRecord } from '../cluster/membership.js';
import { EtcdRecordStore } from '../cluster/migration-records.js';
import { untilEtcdAnswers } from '../cluster/etcd-retry.js';
import { FENCE_SCHEMA, checkFence, fenceCompare, type Fence } from '../orchestrator/fence.js';
import { readMove, recordMove, type MoveEntry } from '../cluster/moves.js';
import { SosError } from '../errors.js';
import { AddressRanges, MigrationAgent, MigrationError, checkMoveAddress, migrate } from '../migration/index.js';
import type { MoveAddress, Progress } from '../migration/index.js';
import { sameProcess } from '../migration/proc.js';
import type { RecordStore } from '../migration/record.js';
import { loadConfig } from '../cluster/folder.js';
import { memberTls, type MemberCredentials } from '../cluster/member-tls.js';
import type { ChannelTls } from '../net/channel-tls.js';
import {
  FAR_ARENAS_SCHEMA,
  FAR_CONFIG_SCHEMA,
  readFarConfig,
  writeFarConfig,
  type FarArena,
  type FarConfig,
  type FarService,
} from './far-service.js';
import type { AppsService } from './apps-service.js';
import { connectNode } from './remote.js';
import type { DaemonLogger, OpSpec, RequestContext } from './server.js';
import { APP, NODE } from './schemas.js';
import { forbidden, nodePeer } from './refusals.js';

export interface MigrationServiceOptions {
  /** sosd's state folder: the agent works in its `migration/` subfolder. */
  stateDir: string;
  /** The cluster folder: this node's certificate, to reach a target's API. */
  clusterDir: string;
  /** This node's certificate, key, the CA and its CRL as they are now (sosd reloads them on SIGHUP). */
  credentials: () => MemberCredentials;
  cluster: ClusterNode;
  apps: AppsService;
  /** This node's far-memory monitor: far-memory workloads' arenas are handed over around the dump. */
  far?: FarService | null;
  /** Where the agent listens (the address peers reach this node at). */
  host: string;
  port: number;
  /** The addresses that may move with a process, out of this node or into it (default: none). */
  moveRanges?: AddressRanges;
  log: DaemonLogger;
}

const MID = { type: 'string', pattern: '^[0-9a-f]{32}$' };
const IFNAME = { type: 'string', pattern: '^[A-Za-z0-9_.:@-]{1,15}$' };
const MOVE_ADDRESS = {
  type: 'object',
  additionalProperties: false,
  required: ['address', 'prefix', 'dev'],
  properties: {
    address: { type: 'string', maxLength: 64 },
    prefix: { type: 'integer', minimum: 0, maximum: 128 },
    dev: IFNAME,
    targetDev: IFNAME,
  },
};
const ONE_MIGRATION = {
  type: 'object',
  additionalProperties: false,
  required: ['migration'],
  properties: { migration: MID },
};
/** A migration asked for: what sosctl and the orchestrator's request carry. */
export const MIGRATE_REQUEST = {
  type: 'object',
  additionalProperties: false,
  required: ['app', 'id', 'to'],
  properties: {
    app: APP,
    id: { type: 'integer', minimum: 1, maximum: Number.MAX_SAFE_INTEGER },
    to: NODE,
    mode: { enum: ['precopy', 'postcopy'] },
    /** An IP address that moves with the process (both nodes' --move-ranges must hold it). */
    moveAddress: MOVE_ADDRESS,
  },
};
const MIGRATE = {
  ...MIGRATE_REQUEST,
  properties: {
    ...MIGRATE_REQUEST.properties,
    /** The caller may choose the id, to follow the progress with apps.migration meanwhile. */
    migration: MID,
    /** The orchestrator's: only while that term is the current one. */
    fence: FENCE_SCHEMA,
  },
};
const FAR_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  required: ['migration', 'config', 'arenas'],
  properties: { migration: MID, config: FAR_CONFIG_SCHEMA, arenas: FAR_ARENAS_SCHEMA },
};
const OPERATORS = ['operator', 'orchestrator'] as const;
/** An expected migration that never came (the source died before it sent) is let go after this. */
const EXPECT_MS = 30 * 60_000;
/** How often moving workloads are checked against their migrations' records. */
const SETTLE_EVERY_MS = 5000;
/** A finished migration's progress is kept this long for apps.migration. */
const KEEP_PROGRESS_MS = 60_000;

interface Expected {
  move: MoveEntry;
  arrival: Arrival;
  timer: NodeJS.Timeout;
  /** Its far memory, handed over by the source right before its dump (migration.far). */
  far?: { config: FarConfig; arenas: FarArena[] };
}

interface Tracked extends Progress {
  state: 'running' | 'done' | 'failed';
  error?: { code: string; message: string };
}

/** One spelling of a MoveAddress (or none), to compare what was recorded with what arrives. */
const addressKey = (a: MoveAddress | undefined): string =>
  a ? JSON.stringify([a.address, a.prefix, a.dev, a.targetDev ?? null]) : '';

export class MigrationService {
  private readonly expected = new Map<string, Expected>();
  /** Migrations asked for lately, by id: a second ask gets the same one. */
  private readonly runs = new Map<string, Promise<unknown>>();
  private readonly progress = new Map<string, Tracked>();
  /** Outgoing migrations this sosd runs now (their moving marks are not for the settler). */
  private readonly active = new Set<string>();
  private settler: NodeJS.Timeout | null = null;
  private passing = false;
  private closed = false;

  private constructor(
    readonly agent: MigrationAgent,
    private readonly clusterName: string,
    private readonly records: RecordStore,
    private readonly o: MigrationServiceOptions,
  ) {}

  static async start(o: MigrationServiceOptions): Promise<MigrationService> {
    const clusterName = loadConfig(o.clusterDir).cluster;
    let svc: MigrationService | null = null;
    const workDir = path.join(o.stateDir, 'migration');
    // Both sides' decisions in etcd (fenced by this node's lease): a node is one side of a migration.
    const records = new EtcdRecordStore(o.cluster.store, o.cluster.member);
    // The agent settles its records in etcd before it listens: etcd restarting right then is waited out.
    const listen = () =>
      MigrationAgent.listen({
        host: o.host,
        port: o.port,
        secret: memberTls({ credentials: o.credentials, cluster: clusterName, roles: ['node'] }),
        workDir,
        records,
        outRecords: records,
        acceptClients: false,
        admit: ({ id, moveAddress, peerCertificate }) => {
          const x = svc?.expected.get(id);
          if (!x) return 'no migration with this id was recorded in the cluster for this node';
          // Only the source the cluster recorded may send it (any node's certificate would pass the TLS check).
          const from = peerCertificate?.subject?.CN;
          if (from !== x.move.from) return `migration ${id} comes from ${x.move.from}, not ${String(from)}`;
          // The address the source sends must be the one the cluster recorded (and this node allowed).
          if (addressKey(moveAddress) !== addressKey(x.move.moveAddress))
            return 'the address to move is not the one recorded for this migration';
          return null;
        },
        restoreOptions: (id) => svc?.restoreOptions(id) ?? {},
        onRestored: (id, pid) => Promise.resolve(svc?.expected.get(id)?.arrival.place(pid)),
        onResumed: (id, pid) => void svc?.adopt(id, pid),
        // It did not come to run here: what was made ready for it goes.
        onSettled: (id, state) => void (state === 'resumed' ? undefined : svc?.letGo(id, `it ended ${state}`)),
        peerSecret: (to) => svc!.peerTls(to),
        log: (line) => o.log.info({ role: 'migration' }, line),
      });
    const agent = await untilEtcdAnswers(listen, (e) =>
      o.log.warn({ code: e.code }, `migration agent waits for etcd: ${e.message}`),
    );
    svc = new MigrationService(agent, clusterName, records, o);
    await svc.pass();
    svc.settler = setInterval(() => void svc?.pass(), SETTLE_EVERY_MS);
    svc.settler.unref();
    return svc;
  }

  private get ranges(): AddressRanges {
    return this.o.moveRanges ?? AddressRanges.none;
  }

  private restoreOptions(id: string) {
    const x = this.expected.get(id);
    if (!x) return {};
    // CRIU names a regular file by its path without the leading '/'.
    return {
      inheritFds: [
        { key: x.move.logs.stdout.slice(1), fd: x.arrival.stdoutFd },
        { key: x.move.logs.stderr.slice(1), fd: x.arrival.stderrFd },
      ],
    };
  }

  /** The incoming migration `id` runs here as `pid`: it is this node's workload now, in etcd too. */
  private async adopt(id: string, pid: number): Promise<void> {
    const x = this.expected.get(id);
    if (!x) return;
    this.expected.delete(id);
    clearTimeout(x.timer);
    try {
      // Its arenas first: its threads wait parked until they are served.
      if (x.far && this.o.far) await this.o.far.adopt(x.move.app, x.move.id, pid, x.far.arenas, x.far.config);
      const rec = await x.arrival.adopt(pid);
      await this.o.apps.adopted(rec);
    } catch (e) {
      this.o.log.error(
        { migration: id, app: x.move.app, id: x.move.id, pid },
        `migrated ${x.move.app}/${x.move.id} runs here as pid ${pid} but was not recorded: ${(e as Error).message}`,
      );
    }
  }

  /** Mutual TLS with the agent of node `name` (that node and no other). */
  private tlsTo(name: string): ChannelTls {
    return memberTls({ credentials: this.o.credentials, cluster: this.clusterName, roles: ['node'], name });
  }

  /** Mutual TLS with the node whose agent is at `to`, for settling a migration in doubt. */
  private async peerTls(to: { host: string; port: number }): Promise<ChannelTls> {
    const nodes = await listNodes(this.o.cluster.store);
    const rec = [...nodes.values()].find((n) => n.addr === to.host && n.migration === to.port);
    if (!rec)
      throw new SosError(`no live node has its migration agent at ${to.host}:${to.port}`, { code: 'ERR_NOT_FOUND' });
    return this.tlsTo(rec.name);
  }

  /** One request, as this node, to the API of the node whose record (as listNodes read it) is `rec`. */
  private async callNode(
    rec: NodeRecord,
    op: string,
    args: Record<string, unknown>,
    timeoutMs = 30_000,
  ): Promise<unknown> {
    const c = await connectNode(this.o.clusterDir, rec, { role: 'node', name: this.o.cluster.member.name });
    try {
      return await c.request(op, args, { timeoutMs });
    } finally {
      c.close();
    }
  }

  /**
   * Arrivals the last sosd made ready: the agent (started first) has settled its target records, so
   * a migration that resumed here is adopted (its process runs: it is this node's now, in etcd too);
   * any other is let go (the agent killed a tree that had no commit, and the source kept its copy).
   * One whose record cannot be read now (etcd away) stays kept for the next pass: letting it go
   * would kill a process that may be the only copy.
   */
  /** One pass of the settler (never two at once; it logs what fails and throws nothing). */
  private async pass(): Promise<void> {
    if (this.passing) return;
    this.passing = true;
    try {
      await this.reclaimArrivals();
      await this.settleMoving();
    } catch (e) {
      this.o.log.warn({}, `migration settler: ${(e as Error).message}`);
    } finally {
      this.passing = false;
    }
  }

  private async reclaimArrivals(): Promise<void> {
    if (this.closed) return;
    const w = this.o.apps.workloads;
    for (const a of w.arrivals()) {
      let r;
      try {
        r = await this.records.get(a.migration);
      } catch (e) {
        this.o.log.warn(a, `arrival of ${a.app}/${a.id} kept for now: ${(e as Error).message}`);
        continue;
      }
      const arrival = w.reclaim(a.migration);
      const pid = r?.role === 'target' && r.state === 'resumed' && sameProcess(r.pid, r.started) ? r.pid! : null;
      const what = { migration: a.migration, app: a.app, id: a.id };
      if (pid === null) {
        await arrival.abort();
        this.o.log.info(what, `arrival of ${a.app}/${a.id} let go: its migration is ${r?.state ?? 'unknown'} here`);
        continue;
      }
      try {
        await this.o.apps.adopted(await arrival.adopt(pid));
        this.o.log.info({ ...what, pid }, `${a.app}/${a.id}, migrated in before the restart, adopted`);
      } catch (e) {
        this.o.log.error({ ...what, pid }, `migrated ${a.app}/${a.id} not adopted: ${(e as Error).message}`);
      }
    }
  }

  /** Settle the moving marks no migration of ours runs for, from the agent's durable source records. */
  private async settleMoving(): Promise<void> {
    if (this.closed) return;
    const w = this.o.apps.workloads;
    const records = this.records;
    for (const m of w.moving()) {
      if (this.active.has(m.migration)) continue;
      try {
        const r = await records.get(m.migration);
        const state = r?.state;
        if (state === 'done') await w.settleMove(m.app, m.id, m.to);
        else if (!r || state === 'aborted' || state === 'failed') await w.settleMove(m.app, m.id, null);
        // started, committing, in-doubt: the agent's resolver settles the record first
      } catch (e) {
        this.o.log.warn(
          { app: m.app, id: m.id, migration: m.migration },
          `moving mark not settled: ${(e as Error).message}`,
        );
      }
    }
  }

  /**
   * apps.migrate. One migration per id: asked again for an id it runs or ran lately (a retry, a new
   * orchestrator finishing a step), it answers with that migration's outcome; an id recorded in the
   * cluster before this sosd started is not run again (ERR_MIGRATION_IN_DOUBT: its records say how
   * it ends). The orchestrator's request (from the leading node, with its fence) runs only while that
   * term is current, and its move is recorded in a transaction fenced by the same term.
   */
  private migrate(a: Record<string, unknown>, ctx: RequestContext): Promise<unknown> {
    const fence = a.fence as Fence | undefined;
    if (ctx.peer.kind === 'tls' && ctx.peer.role === 'node' && fence?.leader !== ctx.peer.name)
      return Promise.reject(
        forbidden(`node ${ctx.peer.name} may ask for a migration only as the leading orchestrator, with its fence`),
      );
    const migration = (a.migration as string | undefined) ?? crypto.randomBytes(16).toString('hex');
    const known = this.runs.get(migration);
    if (known) return known;
    const store = this.o.cluster.store;
    const run = (async () => {
      if (fence) await checkFence(store, fence);
      if (await readMove(store, migration))
        throw new SosError(
          `migration ${migration} was recorded before this sosd started: its records say how it ends`,
          {
            code: 'ERR_MIGRATION_IN_DOUBT',
          },
        );
      return this.migrateOut({ ...a, migration }, fence);
    })();
    this.runs.set(migration, run);
    void run
      .catch(() => undefined)
      .finally(() => setTimeout(() => this.runs.delete(migration), KEEP_PROGRESS_MS).unref());
    return run;
  }

  /** Send `app/id` to node `to`; resolves with the result once it runs there. */
  private async migrateOut(a: Record<string, unknown>, fence?: Fence): Promise<unknown> {
    const app = a.app as string;
    const id = a.id as number;
    const to = a.to as string;
    const mode = (a.mode as 'precopy' | 'postcopy' | undefined) ?? 'precopy';
    const me = this.o.cluster.member.name;
    const moveAddress = a.moveAddress === undefined ? undefined : checkMoveAddress(a.moveAddress);
    if (moveAddress) {
      const why = this.ranges.refusal(moveAddress.address, me);
      if (why) throw forbidden(why);
    }
    const w = this.o.apps.workloads;
    const rec = w.get(app, id);
    if (rec.state !== 'running')
      throw new SosError(`${app}/${id} is not running here (${rec.state})`, { code: 'ERR_APP_EXITED' });
    if (to === me) throw new SosError(`${app}/${id} runs on ${me} already`, { code: 'ERR_MIGRATION_REFUSED' });
    const target = (await listNodes(this.o.cluster.store)).get(to);
    if (!target) throw new SosError(`no live node ${to} in the cluster`, { code: 'ERR_NOT_FOUND' });
    if (typeof target.addr !== 'string' || typeof target.migration !== 'number')
      throw new SosError(`node ${to} runs no migration agent`, { code: 'ERR_MIGRATION_REFUSED' });
    const migration = (a.migration as string | undefined) ?? crypto.randomBytes(16).toString('hex');
    if (this.progress.has(migration))
      throw new SosError(`migration ${migration} exists`, { code: 'ERR_MIGRATION_REFUSED' });
    const tracked: Tracked = { phase: 'connect', bytes: 0, pages: 0, state: 'running' };
    this.progress.set(migration, tracked);
    this.active.add(migration);
    try {
      // What the record and the answer both name.
      const which = { migration, app, id, from: me, to, mode };
      // Durable in etcd before the target is asked: it admits only what the cluster recorded.
      await recordMove(
        this.o.cluster.store,
        this.o.cluster.member,
        {
          ...which,
          argv: rec.argv,
          cwd: rec.cwd,
          limits: rec.limits as Record<string, unknown>,
          logs: rec.logs,
          startedAt: rec.startedAt,
          ...(moveAddress ? { moveAddress } : {}),
          at: new Date().toISOString(),
        },
        fence ? fenceCompare(fence) : undefined,
      );
      const key = (await this.callNode(target, 'migration.expect', { migration })) as { port: number };
      await w.beginMove(app, id, migration, to);
      // A far-memory workload: its arenas are detached right before the dump (its processes park,
      // every page on the memory nodes) and handed to the target, which adopts them after the restore.
      const farConfig = this.o.far ? readFarConfig(w.where(app, id).dir) : null;
      let arenas: FarArena[] | null = null;
      let parkedMs: number | undefined; // its processes parked, before CRIU froze them
      const beforeDump = async () => {
        // While it runs on: the park below then writes back only the pages it touched since.
        await this.o.far!.writeBack(app, id);
        const t0 = performance.now();
        arenas = await this.o.far!.detach(app, id, rec.pid, farConfig!);
        await this.callNode(target, 'migration.far', { migration, config: farConfig, arenas });
        parkedMs = performance.now() - t0;
      };
      let result;
      try {
        result = await migrate(rec.pid, {
          id: migration,
          to: { host: target.addr, port: key.port },
          secret: this.tlsTo(to),
          mode,
          ...(moveAddress ? { moveAddress } : {}),
          workDir: path.join(this.o.stateDir, 'migration', 'out'),
          records: this.records,
          onProgress: (p) => Object.assign(tracked, p),
          ...(farConfig ? { beforeDump } : {}),
        });
      } catch (e) {
        const where = e instanceof MigrationError ? e.runningOn : 'source';
        if (where === 'source') {
          // It runs on here: serve its arenas again.
          if (arenas && farConfig)
            await this.o
              .far!.adopt(app, id, rec.pid, arenas, farConfig)
              .catch((x: Error) => this.o.log.error({ app, id, migration }, `far memory not taken back: ${x.message}`));
          await w.settleMove(app, id, null);
          await this.callNode(target, 'migration.cancel', { migration }).catch(() => undefined);
        } else if (where === 'target') await w.settleMove(app, id, to);
        // stopped-source, none: the agent's resolver settles the record, then settleMoving the mark
        throw e;
      }
      await w.settleMove(app, id, to);
      tracked.state = 'done';
      this.o.log.info({ app, id, to, migration, downtimeMs: result.downtimeMs }, `migrated ${app}/${id} to ${to}`);
      return {
        ...which,
        pid: result.targetPid,
        // A far-memory workload stops when its arenas detach: that time is downtime too.
        downtimeMs: result.downtimeMs + (parkedMs ?? 0),
        ...(parkedMs === undefined ? {} : { farDetachMs: parkedMs }),
        totalMs: result.totalMs,
        bytes: result.bytes,
        pages: result.pages,
        phases: result.phases,
      };
    } catch (e) {
      tracked.state = 'failed';
      tracked.error = { code: (e as { code?: string }).code ?? 'ERR_MIGRATION', message: (e as Error).message };
      throw e;
    } finally {
      this.active.delete(migration);
      setTimeout(() => this.progress.delete(migration), KEEP_PROGRESS_MS).unref();
    }
  }

  /** A source asks this node to take `migration`: admitted only as the cluster recorded it. */
  private async expect(a: Record<string, unknown>, ctx: RequestContext): Promise<unknown> {
    const peer = nodePeer(ctx);
    const migration = a.migration as string;
    const me = this.o.cluster.member.name;
    const move = await readMove(this.o.cluster.store, migration);
    if (!move) throw new SosError(`no migration ${migration} is recorded in the cluster`, { code: 'ERR_NOT_FOUND' });
    if (move.to !== me) throw forbidden(`migration ${migration} goes to ${move.to}, not ${me}`);
    if (move.from !== peer) throw forbidden(`migration ${migration} comes from ${move.from}, not ${peer}`);
    if (!(await listNodes(this.o.cluster.store)).has(peer))
      throw forbidden(`${peer} is not a live member of the cluster`);
    if (move.moveAddress) {
      const why = this.ranges.refusal(move.moveAddress.address, me);
      if (why) throw forbidden(why);
    }
    if (this.expected.has(migration))
      throw new SosError(`migration ${migration} is expected already`, { code: 'ERR_MIGRATION_REFUSED' });
    const arrival = await this.o.apps.workloads.receive({
      migration,
      app: move.app,
      id: move.id,
      argv: move.argv,
      cwd: move.cwd,
      limits: move.limits,
      startedAt: move.startedAt,
      from: move.from,
    });
    const timer = setTimeout(() => void this.letGo(migration, 'it never came'), EXPECT_MS);
    timer.unref();
    this.expected.set(migration, { move, arrival, timer });
    return { port: this.agent.port };
  }

  /** Forget an expected migration that did not come here (never sent, or failed before it ran). */
  private async letGo(migration: string, why: string): Promise<void> {
    const x = this.expected.get(migration);
    if (!x) return;
    this.expected.delete(migration);
    clearTimeout(x.timer);
    await x.arrival.abort();
    this.o.log.info({ migration, app: x.move.app, id: x.move.id }, `expected migration let go: ${why}`);
  }

  ops(): OpSpec[] {
    return [
      { op: 'apps.migrate', schema: MIGRATE, roles: [...OPERATORS, 'node'], handler: (a, ctx) => this.migrate(a, ctx) },
      {
        op: 'apps.migration',
        schema: ONE_MIGRATION,
        roles: [...OPERATORS],
        handler: (a) => {
          const p = this.progress.get(a.migration as string);
          if (!p)
            throw new SosError(`no migration ${String(a.migration)} runs or ran lately here`, {
              code: 'ERR_NOT_FOUND',
            });
          return { migration: a.migration, ...p };
        },
      },
      { op: 'migration.expect', schema: ONE_MIGRATION, roles: ['node'], handler: (a, ctx) => this.expect(a, ctx) },
      {
        op: 'migration.far',
        schema: FAR_SCHEMA,
        roles: ['node'],
        handler: async (a, ctx) => {
          const peer = nodePeer(ctx);
          const x = this.expected.get(a.migration as string);
          if (!x)
            throw new SosError(`migration ${String(a.migration)} is not expected here`, { code: 'ERR_NOT_FOUND' });
          if (x.move.from !== peer) throw forbidden(`migration ${String(a.migration)} is not ${peer}'s`);
          if (!this.o.far) throw new SosError('this sosd has no far-memory monitor', { code: 'ERR_UNSUPPORTED' });
          const config = a.config as FarConfig;
          // Durable before the answer: the arrival's folder keeps its far memory's settings.
          await writeFarConfig(x.arrival.dir, config);
          x.far = { config, arenas: a.arenas as FarArena[] };
          return { migration: a.migration, arenas: x.far.arenas.length };
        },
      },
      {
        op: 'migration.cancel',
        schema: ONE_MIGRATION,
        roles: ['node'],
        handler: async (a, ctx) => {
          const peer = nodePeer(ctx);
          const x = this.expected.get(a.migration as string);
          if (x && x.move.from !== peer) throw forbidden(`migration ${String(a.migration)} is not ${peer}'s`);
          await this.letGo(a.migration as string, `${peer} gave it up`);
          return { migration: a.migration, cancelled: Boolean(x) };
        },
      },
    ];
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.settler) clearInterval(this.settler);
    for (const m of [...this.expected.keys()]) await this.letGo(m, 'sosd stopped');
    await this.agent.close();
  }
}
