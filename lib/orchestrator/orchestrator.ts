/**
 * The orchestrator: one active at a time (election.ts), it reconciles what the cluster runs towards
 * what is desired (desired.ts), like a Kubernetes controller — level-based (each pass reads the whole
 * state again, so a missed event or a failover loses nothing), idempotent (a node asked twice to run
 * APP/ID runs it once), each step recorded, fenced by the term, before it is taken (actions.ts).
 *
 * For each desired process, a pass:
 *  - with no step yet: asks the placement policy, records `place` (intended) on the chosen node, asks
 *    that node to run it (`run`, sosd's apps.run with the fence), and records `done` once it runs;
 *  - with a step intended: finishes it on the recorded node (what a new leader does after a failover),
 *    or — that node gone before the process started — places it again (`replace`);
 *  - whose process runs on a node that left the cluster: records it `lost`, unless a checkpoint of it
 *    exists.
 * And for any process (desired or run directly) whose node left and which has a checkpoint: records
 * `restore` on a live node holding the images, asks that node to restore it (`restore`, sosd's
 * apps.restore with the fence), and records `restored` once it runs there.
 */
import { EventEmitter } from 'node:events';
import type { Watcher } from 'etcd3';
import { DESIRED, NODES } from '../cluster/keys.js';
import type { Member } from '../cluster/membership.js';
import { listCheckpoints, type CheckpointEntry } from '../cluster/checkpoints.js';
import { listNodes, type NodeRecord } from '../cluster/membership.js';
import { PROCS, listProcesses, type ProcessEntry } from '../cluster/processes.js';
import type { Store } from '../cluster/store.js';
import { listTelemetry, type Telemetry } from '../cluster/telemetry.js';
import { SosError } from '../errors.js';
import { failpoint } from '../failpoint.js';
import {
  listActions,
  pruneDecisions,
  recordAction,
  recordDecision,
  type Action,
  type ActionEntry,
  type Decision,
  type DecisionKind,
} from './actions.js';
import { listDesired, type ProcessSpec } from './desired.js';
import { listWanted, recordWanted, sourceOutcome, type WantedEntry, type WantedMigration } from './migrations.js';
import { Election } from './election.js';
import type { Fence } from './fence.js';
import { fewestProcesses, type Candidate, type PlacementPolicy } from './placement.js';

/** A pino-like logger. */
export interface OrchestratorLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

export interface OrchestratorOptions {
  store: Store;
  /** This node's membership: its lease holds the leader key. */
  member: Member;
  /** Ask `node` to run `spec` under `fence`; resolves with the process's entry (idempotent by APP/ID). */
  run: (node: NodeRecord, spec: ProcessSpec, fence: Fence) => Promise<ProcessEntry>;
  /**
   * Ask `from` (the source's sosd, apps.migrate) to run migration `want` under `fence`; resolves with
   * its result once the process runs on the target. The source runs one migration per id.
   */
  migrate?: (from: NodeRecord, want: WantedMigration, fence: Fence) => Promise<MigrationResult>;
  /**
   * Ask `node` (a holder of checkpoint `ck`) to restore it under `fence`; resolves with the process's
   * entry once it runs there (idempotent by APP/ID). Without it, processes of a departed node are lost.
   */
  restore?: (node: NodeRecord, ck: CheckpointEntry, fence: Fence) => Promise<ProcessEntry>;
  policy?: PlacementPolicy;
  /** How often the leader reconciles besides its watches of desired/, procs/ and nodes/ (default 5000 ms). */
  intervalMs?: number;
  /** The election's safety-net pass (default 2000 ms; the leader key is watched). */
  retryMs?: number;
  /** Decisions kept in etcd (default 500). */
  keepDecisions?: number;
  log?: OrchestratorLogger;
}

/** What a source's apps.migrate answers. */
export interface MigrationResult {
  pid: number;
  downtimeMs: number;
  totalMs: number;
  bytes: number;
  pages: number;
}

