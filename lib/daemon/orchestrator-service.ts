/**
 * sosd's orchestrator role: every sosd of a cluster campaigns; the one elected reconciles desired
 * processes onto the nodes (lib/orchestrator), asking each node's apps.run over mutual TLS with this
 * node's certificate and the term's fence. Any sosd answers the ops (they read and write etcd), so
 * sosctl need not know who leads.
 */
import type { ClusterNode } from '../cluster/join.js';
import { listNodes, type NodeRecord } from '../cluster/membership.js';
import { findProcess, type ProcessEntry } from '../cluster/processes.js';
import { SosError } from '../errors.js';
import { listActions, listDecisions, readAction } from '../orchestrator/actions.js';
import {
  REQUEST_SCHEMA,
  listDesired,
  readDesired,
  submit,
  type ProcessRequest,
  type ProcessSpec,
} from '../orchestrator/desired.js';
import { currentLeader, type Fence } from '../orchestrator/fence.js';
import { requestMigration, readWanted, type MigrationRequest } from '../orchestrator/migrations.js';
import { Orchestrator, type MigrationResult } from '../orchestrator/orchestrator.js';
import { MIGRATE_REQUEST } from './migration-service.js';
import { connectNode } from './remote.js';
import type { FarConfig } from './far-service.js';
import type { DaemonLogger, OpSpec } from './server.js';

export interface OrchestratorServiceOptions {
  clusterDir: string;
  /** This node's name (its certificate's: the leader's name in every fence). */
  name: string;
  cluster: ClusterNode;
  log: DaemonLogger;
}

/** How long a node may take to start a process for the orchestrator. */
const RUN_TIMEOUT_MS = 60_000;
/** A migration can take long (post-copy of a big heap). */
const MIGRATE_TIMEOUT_MS = 6 * 3600_000;

export class OrchestratorService {
  readonly orchestrator: Orchestrator;

  constructor(private readonly o: OrchestratorServiceOptions) {
    const log = {
      info: (f: object, m: string) => o.log.info({ role: 'orchestrator', ...f }, m),
      warn: (f: object, m: string) => o.log.warn({ role: 'orchestrator', ...f }, m),
    };
    this.orchestrator = new Orchestrator({
      store: o.cluster.store,
      member: o.cluster.member,
      log,
      run: async (node, spec, fence) => {
        // apps.run's arguments: the spec without where it may go and when it was submitted.
        const args = { app: spec.app, id: spec.id, argv: spec.argv, env: spec.env, cwd: spec.cwd, limits: spec.limits };
        const farMemory = spec.farMemory ? await this.grantFar(spec, fence) : undefined;
        return (await this.ask(
          node,
          'apps.run',
          { ...args, ...(farMemory ? { farMemory } : {}), fence },
          RUN_TIMEOUT_MS,
        )) as ProcessEntry;
      },
      restore: (node, ck, fence) =>
        this.ask(
          node,
          'apps.restore',
          { app: ck.app, id: ck.id, seq: ck.seq, fence },
          RUN_TIMEOUT_MS,
        ) as Promise<ProcessEntry>,
      migrate: (from, want, fence) => {
        const { app, id, to, mode, migration, moveAddress } = want;
        const args = { app, id, to, mode, migration, moveAddress, fence };
        return this.ask(from, 'apps.migrate', args, MIGRATE_TIMEOUT_MS) as Promise<MigrationResult>;
      },
    }).start();
  }

  close(): Promise<void> {
    return this.orchestrator.close();
  }

  /** One request to `node`'s sosd (its record, as the pass read it) over mutual TLS with this node's certificate (undefined fields left out). */
  /**
   * A far-memory process's memory nodes let it in (memory.grant, fenced by this term: a deposed
   * leader's grant is refused), with the secret its spec carries: asked again, the same one.
   */
  private async grantFar(spec: ProcessSpec, fence: Fence): Promise<FarConfig> {
    const f = spec.farMemory!;
    const live = await listNodes(this.o.cluster.store);
    const nodes: FarConfig['nodes'] = [];
    for (const name of f.memoryNodes) {
      const n = live.get(name);
      if (!n || typeof n.memory !== 'number')
        throw new SosError(`memory node ${name} of ${spec.app}/${spec.id} is not a live memory node`, {
          code: 'ERR_NO_NODES',
        });
      const g = (await this.ask(n, 'memory.grant', { app: spec.app, secret: f.secret, fence }, RUN_TIMEOUT_MS)) as {
        host: string;
        port: number;
        tls: boolean;
      };
      nodes.push({ host: g.host, port: g.port, name });
    }
    return {
      localBytes: f.localBytes,
      farBytes: f.farBytes,
      ...(f.replicas ? { replicas: f.replicas } : {}),
      nodes,
      secret: f.secret,
      tls: true,
    };
  }