export interface OrchestratorEvents {
  elected: [Fence];
  deposed: [string];
  /** A decision this leader recorded. */
  decision: [Decision];
}

/** Errors after which asking the node again cannot help. */
const FINAL = new Set(['ERR_BAD_ARGS', 'ERR_FORBIDDEN', 'ERR_APP_EXISTS', 'ERR_EXISTS']);
/** A source's refusals that no retry changes (nothing was started there). */
const MIGRATE_FINAL = new Set([
  'ERR_BAD_ARGS',
  'ERR_FORBIDDEN',
  'ERR_APP_NOT_FOUND',
  'ERR_APP_EXITED',
  'ERR_APP_BUSY',
  'ERR_MIGRATION_REFUSED',
  'ERR_NOT_FOUND',
  'ERR_UNKNOWN_OP',
]);
/** Attempts on a live node before the step is recorded failed. */
const MAX_ATTEMPTS = 10;

const quiet: OrchestratorLogger = { info: () => undefined, warn: () => undefined };

export class Orchestrator extends EventEmitter<OrchestratorEvents> {
  readonly election: Election;
  readonly policy: PlacementPolicy;
  private timer: NodeJS.Timeout | null = null;
  private passing: Promise<void> | null = null;
  private closed = false;
  /** APP/ID whose run request is in flight (never two at once from this leader). */
  private readonly inflight = new Set<string>();
  private readonly attempts = new Map<string, number>();
  /** The last 'unplaceable' reason per APP/ID (recorded once, not every pass). */
  private readonly waiting = new Map<string, string>();
  private passes = 0;
  private again = false;
  /** The live nodes at the last pass, with their last telemetry (a departed node's is gone from etcd). */
  private readonly seenNodes = new Map<string, Telemetry | null>();
  private readonly watchers: Watcher[] = [];
  private readonly log: OrchestratorLogger;

  constructor(private readonly o: OrchestratorOptions) {
    super();
    this.policy = o.policy ?? fewestProcesses;
    this.log = o.log ?? quiet;
    this.election = new Election(o.store, o.member, { retryMs: o.retryMs });
    this.election.on('elected', (f) => {
      this.log.info({ term: f.term }, `leads the cluster's orchestration (term ${f.term})`);
      this.emit('elected', f);
      // The term's first fenced action: it says when the leadership changed hands (sosctl decisions).
      void this.decide(f, {
        kind: 'elected',
        app: '',
        id: 0,
        node: f.leader,
        reason: `${f.leader} leads, term ${f.term}`,
        at: now(),
      })
        .catch(() => undefined)
        .finally(() => {
          void this.watch();
          this.kick();
        });
    });
    this.election.on('deposed', (why) => {
      this.log.warn({}, `no longer leads: ${why}`);
      this.inflight.clear();
      this.seenNodes.clear();
      void this.unwatch();
      this.emit('deposed', why);
    });
  }

  /** Campaign and, while leading, reconcile every `intervalMs`. */
  start(): this {
    this.election.start();
    this.schedule();
    return this;
  }

  /** The current term while this orchestrator leads. */
  get fence(): Fence | null {
    return this.election.fence;
  }

  /** Stop; a leader resigns so that another takes over at once. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    await this.passing;
    await this.unwatch();
    await this.election.stop();
  }

  /** While leading: a pass as soon as what it reconciles changes (the interval is the safety net). */
  private async watch(): Promise<void> {
    if (this.watchers.length || this.closed || !this.fence) return;
    try {
      for (const prefix of [DESIRED, PROCS, NODES]) {
        const w = await this.o.store.kv.watch().prefix(prefix).create();
        this.watchers.push(w);
        w.on('put', () => this.kick());
        w.on('delete', () => this.kick());
      }
    } catch {
      await this.unwatch(); // etcd away: the interval's passes go on, the next election watches again
    }
    if (!this.fence || this.closed) await this.unwatch();
  }

  private async unwatch(): Promise<void> {
    const ws = this.watchers.splice(0);
    await Promise.all(ws.map((w) => w.cancel().catch(() => undefined)));
  }

  private schedule(): void {
    if (this.closed) return;
    this.timer = setTimeout(() => this.kick(), this.o.intervalMs ?? 5000);
    this.timer.unref();
  }

  private kick(): void {
    if (this.closed) return;
    if (this.passing) {
      this.again = true; // something changed during the pass: one more right after it
      return;
    }
    if (this.timer) clearTimeout(this.timer);
    this.passing = this.pass()
      .catch((e: Error) => this.log.warn({ code: (e as SosError).code }, `reconcile pass: ${e.message}`))
      .finally(() => {
        this.passing = null;
        if (this.again) {
          this.again = false;
          this.kick();
        } else this.schedule();
      });
  }

  /** One reconcile pass (a no-op unless leading). */
  async pass(): Promise<void> {
    const fence = this.fence;
    if (!fence) return;
    const s = this.o.store;
    const [desired, actions, procs, nodes, telemetry, wanted, checkpoints] = await Promise.all([
      listDesired(s),
      listActions(s),
      listProcesses(s),
      listNodes(s),
      listTelemetry(s),
      this.o.migrate ? listWanted(s) : Promise.resolve([]),
      this.o.restore ? listCheckpoints(s) : Promise.resolve(new Map<string, CheckpointEntry>()),
    ]);
    const byKey = new Map(procs.map((p) => [`${p.app}/${p.id}`, p]));
    const load = new Map<string, number>();
    for (const p of procs) if (p.state === 'running') load.set(p.node, (load.get(p.node) ?? 0) + 1);
    for (const [k, a] of actions)
      if (a.action.state === 'intended' && !byKey.has(k)) load.set(a.action.node, (load.get(a.action.node) ?? 0) + 1);
    const candidates = (): Candidate[] =>
      [...nodes.values()].map((r) => ({
        name: r.name,
        record: r,
        telemetry: telemetry.get(r.name) ?? null,
        processes: load.get(r.name) ?? 0,
      }));
    await this.departures(fence, nodes, telemetry, procs, checkpoints);
    for (const p of procs) {
      if (this.fence !== fence) return;
      const key = `${p.app}/${p.id}`;
      const ck = checkpoints.get(key);
      const step = actions.get(key);
      if (p.state !== 'running' || !ck || this.inflight.has(key)) continue;
      if (!nodes.has(p.node)) await this.restoreLost(fence, p, ck, step, nodes, load);
      else if (step?.action.kind === 'restore' && step.action.state === 'intended' && step.action.node === p.node)
        // Restored by the holder, its answer lost (a failover): the entry says so.
        await this.record(
          fence,
          { ...step.action, state: 'done', leader: fence.leader, term: fence.term, at: now() },
          step.mod,
          'restored',
          `runs on ${p.node} as pid ${p.pid}, from checkpoint ${step.action.seq}`,
        );
    }
    for (const spec of desired) {
      if (this.fence !== fence) return; // deposed meanwhile
      const key = `${spec.app}/${spec.id}`;
      if (this.inflight.has(key)) continue;
      const proc = byKey.get(key);
      const step = actions.get(key);
      if (proc) {
        await this.observe(fence, spec, proc, step, nodes.has(proc.node), checkpoints.has(key));
        continue;
      }
      if (step && step.action.state !== 'intended') continue; // done (its entry since removed), failed, lost
      if (step && nodes.has(step.action.node)) {
        this.send(fence, spec, step, nodes.get(step.action.node)!);
        continue;
      }
      const placed = this.policy.place(spec, candidates());
      // A policy answers from the candidates; a name that is not one of them places nothing.
      const choice =
        placed.node === null || nodes.has(placed.node)
          ? placed
          : { node: null, reason: `${this.policy.name} chose ${placed.node}, not a live node` };
      if (!choice.node) {
        if (this.waiting.get(key) !== choice.reason) {
          this.waiting.set(key, choice.reason);
          await this.decide(fence, {
            kind: 'unplaceable',
            app: spec.app,
            id: spec.id,
            node: null,
            reason: choice.reason,
            at: now(),
          });
        }
        continue;
      }
      this.waiting.delete(key);
      const kind = step ? 'replace' : 'place';
      const reason = step ? `${step.action.node} left before it started; ${choice.reason}` : choice.reason;
      const a: Action = {
        app: spec.app,
        id: spec.id,
        kind: 'place',
        node: choice.node,
        state: 'intended',
        reason,
        leader: fence.leader,
        term: fence.term,
        at: now(),
      };
      const mod = await this.record(fence, a, step?.mod ?? '0', kind);
      load.set(choice.node, (load.get(choice.node) ?? 0) + 1);
      this.send(fence, spec, { action: a, mod }, nodes.get(choice.node)!);
    }
    for (const w of wanted) {
      if (this.fence !== fence) return;
      await this.migration(fence, w, byKey, nodes);
    }
    if (++this.passes % 120 === 0) await pruneDecisions(s, this.o.keepDecisions ?? 500).catch(() => undefined);
  }