  private async ask(node: NodeRecord, op: string, args: Record<string, unknown>, timeoutMs: number): Promise<unknown> {
    const c = await connectNode(this.o.clusterDir, node, { role: 'node', name: this.o.name });
    try {
      const defined = Object.fromEntries(Object.entries(args).filter(([, v]) => v !== undefined));
      return await c.request(op, defined, { timeoutMs });
    } finally {
      c.close();
    }
  }

  ops(): OpSpec[] {
    const store = this.o.cluster.store;
    return [
      {
        op: 'orchestrator.submit',
        schema: REQUEST_SCHEMA,
        roles: ['operator'],
        handler: (a) => submit(store, a as unknown as ProcessRequest),
      },
      {
        op: 'orchestrator.status',
        schema: { type: 'object', additionalProperties: false, properties: {} },
        roles: ['operator', 'orchestrator', 'node'],
        handler: async () => {
          const l = await currentLeader(store);
          return {
            leader: l?.leader ?? null,
            term: l?.term ?? null,
            since: l ? new Date(l.since).toISOString() : null,
            leading: this.orchestrator.fence !== null,
            policy: this.orchestrator.policy.name,
          };
        },
      },
      {
        op: 'orchestrator.desired',
        schema: { type: 'object', additionalProperties: false, properties: {} },
        roles: ['operator', 'orchestrator'],
        handler: async () => {
          const [desired, actions] = await Promise.all([listDesired(store), listActions(store)]);
          return desired.map((s) => ({ ...s, step: actions.get(`${s.app}/${s.id}`)?.action ?? null }));
        },
      },
      {
        op: 'orchestrator.get',
        schema: {
          type: 'object',
          additionalProperties: false,
          required: ['app', 'id'],
          properties: { app: REQUEST_SCHEMA.properties.app, id: { type: 'integer', minimum: 1 } },
        },
        roles: ['operator', 'orchestrator'],
        handler: async (a) => {
          const app = a.app as string;
          const id = a.id as number;
          const [spec, step, entry] = await Promise.all([
            readDesired(store, app, id),
            readAction(store, app, id),
            findProcess(store, app, id),
          ]);
          if (!spec) throw new SosError(`${app}/${id} is not a desired process`, { code: 'ERR_NOT_FOUND' });
          return { spec, step, entry };
        },
      },
      {
        op: 'orchestrator.migrate',
        schema: MIGRATE_REQUEST,
        roles: ['operator'],
        handler: async (a) => {
          // What the asker can be told at once: the same refusals as the source's.
          const r = a as unknown as MigrationRequest;
          const [entry, nodes] = await Promise.all([findProcess(store, r.app, r.id), listNodes(store)]);
          if (!entry) throw new SosError(`no process ${r.app}/${r.id} in the cluster`, { code: 'ERR_APP_NOT_FOUND' });
          if (entry.state !== 'running')
            throw new SosError(`${r.app}/${r.id} is not running (${entry.state})`, { code: 'ERR_APP_EXITED' });
          if (entry.node === r.to)
            throw new SosError(`${r.app}/${r.id} runs on ${r.to} already`, { code: 'ERR_MIGRATION_REFUSED' });
          if (!nodes.has(r.to)) throw new SosError(`no live node ${r.to} in the cluster`, { code: 'ERR_NOT_FOUND' });
          return requestMigration(store, r);
        },
      },
      {
        op: 'orchestrator.migration',
        schema: {
          type: 'object',
          additionalProperties: false,
          required: ['migration'],
          properties: { migration: { type: 'string', pattern: '^[0-9a-f]{32}$' } },
        },
        roles: ['operator', 'orchestrator'],
        handler: async (a) => {
          const w = await readWanted(store, a.migration as string);
          if (!w) throw new SosError(`no migration ${String(a.migration)} was asked for`, { code: 'ERR_NOT_FOUND' });
          return w;
        },
      },
      {
        op: 'orchestrator.decisions',
        schema: {
          type: 'object',
          additionalProperties: false,
          properties: { limit: { type: 'integer', minimum: 1, maximum: 1000 } },
        },
        roles: ['operator', 'orchestrator'],
        handler: (a) => listDecisions(store, (a.limit as number | undefined) ?? 50),
      },
    ];
  }
}