  /** One step of a migration asked for (migrations.ts): start it, or learn how it ended. */
  private async migration(
    fence: Fence,
    { want, mod }: WantedEntry,
    procs: Map<string, ProcessEntry>,
    nodes: Map<string, NodeRecord>,
  ): Promise<void> {
    if (want.state === 'done' || want.state === 'failed' || this.inflight.has(`m:${want.migration}`)) return;
    const name = `${want.app}/${want.id}`;
    const proc = procs.get(name);
    const step = (w: WantedMigration, kind: Decision['kind'], why: string) =>
      this.recordMigration(fence, { ...w, reason: why }, mod, kind);
    if (want.state === 'wanted') {
      const why = !proc
        ? `no process ${name} in the cluster`
        : proc.state !== 'running'
          ? `${name} is not running (${proc.state})`
          : proc.node === want.to
            ? null
            : !nodes.has(proc.node)
              ? `${proc.node}, where it runs, is not a live node`
              : !nodes.has(want.to)
                ? `${want.to} is not a live node`
                : null;
      if (why) return void (await step({ ...want, state: 'failed' }, 'migrate-failed', why));
      if (proc!.node === want.to)
        return void (await step({ ...want, state: 'done' }, 'migrated', `runs on ${want.to} already`));
      const started: WantedMigration = { ...want, state: 'started', from: proc!.node };
      const m = await step(started, 'migrate', `${name} from ${proc!.node} to ${want.to}, ${want.mode}`);
      failpoint('orchestrator-migrate-recorded'); // recorded, the source not asked yet
      this.sendMigration(fence, { want: started, mod: m }, nodes.get(proc!.node)!);
      return;
    }
    // Started (by this leader or an earlier one): ask the source again, the same id is the same
    // migration and it answers with its outcome and figures; once asking fails, its records decide.
    if (nodes.has(want.from!) && !this.attempts.has(`m:${want.migration}`))
      return this.sendMigration(fence, { want, mod }, nodes.get(want.from!)!);
    await this.settleStarted(fence, { want, mod }, proc, nodes);
  }

  /** A started migration the source did not answer for: how its records say it ended, else ask again (bounded). */
  private async settleStarted(
    fence: Fence,
    { want, mod }: WantedEntry,
    proc: ProcessEntry | null | undefined,
    nodes: Map<string, NodeRecord>,
  ): Promise<void> {
    const from = want.from!;
    const outcome = await sourceOutcome(this.o.store, from, want.migration);
    if (outcome === 'done' || (proc?.node === want.to && proc.state === 'running')) {
      const w: WantedMigration = {
        ...want,
        state: 'done',
        reason: `runs on ${want.to}${proc?.node === want.to ? ` as pid ${proc.pid}` : ''} (${from} recorded it done; its figures were not heard)`,
        ...(proc?.node === want.to ? { result: { pid: proc.pid, downtimeMs: 0, totalMs: 0, bytes: 0, pages: 0 } } : {}),
      };
      return void (await this.recordMigration(fence, w, mod, 'migrated'));
    }
    if (outcome === 'aborted' || outcome === 'failed') {
      const why =
        outcome === 'aborted'
          ? `aborted: it runs on ${from} still`
          : `failed after the hand-over: ${from} keeps its stopped copy`;
      return void (await this.recordMigration(fence, { ...want, state: 'failed', reason: why }, mod, 'migrate-failed'));
    }
    // Not settled there yet (in doubt, or its sosd restarted): ask again while that may help.
    if (nodes.has(from) && (this.attempts.get(`m:${want.migration}`) ?? 0) < MAX_ATTEMPTS)
      this.sendMigration(fence, { want, mod }, nodes.get(from)!);
  }

  /** Ask the source to run it; record done with what it cost, or failed when asking again cannot help. */
  private sendMigration(fence: Fence, { want, mod }: WantedEntry, source: NodeRecord): void {
    const key = `m:${want.migration}`;
    this.inflight.add(key);
    void (async () => {
      try {
        const r = await this.o.migrate!(source, want, fence);
        this.attempts.delete(key);
        if (this.fence !== fence) return;
        const why = `runs on ${want.to} as pid ${r.pid}: downtime ${Math.round(r.downtimeMs)} ms, ${Math.round(r.totalMs)} ms in all`;
        await this.recordMigration(
          fence,
          {
            ...want,
            state: 'done',
            reason: why,
            result: { pid: r.pid, downtimeMs: r.downtimeMs, totalMs: r.totalMs, bytes: r.bytes, pages: r.pages },
          },
          mod,
          'migrated',
        );
      } catch (err) {
        const code = (err as SosError).code ?? 'ERR_INTERNAL';
        const n = (this.attempts.get(key) ?? 0) + 1;
        this.attempts.set(key, n);
        this.log.warn(
          { migration: want.migration, from: want.from, code, attempt: n },
          `migrate on ${want.from}: ${(err as Error).message}`,
        );
        // Refused before it began (nothing recorded there): asking again cannot help. Else the source's
        // record says how it ended, on the next pass.
        if (this.fence === fence && (MIGRATE_FINAL.has(code) || n >= MAX_ATTEMPTS)) {
          const outcome = await sourceOutcome(this.o.store, want.from!, want.migration).catch(() => 'unknown');
          if (outcome === null)
            await this.recordMigration(
              fence,
              {
                ...want,
                state: 'failed',
                reason: `${want.from} did not migrate it: ${(err as Error).message}`,
                error: { code, message: (err as Error).message },
              },
              mod,
              'migrate-failed',
            ).catch(() => undefined);
        }
      } finally {
        this.inflight.delete(key);
        this.kick(); // its outcome is for the next pass to record
      }
    })().catch(() => undefined);
  }

  private async recordMigration(
    fence: Fence,
    w: WantedMigration,
    expect: string,
    kind: Decision['kind'],
  ): Promise<string> {
    const mod = await recordWanted(this.o.store, fence, w, expect);
    await this.decide(fence, { kind, app: w.app, id: w.id, node: w.to, reason: w.reason ?? '', at: now() }).catch(
      () => undefined,
    );
    return mod;
  }

  /**
   * Nodes that left since the last pass (their lease expired): one decision each, saying what went
   * with them. Their processes are reported lost one by one below; their memory node's pages are
   * served on from the replicas by each region's replica set (a fresh replica is filled elsewhere).
   */
  private async departures(
    fence: Fence,
    nodes: Map<string, NodeRecord>,
    telemetry: Map<string, Telemetry>,
    procs: ProcessEntry[],
    checkpoints: Map<string, CheckpointEntry>,
  ): Promise<void> {
    for (const [name, last] of this.seenNodes) {
      if (nodes.has(name)) continue;
      this.seenNodes.delete(name);
      const gone = procs.filter((p) => p.node === name && p.state === 'running');
      const restorable = gone.filter((p) => checkpoints.has(`${p.app}/${p.id}`)).length;
      const running = gone.length - restorable;
      const far = (last?.farMemory as { held?: number } | undefined)?.held ?? 0;
      const memory =
        far > 0
          ? `; its memory node held ${(far / 2 ** 20).toFixed(0)} MiB of far memory, served on from replicas`
          : '';
      await this.decide(fence, {
        kind: 'node-lost',
        app: '',
        id: 0,
        node: name,
        reason: `${name} left the cluster (its lease expired): ${running} of its processes lost${restorable ? `, ${restorable} to restore from checkpoints` : ''}${memory}`,
        at: now(),
      });
    }
    for (const name of nodes.keys()) this.seenNodes.set(name, telemetry.get(name) ?? this.seenNodes.get(name) ?? null);
  }

  /** A desired process that has an entry: its step done, or lost with its node. */
  private async observe(
    fence: Fence,
    spec: ProcessSpec,
    proc: ProcessEntry,
    step: ActionEntry | undefined,
    live: boolean,
    restorable: boolean,
  ): Promise<void> {
    const base = {
      app: spec.app,
      id: spec.id,
      kind: 'place' as const,
      node: proc.node,
      leader: fence.leader,
      term: fence.term,
      at: now(),
    };
    // One with a checkpoint is restored (restoreLost), not lost.
    if (proc.state === 'running' && !live && !restorable && step?.action.state !== 'lost') {
      await this.record(
        fence,
        {
          ...base,
          state: 'lost',
          reason: `${proc.node} left the cluster (its lease expired) and no checkpoint exists`,
        },
        step?.mod ?? '0',
        'lost',
      );
    } else if (live && (!step || (step.action.state === 'intended' && step.action.kind === 'place'))) {
      await this.record(
        fence,
        { ...base, state: 'done', reason: step?.action.reason ?? 'started by an earlier leader' },
        step?.mod ?? '0',
        'done',
        `runs on ${proc.node} as pid ${proc.pid}`,
      );
    }
  }

  /** Ask the step's node to run it. */
  private send(fence: Fence, spec: ProcessSpec, step: ActionEntry, node: NodeRecord): void {
    this.carry(fence, step, () => this.o.run(node, spec, fence), {
      verb: 'run',
      done: 'done',
      failed: 'failed',
      why: (e) => `runs on ${e.node} as pid ${e.pid}`,
    });
  }

  /**
   * Carry step `step` out on its node (`call`, idempotent there by APP/ID); record it done, or
   * failed when asking again cannot help (a final refusal, or MAX_ATTEMPTS tries).
   */
  private carry(
    fence: Fence,
    step: ActionEntry,
    call: () => Promise<ProcessEntry>,
    o: { verb: string; done: DecisionKind; failed: DecisionKind; why: (e: ProcessEntry) => string },
  ): void {
    const { app, id, node } = step.action;
    const key = `${app}/${id}`;
    this.inflight.add(key);
    void (async () => {
      try {
        const e = await call();
        this.attempts.delete(key);
        if (this.fence !== fence) return;
        const done = { ...step.action, state: 'done' as const, leader: fence.leader, term: fence.term, at: now() };
        await this.record(fence, done, step.mod, o.done, o.why(e));
      } catch (err) {
        const code = (err as SosError).code ?? 'ERR_INTERNAL';
        const message = (err as Error).message;
        const n = (this.attempts.get(key) ?? 0) + 1;
        this.attempts.set(key, n);
        this.log.warn({ app, id, node, code, attempt: n }, `${o.verb} on ${node}: ${message}`);
        if (this.fence === fence && (FINAL.has(code) || n >= MAX_ATTEMPTS)) {
          this.attempts.delete(key);
          const failed = {
            ...step.action,
            state: 'failed' as const,
            reason: `${node} did not ${o.verb} it: ${message}`,
            error: { code, message },
            leader: fence.leader,
            term: fence.term,
            at: now(),
          };
          await this.record(fence, failed, step.mod, o.failed).catch(() => undefined);
        }
      } finally {
        this.inflight.delete(key);
      }
    })().catch(() => undefined);
  }

  /**
   * `p` ran on a node that left, and checkpoint `ck` of it exists: restore it on a live holder. The
   * step is recorded (intended) before the holder is asked, so a new leader asks the same holder
   * again; a step of an earlier departure or checkpoint gives way to a new one.
   */
  private async restoreLost(
    fence: Fence,
    p: ProcessEntry,
    ck: CheckpointEntry,
    step: ActionEntry | undefined,
    nodes: Map<string, NodeRecord>,
    load: Map<string, number>,
  ): Promise<void> {
    const key = `${p.app}/${p.id}`;
    const a = step?.action;
    const same = a?.kind === 'restore' && a.from === p.node && a.seq === ck.seq;
    if (same && a.state !== 'intended') return; // done (the entry follows), or failed for good
    if (same && nodes.has(a.node)) return this.sendRestore(fence, ck, step!, nodes.get(a.node)!);
    const holders = ck.holders
      .filter((h) => h !== p.node && nodes.has(h))
      .sort((x, y) => (load.get(x) ?? 0) - (load.get(y) ?? 0) || x.localeCompare(y));
    if (holders.length === 0) {
      const reason = `${p.node} left the cluster (its lease expired); no holder of checkpoint ${ck.seq} (${ck.holders.join(', ')}) is live`;
      if (this.waiting.get(key) !== reason) {
        this.waiting.set(key, reason);
        await this.decide(fence, { kind: 'lost', app: p.app, id: p.id, node: p.node, reason, at: now() });
      }
      return;
    }
    this.waiting.delete(key);
    const node = holders[0];
    const next: Action = {
      app: p.app,
      id: p.id,
      kind: 'restore',
      node,
      from: p.node,
      seq: ck.seq,
      state: 'intended',
      reason: `${p.node} left the cluster (its lease expired); checkpoint ${ck.seq} (taken ${ck.at}) is held by ${node}`,
      leader: fence.leader,
      term: fence.term,
      at: now(),
    };
    const mod = await this.record(fence, next, step?.mod ?? '0', 'restore');
    failpoint('orchestrator-restore-recorded'); // recorded, the holder not asked yet
    load.set(node, (load.get(node) ?? 0) + 1);
    this.sendRestore(fence, ck, { action: next, mod }, nodes.get(node)!);
  }

  /** Ask the step's holder to restore checkpoint `ck`. */
  private sendRestore(fence: Fence, ck: CheckpointEntry, step: ActionEntry, node: NodeRecord): void {
    this.carry(fence, step, () => this.o.restore!(node, ck, fence), {
      verb: 'restore',
      done: 'restored',
      failed: 'restore-failed',
      why: (e) => `runs on ${e.node} as pid ${e.pid}, from checkpoint ${ck.seq}`,
    });
  }

  /** Record step `a`; its decision says `why` (default: the step's reason). */
  private async record(
    fence: Fence,
    a: Action,
    expect: string,
    kind: Decision['kind'],
    why = a.reason,
  ): Promise<string> {
    const mod = await recordAction(this.o.store, fence, a, expect, { kind, reason: why });
    this.announce({
      at: a.at,
      leader: fence.leader,
      term: fence.term,
      kind,
      app: a.app,
      id: a.id,
      node: a.node,
      reason: why,
    });
    return mod;
  }

  private async decide(fence: Fence, d: Omit<Decision, 'leader' | 'term'>): Promise<void> {
    await recordDecision(this.o.store, fence, d);
    this.announce({ ...d, leader: fence.leader, term: fence.term });
  }

  private announce(d: Decision): void {
    const what = d.kind === 'elected' ? '' : ` ${d.app}/${d.id}${d.node ? ` on ${d.node}` : ''}`;
    this.log.info({ app: d.app, id: d.id, node: d.node, kind: d.kind }, `${d.kind}${what}: ${d.reason}`);
    this.emit('decision', d);
  }
}

const now = () => new Date().toISOString();
